//! The RTSP server: one shared media factory per camera, driven by its own GLib main loop.
//!
//! Everything that touches server-side client or mount bookkeeping runs on that
//! loop's thread (via [`SimServer`]'s async methods), because gst-rtsp-server
//! attaches client watches to the loop and is not meant to be poked elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{RTSPClient, RTSPFilterResult, RTSPMedia, RTSPMediaFactory, RTSPMountPoints, RTSPServer};
use tracing::{debug, info, warn};

use crate::camera::{Camera, MediaHandles};
use crate::faults::FaultKind;
use crate::filesource::{FileFeed, FileSource};
use crate::pipeline::{self, Overlays, Source, VideoSettings};
use crate::probe;
use crate::scene::SceneMedia;
use crate::scene_feed::{SceneFeed, ScenePlayer, SceneStatus};

/// How often an offline camera checks whether it may come back.
const REMOUNT_POLL: Duration = Duration::from_millis(50);
/// How often expired RTSP sessions (clients that vanished without TEARDOWN) are reaped.
const SESSION_CLEANUP: Duration = Duration::from_secs(2);

/// What to serve and where.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address the RTSP server binds (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Number of cameras.
    pub cameras: u32,
    /// Number in the first camera's name (`cam{first_index}`).
    pub first_index: u32,
    /// Encoder settings for every camera.
    pub video: VideoSettings,
    /// Optional file to loop instead of test patterns.
    pub video_file: Option<PathBuf>,
    /// Optional scene to play instead of test patterns (not together with `video_file`).
    pub scene: Option<SceneConfig>,
}

/// A scene for every camera.
#[derive(Clone, Debug)]
pub struct SceneConfig {
    /// The loaded scene.
    pub media: Arc<SceneMedia>,
    /// Camera `i` (counting from 0) starts `i * offset_step_s` seconds into the scene.
    pub offset_step_s: f64,
}

/// Where a camera's appsrc gets its pictures.
#[derive(Clone, Debug)]
enum Feed {
    File(Arc<FileFeed>),
    Scene(Arc<SceneFeed>),
}

/// Errors from starting or commanding the RTSP server.
#[derive(Debug)]
pub enum ServerError {
    /// The server could not be set up.
    Start(String),
    /// No camera has this name.
    UnknownCamera(String),
    /// The main loop is gone (shutting down).
    Stopped,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Start(e) => write!(f, "cannot start RTSP server: {e}"),
            Self::UnknownCamera(name) => write!(f, "unknown camera {name}"),
            Self::Stopped => f.write_str("RTSP server is stopped"),
        }
    }
}

impl std::error::Error for ServerError {}

#[derive(Debug)]
struct Entry {
    camera: Arc<Camera>,
    factory: RTSPMediaFactory,
}

/// The running simulator: RTSP server, its main loop and all cameras.
#[derive(Debug)]
pub struct SimServer {
    server: RTSPServer,
    mounts: RTSPMountPoints,
    ctx: glib::MainContext,
    main_loop: glib::MainLoop,
    loop_thread: Mutex<Option<JoinHandle<()>>>,
    entries: Vec<Arc<Entry>>,
    base_url: String,
    file: Mutex<Option<FileSource>>,
    scene: Option<Arc<ScenePlayer>>,
}

impl SimServer {
    /// Builds all cameras, binds the RTSP port and starts the main loop.
    pub fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let start_err = |e: &dyn std::fmt::Display| ServerError::Start(e.to_string());
        gst::init().map_err(|e| start_err(&e))?;
        config.video.validate().map_err(|e| start_err(&e))?;

        let overlays = Overlays {
            text: gst::ElementFactory::find("textoverlay").is_some(),
            clock: gst::ElementFactory::find("clockoverlay").is_some(),
        };
        if !overlays.text || !overlays.clock {
            warn!("GStreamer pango plugin missing (Debian: gstreamer1.0-x); streams carry no name/clock overlay");
        }

