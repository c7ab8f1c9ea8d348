//! Engine tests on simulated time.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use super::*;

const PERSON: BBox = BBox { x1: 100.0, y1: 100.0, x2: 300.0, y2: 600.0 };
const FRAME: Duration = Duration::from_millis(200);

fn roles() -> (Roles, Vec<String>) {
    let roles = Roles::new(HashMap::from([
        ("person".to_string(), vec!["person".to_string()]),
        ("phone".to_string(), vec!["cell phone".to_string()]),
        ("animal".to_string(), vec!["cat".to_string(), "dog".to_string()]),
        ("hat".to_string(), vec!["chef hat".to_string()]),
    ]));
    let labels = ["person", "cell phone", "cat", "dog", "chef hat"].map(String::from).to_vec();
    (roles, labels)
}

fn rule(toml_body: &str) -> ResolvedRule {
    let cfg: RuleConfig = toml::from_str(toml_body).expect("parses");
    let (roles, labels) = roles();
    validate(0, &cfg, &roles, &labels).expect("valid")
}

fn engine(toml_body: &str) -> RuleEngine {
    RuleEngine::new(vec![rule(toml_body)])
}

fn track(id: u64, label: &str, bbox: BBox, t0: Instant) -> Track {
    Track { id, class_id: 0, label: label.into(), bbox, score: 0.8, first_seen: t0, last_seen: t0, hits: 5 }
}

fn person(id: u64, t0: Instant) -> Track {
    track(id, "person", PERSON, t0)
}

/// A Monday morning in Shanghai (2026-03-02 10:00).
fn monday_10am() -> Timestamp {
    shanghai(2, 10, 0)
}

/// 2026-03-`day` at `h:m` in Shanghai; the 2nd is a Monday.
fn shanghai(day: i8, h: i8, m: i8) -> Timestamp {
    let tz = TimeZone::get("Asia/Shanghai").expect("bundled tzdb");
    jiff::civil::date(2026, 3, day).at(h, m, 0, 0).to_zoned_datetime(tz).expect("valid").timestamp()
}

/// Feeds `tracks` every 200 ms over [from, to) after `t0`; returns the events with their times.
fn run(
    e: &mut RuleEngine,
    t0: Instant,
    from_ms: u64,
    to_ms: u64,
    tracks: &[Track],
    dets: &[Detection],
    wall: Timestamp,
) -> Vec<(Instant, RuleEvent)> {
    let mut out = Vec::new();
    let mut t = from_ms;
    while t < to_ms {
        let now = t0 + Duration::from_millis(t);
        for ev in e.observe("cam1", 640, 640, tracks, dets, now, wall) {
            out.push((now, ev));
        }
        t += FRAME.as_millis() as u64;
    }
    out
}

fn started(events: &[(Instant, RuleEvent)]) -> Vec<&Violation> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            RuleEvent::Started { violation } => Some(violation),
            _ => None,
        })
        .collect()
}

fn ended(events: &[(Instant, RuleEvent)]) -> Vec<&Violation> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            RuleEvent::Ended { violation } => Some(violation),
            _ => None,
        })
        .collect()
}

const PRESENCE: &str = "id='person_present'\nkind='presence'\nsubject='person'\n";

#[test]
fn short_condition_raises_nothing() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let ev = run(&mut e, t0, 0, 2900, &[person(1, t0)], &[], monday_10am());
    assert!(ev.is_empty(), "{ev:?}");
    // Then gone long enough to forget it: a new appearance starts from scratch.
    let ev = run(&mut e, t0, 7000, 9900, &[person(1, t0)], &[], monday_10am());
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn started_after_min_duration_with_started_at_at_the_beginning() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let ev = run(&mut e, t0, 0, 3200, &[person(7, t0)], &[], monday_10am());
    let s = started(&ev);
    assert_eq!(s.len(), 1);
    let v = s[0];
    assert_eq!(v.started_at, t0);
    assert_eq!(v.confirmed_at, t0 + Duration::from_secs(3));
    assert_eq!((v.rule_id.as_str(), v.kind.as_str(), v.camera.as_str()), ("person_present", "presence", "cam1"));
    assert_eq!((v.track_id, v.severity, v.bbox, v.object_bbox), (7, Severity::Warning, PERSON, None));
    assert_eq!(v.peak_confidence, 0.8);
    assert_eq!(e.open_violations().count(), 1);
}

