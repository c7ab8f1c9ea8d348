//! YOLOv5 (`[1,N,5+C]`, objectness) and YOLOv8/11 (`[1,4+C,N]`, no objectness) outputs, whose
//! boxes are already `cx,cy,w,h` in model-input pixels.

use super::{DecodeError, Sink, TensorView, matrix, matrix_data, no_match};

/// Decodes the first output shaped `[1,N,5+C]`.
pub(super) fn decode_v5<T: TensorView>(
    num_classes: usize,
    outputs: &[T],
    sink: &mut Sink<'_>,
) -> Result<(), DecodeError> {
    let cols = 5 + num_classes;
    // Exports may add the raw per-grid tensors (rank 5); only the rank-3 one is read.
    let Some((t, rows)) = outputs.iter().find_map(|t| match matrix(t.shape()) {
        Some((rows, c)) if c == cols => Some((t, rows)),
        _ => None,
    }) else {
        return Err(no_match(outputs, format!("yolov5 with {num_classes} classes expects [1,N,{cols}]")));
    };
    for row in matrix_data(t, rows, cols)?.chunks_exact(cols) {
        let obj = row[4];
        // Class scores are at most 1, so a low objectness rules the row out early.
        if obj.is_nan() || obj < sink.min_score {
            continue;
        }
        if let Some((class_id, score)) = sink.best_class(&row[5..], obj) {
            push_cxcywh(sink, class_id, score, &row[..4]);
        }
    }
    Ok(())
}

/// Decodes the first output shaped `[1,4+C,N]` (standard export) or `[1,N,4+C]`.
pub(super) fn decode_v8<T: TensorView>(
    num_classes: usize,
    outputs: &[T],
    sink: &mut Sink<'_>,
    best_score: &mut Vec<f32>,
    best_class: &mut Vec<u32>,
) -> Result<(), DecodeError> {
    let k = 4 + num_classes;
    // When both axes are 4+C the transposed layout wins: that is what exports produce.
    let Some((t, rows, cols)) = outputs.iter().find_map(|t| match matrix(t.shape()) {
        Some((r, c)) if r == k || c == k => Some((t, r, c)),
        _ => None,
    }) else {
        return Err(no_match(outputs, format!("yolov8 with {num_classes} classes expects [1,{k},N] or [1,N,{k}]")));
    };
    let data = matrix_data(t, rows, cols)?;
    if rows != k {
        for row in data.chunks_exact(cols) {
            if let Some((class_id, score)) = sink.best_class(&row[4..], 1.0) {
                push_cxcywh(sink, class_id, score, &row[..4]);
            }
        }
        return Ok(());
    }

    // Channel-major: scan each class row contiguously, keeping the best class per anchor,
    // instead of striding through memory anchor by anchor.
    let n = cols;
    if n == 0 {
        // No anchors: nothing detected (and nothing to chunk).
        return Ok(());
    }
    best_score.clear();
    best_score.resize(n, f32::NEG_INFINITY);
    best_class.clear();
    best_class.resize(n, u32::MAX);
    for (class_id, (row, &min)) in data[4 * n..].chunks_exact(n).zip(sink.class_min).enumerate() {
        let class_id = class_id as u32;
        for ((&s, best), class) in row.iter().zip(best_score.iter_mut()).zip(best_class.iter_mut()) {
            // Branch-free so it vectorises; NaN fails both comparisons.
            let take = (s >= min) & (s > *best);
            *best = if take { s } else { *best };
            *class = if take { class_id } else { *class };
        }
    }
    for (i, (&score, &class)) in best_score.iter().zip(best_class.iter()).enumerate() {
        if class == u32::MAX {
            continue;
        }
        let (cx, cy, w, h) = (data[i], data[n + i], data[2 * n + i], data[3 * n + i]);
        sink.push(class as usize, score, cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0);
    }
    Ok(())
}

