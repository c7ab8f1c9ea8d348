//! YOLOX outputs from the standard ONNX export (`decode_in_inference=False`): grid-relative
//! box offsets and log sizes, objectness and class scores already through sigmoid.

use super::{DecodeError, Sink, TensorView, grid, grid_rows, matrix, matrix_data, no_match};

/// Decodes `[1,N,5+C]` whose rows run stride by stride, row = y·grid_w + x within a stride.
pub(super) fn decode<T: TensorView>(
    strides: &[u32],
    num_classes: usize,
    input_w: u32,
    input_h: u32,
    outputs: &[T],
    sink: &mut Sink<'_>,
) -> Result<(), DecodeError> {
    let cols = 5 + num_classes;
    let total = grid_rows(input_w, input_h, strides);
    let Some(t) = outputs.iter().find(|t| matrix(t.shape()) == Some((total, cols))) else {
        return Err(no_match(
            outputs,
            format!(
                "yolox ({num_classes} classes, strides {strides:?}) on {input_w}x{input_h} expects [1,{total},{cols}]"
            ),
        ));
    };
    let data = matrix_data(t, total, cols)?;
    let mut start = 0;
    for &stride in strides {
        let (gw, gh) = grid(input_w, input_h, stride);
        let s = stride as f32;
        let level = &data[start * cols..(start + gw * gh) * cols];
        for (i, row) in level.chunks_exact(cols).enumerate() {
            let obj = row[4];
            if obj.is_nan() || obj < sink.min_score {
                continue;
            }
            let Some((class_id, score)) = sink.best_class(&row[5..], obj) else {
                continue;
            };
            let cx = (row[0] + (i % gw) as f32) * s;
            let cy = (row[1] + (i / gw) as f32) * s;
            // exp only for kept rows; an overflow to infinity is dropped by the sink.
            let (w, h) = (row[2].exp() * s, row[3].exp() * s);
            sink.push(class_id, score, cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0);
        }
        start += gw * gh;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_box, identity, labels, owned};
    use super::super::{DecodeConfig, DecodeError, OutputFormat, decode};
    use crate::detect::preprocess::{Letterbox, Placement};

    #[test]
    fn grid_relative_rows_decode_and_map_back() {
        let cfg = DecodeConfig::new(OutputFormat::Yolox { strides: vec![8, 16, 32], num_classes: 2 }, 64, 64);
        // 8x8 + 4x4 + 2x2 rows of 7.
        let total = 64 + 16 + 4;
        let mut data = vec![0.0f32; total * 7];
        // Stride 16, cell (x 1, y 2), offsets (0.5, 0.25), size exp(ln 2)·16 = 32 and 16.
        let r = 64 + 2 * 4 + 1;
        data[r * 7..(r + 1) * 7].copy_from_slice(&[0.5, 0.25, 2f32.ln(), 0.0, 0.9, 0.1, 0.8]);
        // Huge log-size overflows to infinity: dropped, not a panic.
        data[7..14].copy_from_slice(&[0.0, 0.0, 1e30, 0.0, 0.9, 0.9, 0.0]);
        // NaN objectness.
        data[14..21].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, f32::NAN, 0.9, 0.0]);
        let t = [owned("output", &[1, total as i64, 7], data)];
        // 128x128 source top-left into 64: scale 0.5.
        let lb = Letterbox::fit(128, 128, 64, 64, Placement::TopLeft).unwrap();
        let mut out = Vec::new();
        decode(&cfg, &t, &lb, &labels(2), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.72).abs() < 1e-6);
        // Centre (24, 36), 32x16 → 8..40 x 28..44 in model pixels, doubled in the source.
        assert_box(out[0].bbox, [16.0, 56.0, 80.0, 88.0]);
        decode(&cfg, &t, &identity(), &labels(2), &mut out).unwrap();
        assert_box(out[0].bbox, [8.0, 28.0, 40.0, 44.0]);
    }

    #[test]
    fn wrong_row_count_is_an_error() {
        let cfg = DecodeConfig::new(OutputFormat::Yolox { strides: vec![8, 16, 32], num_classes: 80 }, 416, 416);
        let mut out = Vec::new();
        let t = [owned("output", &[1, 8400, 85], vec![0.0; 8400 * 85])];
        let e = decode(&cfg, &t, &identity(), &[], &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::BadShape { .. }));
        assert_eq!(
            e.to_string(),
            "output `output` has shape [1,8400,85]; yolox (80 classes, strides [8, 16, 32]) on 416x416 expects [1,3549,85]"
        );
    }
}
