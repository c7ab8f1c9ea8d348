//! Turns a detector's raw output tensors into [`Detection`]s in source-picture pixels:
//! format-specific box decoding, per-class score thresholds, per-class NMS.
//!
//! Sans-IO and allocation-free per frame once a [`Decoder`]'s buffers have grown.

mod nanodet;
pub mod nms;
#[cfg(test)]
mod props;
mod yolo;
mod yolox;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::geometry::{BBox, Detection};
use super::preprocess::{Letterbox, MAX_INPUT_SIDE};
pub use nms::{Candidate, nms_per_class};

/// IoU above which a lower-scored box of the same class is dropped.
pub const DEFAULT_NMS_IOU: f32 = 0.5;
/// Detections kept per frame at most.
pub const DEFAULT_MAX_DETECTIONS: usize = 300;
/// Minimum score for classes without their own threshold (NanoDet's demo value).
pub const DEFAULT_SCORE: f32 = 0.35;
/// Classes a model may have at most, so a wrong config fails instead of allocating.
const MAX_CLASSES: usize = 100_000;
/// Distribution bins per box side at most (NanoDet `reg_max + 1`).
const MAX_BINS: u32 = 1_000;

/// Read access to one output tensor, so callers can pass their own tensor views.
pub trait TensorView {
    /// Output name, for error messages.
    fn name(&self) -> &str;
    /// Dimensions.
    fn shape(&self) -> &[i64];
    /// Values, row-major.
    fn data(&self) -> &[f32];
}

/// A borrowed output tensor.
#[derive(Debug, Clone, Copy)]
pub struct OutputTensor<'a> {
    /// Output name.
    pub name: &'a str,
    /// Dimensions.
    pub shape: &'a [i64],
    /// Values, row-major.
    pub data: &'a [f32],
}

impl TensorView for OutputTensor<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn shape(&self) -> &[i64] {
        self.shape
    }
    fn data(&self) -> &[f32] {
        self.data
    }
}

impl TensorView for (&str, &[i64], &[f32]) {
    fn name(&self) -> &str {
        self.0
    }
    fn shape(&self) -> &[i64] {
        self.1
    }
    fn data(&self) -> &[f32] {
        self.2
    }
}

/// How a model's outputs encode boxes and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutputFormat {
    /// NanoDet (GFL head): rows per grid cell, stride by stride (row = y*grid_w + x), each
    /// `num_classes` sigmoid scores then 4 sides (left, top, right, bottom) × `reg_max + 1`
    /// distribution logits; one `[1,N,C+4(reg_max+1)]` tensor or a score `[1,rows,C]` and a
    /// box `[1,rows,4(reg_max+1)]` tensor per stride.
    Nanodet {
        /// Grid strides in row order, e.g. `[8, 16, 32]`.
        strides: Vec<u32>,
        /// Largest distribution bin index (10 for nanodet-g, 7 for nanodet-m/plus).
        reg_max: u32,
        /// Number of classes.
        num_classes: usize,
        /// Cell centre offset in cells: 0.5 for the GFL head (nanodet-g/m), 0.0 for NanoDet-Plus.
        #[serde(default = "half")]
        center_offset: f32,
    },
    /// YOLOv5: `[1,N,5+C]` rows of `cx,cy,w,h` (model pixels), objectness, class scores;
    /// score = objectness × class score.
    Yolov5 {
        /// Number of classes.
        num_classes: usize,
    },
    /// YOLOv8/11: `[1,4+C,N]` (or `[1,N,4+C]`) of `cx,cy,w,h` then class scores, no objectness.
    Yolov8 {
        /// Number of classes.
        num_classes: usize,
    },
    /// YOLOX exported with `decode_in_inference=False` (the standard ONNX export): `[1,N,5+C]`
    /// rows stride by stride of grid-relative `x,y` (cells), log-size `w,h`, then objectness
    /// and class scores already through sigmoid; score = objectness × class score.
    Yolox {
        /// Grid strides in row order, e.g. `[8, 16, 32]`.
        strides: Vec<u32>,
        /// Number of classes.
        num_classes: usize,
    },
}

fn half() -> f32 {
    0.5
}

