//! Wires the gateway together: cameras → hubs → live, and the HTTP server on top.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::Validated;
use crate::hub::{Hub, HubLimits};
use crate::ingest::{self, Camera, CameraState};
use crate::live::{Live, LiveSettings};
use crate::metrics::Metrics;

/// Runs the gateway until `shutdown` fires.
pub async fn run(cfg: Validated, shutdown: CancellationToken) -> anyhow::Result<()> {
    gstreamer::init().context("cannot initialise GStreamer")?;
    str0m::crypto::from_feature_flags().install_process_default();
    let config = cfg.config;
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("cannot create server.data_dir {}", config.server.data_dir.display()))?;

    let metrics = Arc::new(Metrics::new());
    let mut cameras = BTreeMap::new();
    for cam in &config.cameras {
        let camera = Arc::new(Camera {
            config: cam.clone(),
            hub: Hub::new(HubLimits::default(), metrics.camera(&cam.id)),
            state: Arc::new(Mutex::new(CameraState::new())),
        });
        cameras.insert(cam.id.clone(), camera);
    }
    let cameras = Arc::new(cameras);

    let live = Live::start(
        LiveSettings {
            udp_listen: cfg.udp_listen,
            candidates: cfg.candidates.clone(),
            viewer_queue: config.webrtc.viewer_queue,
            max_viewers: config.webrtc.max_viewers,
        },
        shutdown.child_token(),
    )
    .await?;

    let mut tasks = tokio::task::JoinSet::new();
    for camera in cameras.values() {
        if !camera.config.enabled {
            info!(camera = %camera.config.id, "disabled in config");
            continue;
        }
        tasks.spawn(ingest::run_camera(camera.clone(), config.ingest.clone(), shutdown.child_token()));
    }

    let state = AppState {
        cameras: cameras.clone(),
        live,
        metrics,
        admin_token: Arc::from(config.auth.admin_token.as_str()),
        ice_links: Arc::new(api::ice_links(&config.webrtc.ice_servers)),
        started: Instant::now(),
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen {}", cfg.listen))?;
    info!(listen = %cfg.listen, cameras = cameras.len(), "mingchu ready");
    // Printed for scripts and tests that wait for the server.
    println!("mingchu listening on http://{}", listener.local_addr()?);
    let server_stop = shutdown.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move { server_stop.cancelled().await })
        .await
        .context("HTTP server failed")?;

    // Teardown order: HTTP is closed; stop ingest, then release viewers.
    for camera in cameras.values() {
        camera.hub.close();
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            warn!(error = %e, "camera task ended abnormally");
        }
    }
    info!("mingchu stopped");
    Ok(())
}
