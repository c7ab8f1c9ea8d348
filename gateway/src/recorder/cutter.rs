//! The clip cutter: a pre-roll ring of access units and the clips being collected (sans-IO).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hub::AccessUnit;

/// A clip whose access units are all collected.
#[derive(Debug)]
pub struct CutClip {
    /// The event it belongs to.
    pub event_id: i64,
    /// Access units, keyframe first.
    pub units: Vec<Arc<AccessUnit>>,
}

#[derive(Debug)]
struct OpenClip {
    event_id: i64,
    units: Vec<Arc<AccessUnit>>,
    bytes: usize,
    stop_at: Option<Instant>,
    hard_stop: Instant,
}

impl OpenClip {
    fn finished(&self, now: Instant) -> bool {
        self.stop_at.is_some_and(|t| now > t) || now > self.hard_stop || self.bytes >= MAX_CLIP_BYTES
    }
}

/// A clip is cut when it holds this much video, whatever its length (clips are kept in
/// memory until written).
pub const MAX_CLIP_BYTES: usize = 512 << 20;
/// History is never larger than this; a camera that sends one keyframe and then only
/// delta frames would otherwise make it grow without end.
pub const MAX_HISTORY_BYTES: usize = 128 << 20;
/// History whose only keyframe is this much older than needed is dropped for the same reason.
pub const MAX_KEYFRAME_AGE: Duration = Duration::from_secs(60);

/// History kept beyond the pre-roll: a clip is asked for only once a rule's minimum
/// duration has passed and detection has caught up, seconds after the violation began.
pub const HISTORY_SLACK: Duration = Duration::from_secs(15);

/// Keeps `pre_roll` (plus [`HISTORY_SLACK`]) of history from a keyframe and cuts clips out
/// of it and what follows.
#[derive(Debug)]
pub struct ClipCutter {
    ring: VecDeque<Arc<AccessUnit>>,
    ring_bytes: usize,
    pre_roll: Duration,
    post_roll: Duration,
    max_clip: Duration,
    open: Vec<OpenClip>,
}

impl ClipCutter {
    /// A cutter with the given pre- and post-roll; no clip grows past `max_clip`.
    pub fn new(pre_roll: Duration, post_roll: Duration, max_clip: Duration) -> Self {
        Self { ring: VecDeque::new(), ring_bytes: 0, pre_roll, post_roll, max_clip, open: Vec::new() }
    }

