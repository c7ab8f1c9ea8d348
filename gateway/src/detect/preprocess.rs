//! Turns an RGB8 picture into a detector's float input tensor (letterboxed, normalised) and
//! maps model-input coordinates back to the picture.
//!
//! Sans-IO: the caller owns the picture and the tensor buffer, which is reused between frames.

use serde::{Deserialize, Serialize};

use super::geometry::BBox;

/// Largest model input side accepted, so a wrong spec fails instead of allocating gigabytes.
pub const MAX_INPUT_SIDE: u32 = 16_384;

/// Why a picture could not be turned into a tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// The picture has no pixels.
    #[error("picture is {width}x{height}; both sides must be at least 1")]
    EmptyPicture {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The row stride cannot hold a row of RGB8 pixels.
    #[error("row stride {stride} is shorter than a {width}-pixel RGB8 row ({} bytes)", u64::from(*width) * 3)]
    StrideTooSmall {
        /// Stride in bytes.
        stride: usize,
        /// Width in pixels.
        width: u32,
    },
    /// The buffer ends before the last row does.
    #[error("picture buffer has {len} bytes; {width}x{height} RGB8 with stride {stride} needs {needed}")]
    BufferTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Stride in bytes.
        stride: usize,
    },
    /// The input spec cannot be used.
    #[error("input spec: {0}")]
    BadSpec(String),
}

/// Memory order of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[1, 3, H, W]`, channels first.
    Nchw,
    /// `[1, H, W, 3]`, channels last.
    Nhwc,
}

/// Colour order of the tensor's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models such as NanoDet).
    Bgr,
}

/// Where the resized picture sits inside the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Top-left, padding right and bottom (NanoDet).
    TopLeft,
    /// Centred, padding split between both sides (YOLO letterbox).
    Center,
}

/// How source pixels are sampled when resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// Bilinear with half-pixel centres, as OpenCV `INTER_LINEAR` (what most models train with).
    #[default]
    Bilinear,
    /// Box average over the covered source area when shrinking (less aliasing on 1080p
    /// sources, but about 10x the time of bilinear); bilinear when enlarging.
    Area,
}

/// How a model wants its input tensor built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Model input width in pixels.
    pub width: u32,
    /// Model input height in pixels.
    pub height: u32,
    /// Tensor memory order.
    pub layout: Layout,
    /// Tensor channel order.
    pub channel_order: ChannelOrder,
    /// Per tensor channel, subtracted after `scale`.
    pub mean: [f32; 3],
    /// Per tensor channel divisor, applied after subtracting `mean`.
    pub std: [f32; 3],
    /// Factor applied to 0..255 pixel values first (1.0 or 1/255).
    pub scale: f32,
    /// Where the picture sits.
    pub placement: Placement,
    /// Value of padding pixels in the same units as `pixel * scale` (then normalised like a pixel).
    pub pad_value: f32,
    /// Sampling used for resizing.
    #[serde(default)]
    pub resample: Resample,
}

impl InputSpec {
    /// NanoDet: top-left, BGR, 0..255 with ImageNet mean/std in BGR order, zero padding.
    pub fn nanodet(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            layout: Layout::Nchw,
            channel_order: ChannelOrder::Bgr,
            mean: [103.53, 116.28, 123.675],
            std: [57.375, 57.12, 58.395],
            scale: 1.0,
            placement: Placement::TopLeft,
            pad_value: 0.0,
            resample: Resample::Bilinear,
        }
    }

    /// YOLOv5/v8/YOLOX-style: centred, RGB, 0..1, grey (114) padding.
    pub fn yolo(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            layout: Layout::Nchw,
            channel_order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
            scale: 1.0 / 255.0,
            placement: Placement::Center,
            pad_value: 114.0 / 255.0,
            resample: Resample::Bilinear,
        }
    }

    /// Number of `f32`s in the tensor.
    pub fn tensor_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Checks sizes and that every constant is finite and every `std` non-zero.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let bad = |m: String| Err(PreprocessError::BadSpec(m));
        if self.width == 0 || self.height == 0 {
            return bad(format!("model input is {}x{}; both sides must be at least 1", self.width, self.height));
        }
        if self.width > MAX_INPUT_SIDE || self.height > MAX_INPUT_SIDE {
            return bad(format!(
                "model input {}x{} exceeds {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}",
                self.width, self.height
            ));
        }
        for c in 0..3 {
            if !self.mean[c].is_finite() {
                return bad(format!("mean[{c}] is {}", self.mean[c]));
            }
            if !self.std[c].is_finite() || self.std[c] == 0.0 {
                return bad(format!("std[{c}] is {}; it must be finite and non-zero", self.std[c]));
            }
        }
        if !self.scale.is_finite() {
            return bad(format!("scale is {}", self.scale));
        }
        if !self.pad_value.is_finite() {
            return bad(format!("pad_value is {}", self.pad_value));
        }
        Ok(())
    }
}

