//! Multi-object tracking by box overlap: turns per-frame detections into tracks with stable ids.
//!
//! ByteTrack-lite: each track's box is moved along its recent velocity to where it should be
//! now, confident detections claim tracks first and weaker ones only take the tracks left
//! over, greedily by IoU and only within the same label. Sans-IO: time comes in as `now`.

use std::time::{Duration, Instant};

use crate::detect::geometry::{BBox, Detection};

/// Score from which a detection counts as confident in the first association stage.
pub const DEFAULT_HIGH_SCORE: f32 = 0.5;

/// Weight of the newest velocity measurement; the rest is the previous estimate.
const VELOCITY_GAIN: f32 = 0.5;

/// Shorter gaps than this give no velocity measurement: jitter divided by a tiny gap explodes.
const MIN_VELOCITY_GAP: Duration = Duration::from_millis(10);

/// Tracker tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Least IoU between a track's predicted box and a detection to associate them (e.g. 0.3).
    pub iou_threshold: f32,
    /// How long a track is kept while unseen (e.g. 2 s).
    pub max_age: Duration,
    /// Matches before a track is reported (e.g. 2).
    pub min_hits: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { iou_threshold: 0.3, max_age: Duration::from_secs(2), min_hits: 2 }
    }
}

/// One tracked object.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Stable id, increasing in order of first sight, never reused.
    pub id: u64,
    /// Class index of the latest matched detection.
    pub class_id: usize,
    /// Label; a track only ever matches detections with this label.
    pub label: String,
    /// Box of the latest matched detection, in source-picture pixels.
    pub bbox: BBox,
    /// Score of the latest matched detection.
    pub score: f32,
    /// When the track was first seen.
    pub first_seen: Instant,
    /// When the track was last matched.
    pub last_seen: Instant,
    /// How many detections the track has been matched with, its first one included.
    pub hits: u32,
}

#[derive(Debug, Clone)]
struct TrackState {
    track: Track,
    /// Centre velocity in pixels per second.
    velocity: (f32, f32),
}

impl TrackState {
    /// Where the box should be at `now` if the object kept its velocity.
    fn predicted(&self, now: Instant, max_age: Duration) -> BBox {
        // Cap extrapolation so a long-unseen track does not drift off across the picture.
        let dt = now.saturating_duration_since(self.track.last_seen).min(max_age).as_secs_f32();
        let (vx, vy) = self.velocity;
        let (dx, dy) = (vx * dt, vy * dt);
        if !dx.is_finite() || !dy.is_finite() {
            return self.track.bbox;
        }
        let b = self.track.bbox;
        BBox::new(b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy)
    }

    fn absorb(&mut self, det: &Detection, now: Instant) {
        let gap = now.saturating_duration_since(self.track.last_seen);
        if gap >= MIN_VELOCITY_GAP {
            let (ox, oy) = self.track.bbox.center();
            let (nx, ny) = det.bbox.center();
            let dt = gap.as_secs_f32();
            let measured = ((nx - ox) / dt, (ny - oy) / dt);
            if measured.0.is_finite() && measured.1.is_finite() {
                self.velocity = if self.track.hits <= 1 {
                    measured
                } else {
                    let (vx, vy) = self.velocity;
                    (vx + VELOCITY_GAIN * (measured.0 - vx), vy + VELOCITY_GAIN * (measured.1 - vy))
                };
            }
        }
        let t = &mut self.track;
        t.class_id = det.class_id;
        t.bbox = det.bbox;
        t.score = det.score;
        t.last_seen = t.last_seen.max(now);
        t.hits = t.hits.saturating_add(1);
    }
}

/// IoU tracker; feed it every detection pass of one camera in time order.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    high_score: f32,
    next_id: u64,
    tracks: Vec<TrackState>,
}

impl Tracker {
    /// A tracker with no tracks.
    pub fn new(config: TrackerConfig) -> Self {
        Self { config, high_score: DEFAULT_HIGH_SCORE, next_id: 1, tracks: Vec::new() }
    }

    /// Changes how long an unseen track is kept (from the next update on).
    pub fn set_max_age(&mut self, max_age: Duration) {
        self.config.max_age = max_age;
    }

    /// Sets the score splitting the two association stages (default [`DEFAULT_HIGH_SCORE`]).
    pub fn with_high_score(mut self, high_score: f32) -> Self {
        self.high_score = high_score;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Every live track, tentative ones included, in id order.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().map(|s| &s.track)
    }

