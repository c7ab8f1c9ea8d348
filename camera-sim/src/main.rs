//! `camera-sim`: RTSP camera simulator with scripted faults, for demos, end-to-end tests and benchmarks.

mod camera;
mod control;
mod corrupt;
mod faults;
mod filesource;
mod live_push;
mod pipeline;
mod probe;
mod scene;
mod scene_feed;
mod server;
mod stamp;
#[cfg(test)]
mod stamp_props;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing::info;

use crate::pipeline::VideoSettings;
use crate::scene::SceneMedia;
use crate::server::{SceneConfig, ServerConfig, SimServer};

/// Command line of `camera-sim`.
#[derive(Debug, Parser)]
#[command(version, about = "RTSP camera simulator with scripted faults")]
struct Cli {
    /// RTSP listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8554")]
    listen: SocketAddr,
    /// Number of cameras to serve.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    cameras: u32,
    /// HTTP control API listen address; the API is off without it.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Picture width in pixels (even).
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Picture height in pixels (even).
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Encoder target bitrate in kbit/s.
    #[arg(long, default_value_t = 2000)]
    bitrate_kbps: u32,
    /// Key-frame interval in frames.
    #[arg(long, default_value_t = 50)]
    gop: u32,
    /// Number in the first camera's name (cam<N>).
    #[arg(long, default_value_t = 1)]
    first_index: u32,
    /// Loop this video file instead of test patterns.
    #[arg(long, conflicts_with = "scene")]
    video_file: Option<PathBuf>,
    /// Play a scripted scene of real photos instead of test patterns: a built-in
    /// scene (default, gallery) or a scene TOML file (see camera-sim/scenes/README.md).
    #[arg(long, value_name = "NAME|PATH")]
    scene: Option<String>,
    /// Directory with the scene photos (fill it with camera-sim/fetch-photos.sh).
    /// Default: `.tools/photos` here, else in the tree this binary runs from.
    #[arg(long, value_name = "DIR")]
    photos: Option<PathBuf>,
    /// Stagger cameras in the scene: camera N (counting from 0) starts N times this
    /// many seconds into it; 0 plays the scene in sync on every camera.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, allow_negative_numbers = true)]
    scene_offset_s: f64,
}

/// Exit status for a mistake in what camera-sim was asked to do (bad flag value, missing
/// file, port taken), as clap uses for a bad command line.
const EXIT_USAGE: u8 = 2;

/// Why camera-sim stopped. Both kinds are reported as one `error: ...` line; only a panic,
/// which is a bug, prints a backtrace.
#[derive(Debug)]
enum Failure {
    /// What camera-sim was asked to do cannot be done: exit status 2.
    Usage(anyhow::Error),
    /// Something failed while running: exit status 1.
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Runtime(e.into())
    }
}

/// Marks an error as the user's to fix.
trait UsageContext<T> {
    fn usage(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> UsageContext<T> for Result<T, E> {
    fn usage(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::Usage(e.into()))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    let (error, code) = match run(cli).await {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => (e, ExitCode::from(EXIT_USAGE)),
        Err(Failure::Runtime(e)) => (e, ExitCode::FAILURE),
    };
    // `{:#}` is the cause chain on one line; `{:?}` would add anyhow's backtrace when
    // RUST_BACKTRACE is set, which only helps with bugs, and those panic.
    eprintln!("error: {}", one_line(&format!("{error:#}")));
    code
}

/// `.tools/photos` in the working directory if it is there, else in the directories the
/// binary sits in or under (a `target/release/camera-sim` finds its repository's), so the
/// scenes play wherever camera-sim is started from.
fn default_photos() -> PathBuf {
    let rel = PathBuf::from(".tools/photos");
    if rel.is_dir() {
        return rel;
    }
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(std::path::Path::to_path_buf));
    exe_dir.iter().flat_map(|d| d.ancestors().take(4)).map(|d| d.join(&rel)).find(|p| p.is_dir()).unwrap_or(rel)
}

/// `text` with line breaks folded, so an error is always one line of output.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let video = VideoSettings {
        width: cli.width,
        height: cli.height,
        fps: cli.fps,
        bitrate_kbps: cli.bitrate_kbps,
        gop: cli.gop,
    };
    video.validate().map_err(anyhow::Error::msg).context("invalid video settings").usage()?;
    if !cli.scene_offset_s.is_finite() {
        return Err(Failure::Usage(anyhow::anyhow!("--scene-offset-s must be a number")));
    }
    let scene = match &cli.scene {
        Some(spec) => {
            let photos = cli.photos.clone().unwrap_or_else(default_photos);
            let spec = spec.clone();
            let media = tokio::task::spawn_blocking(move || SceneMedia::load(&spec, &photos))
                .await
                .context("scene loading task failed")?
                .usage()?;
            Some(SceneConfig { media: Arc::new(media), offset_step_s: cli.scene_offset_s })
        }
        None => None,
    };
    let config = ServerConfig {
        listen: cli.listen,
        cameras: cli.cameras,
        first_index: cli.first_index,
        video,
        video_file: cli.video_file,
        scene,
    };
    // Every start-up failure of the server is about what it was given: a port that is
    // taken, a video file that does not play, a camera number out of range.
    let sim = Arc::new(
        tokio::task::spawn_blocking(move || SimServer::start(&config))
            .await
            .context("start-up task failed")?
            .usage()?,
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut control_task = None;
    let mut control_url = None;
    if let Some(addr) = cli.control {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for the control API on {addr} (--control)"))
            .usage()?;
        // With port 0 the ready line is the only place the port picked is told.
        let bound = listener.local_addr()?;
        control_url = Some(format!("http://{bound}"));
        let app = control::router(sim.clone());
        let mut stop = stop_rx.clone();
        control_task = Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }

    let names: Vec<&str> = sim.cameras().map(|c| c.name()).collect();
    let mounts = match names.as_slice() {
        [only] => (*only).to_owned(),
        [first, .., last] => format!("{first}..{last}"),
        [] => String::new(),
    };
    // The RTSP address is the one bound, not the one asked for: `--listen 127.0.0.1:0`
    // is reported with the port the system picked.
    let mut ready = format!("camera-sim ready {}/{mounts}", sim.base_url());
    if let Some(url) = &control_url {
        ready.push_str(&format!(" control={url}"));
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);
    info!("{ready}");

    wait_for_signal().await?;
    info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(task) = control_task {
        // Graceful shutdown waits for idle keep-alive connections; do not let one hold us up.
        match tokio::time::timeout(std::time::Duration::from_secs(2), task).await {
            Ok(joined) => joined.context("control API task failed")??,
            Err(_) => info!("control API connections still open at shutdown"),
        }
    }
    sim.shutdown().await;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