/// How a source picture was placed in the model input: `model = source * scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Model pixels per source pixel (same on both axes, keeping the aspect ratio).
    pub scale: f32,
    /// Left padding in model pixels.
    pub pad_x: f32,
    /// Top padding in model pixels.
    pub pad_y: f32,
    /// Source picture width.
    pub src_w: u32,
    /// Source picture height.
    pub src_h: u32,
}

impl Letterbox {
    /// Fits a `src_w` × `src_h` picture into a `dst_w` × `dst_h` input, scaling by
    /// `min(dst_w/src_w, dst_h/src_h)`; `None` when any side is zero.
    pub fn fit(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, placement: Placement) -> Option<Self> {
        Some(Self::fit_sized(src_w, src_h, dst_w, dst_h, placement)?.0)
    }

    /// As [`Letterbox::fit`], also returning the resized picture's size in model pixels.
    fn fit_sized(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, placement: Placement) -> Option<(Self, u32, u32)> {
        if src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0 {
            return None;
        }
        // f64 so that e.g. 416/1920 rounds the content size the same way the reference
        // Python implementations do.
        let r = (f64::from(dst_w) / f64::from(src_w)).min(f64::from(dst_h) / f64::from(src_h));
        let new_w = ((f64::from(src_w) * r).round() as u32).clamp(1, dst_w);
        let new_h = ((f64::from(src_h) * r).round() as u32).clamp(1, dst_h);
        let (pad_x, pad_y) = match placement {
            Placement::TopLeft => (0, 0),
            // Integer padding, extra pixel on the right/bottom, like YOLOv5's `round(d - 0.1)`.
            Placement::Center => ((dst_w - new_w) / 2, (dst_h - new_h) / 2),
        };
        let lb = Self { scale: r as f32, pad_x: pad_x as f32, pad_y: pad_y as f32, src_w, src_h };
        Some((lb, new_w, new_h))
    }

    /// Maps a box in model-input pixels to source pixels, clamped to the picture.
    pub fn to_source(&self, b: BBox) -> BBox {
        let inv = 1.0 / self.scale;
        BBox {
            x1: (b.x1 - self.pad_x) * inv,
            y1: (b.y1 - self.pad_y) * inv,
            x2: (b.x2 - self.pad_x) * inv,
            y2: (b.y2 - self.pad_y) * inv,
        }
        .clamp(self.src_w as f32, self.src_h as f32)
    }

    /// Maps a box in source pixels to model-input pixels (no clamping).
    pub fn to_model(&self, b: BBox) -> BBox {
        BBox {
            x1: b.x1 * self.scale + self.pad_x,
            y1: b.y1 * self.scale + self.pad_y,
            x2: b.x2 * self.scale + self.pad_x,
            y2: b.y2 * self.scale + self.pad_y,
        }
    }
}