    /// Folds in one frame's detections; returns the confirmed tracks matched in this frame.
    ///
    /// Detections with a non-finite score or box, or an empty or inverted box, are ignored.
    /// Unmatched detections of any score start tentative tracks: `min_hits` filters the noise
    /// that plain ByteTrack drops by score, and the detector's own threshold is the floor.
    pub fn update(&mut self, detections: &[Detection], now: Instant) -> Vec<Track> {
        let max_age = self.config.max_age;
        self.tracks.retain(|s| now.saturating_duration_since(s.track.last_seen) <= max_age);

        let valid: Vec<&Detection> = detections.iter().filter(|d| usable(d)).collect();
        let predicted: Vec<BBox> = self.tracks.iter().map(|s| s.predicted(now, max_age)).collect();
        let mut track_taken = vec![false; self.tracks.len()];
        let mut det_taken = vec![false; valid.len()];

        // NaN-safe split: a NaN high_score makes every detection "low", which still associates.
        let (high, low): (Vec<usize>, Vec<usize>) = (0..valid.len()).partition(|&j| valid[j].score >= self.high_score);

        let mut pairs = Vec::new();
        for stage in [&high, &low] {
            pairs.extend(self.associate(&predicted, &valid, stage, &mut track_taken, &mut det_taken));
        }
        for &(i, j) in &pairs {
            self.tracks[i].absorb(valid[j], now);
        }
        for (j, det) in valid.iter().enumerate() {
            if !det_taken[j] {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                self.tracks.push(TrackState {
                    track: Track {
                        id,
                        class_id: det.class_id,
                        label: det.label.clone(),
                        bbox: det.bbox,
                        score: det.score,
                        first_seen: now,
                        last_seen: now,
                        hits: 1,
                    },
                    velocity: (0.0, 0.0),
                });
            }
        }

        let min_hits = self.config.min_hits;
        self.tracks
            .iter()
            .filter(|s| s.track.last_seen == now && s.track.hits >= min_hits)
            .map(|s| s.track.clone())
            .collect()
    }

    /// Greedy association of the given detections with untaken tracks, best IoU first.
    fn associate(
        &self,
        predicted: &[BBox],
        dets: &[&Detection],
        candidates: &[usize],
        track_taken: &mut [bool],
        det_taken: &mut [bool],
    ) -> Vec<(usize, usize)> {
        let mut scored = Vec::new();
        for (i, state) in self.tracks.iter().enumerate() {
            if track_taken[i] {
                continue;
            }
            for &j in candidates {
                if det_taken[j] || dets[j].label != state.track.label {
                    continue;
                }
                let iou = predicted[i].iou(&dets[j].bbox);
                if iou > 0.0 && iou >= self.config.iou_threshold {
                    scored.push((iou, i, j));
                }
            }
        }
        // Ties go to the older track so that ids stay with the object seen longest.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut pairs = Vec::new();
        for (_, i, j) in scored {
            if !track_taken[i] && !det_taken[j] {
                track_taken[i] = true;
                det_taken[j] = true;
                pairs.push((i, j));
            }
        }
        pairs
    }
}

