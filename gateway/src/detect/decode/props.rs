//! Property tests for the output decoders: whatever a model (or a wrong model) hands back,
//! decoding returns detections or an error, never a panic.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::tests::{Owned, labels, owned};
use super::*;
use crate::detect::preprocess::Placement;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Floats a broken model or a quantisation bug produces, next to ordinary ones.
fn weird_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -2.0f32..2.0,
        2 => -1000.0f32..1000.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(f32::MIN),
        1 => Just(f32::MIN_POSITIVE),
        1 => Just(-0.0f32),
        1 => any::<f32>(),
    ]
}

fn strides() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(
        prop_oneof![4 => prop_oneof![Just(8u32), Just(16), Just(32)], 1 => 0u32..4, 1 => any::<u32>()],
        0..4,
    )
}

fn format() -> impl Strategy<Value = OutputFormat> {
    let classes =
        || prop_oneof![8 => 0usize..5, 1 => Just(MAX_CLASSES), 1 => Just(MAX_CLASSES + 1), 1 => any::<usize>()];
    prop_oneof![
        (strides(), prop_oneof![4 => 0u32..12, 1 => any::<u32>()], classes(), weird_f32()).prop_map(
            |(strides, reg_max, num_classes, center_offset)| OutputFormat::Nanodet {
                strides,
                reg_max,
                num_classes,
                center_offset
            }
        ),
        classes().prop_map(|num_classes| OutputFormat::Yolov5 { num_classes }),
        classes().prop_map(|num_classes| OutputFormat::Yolov8 { num_classes }),
        (strides(), classes()).prop_map(|(strides, num_classes)| OutputFormat::Yolox { strides, num_classes }),
    ]
}

fn decode_config() -> impl Strategy<Value = DecodeConfig> {
    let side = || prop_oneof![8 => 1u32..=96, 1 => Just(0u32), 1 => Just(MAX_INPUT_SIDE), 1 => any::<u32>()];
    (
        format(),
        side(),
        side(),
        weird_f32(),
        prop::collection::vec((0usize..8, weird_f32()), 0..3),
        prop_oneof![Just(DEFAULT_NMS_IOU), weird_f32()],
        prop_oneof![Just(DEFAULT_MAX_DETECTIONS), 0usize..4],
    )
        .prop_map(|(format, input_width, input_height, default, per_class, nms_iou, max_detections)| {
            DecodeConfig {
                format,
                input_width,
                input_height,
                thresholds: Thresholds { default, per_class },
                nms_iou,
                max_detections,
            }
        })
}

fn letterbox() -> impl Strategy<Value = Letterbox> {
    prop_oneof![
        4 => (1u32..4000, 1u32..4000, 1u32..=96, 1u32..=96, prop_oneof![Just(Placement::TopLeft), Just(Placement::Center)])
            .prop_filter_map("a side is zero", |(sw, sh, dw, dh, p)| Letterbox::fit(sw, sh, dw, dh, p)),
        1 => (weird_f32(), weird_f32(), weird_f32(), any::<u32>(), any::<u32>())
            .prop_map(|(scale, pad_x, pad_y, src_w, src_h)| Letterbox { scale, pad_x, pad_y, src_w, src_h }),
    ]
}

/// The shape each format reads, so that the generated tensors reach the box decoding.
fn fitting_shapes(c: &DecodeConfig) -> Vec<Vec<i64>> {
    // Grid arithmetic on a config the decoder refuses could overflow here; it never runs there.
    if c.validate().is_err() {
        return Vec::new();
    }
    let (w, h) = (c.input_width, c.input_height);
    let n = c.format.num_classes();
    let dim = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    match &c.format {
        OutputFormat::Nanodet { strides, reg_max, .. } => {
            let bins = *reg_max as usize + 1;
            let mut shapes = vec![vec![1, dim(grid_rows(w, h, strides)), dim(n + 4 * bins)]];
            for &s in strides {
                let (gw, gh) = grid(w, h, s);
                shapes.push(vec![1, dim(gw * gh), dim(n)]);
                shapes.push(vec![1, dim(gw * gh), dim(4 * bins)]);
            }
            shapes
        }
        OutputFormat::Yolov5 { .. } => vec![vec![1, 7, dim(5 + n)]],
        OutputFormat::Yolov8 { .. } => vec![vec![1, dim(4 + n), 7], vec![1, 7, dim(4 + n)]],
        OutputFormat::Yolox { strides, .. } => vec![vec![1, dim(grid_rows(w, h, strides)), dim(5 + n)]],
    }
}

/// Tensors are at most this many values, so no case allocates much.
const MAX_VALUES: usize = 200_000;

fn shape_len(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

/// Values drawn from `pool`, cycled, so one strategy value fills any tensor.
fn fill(len: usize, pool: &[f32]) -> Vec<f32> {
    if pool.is_empty() {
        return vec![0.0; len];
    }
    (0..len).map(|i| pool[i.wrapping_mul(7919) % pool.len()]).collect()
}

/// How a generated tensor departs from the shape it claims.
#[derive(Debug, Clone, Copy)]
enum Length {
    Exact,
    Short(usize),
    Long(usize),
    Empty,
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        6 => Just(Length::Exact),
        1 => (1usize..50).prop_map(Length::Short),
        1 => (1usize..50).prop_map(Length::Long),
        1 => Just(Length::Empty),
    ]
}