/// Letterboxes an RGB8 picture (`stride` bytes per row) into `out` as the tensor `spec`
/// describes, resizing `out` to [`InputSpec::tensor_len`] and overwriting every element.
pub fn preprocess(
    rgb: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    spec: &InputSpec,
    out: &mut Vec<f32>,
) -> Result<Letterbox, PreprocessError> {
    spec.validate()?;
    if width == 0 || height == 0 {
        return Err(PreprocessError::EmptyPicture { width, height });
    }
    let Some(row_bytes) = (width as usize).checked_mul(3).filter(|&r| stride >= r) else {
        return Err(PreprocessError::StrideTooSmall { stride, width });
    };
    let needed = stride.checked_mul(height as usize - 1).and_then(|n| n.checked_add(row_bytes));
    if needed.is_none_or(|n| rgb.len() < n) {
        return Err(PreprocessError::BufferTooShort {
            len: rgb.len(),
            needed: needed.unwrap_or(usize::MAX),
            width,
            height,
            stride,
        });
    }
    let Some((lb, new_w, new_h)) = Letterbox::fit_sized(width, height, spec.width, spec.height, spec.placement) else {
        // Unreachable after the checks above; kept as an error rather than a panic.
        return Err(PreprocessError::EmptyPicture { width, height });
    };

    let len = spec.tensor_len();
    // Every element is written below, so stale values from the last frame need no clearing.
    out.truncate(len);
    out.resize(len, 0.0);

    let src = Source { data: rgb, width: width as usize, height: height as usize, stride };
    let norm = Norm::new(spec);
    let region = Region {
        dst_w: spec.width as usize,
        dst_h: spec.height as usize,
        x0: lb.pad_x as usize,
        y0: lb.pad_y as usize,
        w: new_w as usize,
        h: new_h as usize,
        inv_scale: 1.0 / lb.scale,
    };
    let shrinking = lb.scale < 1.0;
    match (spec.layout, spec.resample) {
        (Layout::Nchw, Resample::Area) if shrinking => fill::<Planar, Area>(&src, &region, &norm, out),
        (Layout::Nhwc, Resample::Area) if shrinking => fill::<Interleaved, Area>(&src, &region, &norm, out),
        (Layout::Nchw, _) => fill::<Planar, Bilinear>(&src, &region, &norm, out),
        (Layout::Nhwc, _) => fill::<Interleaved, Bilinear>(&src, &region, &norm, out),
    }
    Ok(lb)
}

/// The source picture, validated.
struct Source<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
}

impl Source<'_> {
    #[inline]
    fn row(&self, y: usize) -> &[u8] {
        // Validated: stride * (height - 1) + width * 3 <= data.len().
        &self.data[y * self.stride..y * self.stride + self.width * 3]
    }
}

/// Where the picture goes in the model input.
struct Region {
    dst_w: usize,
    dst_h: usize,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    inv_scale: f32,
}

/// Per tensor channel: which source channel, and `value = pixel * mul + add`.
struct Norm {
    src_channel: [usize; 3],
    mul: [f32; 3],
    add: [f32; 3],
    pad: [f32; 3],
}

impl Norm {
    fn new(spec: &InputSpec) -> Self {
        let src_channel = match spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        // Folded into one multiply-add per value: (p*scale - mean)/std.
        let mul = std::array::from_fn(|c| spec.scale / spec.std[c]);
        let add = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
        let pad = std::array::from_fn(|c| (spec.pad_value - spec.mean[c]) / spec.std[c]);
        Self { src_channel, mul, add, pad }
    }

    /// Normalised tensor channels from an RGB sample in 0..255.
    #[inline(always)]
    fn apply(&self, rgb: [f32; 3]) -> [f32; 3] {
        std::array::from_fn(|c| rgb[self.src_channel[c]] * self.mul[c] + self.add[c])
    }
}

/// Writes one tensor row; implemented per layout so the pixel loop has no layout branch.
trait RowWriter {
    fn fill(out: &mut [f32], dst_w: usize, dst_h: usize, y: usize, x_from: usize, x_to: usize, v: [f32; 3]);
    fn put(out: &mut [f32], dst_w: usize, dst_h: usize, y: usize, x: usize, v: [f32; 3]);
}

