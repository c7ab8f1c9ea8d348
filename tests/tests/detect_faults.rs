//! Detection that cannot start leaves live view working; a gateway killed mid-clip
//! restarts with a consistent database and serves no half clip.

use std::time::Duration;

use mingchu_e2e::measure::rates;
use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::tempdir::TempDir;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions, detect_config, repo_root};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

/// Waits until the gateway's detector has analysed a picture.
async fn wait_detecting(gw: &Gateway) -> anyhow::Result<()> {
    poll("the detector to analyse pictures", Duration::from_secs(20), |seen| async move {
        let n = gw.metric("mingchu_detect_frames_total").await?;
        seen.show(&n);
        Ok((n > 0.0).then_some(()))
    })
    .await
}

/// Waits for an event other than those in `old`; returns it.
async fn wait_new_event(gw: &Gateway, old: &[i64], timeout: Duration) -> anyhow::Result<serde_json::Value> {
    poll(&format!("an event other than {old:?}"), timeout, |seen| async move {
        let events = gw.get_json("/api/events").await?;
        seen.show(&events);
        let list = events.as_array().cloned().unwrap_or_default();
        Ok(list.into_iter().find(|e| e["id"].as_i64().is_some_and(|id| !old.contains(&id))))
    })
    .await
}

/// Waits until event `id` has its snapshot; returns the event.
async fn wait_snapshot(gw: &Gateway, id: i64) -> anyhow::Result<serde_json::Value> {
    poll(&format!("the snapshot of event {id}"), Duration::from_secs(10), |seen| async move {
        let e = gw.get_json(&format!("/api/events/{id}")).await?;
        seen.show(&e);
        Ok((e["has_snapshot"] == true).then_some(e))
    })
    .await
}

/// Starts camera-sim playing the default scene, parked in its long empty stretch
/// (40 s to 70 s, looping) until the test moves it.
async fn parked_scene() -> anyhow::Result<Sim> {
    let sim = Sim::start(&SimOptions { scene: Some("default".into()), width: 640, height: 360, ..Default::default() })?;
    sim.control("cameras/cam1/scene?t=45").await?;
    Ok(sim)
}

async fn detection_off_but_live_works(detect: &str, needle: &str) -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start_with(&Gateway::config(&[("cam1", sim.url("cam1"))], detect))?;
    let health = gw.get_json("/api/health").await?;
    assert_eq!(health["detect"]["state"], "off", "{health}");
    let error = health["detect"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "the error `{error}` names `{needle}`");
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    v.wait_frames(25, Duration::from_secs(10)).await?;
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
    let sim = parked_scene().await?;
    // No cooldown: the event after the restart must not depend on what the gateway
    // remembers of the one before.
    let rules = "[[rules]]\nid = \"person_in_kitchen\"\nkind = \"presence\"\nsubject = \"person\"\n\
                 min_duration_s = 1\ncooldown_s = 0\n";
    let config = Gateway::config(&[("cam1", sim.url("cam1"))], &format!("{}{rules}", detect_config()));
    let gw = Gateway::start_with(&config)?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    wait_detecting(&gw).await?;
    // The person enters at 10 s and stays until 25 s; the clip stays open until ~38 s.
    sim.control("cameras/cam1/scene?t=8").await?;
    let event = wait_new_event(&gw, &[], Duration::from_secs(20)).await?;
    let id = event["id"].as_i64().unwrap_or(0);
    // The snapshot is written after the event is stored: wait for it, then cut the power
    // while the clip is still being collected.
    let event = wait_snapshot(&gw, id).await?;
    assert_eq!(event["clip_state"], "pending", "the kill comes during the clip: {event}");

    // Power cut.
    let Gateway { mut proc, dir, .. } = gw;
    proc.kill();
    drop(proc);

    let gw = Gateway::start_in(dir, &config)?;
    let e = gw.get_json(&format!("/api/events/{id}")).await?;
    assert_eq!(e["clip_state"], "failed", "an interrupted clip is marked failed: {e}");
    assert_eq!(e["has_snapshot"], true, "the snapshot written before the cut is kept: {e}");
    let client = reqwest::Client::new();
    let clip = client.get(format!("{}/api/events/{id}/clip.mp4", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(clip.status(), 404, "no half clip is served");
    let snap = client.get(format!("{}/api/events/{id}/snapshot.jpg", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(snap.status(), 200);

    // The database takes new events after the restart: show the person again.
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    wait_detecting(&gw).await?;
    sim.control("cameras/cam1/scene?t=8").await?;
    let fresh = wait_new_event(&gw, &[id], Duration::from_secs(20)).await?;
    assert_eq!(fresh["rule"], "person_in_kitchen", "{fresh}");
    let fresh_id = fresh["id"].as_i64().unwrap_or(0);
    assert!(fresh_id > id, "the new event has a new id: {fresh}");
    wait_snapshot(&gw, fresh_id).await?;
    let old = gw.get_json(&format!("/api/events/{id}")).await?;
    assert_eq!(old["clip_state"], "failed", "the old event is unchanged: {old}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_frees_space_and_live_keeps_running() -> anyhow::Result<()> {
    let sim = parked_scene().await?;
    // No disk has a petabyte free: the data disk counts as full all the time.
    let extra = "[events]\npost_roll_s = 1\nmin_free_bytes = 1000000000000000\n\
                 [[rules]]\nid = \"person_in_kitchen\"\nkind = \"presence\"\nsubject = \"person\"\nmin_duration_s = 1\nend_after_s = 1\n";
    let gw =
        Gateway::start_with(&Gateway::config(&[("cam1", sim.url("cam1"))], &format!("{}{extra}", detect_config())))?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;
    wait_detecting(&gw).await?;
    let removed_before = gw.metric("mingchu_retention_removed_total").await?;
    // Jump to just before the person enters (10 s).
    sim.control("cameras/cam1/scene?t=8").await?;

    let event = wait_new_event(&gw, &[], Duration::from_secs(20)).await?;
    let id = event["id"].as_i64().unwrap_or(0);
    // Once its clip is written, retention deletes the oldest event to free space.
    let client = reqwest::Client::new();
    poll(&format!("event {id} removed to free space"), Duration::from_secs(60), |seen| {
        let (client, gw) = (&client, &gw);
        async move {
            let r = client.get(format!("{}/api/events/{id}", gw.base)).bearer_auth(&gw.token).send().await?;
            seen.show(&r.status());
            Ok((r.status() == 404).then_some(()))
        }
    })
    .await?;
    let snap = client.get(format!("{}/api/events/{id}/snapshot.jpg", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(snap.status(), 404);
    let snapshots = gw.dir.path().join("data/snapshots/cam1");
    let left = std::fs::read_dir(&snapshots).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "snapshot files are deleted with their events");
    let removed = gw.metric("mingchu_retention_removed_total").await? - removed_before;
    assert!(removed >= 1.0, "retention counts the events it removed ({removed})");
    // Live view never noticed.
    rates(&gw, "cam1", &[&viewer], Duration::from_secs(2)).await?.check_viewers_keep_up(0.8)?;
    Ok(())
}
