//! Per camera: detections → tracker → rules → events, with snapshots and clip requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::{Clock, unix_ms};
use crate::detect::service::Analysis;
use crate::events::{Event, Mark, NewEvent, Store, render};
use crate::recorder::ClipCommand;
use crate::rules::{ResolvedRule, RuleEngine, RuleEvent, Violation};
use crate::sampler::Picture;
use crate::track::{Tracker, TrackerConfig};

/// What one camera's analysis task writes to.
pub struct Outputs {
    /// Camera id.
    pub camera: String,
    /// The event database.
    pub store: Store,
    /// The camera's clip recorder.
    pub clips: mpsc::Sender<ClipCommand>,
    /// New and changed events for live listeners.
    pub feed: broadcast::Sender<Event>,
    /// Where snapshots go.
    pub data_dir: PathBuf,
    /// Counts violations started.
    pub violations: prometheus_client::metrics::counter::Counter,
}

/// Wall time of monotonic instant `at`, given a reference pair taken together.
fn wall_ms(at: Instant, ref_instant: Instant, ref_wall: SystemTime) -> i64 {
    let base = unix_ms(ref_wall);
    if at <= ref_instant {
        base - ref_instant.duration_since(at).as_millis() as i64
    } else {
        base + at.duration_since(ref_instant).as_millis() as i64
    }
}

/// Silence after which open violations of a camera are ended without new pictures.
const QUIET_CAMERA: Duration = Duration::from_secs(5);
/// Longest a track is kept unseen, however far apart the pictures are.
const MAX_TRACK_AGE: Duration = Duration::from_secs(10);

/// Runs until `cancel` or until the detector stops sending; `sample_interval` is the
/// expected time between two analysed pictures of this camera. Pictures carry their own
/// arrival times; `clock` only serves to end violations while no picture comes.
pub async fn run(
    out: Outputs,
    mut rules: tokio::sync::watch::Receiver<Arc<Vec<ResolvedRule>>>,
    sample_interval: Duration,
    mut analyses: mpsc::Receiver<Analysis>,
    clock: Clock,
    cancel: CancellationToken,
) {
    // A track must survive the gap between samples (keyframes mode samples once per GOP).
    let base_max_age = sample_interval.mul_f64(2.5).max(Duration::from_secs(2));
    let mut tracker = Tracker::new(TrackerConfig { max_age: base_max_age, ..TrackerConfig::default() });
    let mut last_picture: Option<Instant> = None;
    let mut last_arrival: Option<Instant> = None;
    let mut engine = RuleEngine::new(rules.borrow_and_update().as_ref().clone());
    let mut rules_open = true;
    let mut event_ids: HashMap<u64, i64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            a = analyses.recv() => {
                let Some(a) = a else { break };
                let p = &a.picture;
                last_picture = Some(clock.monotonic());
                if let Some(prev) = last_arrival.replace(p.arrival) {
                    // Under load the sampler stretches its interval (up to a GOP): tracks
                    // must survive the gap actually seen, or no violation lasts long
                    // enough to count.
                    let gap = p.arrival.saturating_duration_since(prev).mul_f64(2.5);
                    tracker.set_max_age(gap.clamp(base_max_age, MAX_TRACK_AGE.max(base_max_age)));
                }
                let tracks = tracker.update(&a.detections, p.arrival);
                let wall = jiff::Timestamp::try_from(p.wall).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let events = engine.observe(&out.camera, p.width, p.height, &tracks, &a.detections, p.arrival, wall);
                for e in events {
                    handle(&out, &mut event_ids, e, Some(&a), p.arrival, p.wall).await;
                }
            }
            changed = rules.changed(), if rules_open => {
                if changed.is_err() {
                    // No more changes will come; the rules in force stay.
                    rules_open = false;
                    continue;
                }
                // Open violations end with the rules they were raised under.
                let next = rules.borrow_and_update().as_ref().clone();
                let (now, wall) = (clock.monotonic(), clock.realtime());
                for e in engine.set_rules(next) {
                    handle(&out, &mut event_ids, e, None, now, wall).await;
                }
            }
            _ = tick.tick() => {
                // Ends violations whose subject left while no picture arrives (camera down).
                // While pictures flow, the engine ends them itself on picture time.
                let (now, wall) = (clock.monotonic(), clock.realtime());
                if last_picture.is_some_and(|t| now.saturating_duration_since(t) < QUIET_CAMERA) {
                    continue;
                }
                for e in engine.expire(now) {
                    handle(&out, &mut event_ids, e, None, now, wall).await;
                }
            }
        }
    }
}

