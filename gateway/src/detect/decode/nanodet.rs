//! NanoDet (GFL head) outputs: sigmoid class scores and per-side distance distributions.

use super::{DecodeError, Sink, TensorView, grid, grid_rows, matrix, matrix_data, no_match};

/// The head's shape, from [`super::OutputFormat::Nanodet`].
pub(super) struct Head<'a> {
    pub strides: &'a [u32],
    /// `reg_max + 1`.
    pub bins: usize,
    pub num_classes: usize,
    pub center_offset: f32,
}

/// Decodes either one `[1,N,C+4·bins]` tensor or a score and a box tensor per stride.
pub(super) fn decode<T: TensorView>(
    head: &Head<'_>,
    input_w: u32,
    input_h: u32,
    outputs: &[T],
    sink: &mut Sink<'_>,
) -> Result<(), DecodeError> {
    let (c, box_len) = (head.num_classes, 4 * head.bins);
    let row_len = c + box_len;
    let total = grid_rows(input_w, input_h, head.strides);

    if let Some(t) = outputs.iter().find(|t| matrix(t.shape()) == Some((total, row_len))) {
        let data = matrix_data(t, total, row_len)?;
        let mut start = 0;
        for &stride in head.strides {
            let (gw, gh) = grid(input_w, input_h, stride);
            let level = &data[start * row_len..(start + gw * gh) * row_len];
            level_rows(head, sink, stride, gw, level.chunks_exact(row_len), level.chunks_exact(row_len));
            start += gw * gh;
        }
        return Ok(());
    }

    // Per-stride pairs, matched by row count and width; a bit mask keeps one tensor from
    // serving two strides of equal size (so only the first 64 outputs take part).
    let mut used = 0u64;
    let mut take = |rows: usize, cols: usize| {
        let (i, t) = outputs
            .iter()
            .enumerate()
            .take(64)
            .find(|(i, t)| used & (1 << i) == 0 && matrix(t.shape()) == Some((rows, cols)))?;
        used |= 1 << i;
        Some(t)
    };
    let expected = || {
        format!(
            "nanodet ({c} classes, reg_max {}, strides {:?}) on {input_w}x{input_h} expects [1,{total},{row_len}] \
             or per stride [1,rows,{c}] + [1,rows,{box_len}]",
            head.bins - 1,
            head.strides
        )
    };
    for &stride in head.strides {
        let (gw, gh) = grid(input_w, input_h, stride);
        let rows = gw * gh;
        let (Some(scores), Some(boxes)) = (take(rows, c), take(rows, box_len)) else {
            return Err(no_match(outputs, expected()));
        };
        let scores = matrix_data(scores, rows, c)?;
        let boxes = matrix_data(boxes, rows, box_len)?;
        level_rows(head, sink, stride, gw, scores.chunks_exact(c), boxes.chunks_exact(box_len));
    }
    Ok(())
}

/// Decodes one stride's rows; score rows start with the class scores, box rows end with the bins.
fn level_rows<'d>(
    head: &Head<'_>,
    sink: &mut Sink<'_>,
    stride: u32,
    grid_w: usize,
    score_rows: impl Iterator<Item = &'d [f32]>,
    box_rows: impl Iterator<Item = &'d [f32]>,
) {
    let s = stride as f32;
    let (c, bins) = (head.num_classes, head.bins);
    for (i, (srow, brow)) in score_rows.zip(box_rows).enumerate() {
        // The softmaxes are the costly part, so only rows that will be kept pay for them.
        let Some((class_id, score)) = sink.best_class(&srow[..c], 1.0) else {
            continue;
        };
        let brow = &brow[brow.len() - 4 * bins..];
        let cx = ((i % grid_w) as f32 + head.center_offset) * s;
        let cy = ((i / grid_w) as f32 + head.center_offset) * s;
        let side = |k: usize| expected_bin(&brow[k * bins..(k + 1) * bins]) * s;
        sink.push(class_id, score, cx - side(0), cy - side(1), cx + side(2), cy + side(3));
    }
}

