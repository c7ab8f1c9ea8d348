//! Share links for parents: created by a regulator for one site, watched with no login,
//! limited by schedule, viewer cap and expiry, and ended within seconds when revoked.

use std::time::Duration;

use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

/// A gateway with two sites: cam1 (site a) plays, cam2 (site b) too.
fn gateway(sim: &Sim) -> anyhow::Result<Gateway> {
    let text = Gateway::config(
        &[("cam1", sim.url("cam1")), ("cam2", sim.url("cam2"))],
        "[detect]\nenabled = false\n\n\
         [[sites]]\nid = \"a\"\nname = \"阳光小学食堂\"\nkind = \"school\"\n\n\
         [[sites]]\nid = \"b\"\nname = \"红星幼儿园\"\nkind = \"kindergarten\"\n",
    )
    .replace(&format!("url = \"{}\"\n", sim.url("cam1")), &format!("url = \"{}\"\nsite = \"a\"\n", sim.url("cam1")))
    .replace(&format!("url = \"{}\"\n", sim.url("cam2")), &format!("url = \"{}\"\nsite = \"b\"\n", sim.url("cam2")));
    Gateway::start_with(&text)
}

async fn create(gw: &Gateway, body: serde_json::Value) -> anyhow::Result<(u16, serde_json::Value)> {
    let r = reqwest::Client::new()
        .post(format!("{}/api/shares", gw.base))
        .bearer_auth(&gw.token)
        .json(&body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or_default()))
}