async fn handle(
    out: &Outputs,
    ids: &mut HashMap<u64, i64>,
    event: RuleEvent,
    analysis: Option<&Analysis>,
    ref_instant: Instant,
    ref_wall: SystemTime,
) {
    let result = match event {
        RuleEvent::Started { violation } => started(out, ids, &violation, analysis, ref_instant, ref_wall).await,
        RuleEvent::Updated { violation } => match ids.get(&violation.id) {
            Some(&id) => out.store.update_peak(id, violation.peak_confidence as f64).await.map(|_| Some(id)),
            None => Ok(None),
        },
        RuleEvent::Ended { violation } => match ids.remove(&violation.id) {
            Some(id) => {
                let end_ms = wall_ms(violation.last_seen, ref_instant, ref_wall);
                let _ = out.clips.try_send(ClipCommand::End { event_id: id, end: violation.last_seen });
                info!(camera = %out.camera, event = id, rule = %violation.rule_id, "violation ended");
                out.store.end(id, end_ms, violation.peak_confidence as f64).await.map(|_| Some(id))
            }
            None => Ok(None),
        },
        RuleEvent::Unknown { rule_id, track_id, reason, .. } => {
            debug!(camera = %out.camera, rule = %rule_id, track = track_id, ?reason, "cannot tell");
            Ok(None)
        }
    };
    match result {
        Ok(Some(id)) => {
            if let Ok(Some(e)) = out.store.get(id).await {
                let _ = out.feed.send(e);
            }
        }
        Ok(None) => {}
        Err(e) => warn!(camera = %out.camera, error = %e, "cannot store the event"),
    }
}

async fn started(
    out: &Outputs,
    ids: &mut HashMap<u64, i64>,
    v: &Violation,
    analysis: Option<&Analysis>,
    ref_instant: Instant,
    ref_wall: SystemTime,
) -> Result<Option<i64>, crate::events::StoreError> {
    let id = out
        .store
        .insert(NewEvent {
            camera: out.camera.clone(),
            rule: v.rule_id.clone(),
            kind: v.kind.clone(),
            severity: format!("{:?}", v.severity).to_lowercase(),
            track: v.track_id as i64,
            start_ms: wall_ms(v.started_at, ref_instant, ref_wall),
            confidence: v.peak_confidence as f64,
        })
        .await?;
    ids.insert(v.id, id);
    out.violations.inc();
    info!(camera = %out.camera, event = id, rule = %v.rule_id, confidence = v.peak_confidence, "violation");
    if out.clips.try_send(ClipCommand::Start { event_id: id, start: v.started_at }).is_err() {
        warn!(camera = %out.camera, event = id, "clip recorder busy; this event has no clip");
        out.store.set_clip(id, None, 0, 0.0).await?;
    }
    if let Some(a) = analysis {
        let marks = marks(v, a);
        let picture: Arc<Picture> = a.picture.clone();
        let rel = PathBuf::from("snapshots").join(&out.camera).join(format!("{id}.jpg"));
        let path = out.data_dir.join(&rel);
        let written = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            let jpeg = render(&picture.rgb, picture.width, picture.height, picture.stride, &marks)
                .map_err(|e| e.to_string())?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let tmp = path.with_extension("jpg.part");
            std::fs::write(&tmp, &jpeg).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
            Ok(jpeg.len() as u64)
        })
        .await;
        match written {
            Ok(Ok(bytes)) => out.store.set_snapshot(id, rel.to_string_lossy().into_owned(), bytes).await?,
            Ok(Err(e)) => warn!(camera = %out.camera, event = id, error = %e, "cannot write the snapshot"),
            Err(e) => warn!(camera = %out.camera, event = id, error = %e, "snapshot task failed"),
        }
    }
    Ok(Some(id))
}

