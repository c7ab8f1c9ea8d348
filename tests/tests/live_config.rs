//! Live configuration: cameras, sites and rules changed through the API take effect
//! within seconds, without a restart, without touching other cameras' viewers, and
//! survive a restart; entries from the config file stay read-only.

use std::time::{Duration, Instant};

use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions, tempdir::TempDir};
use mingchu_e2e::whep::{Viewer, ViewerOptions};
use serde_json::{Value, json};

async fn send(gw: &Gateway, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", gw.base)).bearer_auth(&gw.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// The longest gap between two frames the viewer received during `window`.
async fn longest_gap(viewer: &Viewer, window: Duration) -> Duration {
    let end = Instant::now() + window;
    let mut last = viewer.stats().last_frame_at.unwrap_or_else(Instant::now);
    let mut worst = Duration::ZERO;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now_last = viewer.stats().last_frame_at.unwrap_or(last);
        if now_last > last {
            last = now_last;
        }
        worst = worst.max(Instant::now().saturating_duration_since(last));
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_added_changed_and_removed_live_leaves_the_others_alone_and_survives_a_restart() -> anyhow::Result<()>
{
    let sim = Sim::start(&SimOptions { cameras: 2, ..Default::default() })?;
    let config = Gateway::config(&[("cam1", sim.url("cam1"))], "[detect]\nenabled = false\n");
    let dir = TempDir::new("mingchu-live-config")?;
    let dir_path = dir.path().to_owned();
    let gw = Gateway::start_in(dir, &config)?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(10, Duration::from_secs(5)).await?;
    // The same viewer's own frame spacing before any change is the yardstick.
    let before = longest_gap(&viewer, Duration::from_secs(1)).await;

    // The connection test shows the picture, codec and size before anything is saved.
    let (code, probe) =
        send(&gw, reqwest::Method::POST, "/api/cameras/probe", Some(json!({"url": sim.url("cam2")}))).await?;
    assert_eq!(code, 200, "{probe}");
    assert_eq!(
        (probe["codec"].as_str(), probe["width"].as_u64(), probe["height"].as_u64()),
        (Some("H.264"), Some(640), Some(360))
    );
    assert!(probe["snapshot"].as_str().unwrap_or_default().starts_with("data:image/jpeg;base64,/9j/"), "a JPEG");
    let wrong = sim.url("cam2").replace("cam2", "no-such-path");
    let (code, err) = send(&gw, reqwest::Method::POST, "/api/cameras/probe", Some(json!({"url": wrong}))).await?;
    assert_eq!(code, 422, "{err}");
    assert!(err["error"].as_str().unwrap_or_default().contains("404"), "says why: {err}");

    // Added: online within 5 s, while cam1's viewer sees no interruption.
    let added_at = Instant::now();
    let new = json!({"id": "cam2", "name": "备餐间", "site": "default", "url": sim.url("cam2")});
    let during = {
        let gap = longest_gap(&viewer, Duration::from_secs(3));
        let add = async {
            let r = send(&gw, reqwest::Method::POST, "/api/cameras", Some(new.clone())).await;
            let online = gw.wait_state("cam2", "online", Duration::from_secs(5)).await;
            (r, online)
        };
        let (gap, (r, online)) = tokio::join!(gap, add);
        let (code, body) = r?;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["provisioned"], false);
        online?;
        gap
    };
    assert!(added_at.elapsed() < Duration::from_secs(8));
    assert!(
        during <= before + Duration::from_millis(300),
        "cam1's viewer stalled {during:?} while a camera was added (its own spacing before: {before:?})"
    );
    let (code, dup) = send(&gw, reqwest::Method::POST, "/api/cameras", Some(new.clone())).await?;
    assert_eq!(code, 409, "an id in use: {dup}");
    let (code, bad) = send(
        &gw,
        reqwest::Method::POST,
        "/api/cameras",
        Some(json!({"id": "cam3", "name": "x", "site": "default", "url": "http://example/x"})),
    )
    .await?;
    assert_eq!(code, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap_or_default().contains("`url`"), "names the field: {bad}");

    // A new name keeps the connection; a provisioned camera cannot be changed here.
    let (code, renamed) =
        send(&gw, reqwest::Method::PATCH, "/api/cameras/cam2", Some(json!({"name": "备餐间（新）"}))).await?;
    assert_eq!(code, 200, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["state"].as_str(), renamed["reconnects"].as_u64()),
        (Some("备餐间（新）"), Some("online"), Some(0))
    );
    let (code, refused) = send(&gw, reqwest::Method::PATCH, "/api/cameras/cam1", Some(json!({"name": "x"}))).await?;
    assert_eq!(code, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap_or_default().contains("config file"), "{refused}");

    // Disabled: offline at once; enabled again: back.
    let (code, _) = send(&gw, reqwest::Method::PATCH, "/api/cameras/cam2", Some(json!({"enabled": false}))).await?;
    assert_eq!(code, 200);
    gw.wait_state("cam2", "offline", Duration::from_secs(5)).await?;
    let (code, _) = send(&gw, reqwest::Method::PATCH, "/api/cameras/cam2", Some(json!({"enabled": true}))).await?;
    assert_eq!(code, 200);
    gw.wait_state("cam2", "online", Duration::from_secs(5)).await?;

    // A saved camera survives a restart; the viewer of cam1 was never interrupted.
    assert!(!viewer.stats().ended, "cam1's viewer is still connected");
    let mut gw = gw;
    gw.proc.kill();
    let dir = TempDir::adopt(dir_path);
    let gw2 = Gateway::start_in(dir, &config)?;
    let cam = gw2.wait_state("cam2", "online", Duration::from_secs(10)).await?;
    assert_eq!(cam["name"], "备餐间（新）");

    // Removed: gone from the list, and its viewer ends.
    let v2 = Viewer::connect(&gw2.base, &gw2.token, "cam2", ViewerOptions::default()).await?;
    v2.wait_frames(5, Duration::from_secs(5)).await?;
    let (code, _) = send(&gw2, reqwest::Method::DELETE, "/api/cameras/cam2", None).await?;
    assert_eq!(code, 204);
    let gw2 = &gw2;
    poll("the removed camera's viewer ended", Duration::from_secs(5), |seen| async move {
        let h = gw2.get_json("/api/health").await?;
        seen.show(&h);
        Ok((h["viewers"] == 0).then_some(()))
    })
    .await?;
    drop(v2);
    let cams = gw2.get_json("/api/cameras").await?;
    assert_eq!(cams.as_array().map(Vec::len), Some(1), "{cams}");
    let audit = gw2.get_json("/api/audit?action=camera_removed").await?;
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "the trail has it: {audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_and_rules_saved_here_are_checked_and_kept_and_file_rules_stay_read_only() -> anyhow::Result<()> {
    let config = Gateway::config(&[], "");
    let dir = TempDir::new("mingchu-live-rules")?;
    let dir_path = dir.path().to_owned();
    let gw = Gateway::start_in(dir, &config)?;
    let site = json!({"id": "east", "name": "东区食堂", "kind": "school", "district": "东城区"});
    let (code, body) = send(&gw, reqwest::Method::POST, "/api/sites", Some(site)).await?;
    assert_eq!(code, 201, "{body}");
    let (code, body) =
        send(&gw, reqwest::Method::PATCH, "/api/sites/east", Some(json!({"timezone": "Mars/Olympus"}))).await?;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("timezone"), "{body}");
    let (code, _) = send(&gw, reqwest::Method::PATCH, "/api/sites/default", Some(json!({"name": "x"}))).await?;
    assert_eq!(code, 409, "the built-in site comes with the config");

    let rules = gw.get_json("/api/rules").await?;
    let first = rules["rules"][0].clone();
    assert_eq!(first["source"], "builtin", "{rules}");
    let id = first["id"].as_str().unwrap_or_default().to_owned();
    // A zone: the left half of the picture.
    let mut rule = first.clone();
    let obj = rule.as_object_mut().expect("object");
    obj.remove("source");
    obj.remove("inactive");
    obj.insert("zones".into(), json!([[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]));
    let (code, saved) = send(&gw, reqwest::Method::PUT, &format!("/api/rules/{id}"), Some(rule.clone())).await?;
    assert_eq!(code, 200, "{saved}");
    assert_eq!((saved["source"].as_str(), saved["zones"][0].as_array().map(Vec::len)), (Some("saved"), Some(4)));
    obj_set(&mut rule, "zones", json!([[[0.0, 0.0], [0.5, 0.0]]]));
    let (code, bad) = send(&gw, reqwest::Method::PUT, &format!("/api/rules/{id}"), Some(rule)).await?;
    assert_eq!(code, 400, "a zone needs three points: {bad}");
    let (code, _) = send(&gw, reqwest::Method::DELETE, "/api/rules/no_such_rule", None).await?;
    assert_eq!(code, 404);

    let mut gw = gw;
    gw.proc.kill();
    let gw2 = Gateway::start_in(TempDir::adopt(dir_path.clone()), &config)?;
    let rules = gw2.get_json("/api/rules").await?;
    let kept = rules["rules"].as_array().and_then(|r| r.iter().find(|r| r["id"] == id.as_str())).cloned();
    assert_eq!(kept.as_ref().map(|r| r["source"].clone()), Some(json!("saved")), "{rules}");
    let sites = gw2.get_json("/api/sites").await?;
    assert!(
        sites.as_array().is_some_and(|s| s.iter().any(|s| s["id"] == "east" && s["provisioned"] == false)),
        "{sites}"
    );
    let mut gw2 = gw2;
    gw2.proc.kill();

    // With `[[rules]]` in the file, those are read-only.
    let with_rules = format!(
        "{config}\n[[rules]]\nid = \"phone_use\"\nkind = \"proximity\"\nsubject = \"person\"\nobject = \"phone\"\n"
    );
    let gw3 = Gateway::start_in(TempDir::adopt(dir_path), &with_rules)?;
    let rules = gw3.get_json("/api/rules").await?;
    let file_rule = rules["rules"].as_array().and_then(|r| r.iter().find(|r| r["id"] == "phone_use")).cloned();
    assert_eq!(file_rule.as_ref().map(|r| r["source"].clone()), Some(json!("file")), "{rules}");
    let (code, body) = send(&gw3, reqwest::Method::DELETE, "/api/rules/phone_use", None).await?;
    assert_eq!(code, 409, "{body}");
    Ok(())
}