fn usable(d: &Detection) -> bool {
    let b = &d.bbox;
    d.score.is_finite() && [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()) && b.x2 > b.x1 && b.y2 > b.y1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        let class_id = match label {
            "person" => 0,
            "dog" => 16,
            _ => 99,
        };
        Detection { class_id, label: label.into(), score, bbox: BBox::new(x1, y1, x2, y2) }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn moving_box_keeps_its_id_and_is_confirmed_after_min_hits() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut seen = Vec::new();
        for k in 0..20u64 {
            let x = 10.0 + 15.0 * k as f32;
            let out = tr.update(&[det("person", 0.9, x, 50.0, x + 100.0, 250.0)], ms(t0, 100 * k));
            if k == 0 {
                assert!(out.is_empty(), "tentative tracks are not reported");
                continue;
            }
            assert_eq!(out.len(), 1);
            seen.push(out[0].id);
            assert_eq!(out[0].hits as u64, k + 1);
            assert_eq!(out[0].first_seen, t0);
        }
        assert!(seen.iter().all(|&id| id == seen[0]));
    }

    #[test]
    fn min_hits_zero_or_one_reports_at_once() {
        let t0 = Instant::now();
        for min_hits in [0, 1] {
            let mut tr = Tracker::new(TrackerConfig { min_hits, ..TrackerConfig::default() });
            assert_eq!(tr.update(&[det("person", 0.9, 0.0, 0.0, 10.0, 10.0)], t0).len(), 1);
        }
    }

    #[test]
    fn unseen_longer_than_max_age_gets_a_new_id() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let d = [det("person", 0.9, 0.0, 0.0, 100.0, 200.0)];
        tr.update(&d, t0);
        let first = tr.update(&d, ms(t0, 100))[0].id;
        // Within max_age: same track, already confirmed.
        assert_eq!(tr.update(&d, ms(t0, 2000))[0].id, first);
        // Longer than max_age: a fresh, tentative track.
        assert!(tr.update(&d, ms(t0, 4100)).is_empty());
        let again = tr.update(&d, ms(t0, 4200));
        assert_eq!(again.len(), 1);
        assert!(again[0].id > first);
        assert_eq!(tr.tracks().count(), 1, "the old track was dropped");
    }

    #[test]
    fn a_longer_max_age_bridges_a_longer_gap() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let d = [det("person", 0.9, 0.0, 0.0, 100.0, 200.0)];
        tr.update(&d, t0);
        let first = tr.update(&d, ms(t0, 500))[0].id;
        tr.set_max_age(Duration::from_secs(5));
        assert_eq!(tr.update(&d, ms(t0, 4500))[0].id, first, "4 s apart, kept");
    }

    #[test]
    fn crossing_objects_keep_their_ids() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ids: Option<(u64, u64)> = None;
        for k in 0..21u64 {
            let a = 20.0 * k as f32; // moves right
            let b = 400.0 - 20.0 * k as f32; // moves left
            let dets = [det("person", 0.9, a, 100.0, a + 100.0, 300.0), det("person", 0.8, b, 140.0, b + 100.0, 340.0)];
            let out = tr.update(&dets, ms(t0, 100 * k));
            if k == 0 {
                continue;
            }
            assert_eq!(out.len(), 2, "frame {k}");
            let ida = out.iter().find(|t| (t.bbox.x1 - a).abs() < 1e-3).map(|t| t.id);
            let idb = out.iter().find(|t| (t.bbox.x1 - b).abs() < 1e-3 && t.bbox.y1 == 140.0).map(|t| t.id);
            let now = (ida.expect("a"), idb.expect("b"));
            match ids {
                None => ids = Some(now),
                Some(prev) => assert_eq!(prev, now, "ids swapped at frame {k}"),
            }
        }
    }

    #[test]
    fn different_labels_never_match() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
        let p = tr.update(&[det("person", 0.9, 0.0, 0.0, 100.0, 100.0)], t0)[0].id;
        let d = tr.update(&[det("dog", 0.9, 0.0, 0.0, 100.0, 100.0)], ms(t0, 100));
        assert_eq!(d.len(), 1);
        assert_ne!(d[0].id, p);
        assert_eq!(d[0].label, "dog");
        // Both in one frame on the same spot: two tracks, each keeping its own id.
        let both = tr.update(
            &[det("dog", 0.9, 0.0, 0.0, 100.0, 100.0), det("person", 0.9, 0.0, 0.0, 100.0, 100.0)],
            ms(t0, 200),
        );
        let ids: Vec<(String, u64)> = both.iter().map(|t| (t.label.clone(), t.id)).collect();
        assert!(ids.contains(&("person".into(), p)));
        assert!(ids.contains(&("dog".into(), d[0].id)));
    }

    #[test]
    fn nan_infinite_empty_and_inverted_detections_are_ignored() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
        let bad = [
            det("person", f32::NAN, 0.0, 0.0, 10.0, 10.0),
            det("person", f32::INFINITY, 0.0, 0.0, 10.0, 10.0),
            det("person", 0.9, f32::NAN, 0.0, 10.0, 10.0),
            det("person", 0.9, 0.0, 0.0, f32::INFINITY, 10.0),
            det("person", 0.9, 10.0, 10.0, 0.0, 0.0),
            det("person", 0.9, 5.0, 5.0, 5.0, 20.0),
        ];
        assert!(tr.update(&bad, t0).is_empty());
        assert_eq!(tr.tracks().count(), 0);
        // A good detection among bad ones is tracked normally.
        let mut mixed = bad.to_vec();
        mixed.push(det("person", 0.9, 0.0, 0.0, 10.0, 10.0));
        assert_eq!(tr.update(&mixed, ms(t0, 100)).len(), 1);
    }

    #[test]
    fn nan_config_and_time_going_backwards_do_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut tr = Tracker::new(TrackerConfig { iou_threshold: f32::NAN, max_age: Duration::ZERO, min_hits: 0 })
            .with_high_score(f32::NAN);
        let d = [det("person", 0.9, 0.0, 0.0, 10.0, 10.0)];
        tr.update(&d, t0);
        tr.update(&d, t0 - Duration::from_secs(5));
        tr.update(&[], t0);
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(&d, t0);
        let back = tr.update(&d, t0 - Duration::from_secs(1));
        assert!(back.iter().all(|t| t.score == 0.9));
    }

    #[test]
    fn confident_detections_claim_tracks_first_and_weak_ones_keep_tracks_alive() {
        let t0 = Instant::now();
        let mut tr = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
        let id = tr.update(&[det("person", 0.9, 0.0, 0.0, 100.0, 200.0)], t0)[0].id;
        // The weak box overlaps more, but the confident one wins the track.
        let out = tr.update(
            &[det("person", 0.2, 0.0, 0.0, 100.0, 190.0), det("person", 0.8, 30.0, 0.0, 130.0, 200.0)],
            ms(t0, 100),
        );
        let kept = out.iter().find(|t| t.id == id).expect("track kept");
        assert_eq!(kept.score, 0.8);
        // A weak detection alone still extends a track.
        let mut tr = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
        let id = tr.update(&[det("person", 0.9, 0.0, 0.0, 100.0, 200.0)], t0)[0].id;
        let out = tr.update(&[det("person", 0.2, 10.0, 0.0, 110.0, 200.0)], ms(t0, 100));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].id, out[0].score), (id, 0.2));
    }
}