/// Σ softmax(logits)·i: the distance in cells. NaN or infinite logits give NaN, which the sink drops.
#[inline]
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut acc) = (0.0f32, 0.0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        acc += e * i as f32;
    }
    acc / sum
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_box, identity, labels, owned};
    use super::super::{DecodeConfig, DecodeError, Decoder, OutputFormat, Thresholds, decode};
    use super::*;
    use crate::detect::preprocess::{Letterbox, Placement};

    const C: usize = 80;
    const BINS: usize = 11;
    const ROW: usize = C + 4 * BINS;
    const ROWS: usize = 52 * 52 + 26 * 26 + 13 * 13;

    /// One-hot-ish logits putting (nearly) all mass on `bin`.
    fn bins(bin: usize) -> [f32; BINS] {
        std::array::from_fn(|i| if i == bin { 50.0 } else { 0.0 })
    }

    /// Writes a row: `class` at `score`, sides (l, t, r, b) as bin indices.
    fn set_row(row: &mut [f32], class: usize, score: f32, sides: [usize; 4]) {
        row[class] = score;
        for (k, b) in sides.into_iter().enumerate() {
            row[C + k * BINS..C + (k + 1) * BINS].copy_from_slice(&bins(b));
        }
    }

    fn config() -> DecodeConfig {
        DecodeConfig::new(OutputFormat::nanodet_g(C), 416, 416)
    }

    #[test]
    fn expected_bin_is_the_softmax_mean() {
        assert!((expected_bin(&bins(2)) - 2.0).abs() < 1e-6);
        assert!((expected_bin(&[0.0, 0.0]) - 0.5).abs() < 1e-6);
        assert!(expected_bin(&[f32::NAN, 1.0]).is_nan());
        assert!(expected_bin(&[f32::INFINITY, 1.0]).is_nan());
    }

    #[test]
    fn single_tensor_box_at_each_stride() {
        let mut data = vec![0.0f32; ROWS * ROW];
        // Stride 8, cell (x 10, y 5): centre (84, 44); sides 2,3,4,5 bins → 16,24,32,40 px.
        let r = 5 * 52 + 10;
        set_row(&mut data[r * ROW..(r + 1) * ROW], 0, 0.9, [2, 3, 4, 5]);
        // Stride 32, cell (x 3, y 7): centre (112, 240); all sides 1 bin → 32 px.
        let r = 2704 + 676 + 7 * 13 + 3;
        set_row(&mut data[r * ROW..(r + 1) * ROW], 17, 0.6, [1, 1, 1, 1]);
        // Below threshold: ignored.
        set_row(&mut data[ROW..2 * ROW], 3, 0.2, [1, 1, 1, 1]);
        let t = [owned("output", &[1, ROWS as i64, ROW as i64], data)];
        let mut out = Vec::new();
        decode(&config(), &t, &identity(), &labels(C), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].class_id, out[0].label.as_str()), (0, "l0"));
        assert!((out[0].score - 0.9).abs() < 1e-6);
        assert_box(out[0].bbox, [84.0 - 16.0, 44.0 - 24.0, 84.0 + 32.0, 44.0 + 40.0]);
        assert_eq!(out[1].class_id, 17);
        assert_box(out[1].bbox, [80.0, 208.0, 144.0, 272.0]);
    }

    #[test]
    fn maps_through_the_letterbox() {
        // 1920x1080 top-left into 416: scale 416/1920.
        let lb = Letterbox::fit(1920, 1080, 416, 416, Placement::TopLeft).unwrap();
        let mut data = vec![0.0f32; ROWS * ROW];
        // Stride 16, cell (x 4, y 2): centre (72, 40), sides 2 bins = 32 px → 40..104 x 8..72.
        let r = 2704 + 2 * 26 + 4;
        set_row(&mut data[r * ROW..(r + 1) * ROW], 5, 0.7, [2, 2, 2, 2]);
        let t = [owned("output", &[1, ROWS as i64, ROW as i64], data)];
        let mut out = Vec::new();
        decode(&config(), &t, &lb, &labels(C), &mut out).unwrap();
        let k = 1920.0 / 416.0;
        assert_box(out[0].bbox, [40.0 * k, 8.0 * k, 104.0 * k, 72.0 * k]);
    }

    #[test]
    fn six_tensors_in_any_order() {
        let mut outs = Vec::new();
        let mut want = Vec::new();
        for (stride, g) in [(8u32, 52usize), (16, 26), (32, 13)] {
            let rows = g * g;
            let mut scores = vec![0.0f32; rows * C];
            let mut boxes = vec![0.0f32; rows * 4 * BINS];
            // Cell (1, 1) of every stride, class = stride, all sides 2 bins.
            let r = g + 1;
            scores[r * C + stride as usize] = 0.8;
            for k in 0..4 {
                boxes[r * 4 * BINS + k * BINS..r * 4 * BINS + (k + 1) * BINS].copy_from_slice(&bins(2));
            }
            let s = stride as f32;
            want.push((stride as usize, [1.5 * s - 2.0 * s, 1.5 * s - 2.0 * s, 3.5 * s, 3.5 * s]));
            outs.push(owned(&format!("dis_pred_stride_{stride}"), &[1, rows as i64, 44], boxes));
            outs.push(owned(&format!("cls_pred_stride_{stride}"), &[1, rows as i64, 80], scores));
        }
        outs.reverse();
        let mut out = Vec::new();
        let mut d = Decoder::new(config()).unwrap();
        d.decode(&outs, &identity(), &labels(C), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        for (class, b) in want {
            let det = out.iter().find(|d| d.class_id == class).unwrap();
            // Boxes reaching left of the picture are clamped at 0.
            assert_box(det.bbox, [b[0].max(0.0), b[1].max(0.0), b[2], b[3]]);
        }
        // Drop one stride's box tensor: an error naming the outputs.
        outs.retain(|t| t.name != "dis_pred_stride_16");
        let e = d.decode(&outs, &identity(), &labels(C), &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::NoMatchingOutput { .. }), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn nan_scores_and_bins_are_ignored_and_duplicates_merged() {
        let mut data = vec![0.0f32; ROWS * ROW];
        // NaN everywhere in row 0; NaN score in row 1; NaN bins in row 2.
        data[..ROW].fill(f32::NAN);
        data[ROW] = f32::NAN;
        set_row(&mut data[2 * ROW..3 * ROW], 1, 0.9, [1, 1, 1, 1]);
        data[2 * ROW + C + 3] = f32::NAN;
        // Two neighbouring cells predicting the same object, plus another class on top of it.
        for (cell, class, score, sides) in
            [(100, 2, 0.9, [2, 2, 2, 2]), (101, 2, 0.8, [3, 2, 1, 2]), (102, 4, 0.5, [4, 2, 0, 2])]
        {
            set_row(&mut data[cell * ROW..(cell + 1) * ROW], class, score, sides);
        }
        let t = [owned("output", &[1, ROWS as i64, ROW as i64], data)];
        let mut out = Vec::new();
        let mut cfg = config();
        cfg.thresholds = Thresholds::new(0.3);
        decode(&cfg, &t, &identity(), &labels(C), &mut out).unwrap();
        let got: Vec<(usize, f32)> = out.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(got, vec![(2, 0.9), (4, 0.5)]);
        // A per-class threshold above the score removes that class only.
        cfg.thresholds = Thresholds::new(0.3).with_class(4, 0.6);
        decode(&cfg, &t, &identity(), &labels(C), &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn wrong_rows_and_short_data_are_errors() {
        let cfg = config();
        let mut out = Vec::new();
        let t = [owned("output", &[1, 3000, 124], vec![0.0; 3000 * 124])];
        let e = decode(&cfg, &t, &identity(), &[], &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::BadShape { .. }), "{e}");
        let t = [owned("output", &[1, ROWS as i64, 124], vec![0.0; 7])];
        assert!(matches!(decode(&cfg, &t, &identity(), &[], &mut out), Err(DecodeError::DataLength { .. })));
        // Non-square input: 320x192 gives 40x24 + 20x12 + 10x6 rows.
        let cfg = DecodeConfig::new(OutputFormat::nanodet_g(C), 320, 192);
        let rows = 40 * 24 + 20 * 12 + 10 * 6;
        let t = [owned("output", &[1, rows, 124], vec![0.0; rows as usize * 124])];
        decode(&cfg, &t, &identity(), &[], &mut out).unwrap();
        assert!(out.is_empty());
    }
}
