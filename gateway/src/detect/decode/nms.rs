//! Per-class greedy non-maximum suppression, in place and allocation-free.

use crate::detect::geometry::BBox;

/// Candidates kept for NMS at most (best scores first), bounding NMS time on low thresholds.
pub const MAX_NMS_CANDIDATES: usize = 30_000;

/// One scored box before NMS, in source-picture pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index into the model's labels.
    pub class_id: usize,
    /// Confidence; decoders only emit finite scores.
    pub score: f32,
    /// Where, in source pixels.
    pub bbox: BBox,
}

/// Sorts `candidates` best first and drops every box overlapping a better kept box of the same
/// class by IoU > `iou_threshold`, keeping at most `max_keep`.
pub fn nms_per_class(candidates: &mut Vec<Candidate>, iou_threshold: f32, max_keep: usize) {
    let by_score = |a: &Candidate, b: &Candidate| b.score.total_cmp(&a.score);
    if candidates.len() > MAX_NMS_CANDIDATES {
        // Partition first so the sort and the quadratic pass only see the best ones.
        candidates.select_nth_unstable_by(MAX_NMS_CANDIDATES - 1, by_score);
        candidates.truncate(MAX_NMS_CANDIDATES);
    }
    candidates.sort_unstable_by(by_score);
    let mut kept = 0;
    for i in 0..candidates.len() {
        if kept >= max_keep {
            break;
        }
        let c = candidates[i];
        // Kept boxes are compacted to the front, so this scans at most `max_keep` of them.
        let suppressed =
            candidates[..kept].iter().any(|k| k.class_id == c.class_id && k.bbox.iou(&c.bbox) > iou_threshold);
        if !suppressed {
            candidates[kept] = c;
            kept += 1;
        }
    }
    candidates.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class_id: usize, score: f32, x: f32) -> Candidate {
        Candidate { class_id, score, bbox: BBox::new(x, 0.0, x + 10.0, 10.0) }
    }

    #[test]
    fn suppresses_same_class_duplicates_only() {
        let mut c = vec![cand(0, 0.6, 1.0), cand(0, 0.9, 0.0), cand(1, 0.8, 0.0), cand(0, 0.7, 50.0)];
        nms_per_class(&mut c, 0.5, 300);
        assert_eq!(c, vec![cand(0, 0.9, 0.0), cand(1, 0.8, 0.0), cand(0, 0.7, 50.0)]);
    }

    #[test]
    fn iou_at_threshold_is_kept() {
        // Boxes 0..10 and 5..15 overlap with IoU 1/3.
        let mut c = vec![cand(0, 0.9, 0.0), cand(0, 0.8, 5.0)];
        nms_per_class(&mut c, 1.0 / 3.0 + 1e-6, 300);
        assert_eq!(c.len(), 2);
        nms_per_class(&mut c, 0.3, 300);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn caps_kept_and_candidates() {
        let mut c: Vec<_> = (0..MAX_NMS_CANDIDATES + 500).map(|i| cand(0, i as f32, i as f32 * 20.0)).collect();
        nms_per_class(&mut c, 0.5, 3);
        let scores: Vec<f32> = c.iter().map(|c| c.score).collect();
        let top = (MAX_NMS_CANDIDATES + 499) as f32;
        assert_eq!(scores, vec![top, top - 1.0, top - 2.0]);
        nms_per_class(&mut c, 0.5, 0);
        assert!(c.is_empty());
    }
}