        if config.video_file.is_some() && config.scene.is_some() {
            return Err(start_err(&"a video file and a scene cannot be played together"));
        }
        let file = config.video_file.as_deref().map(FileSource::start).transpose().map_err(|e| start_err(&e))?;
        let source = if file.is_some() {
            Source::File
        } else if config.scene.is_some() {
            Source::Scene
        } else {
            Source::TestPattern
        };

        let mut cameras = Vec::new();
        for i in 0..config.cameras {
            let number = config.first_index.checked_add(i).ok_or_else(|| start_err(&"camera index overflows"))?;
            cameras.push(Arc::new(Camera::new(
                format!("cam{number}"),
                config.video.width,
                config.video.height,
                config.video.fps,
            )));
        }
        let scene = config
            .scene
            .as_ref()
            .map(|sc| ScenePlayer::start(sc.media.clone(), &cameras, sc.offset_step_s, config.video.fps))
            .transpose()
            .map_err(|e| start_err(&e))?
            .map(Arc::new);

        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let server = RTSPServer::new();
        server.set_address(&config.listen.ip().to_string());
        server.set_service(&config.listen.port().to_string());
        let mounts = server.mount_points().ok_or_else(|| start_err(&"server has no mount points"))?;

        let mut entries = Vec::new();
        for (i, camera) in cameras.into_iter().enumerate() {
            let launch = pipeline::launch_line(&config.video, i, camera.name(), source, overlays);
            debug!(camera = camera.name(), %launch, "media factory");
            let factory = RTSPMediaFactory::new();
            factory.set_launch(&launch);
            factory.set_shared(true);
            let cam = camera.clone();
            let feed = match (&file, &scene) {
                (Some(file), _) => Some(Feed::File(file.feed())),
                (None, Some(player)) => player.feed(i).map(Feed::Scene),
                (None, None) => None,
            };
            factory.connect_media_configure(move |_, media| {
                configure_media(&cam, feed.as_ref(), media);
            });
            mounts.add_factory(camera.path(), factory.clone());
            entries.push(Arc::new(Entry { camera, factory }));
        }

        let cameras: Vec<Arc<Camera>> = entries.iter().map(|e| e.camera.clone()).collect();
        server.connect_client_connected(move |_, client| watch_client(client, cameras.clone()));

        server.attach(Some(&ctx)).map_err(|e| start_err(&format!("cannot listen on {}: {e}", config.listen)))?;
        let port = u16::try_from(server.bound_port()).map_err(|_| start_err(&"server reports no bound port"))?;
        let base_url = format!("rtsp://{}", SocketAddr::new(config.listen.ip(), port));

        if let Some(pool) = server.session_pool() {
            glib::timeout_source_new(SESSION_CLEANUP, None, glib::Priority::DEFAULT, move || {
                pool.cleanup();
                glib::ControlFlow::Continue
            })
            .attach(Some(&ctx));
        }

        let run_loop = main_loop.clone();
        let loop_thread = std::thread::Builder::new()
            .name("rtsp-loop".into())
            .spawn(move || run_loop.run())
            .map_err(|e| start_err(&e))?;

