//! Clip recorder: a hub consumer per camera that cuts MP4 clips with pre- and post-roll
//! around events, without re-encoding. Muxing runs off the async threads, so neither the
//! live path nor the recorder's own queue waits on the disk.

mod cutter;
mod mux;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::events::Store;
use crate::hub::Hub;
pub use cutter::{ClipCutter, CutClip};
pub use mux::{MuxError, write_mp4};

/// What the event side asks of a camera's recorder.
#[derive(Debug, Clone, Copy)]
pub enum ClipCommand {
    /// An event began (its condition started at `start`).
    Start {
        /// Event id.
        event_id: i64,
        /// Condition start.
        start: Instant,
    },
    /// The event ended at `end`.
    End {
        /// Event id.
        event_id: i64,
        /// Condition end.
        end: Instant,
    },
}

/// Clip lengths.
#[derive(Debug, Clone, Copy)]
pub struct ClipSettings {
    /// Video kept before the event starts.
    pub pre_roll: Duration,
    /// Video kept after it ends.
    pub post_roll: Duration,
    /// Longest clip (an event that never ends is cut here).
    pub max_clip: Duration,
}

/// Where finished clips go.
#[derive(Clone)]
pub struct ClipStorage {
    /// The data directory (clips go under `clips/<camera>/`).
    pub data_dir: PathBuf,
    /// The event database, told about each clip.
    pub store: Store,
    /// Notified after each clip, so retention checks the budget at once.
    pub written: Arc<tokio::sync::Notify>,
}

/// Runs one camera's recorder until `cancel`.
pub async fn run(
    camera: String,
    hub: Arc<Hub>,
    settings: ClipSettings,
    storage: ClipStorage,
    mut commands: mpsc::Receiver<ClipCommand>,
    cancel: CancellationToken,
) {
    let ClipStorage { data_dir, store, written: retention_kick } = storage;
    // Enough queue for a GOP burst; falling behind only shortens a clip's start.
    let subscription = hub.subscribe("recorder", 250);
    let buffered = hub.metrics().recorder_buffered.clone();
    let mut cutter = ClipCutter::new(settings.pre_roll, settings.post_roll, settings.max_clip);
    let rel_dir = PathBuf::from("clips").join(&camera);
    if let Err(e) = std::fs::create_dir_all(data_dir.join(&rel_dir)) {
        warn!(%camera, error = %e, "cannot create the clip directory");
    }
    let mut writes = tokio::task::JoinSet::new();
    let start_write = |writes: &mut tokio::task::JoinSet<()>, clip: CutClip| {
        let rel = rel_dir.join(format!("{}.mp4", clip.event_id));
        let job = ClipJob { camera: camera.clone(), store: store.clone(), kick: retention_kick.clone(), rel };
        writes.spawn(job.write(clip, data_dir.clone()));
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let finished = tokio::select! {
            _ = cancel.cancelled() => break,
            cmd = commands.recv() => {
                match cmd {
                    Some(ClipCommand::Start { event_id, start }) => cutter.start(event_id, start),
                    Some(ClipCommand::End { event_id, end }) => cutter.end(event_id, end),
                    None => break,
                }
                continue;
            }
            d = subscription.recv() => match d {
                Some(d) => cutter.push(d.unit),
                None => break,
            },
            _ = tick.tick() => {
                buffered.set(cutter.buffered_bytes() as i64);
                cutter.flush(Instant::now())
            }
        };
        for clip in finished {
            start_write(&mut writes, clip);
        }
        while writes.try_join_next().is_some() {}
    }
    // Clips still collecting are cut short and written; one being written when the
    // gateway stops is finished, not torn.
    for clip in cutter.finish_all() {
        start_write(&mut writes, clip);
    }
    while writes.join_next().await.is_some() {}
}

/// Writing one finished clip and recording it.
struct ClipJob {
    camera: String,
    store: Store,
    kick: Arc<tokio::sync::Notify>,
    rel: PathBuf,
}

impl ClipJob {
    async fn write(self, clip: CutClip, data_dir: PathBuf) {
        let ClipJob { camera, store, kick, rel } = self;
        let duration = clip_duration(&clip);
        let (event_id, units) = (clip.event_id, clip.units);
        let path = data_dir.join(&rel);
        let written = tokio::task::spawn_blocking(move || write_mp4(&units, &path)).await;
        let result = match written {
            Ok(Ok(bytes)) => {
                info!(%camera, event = event_id, bytes, duration_s = duration, "clip written");
                store.set_clip(event_id, Some(rel.to_string_lossy().into_owned()), bytes, duration).await
            }
            Ok(Err(e)) => {
                warn!(%camera, event = event_id, error = %e, "clip failed");
                store.set_clip(event_id, None, 0, 0.0).await
            }
            Err(e) => {
                warn!(%camera, event = event_id, error = %e, "clip task failed");
                store.set_clip(event_id, None, 0, 0.0).await
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "cannot record the clip in the database");
        }
        // New bytes on disk: let retention check the budget now.
        kick.notify_one();
    }
}

fn clip_duration(clip: &CutClip) -> f64 {
    match (clip.units.first(), clip.units.last()) {
        (Some(a), Some(b)) => (b.pts.saturating_sub(a.pts)).as_secs_f64(),
        _ => 0.0,
    }
}