#[test]
fn short_gap_keeps_it_open_and_long_gap_ends_it() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let p = [person(1, t0)];
    let mut ev = run(&mut e, t0, 0, 4000, &p, &[], monday_10am());
    // 2.8 s of nothing, less than end_after (3 s).
    ev.extend(run(&mut e, t0, 4000, 6800, &[], &[], monday_10am()));
    ev.extend(run(&mut e, t0, 6800, 8000, &p, &[], monday_10am()));
    assert_eq!(started(&ev).len(), 1);
    assert!(ended(&ev).is_empty(), "{ev:?}");
    // Now gone for longer than end_after.
    let ev = run(&mut e, t0, 8000, 12000, &[], &[], monday_10am());
    let end = ended(&ev);
    assert_eq!(end.len(), 1);
    assert_eq!(end[0].last_seen, t0 + Duration::from_millis(7800));
    let ended_at = ev.iter().find(|(_, e)| matches!(e, RuleEvent::Ended { .. })).map(|(t, _)| *t);
    assert_eq!(ended_at, Some(t0 + Duration::from_millis(11000)));
    assert_eq!(e.open_violations().count(), 0);
}

#[test]
fn condition_gap_longer_than_end_after_restarts_min_duration() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let p = [person(1, t0)];
    let mut ev = run(&mut e, t0, 0, 2000, &p, &[], monday_10am());
    ev.extend(run(&mut e, t0, 2000, 5400, &[], &[], monday_10am()));
    ev.extend(run(&mut e, t0, 5400, 8000, &p, &[], monday_10am()));
    assert!(ev.is_empty(), "2 s + 2.6 s with a 3.4 s hole is not 3 s: {ev:?}");
}

#[test]
fn cooldown_suppresses_then_allows() {
    let t0 = Instant::now();
    let mut e = engine("id='p'\nkind='presence'\nsubject='person'\ncooldown_s=20\n");
    let p = [person(1, t0)];
    let mut ev = run(&mut e, t0, 0, 4000, &p, &[], monday_10am());
    ev.extend(run(&mut e, t0, 4000, 8000, &[], &[], monday_10am()));
    assert_eq!(ended(&ev).len(), 1);
    // Ended at 7.0 s; back at 8 s and staying: nothing until 27 s.
    let ev = run(&mut e, t0, 8000, 26_800, &[person(2, t0)], &[], monday_10am());
    assert!(started(&ev).is_empty(), "{ev:?}");
    let ev = run(&mut e, t0, 26_800, 28_000, &[person(2, t0)], &[], monday_10am());
    let s = started(&ev);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].confirmed_at, t0 + Duration::from_secs(27));
    assert_eq!(s[0].started_at, t0 + Duration::from_secs(8), "the condition began at 8 s");
    assert_eq!(s[0].id, 2);
}

#[test]
fn schedule_outside_raises_nothing() {
    let t0 = Instant::now();
    let body = "id='p'\nkind='presence'\nsubject='person'\n\
                schedule=[{days=['mon','tue','wed','thu','fri'], from='06:00', to='20:00'}]\n";
    let mut e = engine(body);
    let p = [person(1, t0)];
    assert!(run(&mut e, t0, 0, 10_000, &p, &[], shanghai(2, 21, 0)).is_empty(), "monday evening");
    assert!(run(&mut e, t0, 10_000, 20_000, &p, &[], shanghai(7, 10, 0)).is_empty(), "saturday");
    assert_eq!(started(&run(&mut e, t0, 20_000, 24_000, &p, &[], shanghai(3, 10, 0))).len(), 1);
}

