//! The rule engine: turns tracks and detections into hygiene violations with start and end.
//!
//! Sans-IO: [`RuleEngine::observe`] takes each frame's tracks and detections together with a
//! monotonic `now` (for durations) and a wall-clock time (for schedules), and returns events.
//!
//! There is at most one open violation per camera and rule: the track whose condition first
//! held for `min_duration_s` opens it, and while any subject track of that rule offends on
//! that camera the violation stays open. Cooldown is per camera and rule too.

pub mod condition;
pub mod config;
pub mod schedule;
pub mod zone;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;

pub use condition::{Outcome, UnknownReason, evaluate};
pub use config::{Anchor, ResolvedRule, Roles, RuleConfig, RuleError, RuleKind, ScheduleEntry, Severity};
pub use config::{check, check_unique_ids, validate};

use crate::detect::geometry::{BBox, Detection};
use crate::track::Track;

/// Least time between two [`RuleEvent::Updated`] of one violation.
const UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a track that gave [`Outcome::Unknown`] is remembered, so it is reported only once.
const UNKNOWN_MEMORY: Duration = Duration::from_secs(60);

/// A violation, open or ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Unique within the engine, increasing.
    pub id: u64,
    /// The rule that raised it.
    pub rule_id: String,
    /// The rule's kind of check: `presence`, `missing_attribute` or `proximity`.
    pub kind: String,
    /// The camera.
    pub camera: String,
    /// The subject track that opened it.
    pub track_id: u64,
    /// The rule's severity.
    pub severity: Severity,
    /// When the condition began on the opening track: the start of its `min_duration_s`.
    pub started_at: Instant,
    /// When it became a violation.
    pub confirmed_at: Instant,
    /// When any subject last offended.
    pub last_seen: Instant,
    /// Highest confidence seen so far.
    pub peak_confidence: f32,
    /// Latest box of an offending subject, the opening track's while it offends.
    pub bbox: BBox,
    /// Latest box of the object that made it a violation (proximity rules).
    pub object_bbox: Option<BBox>,
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEvent {
    /// A violation was confirmed.
    Started {
        /// The violation.
        violation: Violation,
    },
    /// An open violation's peak confidence grew (at most once a second).
    Updated {
        /// The violation.
        violation: Violation,
    },
    /// A violation ended: no subject offended for `end_after_s`.
    Ended {
        /// The violation as it ended.
        violation: Violation,
    },
    /// A rule cannot tell whether a subject track offends; reported once per track.
    Unknown {
        /// The rule.
        rule_id: String,
        /// The camera.
        camera: String,
        /// The subject track.
        track_id: u64,
        /// Why.
        reason: UnknownReason,
    },
}

/// A track whose condition holds, waiting out `min_duration_s`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    since: Instant,
    last_true: Instant,
    peak: f32,
}

#[derive(Debug, Clone)]
struct Open {
    violation: Violation,
    last_emit: Instant,
    /// Peak grew since the last event.
    pending_update: bool,
}

/// One rule on one camera.
#[derive(Debug, Clone, Default)]
struct RuleState {
    candidates: HashMap<u64, Candidate>,
    open: Option<Open>,
    /// When the last violation ended, for the cooldown.
    ended_at: Option<Instant>,
    /// Tracks reported as Unknown, with when they last were.
    unknown: HashMap<u64, Instant>,
}

/// An offending subject in this frame.
struct Offence {
    track_id: u64,
    confidence: f32,
    bbox: BBox,
    object_bbox: Option<BBox>,
}

/// Runs every rule on every camera.
#[derive(Debug, Clone)]
pub struct RuleEngine {
    rules: Vec<ResolvedRule>,
    cameras: HashMap<String, Vec<RuleState>>,
    next_violation_id: u64,
}

impl RuleEngine {
    /// An engine for checked rules.
    pub fn new(rules: Vec<ResolvedRule>) -> Self {
        Self { rules, cameras: HashMap::new(), next_violation_id: 1 }
    }

    /// The rules.
    pub fn rules(&self) -> &[ResolvedRule] {
        &self.rules
    }

    /// Open violations on every camera.
    pub fn open_violations(&self) -> impl Iterator<Item = &Violation> {
        self.cameras.values().flatten().filter_map(|s| s.open.as_ref().map(|o| &o.violation))
    }