struct Planar;
impl RowWriter for Planar {
    #[inline(always)]
    fn fill(out: &mut [f32], dst_w: usize, dst_h: usize, y: usize, x_from: usize, x_to: usize, v: [f32; 3]) {
        let plane = dst_w * dst_h;
        for (c, value) in v.into_iter().enumerate() {
            let base = c * plane + y * dst_w;
            out[base + x_from..base + x_to].fill(value);
        }
    }
    #[inline(always)]
    fn put(out: &mut [f32], dst_w: usize, dst_h: usize, y: usize, x: usize, v: [f32; 3]) {
        let plane = dst_w * dst_h;
        let i = y * dst_w + x;
        out[i] = v[0];
        out[plane + i] = v[1];
        out[2 * plane + i] = v[2];
    }
}

struct Interleaved;
impl RowWriter for Interleaved {
    #[inline(always)]
    fn fill(out: &mut [f32], dst_w: usize, _dst_h: usize, y: usize, x_from: usize, x_to: usize, v: [f32; 3]) {
        let row = &mut out[(y * dst_w + x_from) * 3..(y * dst_w + x_to) * 3];
        for px in row.chunks_exact_mut(3) {
            px.copy_from_slice(&v);
        }
    }
    #[inline(always)]
    fn put(out: &mut [f32], dst_w: usize, _dst_h: usize, y: usize, x: usize, v: [f32; 3]) {
        let i = (y * dst_w + x) * 3;
        out[i..i + 3].copy_from_slice(&v);
    }
}

/// Model columns resampled per block: their source positions are worked out once per block
/// (on the stack, no allocation) and reused for every row.
const BLOCK: usize = 256;

/// Samples the source: per-column set-up once per block, per-row set-up once per row.
trait Sampler<'a>: Sized {
    /// What a model column needs to know about its source columns.
    type Col: Copy + Default;
    fn col(src: &Source<'_>, region: &Region, dx: usize) -> Self::Col;
    fn row(src: &'a Source<'a>, region: &Region, dy: usize) -> Self;
    fn sample(&self, col: Self::Col) -> [f32; 3];
}

/// Source coordinate of a model pixel centre (half-pixel convention), clamped to the picture.
#[inline]
fn source_coord(d: usize, inv_scale: f32, max: usize) -> (usize, usize, f32) {
    let s = ((d as f32 + 0.5) * inv_scale - 0.5).max(0.0);
    let i0 = (s as usize).min(max);
    let i1 = (i0 + 1).min(max);
    let f = if i0 == max { 0.0 } else { s - i0 as f32 };
    (i0, i1, f)
}

struct Bilinear<'a> {
    r0: &'a [u8],
    r1: &'a [u8],
    fy: f32,
}

impl<'a> Sampler<'a> for Bilinear<'a> {
    /// Byte offsets of the left and right source pixels, and the weight of the right one.
    type Col = (usize, usize, f32);

    #[inline]
    fn col(src: &Source<'_>, region: &Region, dx: usize) -> Self::Col {
        let (x0, x1, fx) = source_coord(dx, region.inv_scale, src.width - 1);
        (x0 * 3, x1 * 3, fx)
    }

    #[inline]
    fn row(src: &'a Source<'a>, region: &Region, dy: usize) -> Self {
        let (y0, y1, fy) = source_coord(dy, region.inv_scale, src.height - 1);
        Self { r0: src.row(y0), r1: src.row(y1), fy }
    }

    #[inline(always)]
    fn sample(&self, (x0, x1, fx): Self::Col) -> [f32; 3] {
        let (a, b) = (&self.r0[x0..x0 + 3], &self.r0[x1..x1 + 3]);
        let (c, d) = (&self.r1[x0..x0 + 3], &self.r1[x1..x1 + 3]);
        // Lerp form, so a uniform area gives back exactly its value.
        std::array::from_fn(|k| {
            let top = f32::from(a[k]) + (f32::from(b[k]) - f32::from(a[k])) * fx;
            let bottom = f32::from(c[k]) + (f32::from(d[k]) - f32::from(c[k])) * fx;
            top + (bottom - top) * self.fy
        })
    }
}

struct Area<'a> {
    src: &'a Source<'a>,
    ys: f32,
    ye: f32,
}