async fn viewers(gw: &Gateway, cam: &str) -> anyhow::Result<i64> {
    Ok(gw.camera(cam).await?["viewers"].as_i64().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_watches_a_shared_camera_until_the_link_is_revoked() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions { cameras: 2, ..SimOptions::default() })?;
    let gw = gateway(&sim)?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let (code, link) =
        create(&gw, serde_json::json!({"site": "a", "label": "三年级二班家长群", "max_viewers": 2})).await?;
    assert_eq!(code, 201, "{link}");
    let path = link["path"].as_str().unwrap_or_default().to_owned();
    let token = path.trim_start_matches("/s/");
    assert!(token.len() >= 32, "≥ 128 random bits: {path}");
    assert_eq!(link["cameras"], serde_json::json!(["cam1"]), "the site's cameras only");
    let http = reqwest::Client::new();

    // The page and what it shows: the site's name and its cameras, nothing else.
    let page = http.get(format!("{}{path}", gw.base)).send().await?;
    assert_eq!(page.status(), 200);
    assert!(page.text().await?.contains("/assets/"), "the built share page");
    let info: serde_json::Value = http.get(format!("{}{path}/info", gw.base)).send().await?.json().await?;
    assert_eq!(info["site"], "阳光小学食堂");
    assert_eq!(info["availability"]["state"], "open");
    assert_eq!(info["cameras"].as_array().map(Vec::len), Some(1), "{info}");
    // The link opens no API route and no other site's camera.
    let r = http.get(format!("{}/api/cameras?mt={token}", gw.base)).send().await?;
    assert_eq!(r.status(), 401);
    let other = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam2/whep"), "", ViewerOptions::default()).await;
    assert!(other.is_err_and(|e| e.to_string().contains("404")), "cam2 is another site's");

    // Two parents watch; a third is over the cap.
    let v1 = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam1/whep"), "", ViewerOptions::default()).await?;
    let v2 = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam1/whep"), "", ViewerOptions::default()).await?;
    v1.wait_frames(10, Duration::from_secs(5)).await?;
    v2.wait_frames(10, Duration::from_secs(5)).await?;
    let third = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam1/whep"), "", ViewerOptions::default()).await;
    assert!(third.is_err_and(|e| e.to_string().contains("503")), "over max_viewers");
    let listed = gw.get_json("/api/shares").await?;
    assert_eq!(listed[0]["viewers"], 2, "{listed}");
    assert!(!listed.to_string().contains(token), "the token is not kept");

    // QR codes of the link.
    let svg = http.get(format!("{}{path}/qr.svg", gw.base)).send().await?;
    assert_eq!(svg.headers().get("content-type").map(|v| v.as_bytes()), Some(&b"image/svg+xml"[..]));
    assert!(svg.text().await?.contains("<svg"));
    let png = http.get(format!("{}{path}/qr.png", gw.base)).send().await?.bytes().await?;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");

    // Revoked: the views end within 5 s, the page says so, and no new view starts.
    let id = link["id"].as_i64().unwrap_or_default();
    let revoked = std::time::Instant::now();
    let r = http.delete(format!("{}/api/shares/{id}", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(r.status(), 200);
    let gw = &gw;
    poll("the parents' views ended", Duration::from_secs(5), |seen| async move {
        let n = viewers(gw, "cam1").await?;
        seen.show(&n);
        Ok((n == 0).then_some(()))
    })
    .await?;
    assert!(revoked.elapsed() < Duration::from_secs(5));
    let info = http.get(format!("{}{path}/info", gw.base)).send().await?;
    assert_eq!(info.status(), 410);
    let info: serde_json::Value = info.json().await?;
    assert_eq!(info["availability"]["state"], "revoked");
    let again = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam1/whep"), "", ViewerOptions::default()).await;
    assert!(again.is_err_and(|e| e.to_string().contains("410")), "a revoked link opens nothing");
    drop((v1, v2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_its_hours_a_link_says_when_it_opens_and_refuses_video() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = gateway(&sim)?;
    // An hour-long window twelve hours from now: closed now, whatever the time.
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai")?;
    let now = jiff::Timestamp::now();
    let at = tz.to_datetime(now.checked_add(jiff::SignedDuration::from_hours(12))?);
    let from = format!("{:02}:{:02}", at.hour(), at.minute());
    let end = tz.to_datetime(now.checked_add(jiff::SignedDuration::from_mins(13 * 60 + 1))?);
    let to = format!("{:02}:{:02}", end.hour(), end.minute());
    let (code, link) = create(&gw, serde_json::json!({"site": "a", "schedule": [{"from": from, "to": to}]})).await?;
    assert_eq!(code, 201, "{link}");
    let path = link["path"].as_str().unwrap_or_default().to_owned();
    let info: serde_json::Value = reqwest::get(format!("{}{path}/info", gw.base)).await?.json().await?;
    assert_eq!(info["availability"]["state"], "closed", "{info}");
    let next = info["availability"]["next_ms"].as_i64().unwrap_or(0);
    let in_h = (next - now.as_millisecond()) as f64 / 3_600_000.0;
    assert!((11.9..12.1).contains(&in_h), "opens again in {in_h:.2} h");
    let v = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam1/whep"), "", ViewerOptions::default()).await;
    assert!(v.is_err_and(|e| e.to_string().contains("403")), "no video outside the hours");
    // Bad links are refused naming the field.
    for (body, needle) in [
        (serde_json::json!({"site": "a", "expires_in_days": 400}), "expires_in_days"),
        (serde_json::json!({"site": "a", "cameras": ["cam2"]}), "cam2"),
        (serde_json::json!({"site": "a", "schedule": [{"from": "25:00", "to": "12:00"}]}), "schedule"),
        (serde_json::json!({"site": "zz"}), "zz"),
    ] {
        let (code, err) = create(&gw, body.clone()).await?;
        assert!(code == 400 || code == 404, "{body}: {code}");
        assert!(err["error"].as_str().unwrap_or_default().contains(needle), "{body}: {err}");
    }
    // Past its expiry a link's views end, and its page says it has expired.
    let (_, short) = create(&gw, serde_json::json!({"site": "a", "expires_in_days": 0.00006})).await?;
    let path = short["path"].as_str().unwrap_or_default().to_owned();
    let v = Viewer::connect_to(&gw.base, &format!("{path}/cameras/cam1/whep"), "", ViewerOptions::default()).await?;
    v.wait_frames(5, Duration::from_secs(5)).await?;
    let gw = &gw;
    poll("the view ended at the expiry", Duration::from_secs(15), |seen| async move {
        let n = viewers(gw, "cam1").await?;
        seen.show(&n);
        Ok((n == 0).then_some(()))
    })
    .await?;
    let info: serde_json::Value = reqwest::get(format!("{}{path}/info", gw.base)).await?.json().await?;
    assert_eq!(info["availability"]["state"], "expired", "{info}");
    drop(v);
    // An unknown token is a clear 404.
    let r = reqwest::get(format!("{}/s/{}/info", gw.base, "0".repeat(64))).await?;
    assert_eq!(r.status(), 404);
    Ok(())
}
