//! A scripted kitchen scene → the gateway with the default model → the expected events,
//! with a snapshot showing the box and a clip that plays.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mingchu_e2e::decode::{decode, read_mp4};
use mingchu_e2e::poll::{poll, poll_every};
use mingchu_e2e::procs::{Gateway, Sim, SimOptions, detect_config, metric_value};

const RULES: &str = r#"
[events]
pre_roll_s = 5
post_roll_s = 3

[[rules]]
id = "person_in_kitchen"
kind = "presence"
subject = "person"
min_duration_s = 2
end_after_s = 3
cooldown_s = 300

[[rules]]
id = "animal_in_kitchen"
kind = "presence"
subject = "animal"
min_duration_s = 2
end_after_s = 3
cooldown_s = 300
severity = "critical"

[[rules]]
id = "phone_use"
kind = "proximity"
subject = "person"
object = "phone"
min_duration_s = 2
end_after_s = 3
cooldown_s = 300
"#;

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scene_produces_the_expected_events_with_snapshot_and_clip() -> anyhow::Result<()> {
    // Scene: 0-10 s empty, 10-25 s person with phone, 25-40 s cat on the counter, 40-60 s empty.
    let sim = Sim::start(&SimOptions { scene: Some("default".into()), width: 640, height: 360, ..Default::default() })?;
    // Park the scene in its long empty stretch (40 s to 70 s, looping) while the gateway
    // loads the model, so nothing is seen before the test starts the clock.
    sim.control("cameras/cam1/scene?t=45").await?;
    let gw =
        Gateway::start_with(&Gateway::config(&[("cam1", sim.url("cam1"))], &format!("{}{RULES}", detect_config())))?;
    let health = gw.get_json("/api/health").await?;
    assert_eq!(health["detect"]["state"], "on", "{health}");
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    poll("the detector to analyse pictures", Duration::from_secs(20), |seen| {
        let gw = &gw;
        async move {
            let n = gw.metric("mingchu_detect_frames_total").await?;
            seen.show(&n);
            Ok((n > 0.0).then_some(()))
        }
    })
    .await?;

    // Listen to the live feed from the start.
    let mut sse =
        reqwest::Client::new().get(format!("{}/api/events/stream", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(sse.status(), 200);

    // Start the clock: the scene at 5 s, and scene time 0 on the wall clock derived from
    // the position the simulator reports, so every expected time below is the scene's own.
    let seek = sim.control("cameras/cam1/scene?t=5").await?;
    let t0 = unix_ms() - (seek["scene"]["time_s"].as_f64().unwrap_or(f64::NAN) * 1000.0) as i64;
    let seeked = Instant::now();

    // Wait for the cat's clip: the cat leaves at 40 s, +3 s to end, +3 s post-roll.
    let animal = poll_every("a finished animal event", Duration::from_secs(75), Duration::from_millis(500), |seen| {
        let gw = &gw;
        async move {
            let events = gw.get_json("/api/events?kind=animal_in_kitchen").await?;
            seen.show(&events);
            Ok(events.as_array().and_then(|a| a.first()).filter(|e| e["clip_state"] != "pending").cloned())
        }
    })
    .await?;
    let events = gw.get_json("/api/events").await?;
    let list = events.as_array().cloned().unwrap_or_default();
    let rel = |e: &serde_json::Value, k: &str| (e[k].as_i64().unwrap_or(0) - t0) as f64 / 1000.0;

    let person: Vec<_> = list.iter().filter(|e| e["rule"] == "person_in_kitchen").collect();
    assert_eq!(person.len(), 1, "one person event: {events}");
    let (ps, pe) = (rel(person[0], "start_ms"), rel(person[0], "end_ms"));
    assert!((8.5..=13.0).contains(&ps), "person event starts at {ps} s (person enters at 10 s)");
    assert!((23.5..=29.5).contains(&pe), "person event ends at {pe} s (person leaves at 25 s)");

    let (cs, ce) = (rel(&animal, "start_ms"), rel(&animal, "end_ms"));
    assert!((23.5..=28.0).contains(&cs), "animal event starts at {cs} s (cat enters at 25 s)");
    assert!((38.5..=44.5).contains(&ce), "animal event ends at {ce} s (cat leaves at 40 s)");
    assert_eq!(animal["severity"], "critical");
    assert_eq!(animal["camera"], "cam1");

    for e in &list {
        let s = rel(e, "start_ms");
        assert!(s > 8.5 && s < 40.0, "event in an empty part of the scene at {s} s: {e}");
        if e["rule"] == "phone_use" {
            assert!((8.5..=25.0).contains(&s), "phone use outside the person's time: {e}");
        }
    }

    // The snapshot is a JPEG of the camera picture with a red box drawn.
    let id = animal["id"].as_i64().unwrap_or(0);
    let client = reqwest::Client::new();
    let resp = client.get(format!("{}/api/events/{id}/snapshot.jpg", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let jpeg = resp.bytes().await?;
    let img = image::load_from_memory(&jpeg)?.to_rgb8();
    assert_eq!(img.dimensions(), (640, 360));
    let red = img.pixels().filter(|p| p[0] > 180 && p[1] < 90 && p[2] < 90).count();
    assert!(red > 300, "the snapshot has the box drawn ({red} red pixels)");

    // The clip: H.264 from a keyframe, pre-roll + event + post-roll long, and it decodes.
    let resp = client.get(format!("{}/api/events/{id}/clip.mp4", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(resp.status(), 200);
    let mp4 = resp.bytes().await?;
    let path = gw.dir.path().join("clip.mp4");
    std::fs::write(&path, &mp4)?;
    let info = read_mp4(&path)?;
    assert_eq!(info.codec, "video/x-h264");
    assert!(info.keyframe_first, "clip starts on a keyframe");
    let want = 5.0 + (ce - cs) + 3.0;
    assert!((info.duration_s - want).abs() <= 3.0, "clip lasts {} s, expected about {want} s", info.duration_s);
    let decoded = decode(&info.units)?;
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert!(decoded.pictures as usize + 2 >= info.units.len(), "{} of {} pictures", decoded.pictures, info.units.len());

    // Phones seek with HTTP Range.
    let resp = client
        .get(format!("{}/api/events/{id}/clip.mp4", gw.base))
        .bearer_auth(&gw.token)
        .header("Range", "bytes=100-199")
        .send()
        .await?;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await?.as_ref(), &mp4[100..200]);

    // Review: confirm with a note.
    let resp = client
        .patch(format!("{}/api/events/{id}", gw.base))
        .bearer_auth(&gw.token)
        .json(&serde_json::json!({"status": "confirmed", "note": "猫在操作台上"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let e = gw.get_json(&format!("/api/events/{id}")).await?;
    assert_eq!((e["status"].as_str(), e["note"].as_str()), (Some("confirmed"), Some("猫在操作台上")));
    let bad = client
        .patch(format!("{}/api/events/{id}", gw.base))
        .bearer_auth(&gw.token)
        .json(&serde_json::json!({"status": "maybe"}))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let confirmed = gw.get_json("/api/events?status=confirmed").await?;
    assert_eq!(confirmed.as_array().map(Vec::len), Some(1));

    // The live feed announced the events (they are long past: what it sent is buffered).
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !text.contains("animal_in_kitchen") {
            let Some(chunk) = sse.chunk().await? else { break };
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        anyhow::Ok(())
    })
    .await;
    assert!(matches!(read, Ok(Ok(()))), "the event feed failed or went quiet: {read:?}; got {text}");
    assert!(text.contains("event: event") && text.contains("animal_in_kitchen"), "{text}");

    let metrics = gw.metrics().await?;
    // The detector saw the scene at (nearly) 2 pictures a second since the clock started;
    // a quarter of that is a generous floor that still catches a detector that stopped.
    let analysed = metric_value(&metrics, "mingchu_detect_frames_total").unwrap_or(0.0);
    let floor = 0.25 * 2.0 * seeked.elapsed().as_secs_f64();
    assert!(analysed >= floor, "{analysed} pictures analysed in {:?} at 2 fps", seeked.elapsed());
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{camera=\"cam1\"}}")))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
    };
    // One camera at 2 fps keeps up: sampled every 0.5 s (a late picture may stretch that
    // for a moment), and the tail of each GOP after its last sample is never decoded.
    let interval = value("mingchu_detect_sample_interval_seconds");
    assert!(interval.is_some_and(|i| (0.5..1.0).contains(&i)), "interval {interval:?}");
    let (decoded, received) = (value("mingchu_detect_decoded_total"), value("mingchu_frames_in_total"));
    let (Some(decoded), Some(received)) = (decoded, received) else { panic!("{metrics}") };
    assert!(decoded > 0.0 && decoded < 0.9 * received, "decoded {decoded} of {received} access units");
    Ok(())
}