    /// Folds in one frame of `camera`: its confirmed tracks (from the tracker) and raw
    /// detections (for objects and attributes), seen at monotonic `now` and wall time `wall`.
    // Each argument is a separate input of the frame; a bundle struct would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        camera: &str,
        frame_w: u32,
        frame_h: u32,
        tracks: &[Track],
        detections: &[Detection],
        now: Instant,
        wall: Timestamp,
    ) -> Vec<RuleEvent> {
        let mut events = Vec::new();
        if !self.rules.iter().any(|r| r.applies_to(camera)) {
            return events;
        }
        let states =
            self.cameras.entry(camera.to_string()).or_insert_with(|| vec![RuleState::default(); self.rules.len()]);
        for (rule, state) in self.rules.iter().zip(states.iter_mut()) {
            if !rule.applies_to(camera) {
                continue;
            }
            let mut offences = Vec::new();
            if rule.in_schedule(wall) {
                for t in tracks {
                    match evaluate(rule, frame_w, frame_h, t, detections) {
                        Some(Outcome::Violating { confidence, object_bbox }) => offences.push(Offence {
                            track_id: t.id,
                            confidence: if confidence.is_finite() { confidence } else { 0.0 },
                            bbox: t.bbox,
                            object_bbox,
                        }),
                        Some(Outcome::Unknown(reason)) => {
                            if state.unknown.insert(t.id, now).is_none() {
                                events.push(RuleEvent::Unknown {
                                    rule_id: rule.id().to_string(),
                                    camera: camera.to_string(),
                                    track_id: t.id,
                                    reason,
                                });
                            }
                        }
                        Some(Outcome::Clear) | None => {}
                    }
                }
            }
            state.step(rule, camera, &offences, now, &mut self.next_violation_id, &mut events);
        }
        events
    }

    /// Ends violations whose camera has sent no offending frame for `end_after_s`, e.g. because
    /// it went offline; call it now and then with the current time.
    pub fn expire(&mut self, now: Instant) -> Vec<RuleEvent> {
        let mut events = Vec::new();
        for states in self.cameras.values_mut() {
            for (rule, state) in self.rules.iter().zip(states.iter_mut()) {
                state.end_if_stale(rule, now, &mut events);
                state.prune(rule, now);
            }
        }
        events
    }

    /// Puts `rules` in force; the violations open under the old ones end (their ids are
    /// never reused).
    pub fn set_rules(&mut self, rules: Vec<ResolvedRule>) -> Vec<RuleEvent> {
        let cameras: Vec<String> = self.cameras.keys().cloned().collect();
        let ended = cameras.iter().flat_map(|c| self.remove_camera(c)).collect();
        self.rules = rules;
        ended
    }

    /// Forgets a camera, ending its open violations.
    pub fn remove_camera(&mut self, camera: &str) -> Vec<RuleEvent> {
        let mut events = Vec::new();
        if let Some(states) = self.cameras.remove(camera) {
            for state in states {
                if let Some(open) = state.open {
                    events.push(RuleEvent::Ended { violation: open.violation });
                }
            }
        }
        events
    }
}

impl RuleState {
    fn step(
        &mut self,
        rule: &ResolvedRule,
        camera: &str,
        offences: &[Offence],
        now: Instant,
        next_id: &mut u64,
        events: &mut Vec<RuleEvent>,
    ) {
        let end_after = rule.end_after();
        for o in offences {
            let c = self.candidates.entry(o.track_id).or_insert(Candidate {
                since: now,
                last_true: now,
                peak: o.confidence,
            });
            if now.saturating_duration_since(c.last_true) > end_after {
                *c = Candidate { since: now, last_true: now, peak: o.confidence };
            }
            c.last_true = c.last_true.max(now);
            c.peak = c.peak.max(o.confidence);
        }

        if let Some(open) = &mut self.open {
            if !offences.is_empty() {
                let v = &mut open.violation;
                let lead = offences
                    .iter()
                    .find(|o| o.track_id == v.track_id)
                    .or_else(|| offences.iter().max_by(|a, b| a.confidence.total_cmp(&b.confidence)));
                if let Some(o) = lead {
                    v.bbox = o.bbox;
                    v.object_bbox = o.object_bbox;
                }
                v.last_seen = v.last_seen.max(now);
                let peak = offences.iter().map(|o| o.confidence).fold(v.peak_confidence, f32::max);
                if peak > v.peak_confidence {
                    v.peak_confidence = peak;
                    open.pending_update = true;
                }
                if open.pending_update && now.saturating_duration_since(open.last_emit) >= UPDATE_INTERVAL {
                    open.pending_update = false;
                    open.last_emit = now;
                    events.push(RuleEvent::Updated { violation: open.violation.clone() });
                }
            }
        } else if self.ended_at.is_none_or(|t| now.saturating_duration_since(t) >= rule.cooldown()) {
            // The longest-running confirmed candidate opens the violation.
            let opener = offences
                .iter()
                .filter_map(|o| self.candidates.get(&o.track_id).map(|c| (o, c)))
                .filter(|(_, c)| now.saturating_duration_since(c.since) >= rule.min_duration())
                .min_by(|(a, x), (b, y)| x.since.cmp(&y.since).then(b.confidence.total_cmp(&a.confidence)));
            if let Some((o, c)) = opener {
                let violation = Violation {
                    id: *next_id,
                    rule_id: rule.id().to_string(),
                    kind: rule.kind().as_str().to_string(),
                    camera: camera.to_string(),
                    track_id: o.track_id,
                    severity: rule.severity(),
                    started_at: c.since,
                    confirmed_at: now,
                    last_seen: now,
                    peak_confidence: offences.iter().map(|o| o.confidence).fold(c.peak, f32::max),
                    bbox: o.bbox,
                    object_bbox: o.object_bbox,
                };
                *next_id = next_id.wrapping_add(1);
                events.push(RuleEvent::Started { violation: violation.clone() });
                self.open = Some(Open { violation, last_emit: now, pending_update: false });
            }
        }

        self.end_if_stale(rule, now, events);
        self.prune(rule, now);
    }

    fn end_if_stale(&mut self, rule: &ResolvedRule, now: Instant, events: &mut Vec<RuleEvent>) {
        let stale =
            self.open.as_ref().is_some_and(|o| now.saturating_duration_since(o.violation.last_seen) > rule.end_after());
        if stale && let Some(open) = self.open.take() {
            events.push(RuleEvent::Ended { violation: open.violation });
            self.ended_at = Some(now);
            // Whatever offended before the end has been absent for end_after; start afresh.
            self.candidates.clear();
        }
    }

    fn prune(&mut self, rule: &ResolvedRule, now: Instant) {
        let end_after = rule.end_after();
        self.candidates.retain(|_, c| now.saturating_duration_since(c.last_true) <= end_after);
        self.unknown.retain(|_, t| now.saturating_duration_since(*t) <= UNKNOWN_MEMORY);
    }
}

#[cfg(test)]
mod tests;