#[test]
fn schedule_wrapping_past_midnight() {
    let t0 = Instant::now();
    let body = "id='after_hours'\nkind='presence'\nsubject='person'\nseverity='critical'\n\
                schedule=[{days=['mon'], from='22:00', to='06:00'}]\n";
    let p = [person(1, t0)];
    for (wall, expect) in [
        (shanghai(2, 23, 30), true),  // monday night
        (shanghai(3, 2, 0), true),    // early tuesday, still monday's range
        (shanghai(3, 7, 0), false),   // tuesday morning
        (shanghai(2, 21, 59), false), // monday before the range
        (shanghai(2, 2, 0), false),   // early monday belongs to sunday, not listed
        (shanghai(3, 23, 0), false),  // tuesday night, not listed
    ] {
        let mut e = engine(body);
        let s = started(&run(&mut e, t0, 0, 4000, &p, &[], wall)).len();
        assert_eq!(s == 1, expect, "{wall}");
    }
}

#[test]
fn leaving_the_schedule_ends_the_violation() {
    let t0 = Instant::now();
    let body = "id='p'\nkind='presence'\nsubject='person'\nschedule=[{from='06:00', to='20:00'}]\n";
    let mut e = engine(body);
    let p = [person(1, t0)];
    assert_eq!(started(&run(&mut e, t0, 0, 4000, &p, &[], shanghai(2, 19, 59))).len(), 1);
    assert_eq!(ended(&run(&mut e, t0, 4000, 8000, &p, &[], shanghai(2, 20, 0))).len(), 1);
}

#[test]
fn zone_outside_raises_nothing() {
    let t0 = Instant::now();
    // Left half only; the person's feet are at x = 200/640 (inside), the other at 500/640.
    let body = "id='z'\nkind='presence'\nsubject='person'\nzones=[[[0.0,0.0],[0.5,0.0],[0.5,1.0],[0.0,1.0]]]\n";
    let mut e = engine(body);
    let right = track(2, "person", BBox::new(450.0, 100.0, 550.0, 600.0), t0);
    assert!(run(&mut e, t0, 0, 10_000, &[right], &[], monday_10am()).is_empty());
    assert_eq!(started(&run(&mut e, t0, 10_000, 14_000, &[person(1, t0)], &[], monday_10am())).len(), 1);
}

#[test]
fn camera_filter() {
    let t0 = Instant::now();
    let mut e = engine("id='p'\nkind='presence'\nsubject='person'\ncameras=['cam2']\n");
    assert!(run(&mut e, t0, 0, 10_000, &[person(1, t0)], &[], monday_10am()).is_empty());
    let now = t0 + Duration::from_secs(20);
    assert!(e.observe("cam2", 640, 640, &[person(1, t0)], &[], now, monday_10am()).is_empty());
    let later = now + Duration::from_secs(3);
    let ev = e.observe("cam2", 640, 640, &[person(1, t0)], &[], later, monday_10am());
    assert!(matches!(&ev[..], [RuleEvent::Started { violation }] if violation.camera == "cam2"));
}

#[test]
fn missing_attribute_small_head_is_unknown_once_and_never_a_violation() {
    let t0 = Instant::now();
    let mut e = engine("id='no_hat'\nkind='missing_attribute'\nsubject='person'\nobject='hat'\n");
    let small = track(3, "person", BBox::new(100.0, 100.0, 140.0, 200.0), t0);
    let ev = run(&mut e, t0, 0, 20_000, std::slice::from_ref(&small), &[], monday_10am());
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(matches!(
        &ev[0].1,
        RuleEvent::Unknown { rule_id, camera, track_id: 3, reason: UnknownReason::HeadTooSmall }
            if rule_id == "no_hat" && camera == "cam1"
    ));
    // A big bare head next to it is a violation; a hatted one is not.
    let big = person(4, t0);
    let hat =
        Detection { class_id: 4, label: "chef hat".into(), score: 0.7, bbox: BBox::new(170.0, 80.0, 230.0, 130.0) };
    assert!(run(&mut e, t0, 20_000, 30_000, &[small.clone(), big.clone()], &[hat], monday_10am()).is_empty());
    let ev = run(&mut e, t0, 30_000, 34_000, &[small, big], &[], monday_10am());
    let s = started(&ev);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].track_id, 4);
}

