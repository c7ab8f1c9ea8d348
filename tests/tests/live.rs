//! A viewer watches a simulated camera through the gateway over WebRTC.

use std::time::Duration;

use mingchu_e2e::decode::decode;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_receives_decodable_h264_at_source_fps() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { fps: 25, gop: 50, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;

    let mut viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;
    // Measure the rate over 4 s once the cached GOP burst is through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fps = viewer.fps_over(Duration::from_secs(4)).await;
    assert!((22.0..=28.0).contains(&fps), "viewer got {fps} fps from a 25 fps camera");

    let mut rx = viewer.frames.take().expect("frames kept");
    let mut units = Vec::new();
    while let Ok(f) = rx.try_recv() {
        units.push(f.data);
    }
    let decoded = decode(&units)?;
    assert!(decoded.errors.is_empty(), "decoder errors: {:?}", decoded.errors);
    assert!(
        decoded.pictures as usize >= units.len() * 9 / 10,
        "{} pictures from {} units",
        decoded.pictures,
        units.len()
    );
    assert_eq!(decoded.sizes.first(), Some(&(640, 360)));

    let cam = gw.camera("cam1").await?;
    assert_eq!(cam["viewers"], 1);
    assert!(cam["fps"].as_f64().unwrap_or(0.0) > 20.0, "{cam}");
    assert_eq!(viewer.close(&gw.token).await?, 200);
    Ok(())
}

fn has_idr(data: &[u8]) -> bool {
    mingchu_e2e::stamp::nal_spans(data).iter().any(|n| n.nal_type(data) == 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_request_is_answered_from_the_gop_cache() -> anyhow::Result<()> {
    // A 10 s GOP: a keyframe soon after the request can only come from the cache.
    let sim = Sim::start(&SimOptions { fps: 25, gop: 250, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let mut viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    let mut rx = viewer.frames.take().expect("frames kept");
    // Wait until the cached keyframe is over a second old.
    let mut last_idr = None;
    while last_idr.is_none_or(|t: std::time::Instant| t.elapsed() < Duration::from_millis(1200)) {
        let f = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.expect("frames");
        if has_idr(&f.data) && f.latency_us.unwrap_or(0) < 300_000 {
            last_idr = Some(f.at);
        }
    }
    let asked = std::time::Instant::now();
    viewer.request_keyframe();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await?.expect("frames");
        if has_idr(&f.data) {
            assert!(asked.elapsed() < Duration::from_millis(500), "keyframe came {:?} after the PLI", asked.elapsed());
            let age = f.latency_us.unwrap_or(0);
            assert!(age > 1_000_000, "the keyframe is the cached one (taken {age} us ago), not a new one");
            break;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_over_udp_from_the_camera() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let (config, port) = Gateway::config(&[], "[detect]\nenabled = false\n");
    let config = format!(
        "{config}[[cameras]]\nid = \"cam1\"\nname = \"UDP\"\nurl = \"{}\"\ntransport = \"udp\"\n",
        sim.url("cam1")
    );
    let gw = Gateway::start_with(&config, port)?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;
    let fps = viewer.fps_over(Duration::from_secs(2)).await;
    assert!(fps >= 20.0, "viewer got {fps} fps from a camera pulled over UDP");
    Ok(())
}
