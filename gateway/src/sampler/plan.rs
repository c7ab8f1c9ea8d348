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

/// Longest GOP the plan learns; longer gaps between keyframes are outages, not GOPs.
const MAX_GOP: Duration = Duration::from_secs(20);
/// Keyframe intervals remembered; the longest of them is taken as the GOP, because
/// guessing it too short would skip pictures that are needed.
const GOP_HISTORY: usize = 3;
/// How much later than due a sample may land on the next keyframe instead.
const KEYFRAME_SLACK: Duration = Duration::from_millis(20);
/// The sampling interval never stretches beyond this many times the configured one.
const MAX_STRETCH: u32 = 8;

/// Samples a camera's stream at a target rate.
///
/// In `All` mode it decodes only the part of each GOP that leads up to its last sample:
/// once the next sample falls at or after the next keyframe, the rest of the GOP is
/// skipped and the keyframe itself is sampled. When analysis cannot keep up (see
/// [`SamplePlan::note_overload`]), the interval stretches so fewer frames are decoded
/// for pictures nobody looks at; it shrinks back to the configured rate once analysis
/// keeps up again.
#[derive(Debug, Clone)]
pub struct SamplePlan {
    base: Duration,
    interval: Duration,
    mode: DecodeMode,
    next_due: Option<Duration>,
    decodable: bool,
    last_keyframe: Option<Duration>,
    gops: [Duration; GOP_HISTORY],
    rest_of_gop_skipped: bool,
    overloads: u32,
}

impl SamplePlan {
    /// Samples `fps` pictures per second in `mode`.
    pub fn new(fps: f64, mode: DecodeMode) -> Self {
        let fps = if fps.is_finite() && fps > 0.0 { fps.clamp(0.01, 1000.0) } else { 1.0 };
        let base = Duration::from_secs_f64(1.0 / fps);
        Self {
            base,
            interval: base,
            mode,
            next_due: None,
            decodable: false,
            last_keyframe: None,
            gops: [Duration::ZERO; GOP_HISTORY],
            rest_of_gop_skipped: false,
            overloads: 0,
        }
    }

    /// The interval between samples now (the configured one unless stretched under load).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Starts over at the next keyframe (decoder input was dropped or the decoder was
    /// rebuilt), keeping what was learned about the GOP and the load.
    pub fn resync(&mut self) {
        self.decodable = false;
        self.rest_of_gop_skipped = false;
        self.next_due = None;
    }

    /// Reports that this camera's analysis fell behind `n` times: kept pictures were
    /// replaced before the detector took them, or the decoder lagged so far that input
    /// was dropped.
    pub fn note_overload(&mut self, n: u32) {
        self.overloads = self.overloads.saturating_add(n);
    }

    /// The GOP length as learned from recent keyframes, if known.
    fn gop(&self) -> Option<Duration> {
        self.gops.iter().max().copied().filter(|g| !g.is_zero())
    }

    /// Decides for the access unit presented at `pts`; `gap` says units were lost before it.
    pub fn offer(&mut self, pts: Duration, keyframe: bool, gap: bool) -> Action {
        if gap {
            // The decoder's references are gone: nothing decodes until the next keyframe.
            self.decodable = false;
        }
        if keyframe {
            self.on_keyframe(pts);
        }
        if !self.decodable || self.rest_of_gop_skipped {
            return Action::Skip;
        }
        let due = self.next_due.is_none_or(|d| pts >= d);
        match self.mode {
            DecodeMode::Keyframes if !keyframe => Action::Skip,
            DecodeMode::Keyframes if !due => Action::Skip,
            _ if !due => Action::Decode,
            _ => {
                self.adapt_interval();
                // Keep the cadence, but after a pause (camera down) restart from now
                // rather than catching up with a burst.
                let next = match self.next_due {
                    Some(d) if pts < d + self.interval => d + self.interval,
                    _ => pts + self.interval,
                };
                self.next_due = Some(next);
                if self.mode == DecodeMode::All {
                    self.skip_rest_of_gop_if_unneeded(next);
                }
                Action::DecodeAndKeep
            }
        }
    }

    fn on_keyframe(&mut self, pts: Duration) {
        if let Some(last) = self.last_keyframe {
            let gop = pts.saturating_sub(last);
            if !gop.is_zero() && gop <= MAX_GOP {
                self.gops.rotate_right(1);
                self.gops[0] = gop;
            }
        }
        self.last_keyframe = Some(pts);
        self.decodable = true;
        self.rest_of_gop_skipped = false;
    }

    fn skip_rest_of_gop_if_unneeded(&mut self, next_due: Duration) {
        let (Some(keyframe), Some(gop)) = (self.last_keyframe, self.gop()) else { return };
        let next_keyframe = keyframe + gop;
        if next_due + KEYFRAME_SLACK >= next_keyframe {
            self.rest_of_gop_skipped = true;
            // Nothing before the next keyframe is decoded, so sample the keyframe itself.
            self.next_due = None;
        }
    }

    fn adapt_interval(&mut self) {
        if self.overloads > 0 {
            self.interval = (self.interval * 3 / 2).min(self.base * MAX_STRETCH);
        } else {
            self.interval = (self.interval * 4 / 5).max(self.base);
        }
        self.overloads = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plan: &mut SamplePlan, frames: u64, fps: u64, gop: u64) -> Vec<Action> {
        (0..frames).map(|i| plan.offer(Duration::from_millis(i * 1000 / fps), i.is_multiple_of(gop), false)).collect()
    }