impl OutputFormat {
    /// nanodet-g (and nanodet-m at `reg_max` 10): strides 8/16/32, `reg_max` 10, centre offset 0.5.
    pub fn nanodet_g(num_classes: usize) -> Self {
        Self::Nanodet { strides: vec![8, 16, 32], reg_max: 10, num_classes, center_offset: 0.5 }
    }

    /// Number of classes the outputs score.
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Nanodet { num_classes, .. }
            | Self::Yolov5 { num_classes }
            | Self::Yolov8 { num_classes }
            | Self::Yolox { num_classes, .. } => *num_classes,
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        let n = self.num_classes();
        if n == 0 || n > MAX_CLASSES {
            return Err(bad_config(format!("num_classes is {n}; it must be 1..={MAX_CLASSES}")));
        }
        match self {
            Self::Nanodet { strides, reg_max, center_offset, .. } => {
                check_strides(strides)?;
                if *reg_max >= MAX_BINS {
                    return Err(bad_config(format!("reg_max is {reg_max}; it must be below {MAX_BINS}")));
                }
                if !center_offset.is_finite() {
                    return Err(bad_config(format!("center_offset is {center_offset}")));
                }
                Ok(())
            }
            Self::Yolox { strides, .. } => check_strides(strides),
            Self::Yolov5 { .. } | Self::Yolov8 { .. } => Ok(()),
        }
    }
}

fn check_strides(strides: &[u32]) -> Result<(), DecodeError> {
    if strides.is_empty() || strides.contains(&0) {
        return Err(bad_config(format!("strides are {strides:?}; they must be non-empty and non-zero")));
    }
    Ok(())
}

/// Minimum scores: one per class where set, `default` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// For classes not in `per_class`.
    pub default: f32,
    /// `(class_id, minimum score)` overrides.
    #[serde(default)]
    pub per_class: Vec<(usize, f32)>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::new(DEFAULT_SCORE)
    }
}

impl Thresholds {
    /// The same minimum for every class.
    pub fn new(default: f32) -> Self {
        Self { default, per_class: Vec::new() }
    }

    /// With `class_id`'s minimum set to `min_score`.
    pub fn with_class(mut self, class_id: usize, min_score: f32) -> Self {
        self.per_class.retain(|&(id, _)| id != class_id);
        self.per_class.push((class_id, min_score));
        self
    }

    /// The minimum score for `class_id`.
    pub fn for_class(&self, class_id: usize) -> f32 {
        self.per_class.iter().rev().find(|&&(id, _)| id == class_id).map_or(self.default, |&(_, t)| t)
    }
}

/// Everything a decoder needs besides the outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeConfig {
    /// Output encoding.
    pub format: OutputFormat,
    /// Model input width in pixels (grid sizes for NanoDet and YOLOX).
    pub input_width: u32,
    /// Model input height in pixels.
    pub input_height: u32,
    /// Minimum scores.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// NMS IoU threshold.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Detections kept per frame at most.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
}

fn default_nms_iou() -> f32 {
    DEFAULT_NMS_IOU
}
fn default_max_detections() -> usize {
    DEFAULT_MAX_DETECTIONS
}

impl DecodeConfig {
    /// `format` on a `input_width` × `input_height` input with default thresholds, NMS and cap.
    pub fn new(format: OutputFormat, input_width: u32, input_height: u32) -> Self {
        Self {
            format,
            input_width,
            input_height,
            thresholds: Thresholds::default(),
            nms_iou: DEFAULT_NMS_IOU,
            max_detections: DEFAULT_MAX_DETECTIONS,
        }
    }

    /// Checks sizes, strides, and that thresholds are finite and name existing classes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        self.format.validate()?;
        let (w, h) = (self.input_width, self.input_height);
        if w == 0 || h == 0 || w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE {
            return Err(bad_config(format!("model input is {w}x{h}; sides must be 1..={MAX_INPUT_SIDE}")));
        }
        if !(0.0..=1.0).contains(&self.nms_iou) {
            return Err(bad_config(format!("nms_iou is {}; it must be in 0..=1", self.nms_iou)));
        }
        let t = &self.thresholds;
        if !t.default.is_finite() {
            return Err(bad_config(format!("default score threshold is {}", t.default)));
        }
        let n = self.format.num_classes();
        for &(id, min) in &t.per_class {
            if id >= n {
                return Err(bad_config(format!("score threshold for class {id}, but the model has {n} classes")));
            }
            if !min.is_finite() {
                return Err(bad_config(format!("score threshold for class {id} is {min}")));
            }
        }
        Ok(())
    }
}

