//! Per-camera fault timers and the per-access-unit verdict they imply.
//!
//! Pure state: every method takes `now` so tests can drive time by hand.

use std::time::{Duration, Instant};

use serde::Serialize;

/// A timed fault that can be active on a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Connection stays up but no media flows.
    Stall,
    /// Media flows with garbage NAL units and damaged slices.
    Corrupt,
    /// Mount removed and clients dropped until the timer ends.
    Offline,
}

/// A fault that is running, with the time it has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveFault {
    /// Which fault.
    pub kind: FaultKind,
    /// Time until it ends by itself.
    pub remaining: Duration,
}

/// What the pipeline should do with one encoded access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Do not send it.
    Drop,
    /// Do not send it, and ask the encoder for a key frame so the stream can resume cleanly.
    DropAndRequestKeyframe,
    /// Send it, corrupted first if `corrupt`.
    Forward {
        /// Whether the corrupt fault applies to this unit.
        corrupt: bool,
    },
}

/// Timers for the faults of one camera plus the recovery state after a stall.
#[derive(Debug, Default)]
pub struct FaultState {
    stall_until: Option<Instant>,
    corrupt_until: Option<Instant>,
    offline_until: Option<Instant>,
    /// Set while media was withheld; cleared by the next key frame sent.
    resume_on_keyframe: bool,
    keyframe_requested: bool,
}

impl FaultState {
    /// Starts (or restarts) `kind` so that it ends `duration` after `now`.
    pub fn start(&mut self, kind: FaultKind, now: Instant, duration: Duration) {
        let until = Some(now + duration);
        match kind {
            FaultKind::Stall => self.stall_until = until,
            FaultKind::Corrupt => self.corrupt_until = until,
            FaultKind::Offline => self.offline_until = until,
        }
    }

    /// Ends every fault at once.
    pub fn clear(&mut self) {
        self.stall_until = None;
        self.corrupt_until = None;
        self.offline_until = None;
    }

    /// True while the stall fault runs.
    pub fn stalled(&self, now: Instant) -> bool {
        running(self.stall_until, now)
    }

    /// True while the corrupt fault runs.
    pub fn corrupting(&self, now: Instant) -> bool {
        running(self.corrupt_until, now)
    }

    /// True while the offline fault runs.
    pub fn offline(&self, now: Instant) -> bool {
        running(self.offline_until, now)
    }

    /// Faults still running at `now`, in a stable order.
    pub fn active(&self, now: Instant) -> Vec<ActiveFault> {
        [
            (FaultKind::Stall, self.stall_until),
            (FaultKind::Corrupt, self.corrupt_until),
            (FaultKind::Offline, self.offline_until),
        ]
        .into_iter()
        .filter_map(|(kind, until)| {
            let until = until?;
            (now < until).then(|| ActiveFault { kind, remaining: until - now })
        })
        .collect()
    }

    /// Decides the fate of one access unit passing at `now`.
    ///
    /// After media was withheld, units are held back until a key frame, because
    /// delta frames referencing dropped pictures would only decode as smears.
    pub fn on_access_unit(&mut self, now: Instant, keyframe: bool) -> Verdict {
        if self.stalled(now) || self.offline(now) {
            self.resume_on_keyframe = true;
            self.keyframe_requested = false;
            return Verdict::Drop;
        }
        if self.resume_on_keyframe {
            if !keyframe {
                if self.keyframe_requested {
                    return Verdict::Drop;
                }
                self.keyframe_requested = true;
                return Verdict::DropAndRequestKeyframe;
            }
            self.resume_on_keyframe = false;
            self.keyframe_requested = false;
        }
        Verdict::Forward { corrupt: self.corrupting(now) }
    }
}

fn running(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|u| now < u)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn idle_forwards_everything() {
        let mut f = FaultState::default();
        let t = Instant::now();
        assert!(!f.stalled(t) && !f.corrupting(t) && !f.offline(t));
        assert!(f.active(t).is_empty());
        assert_eq!(f.on_access_unit(t, false), Verdict::Forward { corrupt: false });
    }

    #[test]
    fn stall_expires_and_waits_for_keyframe() {
        let mut f = FaultState::default();
        let t0 = Instant::now();
        f.start(FaultKind::Stall, t0, 5 * SEC);
        assert!(f.stalled(t0));
        assert!(f.stalled(t0 + 4 * SEC));
        assert_eq!(f.on_access_unit(t0 + SEC, true), Verdict::Drop);
        assert!(!f.stalled(t0 + 5 * SEC));

        let after = t0 + 6 * SEC;
        assert_eq!(f.on_access_unit(after, false), Verdict::DropAndRequestKeyframe);
        // Only one request per recovery.
        assert_eq!(f.on_access_unit(after, false), Verdict::Drop);
        assert_eq!(f.on_access_unit(after, true), Verdict::Forward { corrupt: false });
        assert_eq!(f.on_access_unit(after, false), Verdict::Forward { corrupt: false });
    }

    #[test]
    fn restarting_a_fault_replaces_its_timer() {
        let mut f = FaultState::default();
        let t0 = Instant::now();
        f.start(FaultKind::Stall, t0, 10 * SEC);
        f.start(FaultKind::Stall, t0 + SEC, SEC);
        assert!(!f.stalled(t0 + 3 * SEC));
    }

    #[test]
    fn corrupt_marks_units_while_running() {
        let mut f = FaultState::default();
        let t0 = Instant::now();
        f.start(FaultKind::Corrupt, t0, 2 * SEC);
        assert_eq!(f.on_access_unit(t0 + SEC, false), Verdict::Forward { corrupt: true });
        assert_eq!(f.on_access_unit(t0 + 2 * SEC, false), Verdict::Forward { corrupt: false });
    }

    #[test]
    fn offline_drops_and_reports_remaining() {
        let mut f = FaultState::default();
        let t0 = Instant::now();
        f.start(FaultKind::Offline, t0, 3 * SEC);
        f.start(FaultKind::Corrupt, t0, 10 * SEC);
        assert!(f.offline(t0 + SEC));
        assert_eq!(f.on_access_unit(t0 + SEC, true), Verdict::Drop);
        assert_eq!(
            f.active(t0 + SEC),
            vec![
                ActiveFault { kind: FaultKind::Corrupt, remaining: 9 * SEC },
                ActiveFault { kind: FaultKind::Offline, remaining: 2 * SEC },
            ]
        );
        assert!(!f.offline(t0 + 3 * SEC));
    }

    #[test]
    fn clear_ends_everything() {
        let mut f = FaultState::default();
        let t0 = Instant::now();
        for kind in [FaultKind::Stall, FaultKind::Corrupt, FaultKind::Offline] {
            f.start(kind, t0, 60 * SEC);
        }
        assert_eq!(f.active(t0).len(), 3);
        assert_eq!(f.on_access_unit(t0, false), Verdict::Drop);
        f.clear();
        assert!(f.active(t0).is_empty());
        // Media was withheld before the clear, so recovery still waits for a key frame.
        assert_eq!(f.on_access_unit(t0, false), Verdict::DropAndRequestKeyframe);
        assert_eq!(f.on_access_unit(t0, true), Verdict::Forward { corrupt: false });
    }
}