    fn count(actions: &[Action], what: Action) -> usize {
        actions.iter().filter(|a| **a == what).count()
    }

    #[test]
    fn all_mode_keeps_two_per_second_and_decodes_up_to_the_last_sample_of_each_gop() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::All);
        // 10 s at 25 fps, a keyframe every 2 s.
        let actions = run(&mut plan, 250, 25, 50);
        let kept = count(&actions, Action::DecodeAndKeep);
        assert!((19..=21).contains(&kept), "kept {kept} of 10 s");
        // Samples at 0, 0.52, 1.0 and 1.52 s of every GOP (the first frame at or after
        // each due time); every keyframe is one.
        for gop in 0..5 {
            assert_eq!(actions[gop * 50], Action::DecodeAndKeep, "keyframe {gop}");
        }
        // Once the GOP length is known (second GOP on), nothing after the last sample
        // of a GOP is decoded.
        for gop in 1..5 {
            assert_eq!(actions[gop * 50 + 38], Action::DecodeAndKeep);
            let tail = &actions[gop * 50 + 39..gop * 50 + 50];
            assert!(tail.iter().all(|a| *a == Action::Skip), "GOP {gop} tail: {tail:?}");
        }
        assert_eq!(250 - count(&actions, Action::Skip), 50 + 4 * 39);
    }

    #[test]
    fn one_per_second_decodes_about_half_of_each_gop() {
        let mut plan = SamplePlan::new(1.0, DecodeMode::All);
        let actions = run(&mut plan, 500, 25, 50);
        let kept: Vec<usize> =
            actions.iter().enumerate().filter(|(_, a)| **a == Action::DecodeAndKeep).map(|(i, _)| i).collect();
        assert_eq!(kept.len(), 20, "{kept:?}");
        assert!(kept.iter().all(|i| i % 25 == 0), "one picture a second, on the grid: {kept:?}");
        let decoded = 500 - count(&actions, Action::Skip);
        assert!((260..=300).contains(&decoded), "decoded {decoded} of 500");
    }

    #[test]
    fn a_late_keyframe_is_waited_for_and_sampled() {
        let mut plan = SamplePlan::new(1.0, DecodeMode::All);
        let ms = Duration::from_millis;
        // Learn a 2 s GOP.
        let mut actions = Vec::new();
        for i in 0..100u64 {
            actions.push(plan.offer(ms(i * 40), i.is_multiple_of(50), false));
        }
        assert_eq!(actions[50], Action::DecodeAndKeep);
        assert_eq!(actions[75], Action::DecodeAndKeep);
        assert_eq!(actions[80], Action::Skip);
        // The GOP that starts at 4 s runs 3 s: its successor comes at 7 s, not 6 s.
        for i in 100..125u64 {
            assert_eq!(
                plan.offer(ms(i * 40), i == 100, false),
                if i == 100 { Action::DecodeAndKeep } else { Action::Decode }
            );
        }
        assert_eq!(plan.offer(ms(5000), false, false), Action::DecodeAndKeep);
        assert_eq!(plan.offer(ms(5040), false, false), Action::Skip);
        assert_eq!(plan.offer(ms(5960), false, false), Action::Skip);
        // Past the expected keyframe, still skipping until it arrives; then it is sampled.
        assert_eq!(plan.offer(ms(6000), false, false), Action::Skip);
        assert_eq!(plan.offer(ms(7000), true, false), Action::DecodeAndKeep);
        assert_eq!(plan.offer(ms(7040), false, false), Action::Decode);
    }

    #[test]
    fn an_early_keyframe_restarts_decoding() {
        let mut plan = SamplePlan::new(1.0, DecodeMode::All);
        let ms = Duration::from_millis;
        for i in 0..100u64 {
            plan.offer(ms(i * 40), i.is_multiple_of(50), false);
        }
        // Now in the skipped tail of the GOP that began at 2 s; a keyframe at 3.6 s
        // (e.g. asked for by another client of the camera) is sampled at once.
        assert_eq!(plan.offer(ms(3560), false, false), Action::Skip);
        assert_eq!(plan.offer(ms(3600), true, false), Action::DecodeAndKeep);
        assert_eq!(plan.offer(ms(3640), false, false), Action::Decode);
    }

    #[test]
    fn the_interval_stretches_while_pictures_are_replaced_and_recovers() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::All);
        let ms = Duration::from_millis;
        let mut i = 0u64;
        let mut step = |plan: &mut SamplePlan, replaced: bool| loop {
            let action = plan.offer(ms(i * 40), i.is_multiple_of(50), false);
            i += 1;
            if action == Action::DecodeAndKeep {
                if replaced {
                    plan.note_overload(1);
                }
                return;
            }
        };
        for _ in 0..6 {
            step(&mut plan, true);
        }
        assert!(plan.interval() >= Duration::from_secs(2), "stretched to {:?}", plan.interval());
        assert!(plan.interval() <= Duration::from_secs(4), "never beyond 8x: {:?}", plan.interval());
        for _ in 0..20 {
            step(&mut plan, false);
        }
        assert_eq!(plan.interval(), Duration::from_millis(500));
    }

    #[test]
    fn keyframes_mode_decodes_only_keyframes() {
        let mut plan = SamplePlan::new(2.0, DecodeMode::Keyframes);
        let actions = run(&mut plan, 250, 25, 50);
        for (i, a) in actions.iter().enumerate() {
            if i.is_multiple_of(50) {
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
