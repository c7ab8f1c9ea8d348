//! Many viewers at once, and one that stops reading, do not hurt each other.

use std::time::Duration;

use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_at_once() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { fps: 25, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;

    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?);
    }
    for v in &viewers {
        v.wait_frames(1, Duration::from_secs(10)).await?;
    }
    let before: Vec<u64> = viewers.iter().map(|v| v.frames_received()).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, v) in viewers.iter().enumerate() {
        let fps = (v.frames_received() - before[i]) as f64 / 3.0;
        assert!(fps >= 20.0, "viewer {i} got {fps} fps with 20 viewers");
    }
    let cam = gw.camera("cam1").await?;
    assert_eq!(cam["viewers"], 20, "{cam}");
    let health = gw.get_json("/api/health").await?;
    assert_eq!(health["viewers"], 20);

    for v in viewers {
        assert_eq!(v.close(&gw.token).await?, 200);
    }
    // Sessions are gone once deleted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw.camera("cam1").await?["viewers"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "viewers not released after DELETE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_does_not_slow_the_others() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { fps: 25, bitrate_kbps: 2000, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;

    let stalled = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    let a = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    let b = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    for v in [&stalled, &a, &b] {
        v.wait_frames(1, Duration::from_secs(10)).await?;
    }
    stalled.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled_at = stalled.frames_received();
    let (a0, b0) = (a.frames_received(), b.frames_received());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fa = (a.frames_received() - a0) as f64 / 4.0;
    let fb = (b.frames_received() - b0) as f64 / 4.0;
    assert!(fa >= 22.0 && fb >= 22.0, "healthy viewers got {fa} and {fb} fps beside a stalled one");
    assert_eq!(stalled.frames_received(), stalled_at, "the paused viewer really stopped reading");
    // Latency of the healthy viewers stays low while the other one is stuck.
    let lat = a.stats().latencies_us;
    let recent = &lat[lat.len().saturating_sub(50)..];
    let worst = recent.iter().copied().max().unwrap_or(0);
    assert!(worst < 200_000, "healthy viewer saw {worst} us relay latency");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_vanishes_is_reaped() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(1, Duration::from_secs(5)).await?;
    assert_eq!(gw.camera("cam1").await?["viewers"], 1);
    // The phone goes away without a DELETE: no more packets of any kind.
    v.pause();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while gw.camera("cam1").await?["viewers"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "a vanished viewer was never reaped");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}
