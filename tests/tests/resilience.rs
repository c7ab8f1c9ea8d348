//! Cameras that die, stall, send garbage or change resolution: the gateway recovers by
//! itself and one camera's trouble never touches another.

use std::time::{Duration, Instant};

use mingchu_e2e::decode::decode;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

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
    let cam1 = gw.wait_state("cam1", "offline", Duration::from_secs(4)).await?;
    assert!(cam1["last_error"].is_string(), "{cam1}");
    // Camera 2's viewer keeps full rate while camera 1 is down and retried.
    let fps2 = v2.fps_over(Duration::from_secs(3)).await;
    assert!(fps2 >= 22.0, "cam2 viewer dropped to {fps2} fps while cam1 was down");
    assert_eq!(gw.camera("cam2").await?["state"], "online");

    // Camera 1 returns on the same address; the open viewer gets video again by itself.
    let frames_before = v1.frames_received();
    let sim1b = Sim::start(&SimOptions { rtsp_port: sim1.rtsp_port, ..opts1 })?;
    let returned = Instant::now();
    while v1.frames_received() <= frames_before + 5 {
        assert!(returned.elapsed() < Duration::from_secs(3), "no video on cam1 within 3 s of its return");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cam1 = gw.camera("cam1").await?;
    assert_eq!(cam1["state"], "online");
    assert!(cam1["reconnects"].as_u64().unwrap_or(0) >= 1, "{cam1}");
    drop(sim1b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_down_at_start_is_retried() -> anyhow::Result<()> {
    let port = mingchu_e2e::procs::free_tcp_port();
    let gw = Gateway::start(&[("cam1", format!("rtsp://127.0.0.1:{port}/cam1"))])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cam = gw.camera("cam1").await?;
    assert_eq!(cam["state"], "offline");
    assert!(cam["reconnects"].as_u64().unwrap_or(0) >= 2, "retries while down: {cam}");
    let _sim = Sim::start(&SimOptions { rtsp_port: port, ..Default::default() })?;
    gw.wait_state("cam1", "online", Duration::from_secs(8)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_is_detected_and_recovered() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(1, Duration::from_secs(5)).await?;

    sim.control("cameras/cam1/faults/stall?secs=4").await?;
    let stalled_at = Instant::now();
    let cam = gw.wait_state("cam1", "offline", Duration::from_secs(4)).await?;
    let detected = stalled_at.elapsed();
    assert!(detected >= Duration::from_millis(1500), "stall reported after only {detected:?}");
    assert!(cam["last_error"].as_str().unwrap_or_default().contains("stall"), "{cam}");

    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let fps = v.fps_over(Duration::from_secs(2)).await;
    assert!(fps >= 20.0, "viewer got {fps} fps after the stall");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_nal_units_are_survived() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(1, Duration::from_secs(5)).await?;

    sim.control("cameras/cam1/faults/corrupt?secs=3").await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut gw = gw;
    assert!(gw.proc.is_running(), "gateway still running");
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let fps = v.fps_over(Duration::from_secs(2)).await;
    assert!(fps >= 20.0, "viewer got {fps} fps after the garbage");

    // A viewer joining now gets a clean, decodable picture.
    let mut fresh = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    fresh.wait_frames(50, Duration::from_secs(5)).await?;
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cam = gw.camera("cam1").await?;
    assert_eq!((cam["width"].as_i64(), cam["height"].as_i64()), (Some(320), Some(240)), "{cam}");

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