        Ok(Self {
            server,
            mounts,
            ctx,
            main_loop,
            loop_thread: Mutex::new(Some(loop_thread)),
            entries,
            base_url,
            file: Mutex::new(file),
            scene,
        })
    }

    /// Where camera `name` is in the scene; `None` when no scene plays.
    pub fn scene_status(&self, name: &str) -> Result<Option<SceneStatus>, ServerError> {
        self.entry(name)?;
        Ok(self.scene.as_ref().and_then(|p| p.status(name)))
    }

    /// Moves camera `name` to scene time `t` seconds; `None` when no scene plays.
    pub fn scene_seek(&self, name: &str, t: f64) -> Result<Option<SceneStatus>, ServerError> {
        self.entry(name)?;
        Ok(self.scene.as_ref().and_then(|p| p.seek(name, t)))
    }

    /// `rtsp://host:port` of the bound server.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Full RTSP URL of a camera.
    pub fn url(&self, camera: &Camera) -> String {
        format!("{}{}", self.base_url, camera.path())
    }

    /// All cameras in index order.
    pub fn cameras(&self) -> impl Iterator<Item = &Arc<Camera>> {
        self.entries.iter().map(|e| &e.camera)
    }

    /// The camera called `name`.
    pub fn camera(&self, name: &str) -> Result<&Arc<Camera>, ServerError> {
        self.entry(name).map(|e| &e.camera)
    }

    fn entry(&self, name: &str) -> Result<&Arc<Entry>, ServerError> {
        self.entries.iter().find(|e| e.camera.name() == name).ok_or_else(|| ServerError::UnknownCamera(name.to_owned()))
    }

    /// Runs `f` on the main loop thread and returns its result.
    async fn on_loop<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R, ServerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ctx.invoke(move || {
            let _ = tx.send(f());
        });
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// Closes the RTSP connections of clients playing camera `name`; returns how many.
    pub async fn drop_clients(&self, name: &str) -> Result<usize, ServerError> {
        let path = self.entry(name)?.camera.path().to_owned();
        let server = self.server.clone();
        let dropped = self.on_loop(move || close_clients(&server, Some(&path))).await?;
        info!(camera = name, dropped, "dropped clients");
        Ok(dropped)
    }

    /// Unmounts camera `name` and drops its clients; it comes back after `duration`.
    pub async fn take_offline(&self, name: &str, duration: Duration) -> Result<usize, ServerError> {
        let entry = self.entry(name)?.clone();
        entry.camera.with_faults(|f| f.start(FaultKind::Offline, Instant::now(), duration));
        let server = self.server.clone();
        let mounts = self.mounts.clone();
        let ctx = self.ctx.clone();
        let dropped = self
            .on_loop(move || {
                if entry.camera.mounted() {
                    mounts.remove_factory(entry.camera.path());
                    entry.camera.set_mounted(false);
                }
                let dropped = close_clients(&server, Some(entry.camera.path()));
                // Polling instead of one exact timer: the offline period may be
                // extended or cleared while it runs, and whichever poller sees it
                // over first remounts.
                glib::timeout_source_new(REMOUNT_POLL, None, glib::Priority::DEFAULT, move || {
                    if entry.camera.mounted() {
                        return glib::ControlFlow::Break;
                    }
                    if entry.camera.with_faults(|f| f.offline(Instant::now())) {
                        return glib::ControlFlow::Continue;
                    }
                    remount(&mounts, &entry);
                    glib::ControlFlow::Break
                })
                .attach(Some(&ctx));
                dropped
            })
            .await?;
        info!(camera = name, ?duration, dropped, "camera offline");
        Ok(dropped)
    }

    /// Ends all faults of camera `name`, remounting it if it was offline.
    pub async fn clear_faults(&self, name: &str) -> Result<(), ServerError> {
        let entry = self.entry(name)?.clone();
        entry.camera.with_faults(|f| f.clear());
        let mounts = self.mounts.clone();
        self.on_loop(move || {
            if !entry.camera.mounted() {
                remount(&mounts, &entry);
            }
        })
        .await?;
        info!(camera = name, "faults cleared");
        Ok(())
    }

    /// Number of connected clients with a session on each camera, in camera order.
    pub async fn client_counts(&self) -> Result<Vec<usize>, ServerError> {
        let server = self.server.clone();
        let paths: Vec<String> = self.entries.iter().map(|e| e.camera.path().to_owned()).collect();
        self.on_loop(move || {
            let mut counts = vec![0; paths.len()];
            server.client_filter(Some(&mut |_, client| {
                for (count, path) in counts.iter_mut().zip(&paths) {
                    if client_plays(client, path) {
                        *count += 1;
                    }
                }
                RTSPFilterResult::Keep
            }));
            counts
        })
        .await
    }

    /// Disconnects every client, stops the main loop and the file decoder.
    pub async fn shutdown(&self) {
        let server = self.server.clone();
        match tokio::time::timeout(Duration::from_secs(2), self.on_loop(move || close_clients(&server, None))).await {
            Ok(Ok(n)) => debug!(clients = n, "closed clients"),
            _ => warn!("main loop did not answer; stopping anyway"),
        }
        self.main_loop.quit();
        let thread = self.loop_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(file) = file {
            let _ = tokio::task::spawn_blocking(move || file.stop()).await;
        }
        if let Some(player) = self.scene.clone() {
            let _ = tokio::task::spawn_blocking(move || player.stop()).await;
        }
    }
}

