//! Detection that cannot start leaves live view working; a gateway killed mid-clip
//! restarts with a consistent database and serves no half clip.

use std::time::{Duration, Instant};

use mingchu_e2e::procs::tempdir::TempDir;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions, detect_config, repo_root};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

async fn detection_off_but_live_works(detect: &str, needle: &str) -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let (config, port) = Gateway::config(&[("cam1", sim.url("cam1"))], detect);
    let gw = Gateway::start_with(&config, port)?;
    let health = gw.get_json("/api/health").await?;
    assert_eq!(health["detect"]["state"], "off", "{health}");
    let error = health["detect"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "the error `{error}` names `{needle}`");
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(25, Duration::from_secs(5)).await?;
    Ok(())
}

/// Config lines for a copy of the default model's manifest in `dir`, changed by `edit`.
fn custom_model(dir: &TempDir, edit: impl Fn(String) -> String) -> anyhow::Result<String> {
    let default = repo_root().join("models/nanodet-g-416.toml");
    std::fs::write(dir.path().join("m.toml"), edit(std::fs::read_to_string(&default)?))?;
    std::fs::copy(repo_root().join("models/coco80.txt"), dir.path().join("coco80.txt"))?;
    Ok(detect_config().replace(&default.display().to_string(), &dir.path().join("m.toml").display().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_model_file() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-model")?;
    let detect = custom_model(&dir, |m| m.replace("file = \"nanodet-g-416.onnx\"", "file = \"gone.onnx\""))?;
    detection_off_but_live_works(&detect, "gone.onnx").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_model_file() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-model")?;
    // Without the checksum, so ONNX Runtime itself has to reject the file.
    let detect = custom_model(&dir, |m| m.lines().filter(|l| !l.starts_with("sha256")).collect::<Vec<_>>().join("\n"))?;
    std::fs::write(dir.path().join("nanodet-g-416.onnx"), b"this is not an ONNX model")?;
    detection_off_but_live_works(&detect, "nanodet-g-416.onnx").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_input_shape_in_manifest() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-model")?;
    let onnx = repo_root().join("models/nanodet-g-416.onnx");
    let detect = custom_model(&dir, |m| {
        m.replace("input_width = 416", "input_width = 320")
            .replace("file = \"nanodet-g-416.onnx\"", &format!("file = \"{}\"", onnx.display()))
    })?;
    detection_off_but_live_works(&detect, "shape").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_onnx_runtime_library() -> anyhow::Result<()> {
    let detect = detect_config()
        .replace(".tools/onnxruntime/libonnxruntime.so.1.32.0", ".tools/nowhere/libonnxruntime.so.1.32.0");
    detection_off_but_live_works(&detect, "ORT_DYLIB_PATH").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_clip_restarts_consistent() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { scene: Some("default".into()), width: 640, height: 360, ..Default::default() })?;
    let started = Instant::now();
    let rules =
        "[[rules]]\nid = \"person_in_kitchen\"\nkind = \"presence\"\nsubject = \"person\"\nmin_duration_s = 1\n";
    let (config, port) = Gateway::config(&[("cam1", sim.url("cam1"))], &format!("{}{rules}", detect_config()));
    let gw = Gateway::start_with(&config, port)?;
    // The person is in view from 10 s to 25 s; the clip stays open until ~38 s.
    let event = loop {
        let events = gw.get_json("/api/events").await?;
        if let Some(e) = events.as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no event by 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(event["clip_state"], "pending");
    let id = event["id"].as_i64().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Power cut.
    let Gateway { mut proc, dir, .. } = gw;
    proc.kill();
    drop(proc);

    let gw = Gateway::start_in(dir, &config, port)?;
    let e = gw.get_json(&format!("/api/events/{id}")).await?;
    assert_eq!(e["clip_state"], "failed", "an interrupted clip is marked failed: {e}");
    assert_eq!(e["has_snapshot"], true, "the snapshot written before the cut is kept");
    let client = reqwest::Client::new();
    let clip = client.get(format!("{}/api/events/{id}/clip.mp4", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(clip.status(), 404, "no half clip is served");
    let snap = client.get(format!("{}/api/events/{id}/snapshot.jpg", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(snap.status(), 200);
    // The database takes new events after the restart.
    let listed = gw.get_json("/api/events").await?;
    assert!(listed.as_array().is_some_and(|a| a.iter().any(|x| x["id"] == id)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_frees_space_and_live_keeps_running() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { scene: Some("default".into()), width: 640, height: 360, ..Default::default() })?;
    // No disk has a petabyte free: the data disk counts as full all the time.
    let extra = "[events]\npost_roll_s = 1\nmin_free_bytes = 1000000000000000\n\
                 [[rules]]\nid = \"person_in_kitchen\"\nkind = \"presence\"\nsubject = \"person\"\nmin_duration_s = 1\nend_after_s = 1\n";
    let (config, port) = Gateway::config(&[("cam1", sim.url("cam1"))], &format!("{}{extra}", detect_config()));
    let mut gw = Gateway::start_with(&config, port)?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;
    // Jump to just before the person enters (10 s).
    sim.control("cameras/cam1/scene?t=8").await?;
    let started = Instant::now();

    let id = loop {
        let events = gw.get_json("/api/events").await?;
        if let Some(id) = events.as_array().and_then(|a| a.first()).and_then(|e| e["id"].as_i64()) {
            break id;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no event within 30 s of the person entering");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Once its clip is written, retention deletes the oldest event to free space.
    let client = reqwest::Client::new();
    loop {
        let r = client.get(format!("{}/api/events/{id}", gw.base)).bearer_auth(&gw.token).send().await?;
        if r.status() == 404 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the event was never removed to free space");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let snap = client.get(format!("{}/api/events/{id}/snapshot.jpg", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(snap.status(), 404);
    let snapshots = gw.dir.path().join("data/snapshots/cam1");
    let left = std::fs::read_dir(&snapshots).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "snapshot files are deleted with their events");
    assert!(
        gw.proc.drain_lines().iter().any(|l| l.contains("retention removed old events")),
        "the gateway logs what retention did"
    );
    // Live view never noticed.
    let fps = viewer.fps_over(Duration::from_secs(2)).await;
    assert!(fps >= 20.0, "live video kept flowing ({fps} fps)");
    Ok(())
}