#[test]
fn proximity_phone_near_versus_far() {
    let t0 = Instant::now();
    let body = "id='phone_use'\nkind='proximity'\nsubject='person'\nobject='phone'\n";
    let phone = |b: BBox| Detection { class_id: 67, label: "cell phone".into(), score: 0.6, bbox: b };
    let far = phone(BBox::new(500.0, 300.0, 530.0, 340.0));
    let mut e = engine(body);
    assert!(run(&mut e, t0, 0, 10_000, &[person(1, t0)], &[far], monday_10am()).is_empty());
    let near = phone(BBox::new(150.0, 300.0, 180.0, 340.0));
    let ev = run(&mut e, t0, 10_000, 14_000, &[person(1, t0)], std::slice::from_ref(&near), monday_10am());
    let s = started(&ev);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].object_bbox, Some(near.bbox));
    assert_eq!(s[0].peak_confidence, 0.6, "the weaker of person and phone");
}

#[test]
fn two_tracks_share_one_violation() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let b = track(2, "person", BBox::new(400.0, 100.0, 500.0, 600.0), t0);
    // A alone, then A and B, then B alone: one violation opened by A, kept open by B.
    let mut ev = run(&mut e, t0, 0, 3200, &[person(1, t0)], &[], monday_10am());
    ev.extend(run(&mut e, t0, 3200, 5000, &[person(1, t0), b.clone()], &[], monday_10am()));
    ev.extend(run(&mut e, t0, 5000, 15_000, std::slice::from_ref(&b), &[], monday_10am()));
    assert_eq!(started(&ev).len(), 1);
    assert_eq!(started(&ev)[0].track_id, 1);
    assert!(ended(&ev).is_empty());
    let ev = run(&mut e, t0, 15_000, 19_000, &[], &[], monday_10am());
    let end = ended(&ev);
    assert_eq!(end.len(), 1);
    assert_eq!(end[0].bbox, b.bbox, "latest offending box");
    assert_eq!(end[0].last_seen, t0 + Duration::from_millis(14_800));
}

#[test]
fn second_track_confirms_when_the_first_was_too_short() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let b = track(2, "person", BBox::new(400.0, 100.0, 500.0, 600.0), t0);
    let mut ev = run(&mut e, t0, 0, 2000, &[person(1, t0)], &[], monday_10am());
    ev.extend(run(&mut e, t0, 2000, 5000, &[b], &[], monday_10am()));
    assert!(started(&ev).is_empty(), "neither track held for 3 s: {ev:?}");
}

#[test]
fn updated_when_peak_grows_at_most_once_a_second() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    let mut ev = run(&mut e, t0, 0, 3200, &[person(1, t0)], &[], monday_10am());
    for k in 0..10u64 {
        let mut p = person(1, t0);
        p.score = 0.8 + 0.01 * (k + 1) as f32;
        ev.extend(run(&mut e, t0, 3200 + 200 * k, 3400 + 200 * k, &[p], &[], monday_10am()));
    }
    let updates: Vec<(Instant, f32)> = ev
        .iter()
        .filter_map(|(t, e)| match e {
            RuleEvent::Updated { violation } => Some((*t, violation.peak_confidence)),
            _ => None,
        })
        .collect();
    // Confirmed at 3.0 s; the peak grows every frame from 3.2 s to 5.0 s.
    let times: Vec<Duration> = updates.iter().map(|(t, _)| t.duration_since(t0)).collect();
    assert_eq!(times, [Duration::from_secs(4), Duration::from_secs(5)]);
    assert!(updates[1].1 > updates[0].1);
}