/// Hooks a camera's freshly built media: current size, probe, and registration.
fn configure_media(camera: &Arc<Camera>, feed: Option<&Feed>, media: &RTSPMedia) {
    let Ok(bin) = media.element().downcast::<gst::Bin>() else {
        warn!(camera = camera.name(), "media element is not a bin");
        return;
    };
    let (Some(caps), Some(encoder), Some(pay)) = (
        bin.by_name(pipeline::CAPS_ELEMENT),
        bin.by_name(pipeline::ENCODER_ELEMENT),
        bin.by_name(pipeline::PAYLOADER_ELEMENT),
    ) else {
        warn!(camera = camera.name(), "media lacks named elements");
        return;
    };
    // The launch line holds the start-up size; a resolution change since then must win.
    if let Some(current) = camera.raw_caps() {
        caps.set_property("caps", &current);
    }
    match pay.static_pad("sink") {
        Some(pad) => probe::install(&pad, camera.clone()),
        None => warn!(camera = camera.name(), "payloader has no sink pad"),
    }
    camera.register_media(MediaHandles { capsfilter: caps.downgrade(), encoder: encoder.downgrade() });
    if let Some(feed) = feed {
        match bin.by_name(pipeline::APPSRC_ELEMENT).and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) {
            Some(src) => match feed {
                Feed::File(feed) => feed.attach(&src),
                Feed::Scene(feed) => feed.attach(&src),
            },
            None => warn!(camera = camera.name(), "appsrc-backed media lacks appsrc"),
        }
    }
    info!(camera = camera.name(), "media created");
}

/// Asks for a key frame whenever a client starts playing, so it need not wait a whole GOP.
fn watch_client(client: &RTSPClient, cameras: Vec<Arc<Camera>>) {
    client.connect_play_request(move |_, ctx| {
        let Some(uri) = ctx.uri() else { return };
        let parts = uri.decode_path_components();
        if let Some(camera) = cameras.iter().find(|c| parts.iter().any(|p| p.as_str() == c.name())) {
            info!(camera = camera.name(), "client playing");
            camera.request_keyframe();
        }
    });
}

fn remount(mounts: &RTSPMountPoints, entry: &Entry) {
    mounts.add_factory(entry.camera.path(), entry.factory.clone());
    entry.camera.set_mounted(true);
    info!(camera = entry.camera.name(), "camera back online");
}

/// Closes clients with a session on `path` (all clients if `None`); returns how many.
fn close_clients(server: &RTSPServer, path: Option<&str>) -> usize {
    let mut closed = 0;
    server.client_filter(Some(&mut |_, client| {
        if path.is_none_or(|p| client_plays(client, p)) {
            closed += 1;
            RTSPFilterResult::Remove
        } else {
            RTSPFilterResult::Keep
        }
    }));
    closed
}

/// Whether `client` has a session whose media is mounted exactly at `path`.
fn client_plays(client: &RTSPClient, path: &str) -> bool {
    let mut plays = false;
    client.session_filter(Some(&mut |_, session| {
        session.filter(Some(&mut |_, media| {
            // matches() only checks that `path` starts with the media path, so
            // /cam10 would also claim /cam1's sessions without the length check.
            if media.matches(path).is_some_and(|n| usize::try_from(n) == Ok(path.len())) {
                plays = true;
            }
            RTSPFilterResult::Keep
        }));
        RTSPFilterResult::Keep
    }));
    plays
}
