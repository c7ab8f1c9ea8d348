//! One task per camera owns everything that runs for it — ingest, and the sampler,
//! recorder and analysis when it is analysed — and starts, restarts and stops them on
//! the commands it is sent. Other cameras never notice.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use crate::clock::Clock;
use crate::config::IngestConfig;
use crate::detect::service::DetectPool;
use crate::events::Store;
use crate::ingest::{self, Camera, RtspSource};
use crate::recorder::ClipSettings;
use crate::rules::ResolvedRule;

/// What a camera's owner is told.
pub enum Command {
    /// The camera's settings changed: here is the camera as it now is (same hub).
    Replace(Arc<Camera>),
}

/// What detection shares with every analysed camera.
pub struct Detection {
    /// The detector pool.
    pub pool: Arc<DetectPool>,
    /// Where events go.
    pub store: Store,
    /// New and changed events, for the SSE feed.
    pub feed: tokio::sync::broadcast::Sender<crate::events::Event>,
    /// Snapshots and clips live under here.
    pub data_dir: std::path::PathBuf,
    /// Clip lengths.
    pub clips: ClipSettings,
    /// The rules now in force, for every camera.
    pub rules: watch::Receiver<Arc<Vec<ResolvedRule>>>,
    /// Counts violations started.
    pub violations: prometheus_client::metrics::counter::Counter,
    /// Wakes retention when files are written.
    pub retention_kick: Arc<tokio::sync::Notify>,
    /// `detect.fps`.
    pub fps: f64,
    /// `detect.decode`.
    pub decode: crate::sampler::DecodeMode,
    /// `detect.cameras`: only these are analysed (all when empty).
    pub only: Vec<String>,
}

/// What every owner needs.
pub struct Runtime {
    /// `[ingest]`.
    pub ingest: IngestConfig,
    /// Opens RTSP connections.
    pub source: Arc<RtspSource>,
    /// Detection, when it runs.
    pub detection: Option<Detection>,
    /// The clock.
    pub clock: Clock,
}

/// A running owner.
pub struct Owner {
    /// Its commands.
    pub commands: mpsc::Sender<Command>,
    /// Fires to stop it and everything it runs.
    pub cancel: CancellationToken,
    /// Ends when it has stopped.
    pub task: JoinHandle<()>,
}

/// Starts the owner of `camera`; it stops when `cancel` (a child of the shutdown) fires.
pub fn start(camera: Arc<Camera>, rt: Arc<Runtime>, cancel: CancellationToken) -> Owner {
    let (tx, rx) = mpsc::channel(8);
    let span = info_span!("camera", camera = %camera.config.id);
    let task = tokio::spawn(run(camera, rt, rx, cancel.clone()).instrument(span));
    Owner { commands: tx, cancel, task }
}

/// A set of tasks with the token that stops them.
struct Running {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn start_ingest(camera: &Arc<Camera>, rt: &Runtime, parent: &CancellationToken) -> Option<Running> {
    if !camera.config.enabled {
        info!("disabled");
        return None;
    }
    let cancel = parent.child_token();
    let task = tokio::spawn(
        ingest::run_camera(camera.clone(), rt.ingest.clone(), rt.source.clone(), cancel.clone()).in_current_span(),
    );
    Some(Running { cancel, tasks: vec![task] })
}

fn start_analysis(camera: &Arc<Camera>, rt: &Runtime, parent: &CancellationToken) -> Option<Running> {
    let d = rt.detection.as_ref()?;
    let id = &camera.config.id;
    if !(d.only.is_empty() || d.only.contains(id)) {
        return None;
    }
    let cancel = parent.child_token();
    let (slot, results) = d.pool.add_camera();
    let submit = d.pool.clone();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        crate::sampler::run(
            id.clone(),
            camera.hub.clone(),
            d.fps,
            d.decode,
            Arc::new(move |p| submit.submit(slot, p)),
            cancel.clone(),
        )
        .in_current_span(),
    ));
    let (clip_tx, clip_rx) = mpsc::channel(64);
    tasks.push(tokio::spawn(
        crate::recorder::run(
            id.clone(),
            camera.hub.clone(),
            d.clips,
            crate::recorder::ClipStorage {
                data_dir: d.data_dir.clone(),
                store: d.store.clone(),
                written: d.retention_kick.clone(),
            },
            clip_rx,
            cancel.clone(),
        )
        .in_current_span(),
    ));
    let outputs = crate::analysis::Outputs {
        camera: id.clone(),
        store: d.store.clone(),
        clips: clip_tx,
        feed: d.feed.clone(),
        data_dir: d.data_dir.clone(),
        violations: d.violations.clone(),
    };
    let sample_interval = match d.decode {
        // One picture per GOP; assume GOPs up to 2.4 s (cameras default to 1-2 s).
        crate::sampler::DecodeMode::Keyframes => Duration::from_millis(2400),
        crate::sampler::DecodeMode::All => Duration::from_secs_f64(1.0 / d.fps),
    };
    let sample_interval = sample_interval.max(Duration::from_secs_f64(1.0 / d.fps));
    tasks.push(tokio::spawn(
        crate::analysis::run(outputs, d.rules.clone(), sample_interval, results, rt.clock.clone(), cancel.clone())
            .in_current_span(),
    ));
    Some(Running { cancel, tasks })
}

async fn run(
    mut camera: Arc<Camera>,
    rt: Arc<Runtime>,
    mut commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    let analysis = start_analysis(&camera, &rt, &cancel);
    let mut ingest = start_ingest(&camera, &rt, &cancel);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Replace(next)) => {
                    if super::changes_connection(&camera.config, &next.config) {
                        info!("settings changed; reconnecting");
                        if let Some(r) = ingest.take() {
                            r.stop().await;
                        }
                        ingest = start_ingest(&next, &rt, &cancel);
                    }
                    camera = next;
                }
            },
        }
    }
    if let Some(r) = ingest {
        r.stop().await;
    }
    if let Some(r) = analysis {
        r.stop().await;
    }
}
