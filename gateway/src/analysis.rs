//! Per camera: detections → tracker → rules → events, with snapshots and clip requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
/// expected time between two analysed pictures of this camera.
pub async fn run(
    out: Outputs,
    rules: Vec<ResolvedRule>,
    sample_interval: Duration,
    mut analyses: mpsc::Receiver<Analysis>,
    cancel: CancellationToken,
) {
    // A track must survive the gap between samples (keyframes mode samples once per GOP).
    let base_max_age = sample_interval.mul_f64(2.5).max(Duration::from_secs(2));
    let mut tracker = Tracker::new(TrackerConfig { max_age: base_max_age, ..TrackerConfig::default() });
    let mut last_picture: Option<Instant> = None;
    let mut last_arrival: Option<Instant> = None;
    let mut engine = RuleEngine::new(rules);
    let mut event_ids: HashMap<u64, i64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            a = analyses.recv() => {
                let Some(a) = a else { break };
                let p = &a.picture;
                last_picture = Some(Instant::now());
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
            _ = tick.tick() => {
                // Ends violations whose subject left while no picture arrives (camera down).
                // While pictures flow, the engine ends them itself on picture time.
                if last_picture.is_some_and(|t| t.elapsed() < QUIET_CAMERA) {
                    continue;
                }
                let now = Instant::now();
                for e in engine.expire(now) {
                    handle(&out, &mut event_ids, e, None, now, SystemTime::now()).await;
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

    #[test]
    fn wall_time_of_an_earlier_instant() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(wall_ms(now - Duration::from_millis(1500), now, wall), 998_500);
        assert_eq!(wall_ms(now + Duration::from_millis(10), now, wall), 1_000_010);
    }
}