/// The source span `[start, end)` covered by model pixel `d`, clipped to `0..len`.
#[inline]
fn span(d: usize, inv_scale: f32, len: usize) -> (f32, f32) {
    let start = (d as f32 * inv_scale).min(len as f32);
    let end = ((d + 1) as f32 * inv_scale).min(len as f32);
    (start, end)
}

impl<'a> Sampler<'a> for Area<'a> {
    /// The covered source span.
    type Col = (f32, f32);

    #[inline]
    fn col(src: &Source<'_>, region: &Region, dx: usize) -> Self::Col {
        span(dx, region.inv_scale, src.width)
    }

    #[inline]
    fn row(src: &'a Source<'a>, region: &Region, dy: usize) -> Self {
        let (ys, ye) = span(dy, region.inv_scale, src.height);
        Self { src, ys, ye }
    }

    fn sample(&self, (xs, xe): Self::Col) -> [f32; 3] {
        let mut acc = [0.0f32; 3];
        let mut total = 0.0f32;
        let (iy0, iy1) = (self.ys as usize, (self.ye.ceil() as usize).min(self.src.height));
        let (ix0, ix1) = (xs as usize, (xe.ceil() as usize).min(self.src.width));
        for iy in iy0..iy1 {
            let wy = (self.ye.min((iy + 1) as f32) - self.ys.max(iy as f32)).max(0.0);
            let row = self.src.row(iy);
            for ix in ix0..ix1 {
                let w = wy * (xe.min((ix + 1) as f32) - xs.max(ix as f32)).max(0.0);
                let p = &row[ix * 3..ix * 3 + 3];
                for (a, &v) in acc.iter_mut().zip(p) {
                    *a += w * f32::from(v);
                }
                total += w;
            }
        }
        if total > 0.0 {
            acc.map(|a| a / total)
        } else {
            // A span that rounding pushed past the edge: reuse the nearest pixel.
            let row = self.src.row(iy0.min(self.src.height - 1));
            let x = ix0.min(self.src.width - 1) * 3;
            [f32::from(row[x]), f32::from(row[x + 1]), f32::from(row[x + 2])]
        }
    }
}