/// Why outputs could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The decoder config cannot be used.
    #[error("decoder config: {0}")]
    BadConfig(String),
    /// The only output has a shape the format cannot read.
    #[error("output `{name}` has shape {}; {expected}", fmt_shape(shape))]
    BadShape {
        /// Output name.
        name: String,
        /// Its shape.
        shape: Vec<i64>,
        /// What the format expects, e.g. `nanodet … expects [1,3549,124]`.
        expected: String,
    },
    /// None of several outputs has a shape the format can read.
    #[error("no output fits: {expected}; outputs are {got}")]
    NoMatchingOutput {
        /// What the format expects.
        expected: String,
        /// Every output as `name [shape]`.
        got: String,
    },
    /// An output holds a different number of values than its shape says.
    #[error("output `{name}` has shape {} but {len} values", fmt_shape(shape))]
    DataLength {
        /// Output name.
        name: String,
        /// Its shape.
        shape: Vec<i64>,
        /// Values it holds.
        len: usize,
    },
}

fn bad_config(message: String) -> DecodeError {
    DecodeError::BadConfig(message)
}

/// `[1,3549,124]`, the way shapes are written in model docs.
fn fmt_shape(shape: &[i64]) -> String {
    let mut s = String::from("[");
    for (i, d) in shape.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{d}");
    }
    s.push(']');
    s
}

/// The error for outputs of which none fits: names the output when there is only one.
fn no_match<T: TensorView>(outputs: &[T], expected: String) -> DecodeError {
    if let [only] = outputs {
        return DecodeError::BadShape { name: only.name().to_owned(), shape: only.shape().to_vec(), expected };
    }
    let mut got = String::new();
    for (i, t) in outputs.iter().enumerate() {
        if i > 0 {
            got.push_str(", ");
        }
        let _ = write!(got, "`{}` {}", t.name(), fmt_shape(t.shape()));
    }
    if outputs.is_empty() {
        got.push_str("none");
    }
    DecodeError::NoMatchingOutput { expected, got }
}

/// `[1, rows, cols]` or `[rows, cols]` as `(rows, cols)`; `None` for other ranks or negative dims.
fn matrix(shape: &[i64]) -> Option<(usize, usize)> {
    let (r, c) = match *shape {
        [1, r, c] | [r, c] => (r, c),
        _ => return None,
    };
    Some((usize::try_from(r).ok()?, usize::try_from(c).ok()?))
}

/// The tensor's values, checked to be exactly `rows * cols` long.
fn matrix_data<T: TensorView>(t: &T, rows: usize, cols: usize) -> Result<&[f32], DecodeError> {
    let data = t.data();
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(DecodeError::DataLength { name: t.name().to_owned(), shape: t.shape().to_vec(), len: data.len() });
    }
    Ok(data)
}

/// Grid size `(w, h)` of a stride on the model input (feature maps round up).
fn grid(input_w: u32, input_h: u32, stride: u32) -> (usize, usize) {
    (input_w.div_ceil(stride) as usize, input_h.div_ceil(stride) as usize)
}

/// Total rows of all grids.
fn grid_rows(input_w: u32, input_h: u32, strides: &[u32]) -> usize {
    strides
        .iter()
        .map(|&s| {
            let (w, h) = grid(input_w, input_h, s);
            w * h
        })
        .sum()
}

/// Collects thresholded boxes, mapped to source pixels.
struct Sink<'a> {
    class_min: &'a [f32],
    min_score: f32,
    letterbox: &'a Letterbox,
    candidates: &'a mut Vec<Candidate>,
}