#[inline]
fn push_cxcywh(sink: &mut Sink<'_>, class_id: usize, score: f32, b: &[f32]) {
    let (cx, cy, w, h) = (b[0], b[1], b[2], b[3]);
    sink.push(class_id, score, cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_box, identity, labels, owned};
    use super::super::{DecodeConfig, DecodeError, Decoder, OutputFormat, decode};
    use crate::detect::preprocess::{Letterbox, Placement};

    fn v5(num_classes: usize) -> DecodeConfig {
        DecodeConfig::new(OutputFormat::Yolov5 { num_classes }, 640, 640)
    }

    fn v8(num_classes: usize) -> DecodeConfig {
        DecodeConfig::new(OutputFormat::Yolov8 { num_classes }, 640, 640)
    }

    #[test]
    fn yolov5_rows_through_a_centred_letterbox() {
        // 1280x720 centred in 640: scale 0.5, pad_y 140.
        let lb = Letterbox::fit(1280, 720, 640, 640, Placement::Center).unwrap();
        assert_eq!((lb.scale, lb.pad_y), (0.5, 140.0));
        #[rustfmt::skip]
        let data = vec![
            // cx, cy, w, h, obj, c0, c1, c2
            320.0, 320.0, 100.0, 50.0, 0.9, 0.1, 0.9, 0.2, // class 1, 0.81
            322.0, 321.0, 100.0, 50.0, 0.8, 0.1, 0.9, 0.2, // same object, suppressed
            322.0, 321.0, 100.0, 50.0, 0.8, 0.9, 0.1, 0.2, // same place, class 0: kept
            100.0, 100.0, 10.0, 10.0, 0.3, 1.0, 1.0, 1.0,  // objectness below threshold
            f32::NAN, 100.0, 10.0, 10.0, 0.9, 1.0, 0.0, 0.0, // NaN box
            100.0, 100.0, 10.0, 10.0, f32::NAN, 1.0, 0.0, 0.0, // NaN objectness
            100.0, 100.0, 10.0, 10.0, 0.9, f32::NAN, 0.0, 0.0, // NaN class score
            320.0, 50.0, 100.0, 50.0, 0.9, 0.9, 0.0, 0.0,  // entirely in the top padding
        ];
        let t = [owned("output0", &[1, 8, 8], data)];
        let mut out = Vec::new();
        decode(&v5(3), &t, &lb, &labels(3), &mut out).unwrap();
        let got: Vec<usize> = out.iter().map(|d| d.class_id).collect();
        assert_eq!(got, vec![1, 0]);
        assert!((out[0].score - 0.81).abs() < 1e-6);
        // Model 270..370 x 295..345 → source ((x-0)/0.5, (y-140)/0.5).
        assert_box(out[0].bbox, [540.0, 310.0, 740.0, 410.0]);
    }

    #[test]
    fn yolov5_picks_the_rank3_output_and_rejects_wrong_widths() {
        let row = vec![10.0, 10.0, 4.0, 4.0, 1.0, 1.0];
        let t = [owned("raw", &[1, 3, 2, 2, 6], vec![0.0; 72]), owned("output0", &[1, 1, 6], row)];
        let mut out = Vec::new();
        decode(&v5(1), &t, &identity(), &labels(1), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let t = [owned("output0", &[1, 25200, 84], vec![])];
        let e = decode(&v5(80), &t, &identity(), &[], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "output `output0` has shape [1,25200,84]; yolov5 with 80 classes expects [1,N,85]");
        let t = [owned("output0", &[1, 2, 85], vec![0.0; 85])];
        assert!(matches!(decode(&v5(80), &t, &identity(), &[], &mut out), Err(DecodeError::DataLength { .. })));
    }

    /// Anchors as rows `[cx, cy, w, h, scores...]`.
    fn anchors() -> Vec<Vec<f32>> {
        vec![
            vec![100.0, 100.0, 40.0, 20.0, 0.2, 0.7],
            vec![101.0, 100.0, 40.0, 20.0, 0.1, 0.6],
            vec![300.0, 300.0, 10.0, 10.0, 0.5, f32::NAN],
            vec![300.0, 300.0, 10.0, 10.0, 0.1, 0.1],
            vec![500.0, 500.0, f32::INFINITY, 10.0, 0.9, 0.9],
        ]
    }

    fn check_v8(out: &[crate::detect::Detection]) {
        let got: Vec<(usize, f32)> = out.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(got, vec![(1, 0.7), (0, 0.5)]);
        assert_box(out[0].bbox, [80.0, 90.0, 120.0, 110.0]);
        assert_box(out[1].bbox, [295.0, 295.0, 305.0, 305.0]);
    }

    #[test]
    fn yolov8_transposed_and_row_major_agree() {
        let a = anchors();
        let n = a.len();
        let transposed: Vec<f32> = (0..6).flat_map(|k| a.iter().map(move |row| row[k])).collect();
        let rows: Vec<f32> = a.concat();
        let mut d = Decoder::new(v8(2)).unwrap();
        let mut out = Vec::new();
        d.decode(&[owned("output0", &[1, 6, n as i64], transposed)], &identity(), &labels(2), &mut out).unwrap();
        check_v8(&out);
        d.decode(&[owned("output0", &[1, n as i64, 6], rows)], &identity(), &labels(2), &mut out).unwrap();
        check_v8(&out);
        let e = d.decode(&[owned("output0", &[1, 7, 8400], vec![])], &identity(), &[], &mut out).unwrap_err();
        assert!(e.to_string().ends_with("yolov8 with 2 classes expects [1,6,N] or [1,N,6]"), "{e}");
    }
}
