//! A viewer watches a simulated camera through the gateway over WebRTC.

use std::time::Duration;

use anyhow::Context;
use mingchu_e2e::decode::decode;
use mingchu_e2e::measure::rates;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::stamp::{parse_stamp, unix_micros_now};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

/// Share of the camera's frames a viewer must get (and at most its inverse).
const KEEP_UP: f64 = 0.8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_receives_decodable_h264_at_source_fps() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { fps: 25, gop: 50, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;

    let mut viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;
    // Counted by the camera's stamps, so the cached GOP the viewer started with is not
    // mistaken for a high rate.
    let r = rates(&gw, "cam1", &[&viewer], Duration::from_secs(4)).await?;
    r.check_viewers_keep_up(KEEP_UP)?;

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
    // The status's own rate (last 2 s) agrees with the frames counted over the window.
    let reported = cam["fps"].as_f64().unwrap_or(0.0);
    let measured = r.camera_fps();
    assert!((reported - measured).abs() <= 0.4 * measured, "status says {reported} fps, measured {measured:.1}: {cam}");
    assert_eq!(viewer.close(&gw.token).await?, 200);
    Ok(())
}

fn has_idr(data: &[u8]) -> bool {
    mingchu_e2e::stamp::nal_spans(data).iter().any(|n| n.nal_type(data) == 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_request_is_answered_from_the_gop_cache() -> anyhow::Result<()> {
    // A 10 s GOP: once the last keyframe is over a second old, a keyframe arriving soon
    // after the request, carrying that same keyframe's stamp, can only come from the cache.
    const FPS: u32 = 25;
    const GOP: u32 = 250;
    let gop_us = u64::from(GOP) * 1_000_000 / u64::from(FPS);
    let (min_age_us, max_age_us) = (1_200_000, gop_us / 4);
    let sim = Sim::start(&SimOptions { fps: FPS, gop: GOP, ..Default::default() })?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let mut viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions { keep_frames: true }).await?;
    let mut rx = viewer.frames.take().context("frames kept")?;

    // Wait until the newest keyframe (by the camera's stamp) is old enough that a copy of
    // it is unmistakable, and young enough that the next real one is far off.
    let cached = tokio::time::timeout(Duration::from_micros(2 * gop_us) + Duration::from_secs(5), async {
        let mut newest_idr = None;
        loop {
            let f = rx.recv().await.context("viewer ended")?;
            if has_idr(&f.data) {
                newest_idr = parse_stamp(&f.data);
            }
            if let Some(t) = newest_idr
                && (min_age_us..max_age_us).contains(&unix_micros_now().saturating_sub(t))
            {
                return anyhow::Ok(t);
            }
        }
    })
    .await
    .context("no keyframe between 1.2 s and a quarter GOP old within two GOPs")??;

    let asked = unix_micros_now();
    viewer.request_keyframe();
    // The camera's next keyframe is due a GOP after the cached one; the answer must come
    // well before that could.
    let next_real = cached + gop_us;
    let answer_within = Duration::from_micros((next_real - asked) / 2);
    let answer = tokio::time::timeout(answer_within, async {
        loop {
            let f = rx.recv().await.context("viewer ended")?;
            if has_idr(&f.data) {
                return anyhow::Ok(f);
            }
        }
    })
    .await
    .with_context(|| {
        format!(
            "no keyframe within {answer_within:?} of the PLI (the camera's next is {} ms away)",
            (next_real - asked) / 1000
        )
    })??;
    let stamp = parse_stamp(&answer.data);
    assert_eq!(stamp, Some(cached), "the keyframe answering the PLI is the cached one, stamped {cached}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_over_udp_from_the_camera() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let config = Gateway::config(&[], "[detect]\nenabled = false\n");
    let config = format!(
        "{config}[[cameras]]\nid = \"cam1\"\nname = \"UDP\"\nurl = \"{}\"\ntransport = \"udp\"\n",
        sim.url("cam1")
    );
    let gw = Gateway::start_with(&config)?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;
    rates(&gw, "cam1", &[&viewer], Duration::from_secs(3)).await?.check_viewers_keep_up(KEEP_UP)?;
    Ok(())
}