fn obj_set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), value);
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Events of `rule` on cam1 that started at or after `since_ms`.
async fn events_of(gw: &Gateway, rule: &str, since_ms: i64) -> anyhow::Result<Vec<Value>> {
    let v = gw.get_json(&format!("/api/events?camera=cam1&kind={rule}&from={since_ms}")).await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_limited_to_a_zone_live_ignores_what_happens_outside_it() -> anyhow::Result<()> {
    // Scene: 0-10 s empty, 10-25 s person with phone, 25-40 s cat in the middle of the
    // picture, 40-60 s empty. Parked in the empty stretch while the model loads.
    let sim = Sim::start(&SimOptions { scene: Some("default".into()), ..Default::default() })?;
    sim.control("cameras/cam1/scene?t=45").await?;
    let gw = Gateway::start_with(&Gateway::config(&[("cam1", sim.url("cam1"))], &mingchu_e2e::procs::detect_config()))?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let rules = gw.get_json("/api/rules").await?;
    let mut animal = rules["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "animal_in_kitchen"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no built-in animal rule: {rules}"))?;
    if let Some(o) = animal.as_object_mut() {
        o.remove("source");
        o.remove("inactive");
    }
    // Only the top-left corner, where the scene never puts anything.
    obj_set(&mut animal, "zones", json!([[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1], [0.0, 0.1]]]));
    let (code, body) = send(&gw, reqwest::Method::PUT, "/api/rules/animal_in_kitchen", Some(animal.clone())).await?;
    assert_eq!(code, 200, "{body}");

    let seek = sim.control("cameras/cam1/scene?t=8").await?;
    let t0 = unix_ms() - (seek["scene"]["time_s"].as_f64().unwrap_or(f64::NAN) * 1000.0) as i64;
    let started = unix_ms();
    // The phone is seen (detection works), then the cat comes and goes: scene time 44 s.
    let gw_ref = &gw;
    poll("the phone event and the scene past the cat", Duration::from_secs(70), |seen| async move {
        let phones = events_of(gw_ref, "phone_use", started).await?;
        let scene_s = (unix_ms() - t0) as f64 / 1000.0;
        seen.show(&format!("scene at {scene_s:.0} s, {} phone events", phones.len()));
        Ok((!phones.is_empty() && scene_s >= 44.0).then_some(()))
    })
    .await?;
    let outside = events_of(&gw, "animal_in_kitchen", started).await?;
    assert!(outside.is_empty(), "the cat was outside the rule's zone: {outside:?}");

    // The whole picture again: the same cat is now a violation.
    obj_set(&mut animal, "zones", Value::Null);
    let (code, body) = send(&gw, reqwest::Method::PUT, "/api/rules/animal_in_kitchen", Some(animal)).await?;
    assert_eq!(code, 200, "{body}");
    let again = unix_ms();
    sim.control("cameras/cam1/scene?t=23").await?;
    poll("the cat seen once the zone is gone", Duration::from_secs(30), |seen| async move {
        let cats = events_of(gw_ref, "animal_in_kitchen", again).await?;
        seen.show(&cats.len());
        Ok((!cats.is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}