#[test]
fn expire_ends_violations_of_silent_cameras() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    assert_eq!(started(&run(&mut e, t0, 0, 3200, &[person(1, t0)], &[], monday_10am())).len(), 1);
    assert!(e.expire(t0 + Duration::from_secs(5)).is_empty());
    let ev = e.expire(t0 + Duration::from_secs(7));
    assert!(matches!(&ev[..], [RuleEvent::Ended { .. }]));
    assert!(e.expire(t0 + Duration::from_secs(8)).is_empty());
}

#[test]
fn remove_camera_ends_its_violations() {
    let t0 = Instant::now();
    let mut e = engine(PRESENCE);
    run(&mut e, t0, 0, 3200, &[person(1, t0)], &[], monday_10am());
    assert!(matches!(&e.remove_camera("cam1")[..], [RuleEvent::Ended { .. }]));
    assert!(e.remove_camera("cam1").is_empty());
}

#[test]
fn violation_ids_are_engine_unique_across_rules_and_cameras() {
    let t0 = Instant::now();
    let a = rule(PRESENCE);
    let b = rule("id='animals'\nkind='presence'\nsubject='animal'\nmin_duration_s=0\n");
    let mut e = RuleEngine::new(vec![a, b]);
    let dog = track(9, "dog", BBox::new(0.0, 0.0, 50.0, 50.0), t0);
    let mut ids = Vec::new();
    for cam in ["cam1", "cam2"] {
        for k in 0..20u64 {
            let now = t0 + FRAME * k as u32;
            for ev in e.observe(cam, 640, 640, &[person(1, t0), dog.clone()], &[], now, monday_10am()) {
                if let RuleEvent::Started { violation } = ev {
                    ids.push(violation.id);
                }
            }
        }
    }
    assert_eq!(ids, [1, 2, 3, 4]);
}

#[test]
fn garbage_input_does_not_panic() {
    let t0 = Instant::now() + Duration::from_secs(100);
    let mut e = RuleEngine::new(vec![
        rule(PRESENCE),
        rule("id='z'\nkind='presence'\nsubject='person'\nzones=[[[0,0],[1,0],[1,1]]]\n"),
        rule("id='h'\nkind='missing_attribute'\nsubject='person'\nobject='hat'\n"),
        rule("id='p'\nkind='proximity'\nsubject='person'\nobject='phone'\n"),
        rule("id='s'\nkind='presence'\nsubject='person'\nschedule=[{from='22:00', to='06:00'}]\n"),
    ]);
    let mut nan = person(1, t0);
    nan.score = f32::NAN;
    let mut nan_box = person(2, t0);
    nan_box.bbox = BBox::new(f32::NAN, f32::INFINITY, -1.0, f32::NEG_INFINITY);
    let mut inverted = person(3, t0);
    inverted.bbox = BBox::new(10.0, 10.0, 0.0, 0.0);
    let dets = [Detection { class_id: 0, label: "cell phone".into(), score: f32::NAN, bbox: PERSON }];
    for k in 0..30u64 {
        // Time that jumps backwards now and then.
        let now = if k % 7 == 3 { t0 - Duration::from_secs(50) } else { t0 + FRAME * k as u32 };
        for (w, h) in [(0, 0), (640, 640), (u32::MAX, 1)] {
            let ev =
                e.observe("cam1", w, h, &[nan.clone(), nan_box.clone(), inverted.clone()], &dets, now, monday_10am());
            assert!(ev.is_empty(), "{ev:?}");
        }
    }
    e.observe("", 640, 640, &[], &[], t0, Timestamp::MIN);
    e.observe("cam1", 640, 640, &[person(4, t0)], &[], t0, Timestamp::MAX);
    e.expire(t0 - Duration::from_secs(1000));
}
