//! One rule's verdict on one subject track in one frame, before any timing.

use serde::Serialize;

use super::config::{Anchor, ResolvedRule, RuleKind};
use crate::detect::geometry::{BBox, Detection};
use crate::track::Track;

/// A person box whose top is this close to the picture's top edge is cut off there, and its
/// head region is then a guess.
const TOP_EDGE_PX: f32 = 2.0;

/// The head region is widened by this fraction of its size on every side before looking for the
/// attribute: a hat sits above the head and boxes jitter, and a missed overlap is a false alarm.
const HEAD_SEARCH_MARGIN: f32 = 0.25;

/// Why a rule cannot tell whether a subject violates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownReason {
    /// The estimated head region is smaller than `min_head_px`.
    HeadTooSmall,
    /// The subject box is cut off by the top of the picture.
    TruncatedAtTop,
}

/// A rule's verdict on one subject in one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The condition holds.
    Violating {
        /// How sure: the subject's score, or the lower of subject and object scores.
        confidence: f32,
        /// The object that makes it a violation (proximity rules).
        object_bbox: Option<BBox>,
    },
    /// The condition does not hold.
    Clear,
    /// The picture cannot show whether the condition holds; never a violation.
    Unknown(UnknownReason),
}

/// The verdict of `rule` on `track`, or `None` when the track is not one of the rule's subjects
/// (other label, score below `min_score`, unusable box, anchor outside every zone).
pub fn evaluate(
    rule: &ResolvedRule,
    frame_w: u32,
    frame_h: u32,
    track: &Track,
    detections: &[Detection],
) -> Option<Outcome> {
    let b = track.bbox;
    let subject = rule.subject_labels().contains(&track.label)
        && track.score >= rule.config().min_score
        && usable_box(&b)
        && in_zones(rule, frame_w, frame_h, &b);
    if !subject {
        return None;
    }
    let objects = || {
        detections
            .iter()
            .filter(|d| d.score.is_finite() && usable_box(&d.bbox) && rule.object_labels().contains(&d.label))
    };
    Some(match rule.kind() {
        RuleKind::Presence => Outcome::Violating { confidence: track.score, object_bbox: None },
        RuleKind::MissingAttribute => {
            let (w, h) = (b.width(), b.height());
            let (cx, _) = b.center();
            let head = BBox::new(cx - w / 4.0, b.y1, cx + w / 4.0, b.y1 + h / 5.0);
            if b.y1 <= TOP_EDGE_PX {
                Outcome::Unknown(UnknownReason::TruncatedAtTop)
            } else if head.width().min(head.height()) < rule.config().min_head_px as f32 {
                Outcome::Unknown(UnknownReason::HeadTooSmall)
            } else {
                let search = expand(&head, HEAD_SEARCH_MARGIN);
                if objects().any(|d| d.bbox.intersection(&search) > 0.0) {
                    Outcome::Clear
                } else {
                    Outcome::Violating { confidence: track.score, object_bbox: None }
                }
            }
        }
        RuleKind::Proximity => {
            let near = expand(&b, rule.config().proximity);
            let best = objects()
                .filter(|d| {
                    let (x, y) = d.bbox.center();
                    (near.x1..=near.x2).contains(&x) && (near.y1..=near.y2).contains(&y)
                        || b.intersection(&d.bbox) > 0.0
                })
                .max_by(|a, c| a.score.total_cmp(&c.score));
            match best {
                Some(d) => Outcome::Violating { confidence: track.score.min(d.score), object_bbox: Some(d.bbox) },
                None => Outcome::Clear,
            }
        }
    })
}

/// The point of `b` tested against zones, in normalised picture coordinates.
fn anchor_point(anchor: Anchor, frame_w: u32, frame_h: u32, b: &BBox) -> Option<(f32, f32)> {
    if frame_w == 0 || frame_h == 0 {
        return None;
    }
    let (cx, cy) = b.center();
    let y = match anchor {
        Anchor::BottomCenter => b.y2,
        Anchor::Center => cy,
    };
    // Boxes may poke out of the picture; the anchor is where the object meets the picture.
    Some(((cx / frame_w as f32).clamp(0.0, 1.0), (y / frame_h as f32).clamp(0.0, 1.0)))
}

fn in_zones(rule: &ResolvedRule, frame_w: u32, frame_h: u32, b: &BBox) -> bool {
    if rule.zones().is_empty() {
        return true;
    }
    match anchor_point(rule.anchor(), frame_w, frame_h, b) {
        Some((x, y)) => rule.zones().iter().any(|z| z.contains(x, y)),
        None => false,
    }
}

fn usable_box(b: &BBox) -> bool {
    [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()) && b.x2 > b.x1 && b.y2 > b.y1
}