impl Sink<'_> {
    /// Adds a box given in model pixels, unless it is not finite or empty once clamped.
    #[inline]
    fn push(&mut self, class_id: usize, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) {
        if !(x1.is_finite() && y1.is_finite() && x2.is_finite() && y2.is_finite()) {
            return;
        }
        let bbox = self.letterbox.to_source(BBox { x1, y1, x2, y2 });
        // Also false for NaN, e.g. from a degenerate letterbox.
        if bbox.x2 > bbox.x1 && bbox.y2 > bbox.y1 {
            self.candidates.push(Candidate { class_id, score, bbox });
        }
    }

    /// The best class whose `score × factor` reaches its threshold; NaN scores never do.
    #[inline]
    fn best_class(&self, scores: &[f32], factor: f32) -> Option<(usize, f32)> {
        // Most rows score nothing: reject them with a vectorised max before the per-class pass.
        if factor >= 0.0 && max_score(scores) * factor < self.min_score {
            return None;
        }
        let mut best: Option<(usize, f32)> = None;
        for (c, (&s, &min)) in scores.iter().zip(self.class_min).enumerate() {
            let s = s * factor;
            if s >= min && best.is_none_or(|(_, b)| s > b) {
                best = Some((c, s));
            }
        }
        best
    }
}

/// Largest value, ignoring NaN (`NEG_INFINITY` for none); lane-wise so it compiles to SIMD max.
#[inline]
fn max_score(scores: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = scores.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (m, &s) in lanes.iter_mut().zip(chunk) {
            *m = if s > *m { s } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &s in lanes.iter().chain(rest) {
        max = if s > max { s } else { max };
    }
    max
}

/// Buffers reused between frames.
#[derive(Debug, Default)]
struct Scratch {
    class_min: Vec<f32>,
    candidates: Vec<Candidate>,
    best_score: Vec<f32>,
    best_class: Vec<u32>,
}

/// A decoder for one model, keeping its buffers between frames.
#[derive(Debug)]
pub struct Decoder {
    config: DecodeConfig,
    scratch: Scratch,
}

impl Decoder {
    /// A decoder for `config`, checked up front.
    pub fn new(config: DecodeConfig) -> Result<Self, DecodeError> {
        config.validate()?;
        Ok(Self { config, scratch: Scratch::default() })
    }

    /// The config it decodes with.
    pub fn config(&self) -> &DecodeConfig {
        &self.config
    }

    /// Decodes one frame's `outputs` into `out` (replacing its contents, best score first),
    /// mapping boxes through `letterbox`; `labels[class_id]` names classes (`class<N>` if missing).
    pub fn decode<T: TensorView>(
        &mut self,
        outputs: &[T],
        letterbox: &Letterbox,
        labels: &[String],
        out: &mut Vec<Detection>,
    ) -> Result<(), DecodeError> {
        run(&self.config, &mut self.scratch, outputs, letterbox, labels, out)
    }
}

/// One-shot [`Decoder::decode`] that allocates its buffers; prefer a [`Decoder`] per model.
pub fn decode<T: TensorView>(
    config: &DecodeConfig,
    outputs: &[T],
    letterbox: &Letterbox,
    labels: &[String],
    out: &mut Vec<Detection>,
) -> Result<(), DecodeError> {
    run(config, &mut Scratch::default(), outputs, letterbox, labels, out)
}

fn run<T: TensorView>(
    config: &DecodeConfig,
    scratch: &mut Scratch,
    outputs: &[T],
    letterbox: &Letterbox,
    labels: &[String],
    out: &mut Vec<Detection>,
) -> Result<(), DecodeError> {
    if let Err(e) = collect(config, scratch, outputs, letterbox) {
        out.clear();
        return Err(e);
    }
    let kept = &mut scratch.candidates;
    nms_per_class(kept, config.nms_iou, config.max_detections);
    // Overwrite existing entries so their label strings are reused.
    out.truncate(kept.len());
    for (i, c) in kept.iter().enumerate() {
        if i == out.len() {
            out.push(Detection { class_id: 0, label: String::new(), score: 0.0, bbox: c.bbox });
        }
        let d = &mut out[i];
        d.class_id = c.class_id;
        d.score = c.score;
        d.bbox = c.bbox;
        d.label.clear();
        match labels.get(c.class_id) {
            Some(l) => d.label.push_str(l),
            None => {
                let _ = write!(d.label, "class{}", c.class_id);
            }
        }
    }
    Ok(())
}

/// Validates, then fills `scratch.candidates` with thresholded boxes in source pixels.
fn collect<T: TensorView>(
    config: &DecodeConfig,
    scratch: &mut Scratch,
    outputs: &[T],
    letterbox: &Letterbox,
) -> Result<(), DecodeError> {
    config.validate()?;
    let n = config.format.num_classes();
    let class_min = &mut scratch.class_min;
    class_min.clear();
    class_min.resize(n, config.thresholds.default);
    for &(id, min) in &config.thresholds.per_class {
        class_min[id] = min;
    }
    let min_score = class_min.iter().copied().fold(f32::INFINITY, f32::min);
    scratch.candidates.clear();
    let mut sink = Sink { class_min, min_score, letterbox, candidates: &mut scratch.candidates };
    let (w, h) = (config.input_width, config.input_height);
    match &config.format {
        OutputFormat::Nanodet { strides, reg_max, num_classes, center_offset } => {
            let head = nanodet::Head {
                strides,
                bins: *reg_max as usize + 1,
                num_classes: *num_classes,
                center_offset: *center_offset,
            };
            nanodet::decode(&head, w, h, outputs, &mut sink)
        }
        OutputFormat::Yolov5 { num_classes } => yolo::decode_v5(*num_classes, outputs, &mut sink),
        OutputFormat::Yolov8 { num_classes } => {
            yolo::decode_v8(*num_classes, outputs, &mut sink, &mut scratch.best_score, &mut scratch.best_class)
        }
        OutputFormat::Yolox { strides, num_classes } => yolox::decode(strides, *num_classes, w, h, outputs, &mut sink),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::detect::preprocess::Placement;

    /// An owned output tensor for tests.
    #[derive(Debug)]
    pub(crate) struct Owned {
        pub name: String,
        pub shape: Vec<i64>,
        pub data: Vec<f32>,
    }

    impl TensorView for Owned {
        fn name(&self) -> &str {
            &self.name
        }
        fn shape(&self) -> &[i64] {
            &self.shape
        }
        fn data(&self) -> &[f32] {
            &self.data
        }
    }

    pub(crate) fn owned(name: &str, shape: &[i64], data: Vec<f32>) -> Owned {
        Owned { name: name.to_owned(), shape: shape.to_vec(), data }
    }

    pub(crate) fn identity() -> Letterbox {
        Letterbox { scale: 1.0, pad_x: 0.0, pad_y: 0.0, src_w: 10_000, src_h: 10_000 }
    }

    pub(crate) fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("l{i}")).collect()
    }

    pub(crate) fn assert_box(b: BBox, want: [f32; 4]) {
        let got = [b.x1, b.y1, b.x2, b.y2];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn max_score_ignores_nan() {
        let mut v: Vec<f32> = (0..21).map(|i| i as f32 / 100.0).collect();
        assert_eq!(max_score(&v), 0.2);
        v[20] = f32::NAN;
        v[3] = 0.5;
        assert_eq!(max_score(&v), 0.5);
        assert_eq!(max_score(&[f32::NAN]), f32::NEG_INFINITY);
        assert_eq!(max_score(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn thresholds_per_class() {
        let t = Thresholds::new(0.4).with_class(2, 0.9).with_class(2, 0.8);
        assert_eq!(t.for_class(2), 0.8);
        assert_eq!(t.for_class(1), 0.4);
        assert_eq!(t.per_class.len(), 1);
    }

    #[test]
    fn bad_configs_are_errors() {
        let ok = DecodeConfig::new(OutputFormat::Yolov5 { num_classes: 3 }, 640, 640);
        assert!(Decoder::new(ok.clone()).is_ok());
        let mut c = ok.clone();
        c.thresholds = Thresholds::new(0.5).with_class(3, 0.1);
        assert_eq!(
            Decoder::new(c).unwrap_err().to_string(),
            "decoder config: score threshold for class 3, but the model has 3 classes"
        );
        let mut c = ok.clone();
        c.nms_iou = f32::NAN;
        assert!(Decoder::new(c).is_err());
        let mut c = ok.clone();
        c.thresholds.default = f32::NAN;
        assert!(Decoder::new(c).is_err());
        let mut c = ok.clone();
        c.input_width = 0;
        assert!(Decoder::new(c).is_err());
        let mut c = ok;
        c.format = OutputFormat::Yolox { strides: vec![8, 0], num_classes: 3 };
        assert!(Decoder::new(c).is_err());
        let c = DecodeConfig::new(OutputFormat::Yolov8 { num_classes: 0 }, 640, 640);
        assert!(Decoder::new(c).is_err());
        let c = DecodeConfig::new(
            OutputFormat::Nanodet { strides: vec![8], reg_max: 7, num_classes: 1, center_offset: f32::INFINITY },
            64,
            64,
        );
        assert!(Decoder::new(c).is_err());
    }

    #[test]
    fn labels_fall_back_and_buffers_are_reused() {
        // One YOLOv5 row for class 1 with no label given.
        let row = vec![50.0, 50.0, 20.0, 20.0, 1.0, 0.1, 0.9];
        let t = [owned("output0", &[1, 1, 7], row)];
        let mut d = Decoder::new(DecodeConfig::new(OutputFormat::Yolov5 { num_classes: 2 }, 100, 100)).unwrap();
        let mut out =
            vec![Detection { class_id: 9, label: "stale".into(), score: 1.0, bbox: BBox::new(0.0, 0.0, 1.0, 1.0) }; 3];
        d.decode(&t, &identity(), &labels(1), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].label, "class1");
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.9).abs() < 1e-6);
        d.decode(&t, &identity(), &labels(2), &mut out).unwrap();
        assert_eq!(out[0].label, "l1");
    }

    #[test]
    fn errors_name_the_output_and_clear_out() {
        let cfg = DecodeConfig::new(OutputFormat::nanodet_g(80), 416, 416);
        let mut out =
            vec![Detection { class_id: 0, label: "x".into(), score: 1.0, bbox: BBox::new(0.0, 0.0, 1.0, 1.0) }];
        let t = [owned("output", &[1, 3549, 120], vec![0.0; 3549 * 120])];
        let e = decode(&cfg, &t, &identity(), &[], &mut out).unwrap_err();
        assert!(out.is_empty());
        assert_eq!(
            e.to_string(),
            "output `output` has shape [1,3549,120]; nanodet (80 classes, reg_max 10, strides [8, 16, 32]) \
             on 416x416 expects [1,3549,124] or per stride [1,rows,80] + [1,rows,44]"
        );
        let t = [owned("a", &[1, 3549, 124], vec![0.0; 10]), owned("b", &[2], vec![0.0; 2])];
        let e = decode(&cfg, &t, &identity(), &[], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "output `a` has shape [1,3549,124] but 10 values");
        let t = [owned("a", &[1, 5, 124], vec![0.0; 5 * 124]), owned("b", &[-1, 3549, 124], vec![])];
        let e = decode(&cfg, &t, &identity(), &[], &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::NoMatchingOutput { .. }), "{e}");
        assert!(e.to_string().ends_with("outputs are `a` [1,5,124], `b` [-1,3549,124]"), "{e}");
        let none: [Owned; 0] = [];
        assert!(decode(&cfg, &none, &identity(), &[], &mut out).unwrap_err().to_string().ends_with("outputs are none"));
    }

    #[test]
    fn tuple_views_work_and_letterbox_maps_back() {
        // Source 200x100 centred into 100x100: scale 0.5, pad_y 25.
        let lb = Letterbox::fit(200, 100, 100, 100, Placement::Center).unwrap();
        let row = [50.0f32, 50.0, 20.0, 10.0, 0.8, 1.0];
        let shape = [1i64, 1, 6];
        let t: [(&str, &[i64], &[f32]); 1] = [("output0", &shape, &row)];
        let mut out = Vec::new();
        decode(&DecodeConfig::new(OutputFormat::Yolov5 { num_classes: 1 }, 100, 100), &t, &lb, &labels(1), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        // Model box 40..60 x 45..55 → source (x/0.5, (y-25)/0.5).
        assert_box(out[0].bbox, [80.0, 40.0, 120.0, 60.0]);
    }
}