/// The subject in red with the rule, the object and other detections in amber.
fn marks(v: &Violation, a: &Analysis) -> Vec<Mark> {
    let mut marks =
        vec![Mark { bbox: v.bbox, caption: format!("{} {:.2}", v.rule_id, v.peak_confidence), primary: true }];
    if let Some(b) = v.object_bbox {
        marks.push(Mark { bbox: b, caption: String::new(), primary: false });
    }
    for d in &a.detections {
        if d.bbox.iou(&v.bbox) > 0.9 || v.object_bbox.is_some_and(|o| d.bbox.iou(&o) > 0.9) {
            continue;
        }
        // Labels are ASCII model labels; anything else is left out of the caption.
        let label: String = d.label.chars().filter(char::is_ascii).collect();
        marks.push(Mark { bbox: d.bbox, caption: format!("{label} {:.2}", d.score), primary: false });
    }
    // Context boxes first so the subject is drawn on top.
    marks.reverse();
    marks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clocks, SimulatedClocks};
    use crate::detect::geometry::{BBox, Detection};
    use crate::events::Filter;
    use crate::rules::{Roles, RuleConfig};
    use std::time::UNIX_EPOCH;

    const CAT: BBox = BBox { x1: 200.0, y1: 150.0, x2: 320.0, y2: 260.0 };

    #[test]
    fn wall_time_of_an_earlier_instant() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(wall_ms(now - Duration::from_millis(1500), now, wall), 998_500);
        assert_eq!(wall_ms(now + Duration::from_millis(10), now, wall), 1_000_010);
    }

    struct Harness {
        clock: Arc<SimulatedClocks>,
        store: Store,
        pictures: mpsc::Sender<Analysis>,
        clips: mpsc::Receiver<ClipCommand>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        dir: PathBuf,
    }

    impl Harness {
        /// One camera's analysis with a cat rule: 2 s to count, ended 3 s after the cat
        /// leaves, then 60 s of cooldown.
        fn start(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("mingchu-analysis-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let store = Store::open(&dir).expect("store");
            let clock = Arc::new(SimulatedClocks::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
            let rule: RuleConfig = toml::from_str(
                "id = \"animal_in_kitchen\"\nkind = \"presence\"\nsubject = \"animal\"\n\
                 min_duration_s = 2\nend_after_s = 3\ncooldown_s = 60\n",
            )
            .expect("rule");
            let roles = Roles::new(HashMap::from([("animal".to_string(), vec!["cat".to_string()])]));
            let rule = crate::rules::validate(0, &rule, &roles, &["cat".to_string()]).expect("valid rule");
            let (clip_tx, clips) = mpsc::channel(16);
            let (pictures, rx) = mpsc::channel(4);
            let out = Outputs {
                camera: "cam1".into(),
                store: store.clone(),
                clips: clip_tx,
                feed: broadcast::channel(16).0,
                data_dir: dir.clone(),
                violations: Default::default(),
            };
            let cancel = CancellationToken::new();
            let task = {
                let rules = tokio::sync::watch::channel(Arc::new(vec![rule])).1;
                tokio::spawn(run(out, rules, Duration::from_millis(500), rx, clock.clone(), cancel.clone()))
            };
            Self { clock, store, pictures, clips, cancel, task, dir }
        }

        /// Sends a picture every 500 ms until `until` on the simulated clock, with a cat
        /// in it while `cat` says so.
        async fn play(&self, until: Duration, cat: impl Fn(Duration) -> bool) {
            while self.clock.elapsed() < until {
                let t = self.clock.elapsed();
                let detections = if cat(t) {
                    vec![Detection { class_id: 0, label: "cat".into(), score: 0.9, bbox: CAT }]
                } else {
                    Vec::new()
                };
                let picture = Arc::new(Picture {
                    width: 640,
                    height: 360,
                    stride: 640 * 3,
                    rgb: vec![0; 640 * 360 * 3].into(),
                    pts: t,
                    arrival: self.clock.monotonic(),
                    wall: self.clock.realtime(),
                });
                let a = Analysis { picture, detections, infer_time: Duration::from_millis(30) };
                self.pictures.send(a).await.expect("analysis running");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }

        /// Events as (start, end) seconds after the clock's origin.
        async fn events(&self) -> Vec<(f64, Option<f64>)> {
            let origin = 1_800_000_000_000i64;
            let mut list = self.store.list(Filter::default()).await.expect("list");
            list.reverse();
            list.iter()
                .map(|e| {
                    let s = |ms: i64| (ms - origin) as f64 / 1000.0;
                    (s(e.start_ms), e.end_ms.map(s))
                })
                .collect()
        }

        async fn stop(self) {
            self.cancel.cancel();
            self.task.await.expect("analysis ends on cancel");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_start_end_and_cool_down_on_picture_time() {
        let mut h = Harness::start("timing");
        // A cat from 10 s to 20 s, again at 40-45 s (inside the cooldown), and at
        // 100-110 s (after it).
        let cat = |t: Duration| {
            let s = t.as_secs_f64();
            (10.0..20.0).contains(&s) || (40.0..45.0).contains(&s) || (100.0..110.0).contains(&s)
        };
        h.play(Duration::from_secs(30), cat).await;
        let events = h.events().await;
        assert_eq!(events.len(), 1, "{events:?}");
        let (start, end) = events[0];
        // The tracker confirms a track on its second sighting (10.5 s); the violation
        // dates from when the condition first held and counts from 2 s later.
        assert!((10.0..=10.5).contains(&start), "{events:?}");
        assert_eq!(end, Some(19.5), "ends at the cat's last sighting: {events:?}");
        let first = h.store.list(Filter::default()).await.expect("list")[0].clone();
        assert!(first.has_snapshot, "the snapshot is written with the event");
        match h.clips.try_recv() {
            Ok(ClipCommand::Start { event_id, .. }) => assert_eq!(event_id, first.id),
            other => panic!("expected a clip start, got {other:?}"),
        }
        assert!(matches!(h.clips.try_recv(), Ok(ClipCommand::End { .. })));

        h.play(Duration::from_secs(60), cat).await;
        assert_eq!(h.events().await.len(), 1, "the cat at 40 s is inside the 60 s cooldown");
        h.play(Duration::from_secs(120), cat).await;
        let events = h.events().await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!((100.0..=100.5).contains(&events[1].0) && events[1].1 == Some(109.5), "{events:?}");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_camera_that_goes_quiet_ends_its_violation_on_the_clock() {
        let h = Harness::start("quiet");
        // The cat is still there when the pictures stop at 15 s (camera down).
        h.play(Duration::from_secs(15), |t| t >= Duration::from_secs(10)).await;
        let events = h.events().await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].1, None, "still open while the cat is in view");
        // No picture comes: once the camera has been quiet for 5 s and the cat was last
        // seen over 3 s ago, the violation ends at that last sighting.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let events = h.events().await;
        assert_eq!(events[0].1, Some(14.5), "{events:?}");
        h.stop().await;
    }
}