fn fill<'a, W: RowWriter, S: Sampler<'a>>(src: &'a Source<'a>, region: &Region, norm: &Norm, out: &mut [f32]) {
    let (dst_w, dst_h) = (region.dst_w, region.dst_h);
    for y in 0..dst_h {
        if y < region.y0 || y >= region.y0 + region.h {
            W::fill(out, dst_w, dst_h, y, 0, dst_w, norm.pad);
        } else {
            W::fill(out, dst_w, dst_h, y, 0, region.x0, norm.pad);
            W::fill(out, dst_w, dst_h, y, region.x0 + region.w, dst_w, norm.pad);
        }
    }
    let mut cols = [S::Col::default(); BLOCK];
    for start in (0..region.w).step_by(BLOCK) {
        let n = BLOCK.min(region.w - start);
        for (i, col) in cols[..n].iter_mut().enumerate() {
            *col = S::col(src, region, start + i);
        }
        for dy in 0..region.h {
            let sampler = S::row(src, region, dy);
            let y = region.y0 + dy;
            for (i, &col) in cols[..n].iter().enumerate() {
                W::put(out, dst_w, dst_h, y, region.x0 + start + i, norm.apply(sampler.sample(col)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f32 = 1e-5;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= EPS * (1.0 + b.abs())
    }

    fn plain(width: u32, height: u32) -> InputSpec {
        InputSpec {
            width,
            height,
            layout: Layout::Nchw,
            channel_order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
            scale: 1.0,
            placement: Placement::TopLeft,
            pad_value: -1.0,
            resample: Resample::Bilinear,
        }
    }

    fn solid(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
        rgb.iter().copied().cycle().take(width as usize * height as usize * 3).collect()
    }

    /// Tensor value at channel `c`, row `y`, column `x` for either layout.
    fn at(spec: &InputSpec, t: &[f32], c: usize, y: usize, x: usize) -> f32 {
        let (w, h) = (spec.width as usize, spec.height as usize);
        match spec.layout {
            Layout::Nchw => t[c * w * h + y * w + x],
            Layout::Nhwc => t[(y * w + x) * 3 + c],
        }
    }

    #[test]
    fn solid_colour_gives_exact_normalised_values_nanodet() {
        let spec = InputSpec::nanodet(416, 416);
        let (w, h) = (64, 48);
        let pic = solid(w, h, [200, 100, 50]);
        let mut t = Vec::new();
        let lb = preprocess(&pic, w, h, w as usize * 3, &spec, &mut t).unwrap();
        assert_eq!(t.len(), 3 * 416 * 416);
        assert!(close(lb.scale, 416.0 / 64.0));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 0.0));
        // BGR: tensor channel 0 is blue.
        let want = [(50.0 - 103.53) / 57.375, (100.0 - 116.28) / 57.12, (200.0 - 123.675) / 58.395];
        let pad = [-103.53 / 57.375, -116.28 / 57.12, -123.675 / 58.395];
        for c in 0..3 {
            assert!(close(at(&spec, &t, c, 0, 0), want[c]));
            assert!(close(at(&spec, &t, c, 311, 415), want[c]));
            assert!(close(at(&spec, &t, c, 200, 300), want[c]));
            // 48 * 6.5 = 312 rows of picture, then padding.
            assert!(close(at(&spec, &t, c, 312, 0), pad[c]));
            assert!(close(at(&spec, &t, c, 415, 415), pad[c]));
        }
    }

    #[test]
    fn yolo_centres_and_pads_grey() {
        let mut spec = InputSpec::yolo(8, 8);
        spec.layout = Layout::Nhwc;
        let pic = solid(4, 2, [255, 0, 51]);
        let mut t = vec![7.0; 3];
        let lb = preprocess(&pic, 4, 2, 12, &spec, &mut t).unwrap();
        assert_eq!(lb, Letterbox { scale: 2.0, pad_x: 0.0, pad_y: 2.0, src_w: 4, src_h: 2 });
        assert_eq!(t.len(), 8 * 8 * 3);
        for y in 0..8 {
            for x in 0..8 {
                let want = if (2..6).contains(&y) { [1.0, 0.0, 0.2] } else { [114.0 / 255.0; 3] };
                for (c, w) in want.into_iter().enumerate() {
                    assert!(close(at(&spec, &t, c, y, x), w), "y{y} x{x} c{c}");
                }
            }
        }
    }

    #[test]
    fn two_by_one_picture_interpolates_between_pixels() {
        // 2x1 black|white picture into a 4x2 input: scale 2, samples at 0.25 steps.
        let pic = [0, 0, 0, 255, 255, 255];
        let spec = plain(4, 2);
        let mut t = Vec::new();
        let lb = preprocess(&pic, 2, 1, 6, &spec, &mut t).unwrap();
        assert_eq!(lb.scale, 2.0);
        // Model x centres map to source x = (x + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25.
        let want = [0.0, 63.75, 191.25, 255.0];
        for y in 0..2 {
            for (x, w) in want.iter().enumerate() {
                for c in 0..3 {
                    assert!(close(at(&spec, &t, c, y, x), *w), "y{y} x{x}: {}", at(&spec, &t, c, y, x));
                }
            }
        }
    }

    #[test]
    fn channel_order_and_layout_agree() {
        let pic = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];
        let mut rgb_nchw = plain(2, 2);
        rgb_nchw.mean = [1.0, 2.0, 3.0];
        rgb_nchw.std = [2.0, 4.0, 8.0];
        let mut bgr_nhwc = rgb_nchw.clone();
        bgr_nhwc.channel_order = ChannelOrder::Bgr;
        bgr_nhwc.layout = Layout::Nhwc;
        bgr_nhwc.mean = [3.0, 2.0, 1.0];
        bgr_nhwc.std = [8.0, 4.0, 2.0];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        preprocess(&pic, 2, 2, 6, &rgb_nchw, &mut a).unwrap();
        preprocess(&pic, 2, 2, 6, &bgr_nhwc, &mut b).unwrap();
        assert!(close(at(&rgb_nchw, &a, 0, 0, 0), (10.0 - 1.0) / 2.0));
        assert!(close(at(&rgb_nchw, &a, 2, 1, 1), (120.0 - 3.0) / 8.0));
        for y in 0..2 {
            for x in 0..2 {
                for c in 0..3 {
                    assert!(close(at(&rgb_nchw, &a, c, y, x), at(&bgr_nhwc, &b, 2 - c, y, x)));
                }
            }
        }
    }

    #[test]
    fn stride_wider_than_row_skips_padding_bytes() {
        // 3x2 picture with 5 junk bytes after each row; identity resize keeps every pixel.
        let stride = 3 * 3 + 5;
        let mut pic = vec![250u8; stride * 2];
        for y in 0..2 {
            for x in 0..3 {
                for c in 0..3 {
                    pic[y * stride + x * 3 + c] = (y * 30 + x * 10 + c) as u8;
                }
            }
        }
        // The last row needs no trailing junk.
        pic.truncate(stride + 9);
        let spec = plain(3, 2);
        let mut t = Vec::new();
        let lb = preprocess(&pic, 3, 2, stride, &spec, &mut t).unwrap();
        assert_eq!(lb.scale, 1.0);
        for y in 0..2 {
            for x in 0..3 {
                for c in 0..3 {
                    assert_eq!(at(&spec, &t, c, y, x), (y * 30 + x * 10 + c) as f32);
                }
            }
        }
    }

    #[test]
    fn odd_sizes_fill_every_element() {
        for (w, h, mw, mh, placement) in [
            (7, 3, 5, 5, Placement::Center),
            (3, 7, 5, 4, Placement::TopLeft),
            (1, 1, 3, 5, Placement::Center),
            (1919, 1081, 416, 416, Placement::Center),
            (5, 5, 5, 5, Placement::TopLeft),
        ] {
            for resample in [Resample::Bilinear, Resample::Area] {
                let mut spec = plain(mw, mh);
                spec.placement = placement;
                spec.resample = resample;
                spec.pad_value = -1.0;
                let pic = solid(w, h, [9, 9, 9]);
                let mut t = vec![f32::NAN; 10];
                let lb = preprocess(&pic, w, h, w as usize * 3, &spec, &mut t).unwrap();
                assert_eq!(t.len(), spec.tensor_len());
                // Each value is the colour (area sums round a little) or padding, never stale.
                let is_colour = |v: f32| (v - 9.0).abs() < 1e-4;
                assert!(t.iter().all(|&v| is_colour(v) || v == -1.0), "{w}x{h} -> {mw}x{mh} {resample:?}");
                let content = t.iter().filter(|&&v| is_colour(v)).count() / 3;
                let r = (f64::from(mw) / f64::from(w)).min(f64::from(mh) / f64::from(h));
                assert!((f64::from(lb.scale) - r).abs() < 1e-6);
                let (cw, ch) = ((f64::from(w) * r).round(), (f64::from(h) * r).round());
                assert_eq!(content, (cw.clamp(1.0, f64::from(mw)) * ch.clamp(1.0, f64::from(mh))) as usize);
            }
        }
    }

    #[test]
    fn columns_past_one_block_sample_the_right_pixels() {
        // 1200x2 picture, both rows alike, into 600x1: scale 0.5, so model column d samples
        // source x = 2d + 0.5, the mean of pixels 2d and 2d + 1.
        let value = |x: usize| ((x * 7) % 256) as u8;
        let row: Vec<u8> = (0..1200).flat_map(|x| [value(x), value(x), 255 - value(x)]).collect();
        let pic = [row.clone(), row].concat();
        let spec = plain(600, 1);
        let mut t = Vec::new();
        preprocess(&pic, 1200, 2, 3600, &spec, &mut t).unwrap();
        for d in 0..600 {
            let want = (f32::from(value(2 * d)) + f32::from(value(2 * d + 1))) / 2.0;
            assert!(close(at(&spec, &t, 0, 0, d), want), "column {d}");
            assert!(close(at(&spec, &t, 2, 0, d), 255.0 - want), "column {d}");
        }
    }

    #[test]
    fn area_averages_when_shrinking() {
        // 4x1 picture 0,100,200,40 shrunk to 2 wide averages pairs.
        let pic = [0, 0, 0, 100, 100, 100, 200, 200, 200, 40, 40, 40];
        let mut spec = plain(2, 1);
        spec.resample = Resample::Area;
        let mut t = Vec::new();
        let lb = preprocess(&pic, 4, 1, 12, &spec, &mut t).unwrap();
        assert_eq!(lb.scale, 0.5);
        assert!(close(at(&spec, &t, 0, 0, 0), 50.0));
        assert!(close(at(&spec, &t, 1, 0, 1), 120.0));
    }

    #[test]
    fn letterbox_roundtrip() {
        for (sw, sh, placement) in
            [(1920, 1080, Placement::Center), (1080, 1920, Placement::TopLeft), (641, 479, Placement::Center)]
        {
            let lb = Letterbox::fit(sw, sh, 416, 416, placement).unwrap();
            let b = BBox::new(10.5, 20.0, 300.0, 400.25);
            let back = lb.to_source(lb.to_model(b));
            for (p, q) in [(back.x1, b.x1), (back.y1, b.y1), (back.x2, b.x2), (back.y2, b.y2)] {
                assert!((p - q).abs() < 1e-3, "{p} vs {q}");
            }
        }
        let lb = Letterbox::fit(1920, 1080, 416, 416, Placement::Center).unwrap();
        assert_eq!(lb.pad_x, 0.0);
        // 1080 * 416/1920 = 234 rows, (416 - 234) / 2 = 91.
        assert_eq!(lb.pad_y, 91.0);
        // Outside the picture clamps to it; NaN stays NaN instead of panicking.
        let b = lb.to_source(BBox::new(-50.0, 0.0, 500.0, 416.0));
        assert_eq!(b, BBox::new(0.0, 0.0, 1920.0, 1080.0));
        assert!(lb.to_source(BBox::new(f32::NAN, 0.0, 1.0, 1.0)).x1.is_nan());
        assert_eq!(Letterbox::fit(0, 10, 416, 416, Placement::Center), None);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let spec = plain(4, 4);
        let mut t = Vec::new();
        let pic = [0u8; 12];
        assert_eq!(
            preprocess(&pic, 0, 1, 0, &spec, &mut t),
            Err(PreprocessError::EmptyPicture { width: 0, height: 1 })
        );
        assert!(matches!(preprocess(&pic, 2, 2, 5, &spec, &mut t), Err(PreprocessError::StrideTooSmall { .. })));
        assert!(matches!(
            preprocess(&pic, 2, 3, 6, &spec, &mut t),
            Err(PreprocessError::BufferTooShort { needed: 18, .. })
        ));
        assert!(matches!(
            preprocess(&pic, 2, 2, usize::MAX, &spec, &mut t),
            Err(PreprocessError::BufferTooShort { .. })
        ));
        assert!(matches!(
            preprocess(&pic, u32::MAX, 1, usize::MAX, &spec, &mut t),
            Err(PreprocessError::BufferTooShort { .. })
        ));
        let mut s = spec.clone();
        s.std[1] = 0.0;
        let e = preprocess(&pic, 2, 2, 6, &s, &mut t).unwrap_err();
        assert_eq!(e.to_string(), "input spec: std[1] is 0; it must be finite and non-zero");
        s = spec.clone();
        s.width = 0;
        assert!(matches!(preprocess(&pic, 2, 2, 6, &s, &mut t), Err(PreprocessError::BadSpec(_))));
        s = spec.clone();
        s.height = MAX_INPUT_SIDE + 1;
        assert!(matches!(preprocess(&pic, 2, 2, 6, &s, &mut t), Err(PreprocessError::BadSpec(_))));
        s = spec;
        s.scale = f32::NAN;
        assert!(matches!(preprocess(&pic, 2, 2, 6, &s, &mut t), Err(PreprocessError::BadSpec(_))));
        assert!(t.is_empty());
    }
}
