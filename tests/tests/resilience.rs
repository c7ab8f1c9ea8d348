//! Cameras that die, stall, send garbage or change resolution: the gateway recovers by
//! itself and one camera's trouble never touches another.

use std::time::Duration;

use mingchu_e2e::decode::decode;
use mingchu_e2e::measure::rates;
use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

/// The gateway's default `ingest.max_backoff_s`: the longest a camera that is back waits
/// for the next reconnect attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The gateway's default `ingest.stall_timeout_s`.
const STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Room for an RTSP connection to be set up and the first frames to arrive on a busy machine.
const CONNECT: Duration = Duration::from_secs(5);
/// Share of the camera's frames a healthy viewer must get.
const KEEP_UP: f64 = 0.8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_camera_comes_back_and_the_other_is_untouched() -> anyhow::Result<()> {
    let opts1 = SimOptions { first_index: 1, ..Default::default() };
    let opts2 = SimOptions { first_index: 2, ..Default::default() };
    let mut sim1 = Sim::start(&opts1)?;
    let sim2 = Sim::start(&opts2)?;
    let gw = Gateway::start(&[("cam1", sim1.url("cam1")), ("cam2", sim2.url("cam2"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    gw.wait_state("cam2", "online", Duration::from_secs(10)).await?;
    let v1 = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    let v2 = Viewer::connect(&gw.base, &gw.token, "cam2", ViewerOptions::default()).await?;
    v1.wait_frames(1, Duration::from_secs(5)).await?;
    v2.wait_frames(1, Duration::from_secs(5)).await?;

    // Power cut on camera 1.
    sim1.proc.kill();
    let cam1 = gw.wait_state("cam1", "offline", STALL_TIMEOUT + CONNECT).await?;
    assert!(cam1["last_error"].is_string(), "{cam1}");
    // Camera 2's viewer keeps up with camera 2 while camera 1 is down and retried.
    let r = rates(&gw, "cam2", &[&v2], Duration::from_secs(3)).await?;
    r.check_viewers_keep_up(KEEP_UP)?;
    assert_eq!(gw.camera("cam2").await?["state"], "online");
    assert_eq!(gw.camera("cam1").await?["state"], "offline", "cam1 was down during the window");

    // Camera 1 returns on the same address; the open viewer gets video again by itself,
    // at the latest after the longest back-off.
    let frames_before = v1.frames_received();
    let _sim1b = Sim::start(&SimOptions { rtsp_port: sim1.rtsp_port, ..opts1 })?;
    v1.wait_frames(frames_before + 5, MAX_BACKOFF + CONNECT).await?;
    let cam1 = gw.wait_state("cam1", "online", CONNECT).await?;
    assert!(cam1["reconnects"].as_u64().unwrap_or(0) >= 1, "{cam1}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_down_at_start_is_retried() -> anyhow::Result<()> {
    // The camera's server runs but the camera is gone (404) until the fault is cleared:
    // no port is probed and left for anyone else to take.
    let sim = Sim::start(&SimOptions::default())?;
    sim.control("cameras/cam1/faults/offline?secs=600").await?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    // Immediate retry, then 250 ms, 500 ms: two retries within a second or so.
    let cam = poll("two retries of a camera down at start", Duration::from_secs(10), |seen| {
        let gw = &gw;
        async move {
            let cam = gw.camera("cam1").await?;
            seen.show(&cam);
            anyhow::ensure!(cam["state"] == "offline", "camera reported online while down: {cam}");
            Ok((cam["reconnects"].as_u64().unwrap_or(0) >= 2).then_some(cam))
        }
    })
    .await?;
    assert!(cam["last_error"].is_string(), "{cam}");
    sim.clear_faults("cam1").await?;
    gw.wait_state("cam1", "online", MAX_BACKOFF + CONNECT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_is_detected_and_recovered() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(1, Duration::from_secs(5)).await?;

    // The stall outlasts any detection delay; it is cleared once seen.
    let stalled_at = std::time::Instant::now();
    sim.control("cameras/cam1/faults/stall?secs=60").await?;
    let cam = gw.wait_state("cam1", "offline", STALL_TIMEOUT + CONNECT).await?;
    let detected = stalled_at.elapsed();
    assert!(detected >= STALL_TIMEOUT * 3 / 4, "stall reported after only {detected:?}");
    assert!(cam["last_error"].as_str().unwrap_or_default().contains("stall"), "{cam}");

    sim.clear_faults("cam1").await?;
    gw.wait_state("cam1", "online", MAX_BACKOFF + CONNECT).await?;
    rates(&gw, "cam1", &[&v], Duration::from_secs(2)).await?.check_viewers_keep_up(KEEP_UP)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_nal_units_are_survived() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let mut gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(1, Duration::from_secs(5)).await?;

    sim.control("cameras/cam1/faults/corrupt?secs=3").await?;
    poll("the corrupt fault to end", Duration::from_secs(10), |seen| {
        let sim = &sim;
        async move {
            let cam = sim.control_get("cameras/cam1").await?;
            seen.show(&cam);
            Ok(cam["faults"].as_array().is_some_and(Vec::is_empty).then_some(()))
        }
    })
    .await?;
    assert!(gw.proc.is_running(), "gateway still running");
    gw.wait_state("cam1", "online", MAX_BACKOFF + CONNECT).await?;
    rates(&gw, "cam1", &[&v], Duration::from_secs(2)).await?.check_viewers_keep_up(KEEP_UP)?;

    // A viewer joining now gets a clean, decodable picture.
    let mut fresh = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    fresh.wait_frames(50, Duration::from_secs(10)).await?;
    let mut rx = fresh.frames.take().expect("frames kept");
    let mut units = Vec::new();
    while let Ok(f) = rx.try_recv() {
        units.push(f.data);
    }
    let decoded = decode(&units)?;
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert!(decoded.pictures >= 45, "{} pictures", decoded.pictures);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_change_mid_stream_reaches_the_viewer() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { width: 640, height: 360, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let mut v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    v.wait_frames(30, Duration::from_secs(5)).await?;

    sim.control("cameras/cam1/resolution?width=320&height=240").await?;
    poll("the gateway to report 320x240", Duration::from_secs(10), |seen| {
        let gw = &gw;
        async move {
            let cam = gw.camera("cam1").await?;
            seen.show(&cam);
            Ok(((cam["width"].as_i64(), cam["height"].as_i64()) == (Some(320), Some(240))).then_some(()))
        }
    })
    .await?;
    // The viewer gets a GOP's worth of the new size too.
    v.wait_frames(v.frames_received() + 25, Duration::from_secs(5)).await?;

    let mut rx = v.frames.take().expect("frames kept");
    let mut units = Vec::new();
    while let Ok(f) = rx.try_recv() {
        units.push(f.data);
    }
    let decoded = decode(&units)?;
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert_eq!(decoded.sizes, vec![(640, 360), (320, 240)]);
    Ok(())
}