fn tensors_for(c: &DecodeConfig, pool: &[f32], lengths: &[Length]) -> Vec<Owned> {
    fitting_shapes(c)
        .into_iter()
        .zip(lengths.iter().cycle())
        .enumerate()
        .filter_map(|(i, (shape, &len))| {
            let exact = shape_len(&shape).filter(|&n| n <= MAX_VALUES)?;
            let n = match len {
                Length::Exact => exact,
                Length::Short(k) => exact.saturating_sub(k),
                Length::Long(k) => exact + k,
                Length::Empty => 0,
            };
            Some(owned(&format!("out{i}"), &shape, fill(n, pool)))
        })
        .collect()
}

/// Arbitrary shapes: wrong ranks, negative and zero dims, mismatched lengths.
fn arbitrary_tensor() -> impl Strategy<Value = Owned> {
    let dim = prop_oneof![6 => 0i64..12, 1 => Just(1i64), 1 => Just(-1i64), 1 => Just(i64::MAX), 1 => Just(i64::MIN), 1 => any::<i64>()];
    (prop::collection::vec(dim, 0..5), prop::collection::vec(weird_f32(), 0..300))
        .prop_map(|(shape, data)| owned("arbitrary", &shape, data))
}

/// What every decode must give: detections that are sane, or an error with a one-line message.
fn check_outcome(r: Result<(), DecodeError>, c: &DecodeConfig, lb: &Letterbox, out: &[Detection]) {
    match r {
        Ok(()) => {
            assert!(out.len() <= c.max_detections, "{} detections, cap {}", out.len(), c.max_detections);
            for d in out {
                assert!(d.class_id < c.format.num_classes(), "class {} of {}", d.class_id, c.format.num_classes());
                assert!(!d.score.is_nan(), "NaN score in {d:?}");
                let b = d.bbox;
                assert!(b.x2 > b.x1 && b.y2 > b.y1, "empty box {d:?}");
                assert!(b.x1 >= 0.0 && b.y1 >= 0.0, "box left of or above the picture {d:?}");
                assert!(b.x2 <= lb.src_w as f32 && b.y2 <= lb.src_h as f32, "box past the picture {d:?}");
            }
            for w in out.windows(2) {
                assert!(w[0].score >= w[1].score, "not best first: {} then {}", w[0].score, w[1].score);
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.contains('\n'), "message {m:?}");
            assert!(out.is_empty(), "an error left {} detections", out.len());
        }
    }
}

fn run_case(c: &DecodeConfig, lb: &Letterbox, tensors: &[Owned]) {
    let names = labels(3);
    let mut out =
        vec![Detection { class_id: 9, label: "stale".into(), score: 1.0, bbox: BBox::new(0.0, 0.0, 1.0, 1.0) }];
    let r = decode(c, tensors, lb, &names, &mut out);
    check_outcome(r, c, lb, &out);
    // A decoder reused across frames must give the same as a fresh one.
    if let Ok(mut d) = Decoder::new(c.clone()) {
        let mut again = Vec::new();
        let r2 = d.decode(tensors, lb, &names, &mut again);
        check_outcome(r2, c, lb, &again);
        let r3 = d.decode(tensors, lb, &names, &mut again);
        check_outcome(r3.clone(), c, lb, &again);
        if r3.is_ok() {
            assert_eq!(out.len(), again.len());
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn fitting_tensors_with_any_values_decode(
        c in decode_config(),
        lb in letterbox(),
        pool in prop::collection::vec(weird_f32(), 0..64),
        lengths in prop::collection::vec(length(), 1..4),
    ) {
        let tensors = tensors_for(&c, &pool, &lengths);
        run_case(&c, &lb, &tensors);
    }

    #[test]
    fn arbitrary_tensors_never_panic(
        c in decode_config(),
        lb in letterbox(),
        tensors in prop::collection::vec(arbitrary_tensor(), 0..4),
    ) {
        run_case(&c, &lb, &tensors);
    }

    #[test]
    fn shuffled_fitting_and_stray_tensors_never_panic(
        c in decode_config(),
        lb in letterbox(),
        pool in prop::collection::vec(weird_f32(), 1..16),
        stray in prop::collection::vec(arbitrary_tensor(), 0..3),
        rotate in any::<usize>(),
    ) {
        let mut tensors = tensors_for(&c, &pool, &[Length::Exact]);
        tensors.extend(stray);
        if !tensors.is_empty() {
            let k = rotate % tensors.len();
            tensors.rotate_left(k);
        }
        run_case(&c, &lb, &tensors);
    }
}

/// Scores of every sign and size in a fitting YOLOv5 tensor, with thresholds anywhere.
#[test]
fn extreme_scores_with_negative_thresholds() {
    let mut c = DecodeConfig::new(OutputFormat::Yolov5 { num_classes: 2 }, 64, 64);
    c.thresholds = Thresholds::new(-1e30).with_class(1, -f32::MAX);
    let rows: Vec<f32> = [
        [10.0, 10.0, 4.0, 4.0, 0.0, f32::INFINITY, 1.0],
        [10.0, 10.0, 4.0, 4.0, f32::INFINITY, 0.0, f32::NEG_INFINITY],
        [10.0, 10.0, 4.0, 4.0, -1.0, 1.0, 1.0],
        [f32::MAX, f32::MIN, f32::MAX, f32::MAX, 1.0, 1.0, 1.0],
    ]
    .concat();
    let t = [owned("output0", &[1, 4, 7], rows)];
    let lb = Letterbox::fit(64, 64, 64, 64, Placement::TopLeft).expect("fits");
    let mut out = Vec::new();
    let r = decode(&c, &t, &lb, &labels(2), &mut out);
    check_outcome(r, &c, &lb, &out);
}
