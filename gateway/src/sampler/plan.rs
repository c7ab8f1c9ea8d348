//! Which access units to decode and which decoded pictures to keep (sans-IO).

use std::time::Duration;

use serde::Deserialize;

/// Which access units are decoded for detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Decode every access unit (needed to sample between keyframes); costs a decoder's
    /// full load per camera.
    #[default]
    All,
    /// Decode keyframes only: nearly free, but samples at most once per GOP.
    Keyframes,
}

/// What to do with one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not needed.
    Skip,
    /// Decode it (later pictures depend on it) but do not keep the picture.
    Decode,
    /// Decode it and hand the picture to the detector.
    DecodeAndKeep,
}

/// Samples a camera's stream at a target rate.
#[derive(Debug, Clone)]
pub struct SamplePlan {
    interval: Duration,
    mode: DecodeMode,
    next_due: Option<Duration>,
    decodable: bool,
}

impl SamplePlan {
    /// Samples `fps` pictures per second in `mode`.
    pub fn new(fps: f64, mode: DecodeMode) -> Self {
        let fps = if fps.is_finite() && fps > 0.0 { fps } else { 1.0 };
        Self { interval: Duration::from_secs_f64(1.0 / fps), mode, next_due: None, decodable: false }
    }

    /// Decides for the access unit presented at `pts`; `gap` says units were lost before it.
    pub fn offer(&mut self, pts: Duration, keyframe: bool, gap: bool) -> Action {
        if gap {
            // The decoder's references are gone: nothing decodes until the next keyframe.
            self.decodable = false;
        }
        if keyframe {
            self.decodable = true;
        }
        if !self.decodable {
            return Action::Skip;
        }
        let due = self.next_due.is_none_or(|d| pts >= d);
        match self.mode {
            DecodeMode::Keyframes if !keyframe => Action::Skip,
            DecodeMode::Keyframes if !due => Action::Skip,
            _ if !due => Action::Decode,
            _ => {
                // Keep the cadence, but after a pause (camera down) restart from now
                // rather than catching up with a burst.
                self.next_due = Some(match self.next_due {
                    Some(d) if pts < d + self.interval => d + self.interval,
                    _ => pts + self.interval,
                });
                Action::DecodeAndKeep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plan: &mut SamplePlan, frames: u64, fps: u64, gop: u64) -> Vec<Action> {
        (0..frames).map(|i| plan.offer(Duration::from_millis(i * 1000 / fps), i % gop == 0, false)).collect()
    }

    #[test]
    fn all_mode_keeps_two_per_second_and_decodes_the_rest() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::All);
        let actions = run(&mut plan, 250, 25, 50);
        let kept = actions.iter().filter(|a| **a == Action::DecodeAndKeep).count();
        assert!((19..=21).contains(&kept), "kept {kept} of 10 s");
        assert!(actions.iter().all(|a| *a != Action::Skip));
    }

    #[test]
    fn keyframes_mode_decodes_only_keyframes() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::Keyframes);
        let actions = run(&mut plan, 250, 25, 50);
        for (i, a) in actions.iter().enumerate() {
            if i % 50 == 0 {
                assert_eq!(*a, Action::DecodeAndKeep);
            } else {
                assert_eq!(*a, Action::Skip);
            }
        }
    }

    #[test]
    fn nothing_before_first_keyframe_or_after_a_gap() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::All);
        assert_eq!(plan.offer(Duration::ZERO, false, false), Action::Skip);
        assert_eq!(plan.offer(Duration::from_millis(40), true, false), Action::DecodeAndKeep);
        assert_eq!(plan.offer(Duration::from_millis(80), false, false), Action::Decode);
        assert_eq!(plan.offer(Duration::from_millis(900), false, true), Action::Skip);
        assert_eq!(plan.offer(Duration::from_millis(940), true, false), Action::DecodeAndKeep);
    }

    #[test]
    fn long_pause_does_not_cause_a_burst() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::All);
        assert_eq!(plan.offer(Duration::ZERO, true, false), Action::DecodeAndKeep);
        assert_eq!(plan.offer(Duration::from_secs(60), true, false), Action::DecodeAndKeep);
        assert_eq!(plan.offer(Duration::from_millis(60_040), false, false), Action::Decode);
        assert_eq!(plan.offer(Duration::from_millis(60_500), false, false), Action::DecodeAndKeep);
    }
}