    /// Adds a unit from the camera; returns the clips it completed.
    pub fn push(&mut self, unit: Arc<AccessUnit>) -> Vec<CutClip> {
        let now = unit.arrival;
        self.ring_bytes += unit.data.len();
        self.ring.push_back(unit.clone());
        self.trim(now);
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            let clip = &mut self.open[i];
            if clip.finished(now) {
                let clip = self.open.swap_remove(i);
                done.push(CutClip { event_id: clip.event_id, units: clip.units });
            } else {
                clip.bytes += unit.data.len();
                clip.units.push(unit.clone());
                i += 1;
            }
        }
        done
    }

    /// Drops history older than the pre-roll, but always keeps a keyframe at the front so
    /// the pre-roll starts on a decodable picture.
    fn trim(&mut self, now: Instant) {
        let horizon = now.checked_sub(self.pre_roll + HISTORY_SLACK).unwrap_or(now);
        loop {
            // The second keyframe in the ring: if it is already older than the horizon,
            // or history is over its size limit, everything before it goes.
            let second_key = self.ring.iter().skip(1).position(|u| u.keyframe).map(|p| p + 1);
            match second_key {
                Some(k) if self.ring[k].arrival <= horizon || self.ring_bytes > MAX_HISTORY_BYTES => {
                    self.drop_front(k);
                }
                Some(_) => break,
                None => {
                    // One keyframe and deltas only: give up on it when it is far too old
                    // or too much has piled up behind it; a clip then starts at the next one.
                    let stale = self.ring.front().is_some_and(|u| u.arrival + MAX_KEYFRAME_AGE <= horizon);
                    if stale || self.ring_bytes > MAX_HISTORY_BYTES {
                        self.drop_front(self.ring.len());
                    }
                    break;
                }
            }
        }
        // Never start with a delta frame: it cannot be decoded.
        while self.ring.front().is_some_and(|u| !u.keyframe) {
            self.drop_front(1);
        }
    }

    fn drop_front(&mut self, n: usize) {
        for u in self.ring.drain(..n.min(self.ring.len())) {
            self.ring_bytes -= u.data.len();
        }
    }

    /// Encoded bytes held now: the pre-roll history and every clip still collecting. A
    /// unit in both is counted twice, as the bound on each is separate.
    pub fn buffered_bytes(&self) -> usize {
        self.ring_bytes + self.open.iter().map(|c| c.bytes).sum::<usize>()
    }

    /// Starts a clip for an event whose condition began at `start`.
    pub fn start(&mut self, event_id: i64, start: Instant) {
        let from = start.checked_sub(self.pre_roll).unwrap_or(start);
        // The last keyframe at or before the pre-roll start, or the first one after it.
        let idx = self
            .ring
            .iter()
            .rposition(|u| u.keyframe && u.arrival <= from)
            .or_else(|| self.ring.iter().position(|u| u.keyframe))
            .unwrap_or(self.ring.len());
        let units: Vec<_> = self.ring.iter().skip(idx).cloned().collect();
        let bytes = units.iter().map(|u| u.data.len()).sum();
        self.open.push(OpenClip { event_id, units, bytes, stop_at: None, hard_stop: start + self.max_clip });
    }

    /// The event ended at `end`: collect until `end + post_roll`.
    pub fn end(&mut self, event_id: i64, end: Instant) {
        if let Some(c) = self.open.iter_mut().find(|c| c.event_id == event_id) {
            c.stop_at = Some(end + self.post_roll);
        }
    }

    /// Finishes clips whose end has passed at `now` although no unit arrived (the camera
    /// went quiet), so they do not stay pending for the whole outage.
    pub fn flush(&mut self, now: Instant) -> Vec<CutClip> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].finished(now) {
                let clip = self.open.swap_remove(i);
                done.push(CutClip { event_id: clip.event_id, units: clip.units });
            } else {
                i += 1;
            }
        }
        done
    }

    /// Cuts every clip still collecting, as it is now (the gateway is stopping: a
    /// shorter clip beats none).
    pub fn finish_all(&mut self) -> Vec<CutClip> {
        self.open.drain(..).map(|c| CutClip { event_id: c.event_id, units: c.units }).collect()
    }

    /// Clips still collecting.
    pub fn open_clips(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(t0: Instant, i: u64, gop: u64) -> Arc<AccessUnit> {
        Arc::new(AccessUnit {
            seq: i,
            pts: Duration::from_millis(i * 40),
            keyframe: i.is_multiple_of(gop),
            data: Arc::from(&[0u8, 0, 0, 1, 0x65][..]),
            arrival: t0 + Duration::from_millis(i * 40),
            wall: std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(i * 40),
        })
    }

    #[test]
    fn clip_spans_pre_roll_from_a_keyframe_to_post_roll() {
        let t0 = Instant::now();
        let mut c = ClipCutter::new(Duration::from_secs(5), Duration::from_secs(10), Duration::from_secs(120));
        // 22 s of 25 fps with a 2 s GOP.
        for i in 0..550 {
            assert!(c.push(unit(t0, i, 50)).is_empty());
        }
        // An event from 19 s to 20 s, reported 3 s late (minimum duration, detection).
        c.start(1, t0 + Duration::from_secs(19));
        c.end(1, t0 + Duration::from_secs(20));
        let mut done = Vec::new();
        for i in 550..800 {
            done.extend(c.push(unit(t0, i, 50)));
        }
        assert_eq!(done.len(), 1);
        let clip = &done[0];
        assert!(clip.units[0].keyframe);
        let first = clip.units[0].arrival - t0;
        let last = clip.units.last().map(|u| u.arrival - t0).unwrap_or_default();
        // Pre-roll start 14 s → keyframe at 14 s; post-roll end 30 s.
        assert_eq!(first, Duration::from_secs(14));
        assert!((Duration::from_millis(29_900)..=Duration::from_secs(30)).contains(&last), "{last:?}");
    }

    #[test]
    fn ring_is_bounded_and_starts_on_keyframe() {
        let t0 = Instant::now();
        let mut c = ClipCutter::new(Duration::from_secs(5), Duration::from_secs(1), Duration::from_secs(60));
        for i in 0..5000 {
            c.push(unit(t0, i, 50));
        }
        assert!(c.ring.len() <= 22 * 25 + 1, "ring holds {} units", c.ring.len());
        assert!(c.ring.front().is_some_and(|u| u.keyframe));
    }

    #[test]
    fn history_stays_bounded_when_the_camera_sends_a_single_keyframe() {
        let t0 = Instant::now();
        let mut c = ClipCutter::new(Duration::from_secs(5), Duration::from_secs(1), Duration::from_secs(60));
        // One keyframe, then 200 s of delta frames only.
        for i in 0..5000 {
            c.push(unit(t0, i, u64::MAX));
        }
        assert!(c.ring.len() <= 25 * 81, "history holds {} units", c.ring.len());
        assert!(c.ring.front().is_none_or(|u| u.keyframe));
        assert_eq!(c.ring_bytes, c.ring.iter().map(|u| u.data.len()).sum::<usize>());
        // A keyframe later, history works again.
        for i in 5000..5100 {
            c.push(unit(t0, i, 5000));
        }
        assert!(c.ring.front().is_some_and(|u| u.keyframe && u.seq == 5000));
    }

    #[test]
    fn quiet_camera_still_finishes_clips() {
        let t0 = Instant::now();
        let mut c = ClipCutter::new(Duration::from_secs(5), Duration::from_secs(2), Duration::from_secs(60));
        for i in 0..100 {
            c.push(unit(t0, i, 50));
        }
        c.start(3, t0 + Duration::from_secs(3));
        c.end(3, t0 + Duration::from_secs(4));
        assert!(c.flush(t0 + Duration::from_secs(5)).is_empty(), "post-roll not over yet");
        let done = c.flush(t0 + Duration::from_secs(7));
        assert_eq!(done.len(), 1);
        assert!(done[0].units[0].keyframe);
    }

    #[test]
    fn unended_clip_stops_at_max_length() {
        let t0 = Instant::now();
        let mut c = ClipCutter::new(Duration::from_secs(1), Duration::from_secs(1), Duration::from_secs(10));
        c.push(unit(t0, 0, 50));
        c.start(9, t0);
        let mut done = Vec::new();
        for i in 1..400 {
            done.extend(c.push(unit(t0, i, 50)));
        }
        assert_eq!(done.len(), 1);
        assert_eq!(c.open_clips(), 0);
    }
}