/// `b` grown by `fraction` of its width and height on every side.
fn expand(b: &BBox, fraction: f32) -> BBox {
    let (mx, my) = (b.width() * fraction, b.height() * fraction);
    BBox::new(b.x1 - mx, b.y1 - my, b.x2 + mx, b.y2 + my)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;
    use crate::rules::config::{Roles, RuleConfig, validate};

    fn rule(toml_body: &str) -> ResolvedRule {
        let cfg: RuleConfig = toml::from_str(toml_body).expect("parses");
        let roles = Roles::new(HashMap::from([
            ("person".to_string(), vec!["person".to_string()]),
            ("phone".to_string(), vec!["cell phone".to_string()]),
            ("hat".to_string(), vec!["chef hat".to_string()]),
        ]));
        let labels = ["person", "cell phone", "chef hat", "cat"].map(String::from);
        validate(0, &cfg, &roles, &labels).expect("valid")
    }

    fn track(label: &str, score: f32, b: BBox) -> Track {
        let t = Instant::now();
        Track { id: 1, class_id: 0, label: label.into(), bbox: b, score, first_seen: t, last_seen: t, hits: 3 }
    }

    fn det(label: &str, score: f32, b: BBox) -> Detection {
        Detection { class_id: 1, label: label.into(), score, bbox: b }
    }

    const PERSON: BBox = BBox { x1: 100.0, y1: 100.0, x2: 300.0, y2: 600.0 };

    #[test]
    fn proximity_near_far_and_overlapping() {
        let r = rule("id='p'\nkind='proximity'\nsubject='person'\nobject='phone'\nproximity=0.1\n");
        let p = track("person", 0.9, PERSON);
        // In hand, inside the box.
        let phone = det("cell phone", 0.6, BBox::new(150.0, 300.0, 180.0, 340.0));
        assert_eq!(
            evaluate(&r, 640, 640, &p, std::slice::from_ref(&phone)),
            Some(Outcome::Violating { confidence: 0.6, object_bbox: Some(phone.bbox) })
        );
        // Just outside the box but within the 10 % margin (20 px on x).
        let beside = det("cell phone", 0.7, BBox::new(305.0, 300.0, 315.0, 320.0));
        assert!(matches!(evaluate(&r, 640, 640, &p, &[beside]), Some(Outcome::Violating { .. })));
        // Far away on a counter.
        let far = det("cell phone", 0.9, BBox::new(500.0, 300.0, 530.0, 340.0));
        assert_eq!(evaluate(&r, 640, 640, &p, std::slice::from_ref(&far)), Some(Outcome::Clear));
        // Centre outside the margin but the boxes overlap.
        let big = det("cell phone", 0.5, BBox::new(290.0, 300.0, 400.0, 340.0));
        assert!(matches!(evaluate(&r, 640, 640, &p, &[far, big]), Some(Outcome::Violating { .. })));
        // A non-subject is not judged at all.
        assert_eq!(evaluate(&r, 640, 640, &track("cat", 0.9, PERSON), &[phone]), None);
    }

    #[test]
    fn missing_attribute_clear_violating_and_unknown() {
        let r = rule("id='h'\nkind='missing_attribute'\nsubject='person'\nobject='hat'\n");
        let p = track("person", 0.8, PERSON);
        let hat = det("chef hat", 0.5, BBox::new(170.0, 80.0, 230.0, 130.0));
        assert_eq!(evaluate(&r, 640, 640, &p, &[hat]), Some(Outcome::Clear));
        // A hat on the counter does not count.
        let counter = det("chef hat", 0.9, BBox::new(400.0, 500.0, 450.0, 540.0));
        assert_eq!(
            evaluate(&r, 640, 640, &p, &[counter]),
            Some(Outcome::Violating { confidence: 0.8, object_bbox: None })
        );
        // Head region 10 × 12 px: cannot tell, and never a violation.
        let small = track("person", 0.9, BBox::new(100.0, 100.0, 120.0, 160.0));
        assert_eq!(evaluate(&r, 640, 640, &small, &[]), Some(Outcome::Unknown(UnknownReason::HeadTooSmall)));
        // Cut off at the top: the head may be outside the picture.
        let cut = track("person", 0.9, BBox::new(100.0, 0.0, 300.0, 500.0));
        assert_eq!(evaluate(&r, 640, 640, &cut, &[]), Some(Outcome::Unknown(UnknownReason::TruncatedAtTop)));
    }

    #[test]
    fn zones_use_the_feet_of_people() {
        // Left half of the picture only.
        let r = rule("id='z'\nkind='presence'\nsubject='person'\nzones=[[[0,0],[0.5,0],[0.5,1],[0,1]]]\n");
        let inside = track("person", 0.9, BBox::new(100.0, 100.0, 200.0, 640.0));
        assert!(evaluate(&r, 640, 640, &inside, &[]).is_some(), "feet on the bottom edge count");
        let outside = track("person", 0.9, BBox::new(400.0, 100.0, 500.0, 600.0));
        assert_eq!(evaluate(&r, 640, 640, &outside, &[]), None);
        assert_eq!(evaluate(&r, 0, 0, &inside, &[]), None, "no picture size, no zone test");
    }

    #[test]
    fn bad_numbers_are_not_subjects() {
        let r = rule("id='z'\nkind='presence'\nsubject='person'\nmin_score=0.5\n");
        assert_eq!(evaluate(&r, 640, 640, &track("person", f32::NAN, PERSON), &[]), None);
        assert_eq!(evaluate(&r, 640, 640, &track("person", 0.4, PERSON), &[]), None);
        let nan_box = BBox::new(f32::NAN, 0.0, 10.0, 10.0);
        assert_eq!(evaluate(&r, 640, 640, &track("person", 0.9, nan_box), &[]), None);
        let inverted = BBox::new(10.0, 10.0, 0.0, 0.0);
        assert_eq!(evaluate(&r, 640, 640, &track("person", 0.9, inverted), &[]), None);
        let p = rule("id='p'\nkind='proximity'\nsubject='person'\nobject='phone'\n");
        let junk = [det("cell phone", f32::NAN, PERSON), det("cell phone", 0.9, nan_box)];
        assert_eq!(evaluate(&p, 640, 640, &track("person", 0.9, PERSON), &junk), Some(Outcome::Clear));
    }
}
