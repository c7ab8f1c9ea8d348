//! Detection that cannot start leaves live view working; a gateway killed mid-clip
//! restarts with a consistent database and serves no half clip.

use std::time::{Duration, Instant};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_model_file() -> anyhow::Result<()> {
    let dir = mingchu_e2e::procs::tempdir::TempDir::new("mingchu-model")?;
    let manifest = std::fs::read_to_string(repo_root().join("models/nanodet-g-416.toml"))?;
    std::fs::write(dir.path().join("m.toml"), manifest.replace("file = \"nanodet-g-416.onnx\"", "file = \"gone.onnx\""))?;
    std::fs::copy(repo_root().join("models/coco80.txt"), dir.path().join("coco80.txt"))?;
    let detect = detect_config().replace(
        &repo_root().join("models/nanodet-g-416.toml").display().to_string(),
        &dir.path().join("m.toml").display().to_string(),
    );
    detection_off_but_live_works(&detect, "gone.onnx").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_model_file() -> anyhow::Result<()> {
    let dir = mingchu_e2e::procs::tempdir::TempDir::new("mingchu-model")?;
    let manifest = std::fs::read_to_string(repo_root().join("models/nanodet-g-416.toml"))?;
    // Without the checksum, so ONNX Runtime itself has to reject the file.
    let manifest: String = manifest.lines().filter(|l| !l.starts_with("sha256")).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.path().join("m.toml"), manifest)?;
    std::fs::copy(repo_root().join("models/coco80.txt"), dir.path().join("coco80.txt"))?;
    std::fs::write(dir.path().join("nanodet-g-416.onnx"), b"this is not an ONNX model")?;
    let detect = detect_config().replace(
        &repo_root().join("models/nanodet-g-416.toml").display().to_string(),
        &dir.path().join("m.toml").display().to_string(),
    );
    detection_off_but_live_works(&detect, "nanodet-g-416.onnx").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_input_shape_in_manifest() -> anyhow::Result<()> {
    let dir = mingchu_e2e::procs::tempdir::TempDir::new("mingchu-model")?;
    let manifest = std::fs::read_to_string(repo_root().join("models/nanodet-g-416.toml"))?;
    let manifest = manifest
        .replace("input_width = 416", "input_width = 320")
        .replace("file = \"nanodet-g-416.onnx\"", &format!("file = \"{}\"", repo_root().join("models/nanodet-g-416.onnx").display()));
    std::fs::write(dir.path().join("m.toml"), manifest)?;
    std::fs::copy(repo_root().join("models/coco80.txt"), dir.path().join("coco80.txt"))?;
    let detect = detect_config().replace(
        &repo_root().join("models/nanodet-g-416.toml").display().to_string(),
        &dir.path().join("m.toml").display().to_string(),
    );
    detection_off_but_live_works(&detect, "shape").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_onnx_runtime_library() -> anyhow::Result<()> {
    let detect = detect_config().replace(".tools/onnxruntime/libonnxruntime.so.1.32.0", ".tools/nowhere/libonnxruntime.so.1.32.0");
    detection_off_but_live_works(&detect, "ORT_DYLIB_PATH").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_clip_restarts_consistent() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { scene: Some("default".into()), width: 640, height: 360, ..Default::default() })?;
    let started = Instant::now();
    let rules = "[[rules]]\nid = \"person_in_kitchen\"\nkind = \"presence\"\nsubject = \"person\"\nmin_duration_s = 1\n";
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
