//! Many viewers at once, and one that stops reading, do not hurt each other.

use std::time::Duration;

use mingchu_e2e::measure::{direct_rtsp_latencies, percentile, rates, relay_added};
use mingchu_e2e::poll::poll_every;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

/// Share of the camera's frames a healthy viewer must get.
const KEEP_UP: f64 = 0.8;

/// Waits until the gateway reports `n` viewers of `camera`.
async fn wait_viewers(gw: &Gateway, camera: &str, n: u64, timeout: Duration) -> anyhow::Result<()> {
    poll_every(&format!("{n} viewers of {camera}"), timeout, Duration::from_millis(250), |seen| async move {
        let cam = gw.camera(camera).await?;
        seen.show(&cam);
        Ok((cam["viewers"] == n).then_some(()))
    })
    .await
}

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
    let all: Vec<&Viewer> = viewers.iter().collect();
    rates(&gw, "cam1", &all, Duration::from_secs(3)).await?.check_viewers_keep_up(KEEP_UP)?;
    let cam = gw.camera("cam1").await?;
    assert_eq!(cam["viewers"], 20, "{cam}");
    let health = gw.get_json("/api/health").await?;
    assert_eq!(health["viewers"], 20);

    for v in viewers {
        assert_eq!(v.close(&gw.token).await?, 200);
    }
    // Sessions are gone once deleted.
    wait_viewers(&gw, "cam1", 0, Duration::from_secs(5)).await?;
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
    stalled.pause_and_wait().await?;
    let stalled_at = stalled.frames_received();
    // While the stalled viewer's queue fills, a direct RTSP client of the camera sees the
    // same frames as the healthy viewers: the baseline for their latency.
    let window = Duration::from_secs(4);
    let skip = a.stats().stamped.len();
    let url = sim.url("cam1");
    let direct = tokio::task::spawn_blocking(move || direct_rtsp_latencies(&url, window));
    let r = rates(&gw, "cam1", &[&a, &b], window).await?;
    let direct = direct.await??;
    r.check_viewers_keep_up(KEEP_UP)?;
    assert_eq!(stalled.frames_received(), stalled_at, "the paused viewer really stopped reading");

    // The relay adds about as little latency to the healthy viewers as ever: a few frame
    // intervals at most, for nine frames in ten.
    let relayed = a.stats().stamped[skip..].to_vec();
    let added = relay_added(&relayed, &direct);
    assert!(added.len() * 2 >= direct.len(), "{} of {} direct frames matched at the viewer", added.len(), direct.len());
    let frame_us = 1e6 / r.camera_fps();
    let p90 = percentile(&added, 90.0).unwrap_or(f64::INFINITY);
    assert!(
        p90 <= 3.0 * frame_us,
        "the relay added {p90:.0} us (p90) to a healthy viewer beside a stalled one; a frame is {frame_us:.0} us"
    );
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
    wait_viewers(&gw, "cam1", 0, Duration::from_secs(30)).await?;
    Ok(())
}
