//! People and access: accounts made with the CLI log in with a password, each role sees
//! and does what the programme gives it, within its sites, and the review workflow is
//! enforced step by step.

use std::time::Duration;

use mingchu::events::{NewEvent, Store};
use mingchu_e2e::poll::{poll, poll_every};
use mingchu_e2e::procs::{Gateway, tempdir::TempDir, user_add, write_private};
use reqwest::StatusCode;

const PASSWORD: &str = "食品安全-access-pass";

/// Two sites, a camera in each (never reachable: nothing here needs video).
fn config(extra_auth: &str) -> String {
    let text = Gateway::config(
        &[("cam_a", "rtsp://127.0.0.1:9/a".into()), ("cam_b", "rtsp://127.0.0.1:9/b".into())],
        "[detect]\nenabled = false\n\n\
         [[sites]]\nid = \"a\"\nname = \"阳光小学食堂\"\nkind = \"school\"\ndistrict = \"东城区\"\n\n\
         [[sites]]\nid = \"b\"\nname = \"幸福敬老院\"\nkind = \"elderly_care\"\n",
    );
    let text = text.replace("[auth]\n", &format!("[auth]\n{extra_auth}\n"));
    text.replace("url = \"rtsp://127.0.0.1:9/a\"\n", "url = \"rtsp://127.0.0.1:9/a\"\nsite = \"a\"\n")
        .replace("url = \"rtsp://127.0.0.1:9/b\"\n", "url = \"rtsp://127.0.0.1:9/b\"\nsite = \"b\"\n")
}

/// A gateway with an account of each role, and two events (one per site).
struct World {
    gw: Gateway,
    events: (i64, i64),
}

const ACCOUNTS: [(&str, &str, &str); 5] = [
    ("admin", "admin", ""),
    ("regulator", "wang.regulator", "*"),
    ("regulator", "zhao.regulator", "a"),
    ("reviewer", "li.reviewer", "a"),
    ("operator", "chen.operator", "a"),
];

async fn world(extra_auth: &str) -> anyhow::Result<World> {
    let dir = TempDir::new("mingchu-e2e")?;
    let cfg = dir.path().join("mingchu.toml");
    let text = config(extra_auth);
    write_private(&cfg, &text)?;
    for (role, name, sites) in ACCOUNTS {
        let (ok, err) = user_add(&cfg, role, sites, name, PASSWORD);
        assert!(ok, "user add {name}: {err}");
    }
    let data = dir.path().join("data");
    let store = Store::open(&data)?;
    let event = |camera: &str| NewEvent {
        camera: camera.into(),
        rule: "animal_in_kitchen".into(),
        kind: "presence".into(),
        severity: "critical".into(),
        track: 1,
        start_ms: 1_800_000_000_000,
        confidence: 0.9,
    };
    let events = (store.insert(event("cam_a")).await?, store.insert(event("cam_b")).await?);
    drop(store);
    let gw = Gateway::start_in(dir, &text)?;
    Ok(World { gw, events })
}

/// A logged-in browser-like client: the session cookie on every request.
struct Session {
    base: String,
    cookie: String,
    http: reqwest::Client,
}

impl Session {
    async fn login(base: &str, name: &str, password: &str) -> anyhow::Result<Result<Session, StatusCode>> {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/api/session"))
            .json(&serde_json::json!({"name": name, "password": password}))
            .send()
            .await?;
        if resp.status() != StatusCode::OK {
            return Ok(Err(resp.status()));
        }
        let set = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "cookie flags: {set}");
        let cookie = set.split(';').next().unwrap_or_default().to_owned();
        Ok(Ok(Session { base: base.into(), cookie, http }))
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).header("cookie", &self.cookie)
    }

    async fn status(&self, method: reqwest::Method, path: &str) -> anyhow::Result<u16> {
        Ok(self.req(method, path).send().await?.status().as_u16())
    }

    async fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.req(reqwest::Method::GET, path).send().await?.json().await?)
    }

    async fn review(&self, id: i64, status: &str, note: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let r = self
            .req(reqwest::Method::PATCH, &format!("/api/events/{id}"))
            .json(&serde_json::json!({"status": status, "note": note}))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or_default()))
    }
}

async fn login(w: &World, name: &str) -> anyhow::Result<Session> {
    Session::login(&w.gw.base, name, PASSWORD).await?.map_err(|s| anyhow::anyhow!("login {name}: {s}"))
}

fn ids(v: &serde_json::Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> =
        v.as_array().into_iter().flatten().filter_map(|x| x[key].as_str().map(str::to_owned)).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_sees_its_sites_and_does_only_what_it_may() -> anyhow::Result<()> {
    use reqwest::Method as M;
    let w = world("").await?;
    let (ev_a, ev_b) = w.events;
    for (role, name, sites) in ACCOUNTS {
        let s = login(&w, name).await?;
        let all = sites == "*" || role == "admin";
        let me = s.json("/api/me").await?;
        assert_eq!(me["role"], role, "{name}: {me}");
        // Listings carry only the sites in scope.
        let want_sites = if all { vec!["a", "b"] } else { vec!["a"] };
        assert_eq!(ids(&s.json("/api/sites").await?, "id"), want_sites, "{name} sites");
        let want_cams = if all { vec!["cam_a", "cam_b"] } else { vec!["cam_a"] };
        assert_eq!(ids(&s.json("/api/cameras").await?, "id"), want_cams, "{name} cameras");
        let events = s.json("/api/events").await?;
        let sites_of_events = ids(&events, "site");
        assert_eq!(sites_of_events, want_sites, "{name} events carry their site: {events}");
        // Out of scope is "not found", never "forbidden".
        let out_of_scope = if all { 200 } else { 404 };
        assert_eq!(s.status(M::GET, "/api/cameras/cam_b").await?, out_of_scope, "{name} cam_b");
        assert_eq!(s.status(M::GET, &format!("/api/events/{ev_b}")).await?, out_of_scope, "{name} event b");
        assert_eq!(s.status(M::GET, &format!("/api/events/{ev_b}/snapshot.jpg")).await?, 404, "{name}: no snapshot");
        assert_eq!(s.status(M::GET, &format!("/api/events/{ev_a}")).await?, 200, "{name} event a");
        // WHEP: in scope the offer is read (and this one is malformed); out of scope, 404.
        let whep = |cam: &str| {
            s.req(M::POST, &format!("/api/cameras/{cam}/whep"))
                .header("content-type", "application/sdp")
                .body("v=0\r\n")
        };
        assert_eq!(whep("cam_a").send().await?.status(), 400, "{name} may watch cam_a");
        assert_eq!(whep("cam_b").send().await?.status().as_u16(), if all { 400 } else { 404 }, "{name} cam_b");
        // Admin-only routes.
        let admin = if role == "admin" { 200 } else { 403 };
        assert_eq!(s.status(M::GET, "/api/users").await?, admin, "{name} /api/users");
        assert_eq!(s.status(M::GET, "/api/tokens").await?, admin, "{name} /api/tokens");
        assert_eq!(s.status(M::GET, "/metrics").await?, admin, "{name} /metrics");
        let r = s
            .req(M::POST, "/api/tokens")
            .json(&serde_json::json!({"name": format!("t-{name}"), "role": "regulator", "sites": "*"}))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), if role == "admin" { 201 } else { 403 }, "{name} POST /api/tokens");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_workflow_is_enforced_and_recorded() -> anyhow::Result<()> {
    let w = world("").await?;
    let (ev, _) = w.events;
    let operator = login(&w, "chen.operator").await?;
    let reviewer = login(&w, "li.reviewer").await?;
    let regulator = login(&w, "zhao.regulator").await?;

    let (code, body) = operator.review(ev, "confirmed", "").await?;
    assert_eq!(code, 403, "an operator cannot confirm: {body}");
    let (code, body) = operator.review(ev, "rectified", "").await?;
    assert_eq!(code, 400, "rectified needs a note: {body}");
    let (code, body) = reviewer.review(ev, "confirmed", "猫在操作台上").await?;
    assert_eq!((code, body["status"].as_str()), (200, Some("confirmed")), "{body}");
    let (code, body) = reviewer.review(ev, "rectified", "x").await?;
    assert_eq!(code, 403, "a reviewer does not rectify: {body}");
    let (code, body) = operator.review(ev, "rectified", "已封堵墙洞，消毒操作台").await?;
    assert_eq!((code, body["status"].as_str()), (200, Some("rectified")), "{body}");
    let (code, body) = regulator.review(ev, "closed", "复核通过").await?;
    assert_eq!((code, body["status"].as_str()), (200, Some("closed")), "{body}");
    let (code, _) = regulator.review(ev, "new", "").await?;
    assert_eq!(code, 403, "only an admin reopens");

    let history = &body["history"];
    let steps: Vec<(String, String, String)> = history
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["to"].as_str().unwrap_or_default().to_owned(),
                t["by"].as_str().unwrap_or_default().to_owned(),
                t["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("confirmed".into(), "user:li.reviewer".into(), "猫在操作台上".into()),
            ("rectified".into(), "user:chen.operator".into(), "已封堵墙洞，消毒操作台".into()),
            ("closed".into(), "user:zhao.regulator".into(), "复核通过".into()),
        ],
        "who did what: {history}"
    );
    assert!(history.as_array().is_some_and(|h| h.iter().all(|t| t["at_ms"].as_i64().unwrap_or(0) > 0)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_back_off_recover_and_sessions_end() -> anyhow::Result<()> {
    let w = world("").await?;
    let base = &w.gw.base;
    for i in 0..5 {
        let r = Session::login(base, "li.reviewer", &format!("wrong-password-{i}")).await?;
        assert_eq!(r.err(), Some(StatusCode::UNAUTHORIZED), "attempt {i}");
    }
    assert_eq!(Session::login(base, "li.reviewer", "wrong-again-x").await?.err(), Some(StatusCode::UNAUTHORIZED));
    // Now even the right password waits: a guess is never confirmed early.
    assert_eq!(Session::login(base, "li.reviewer", PASSWORD).await?.err(), Some(StatusCode::TOO_MANY_REQUESTS));
    // A name that does not exist answers like a wrong password.
    assert_eq!(Session::login(base, "nobody-here", PASSWORD).await?.err(), Some(StatusCode::TOO_MANY_REQUESTS));
    let s = poll("the right password accepted once the wait is over", Duration::from_secs(10), |_| async {
        Ok(Session::login(base, "li.reviewer", PASSWORD).await?.ok())
    })
    .await?;
    assert_eq!(s.status(reqwest::Method::GET, "/api/me").await?, 200);

    // CSRF: a change sent from another site's page is refused, the same from ours is not.
    let r = s
        .req(reqwest::Method::PATCH, &format!("/api/events/{}", w.events.0))
        .header("origin", "http://evil.example")
        .json(&serde_json::json!({"status": "dismissed"}))
        .send()
        .await?;
    assert_eq!(r.status(), 403, "cross-site PATCH");
    let r = s
        .req(reqwest::Method::PATCH, &format!("/api/events/{}", w.events.0))
        .header("sec-fetch-site", "same-origin")
        .json(&serde_json::json!({"status": "dismissed"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "same-origin PATCH");

    // Logout ends this session; "everywhere" ends the others.
    let other = login(&w, "li.reviewer").await?;
    assert_eq!(s.status(reqwest::Method::DELETE, "/api/session").await?, 204);
    assert_eq!(s.status(reqwest::Method::GET, "/api/me").await?, 401, "logged out");
    assert_eq!(other.status(reqwest::Method::GET, "/api/me").await?, 200, "the other browser stays");
    assert_eq!(other.status(reqwest::Method::DELETE, "/api/sessions").await?, 200);
    assert_eq!(other.status(reqwest::Method::GET, "/api/me").await?, 401, "logged out everywhere");

    // Changing the password needs the current one and ends other sessions.
    let a = login(&w, "chen.operator").await?;
    let b = login(&w, "chen.operator").await?;
    let change = |cur: &str, new: &str| {
        a.req(reqwest::Method::PUT, "/api/me/password").json(&serde_json::json!({"current": cur, "new": new}))
    };
    assert_eq!(change("not-it-at-all", "a-new-password-1").send().await?.status(), 403);
    assert_eq!(change(PASSWORD, "short").send().await?.status(), 400);
    assert_eq!(change(PASSWORD, "a-new-password-1").send().await?.status(), 204);
    assert_eq!(b.status(reqwest::Method::GET, "/api/me").await?, 401, "other sessions end");
    assert!(Session::login(base, "chen.operator", "a-new-password-1").await?.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires() -> anyhow::Result<()> {
    // 0.001 h: a session idle for 3.6 s ends.
    let w = world("session_idle_hours = 0.001").await?;
    let s = login(&w, "li.reviewer").await?;
    assert_eq!(s.status(reqwest::Method::GET, "/api/me").await?, 200);
    // Each check is a request, which would keep the session alive: check less often than
    // the idle limit.
    poll_every("the idle session refused", Duration::from_secs(20), Duration::from_secs(4), |_| async {
        Ok((s.status(reqwest::Method::GET, "/api/me").await? == 401).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_tokens_are_scoped_shown_once_and_revocable() -> anyhow::Result<()> {
    let w = world("").await?;
    let admin = login(&w, "admin").await?;
    let r = admin
        .req(reqwest::Method::POST, "/api/tokens")
        .json(&serde_json::json!({"name": "district platform", "role": "regulator", "sites": ["a"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await?;
    let secret = created["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("mct_"), "{created}");
    let listed = admin.json("/api/tokens").await?;
    assert!(!listed.to_string().contains(&secret), "the secret is shown once only");
    let http = reqwest::Client::new();
    let cams: serde_json::Value =
        http.get(format!("{}/api/cameras", w.gw.base)).bearer_auth(&secret).send().await?.json().await?;
    assert_eq!(ids(&cams, "id"), vec!["cam_a"], "the token sees its site only");
    let id = created["id"].as_i64().unwrap_or_default();
    assert_eq!(admin.status(reqwest::Method::DELETE, &format!("/api/tokens/{id}")).await?, 200);
    let r = http.get(format!("{}/api/cameras", w.gw.base)).bearer_auth(&secret).send().await?;
    assert_eq!(r.status(), 401, "revoked at once");
    // Grants are checked: a reviewer needs a site, sites must exist.
    let bad = admin
        .req(reqwest::Method::POST, "/api/users")
        .json(&serde_json::json!({"name": "x", "role": "reviewer", "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let bad = admin
        .req(reqwest::Method::POST, "/api/users")
        .json(&serde_json::json!({"name": "x", "role": "reviewer", "sites": ["zz"], "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    Ok(())
}

#[test]
fn the_cli_refuses_bad_accounts_naming_the_problem() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-e2e")?;
    let cfg = dir.path().join("mingchu.toml");
    write_private(&cfg, &config(""))?;
    let (ok, err) = user_add(&cfg, "chef", "", "x", PASSWORD);
    assert!(!ok && err.contains("--role"), "{err}");
    let (ok, err) = user_add(&cfg, "operator", "", "x", PASSWORD);
    assert!(!ok && err.contains("needs at least one site"), "{err}");
    let (ok, err) = user_add(&cfg, "operator", "a", "x", "short");
    assert!(!ok && err.contains("10"), "{err}");
    let (ok, err) = user_add(&cfg, "operator", "a", "x", PASSWORD);
    assert!(ok, "{err}");
    let (ok, err) = user_add(&cfg, "admin", "", "X", PASSWORD);
    assert!(!ok && err.contains("already exists"), "names are case-insensitive: {err}");
    let db = dir.path().join("data/access.db");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&db)?.permissions()) & 0o777;
    assert_eq!(mode, 0o600, "access.db");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_records_who_watched_what_from_when_to_when() -> anyhow::Result<()> {
    use mingchu_e2e::procs::{Sim, SimOptions};
    use mingchu_e2e::whep::{Viewer, ViewerOptions};
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start_with(&Gateway::config(&[("cam1", sim.url("cam1"))], "[detect]\nenabled = false\n"))?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(5, Duration::from_secs(5)).await?;
    let before_end = gw.get_json("/api/audit?action=live_view").await?;
    assert_eq!(before_end[0]["ended_ms"], serde_json::Value::Null, "still watching: {before_end}");
    assert_eq!(viewer.close(&gw.token).await?, 200);
    let gw = &gw;
    let entry = poll("the live view's end in the audit trail", Duration::from_secs(10), |seen| async move {
        let v = gw.get_json("/api/audit?action=live_view").await?;
        seen.show(&v);
        Ok(v[0]["ended_ms"].as_i64().is_some().then(|| v[0].clone()))
    })
    .await?;
    assert_eq!(entry["actor"], "token:admin_token");
    assert_eq!(entry["target"], "cam1");
    assert_eq!(entry["site"], "default");
    assert_eq!(entry["client"], "127.0.0.1");
    let (start, end) = (entry["at_ms"].as_i64().unwrap_or(0), entry["ended_ms"].as_i64().unwrap_or(0));
    assert!(start > 0 && end >= start, "{entry}");
    // The start is logged with the config's digest, and the trail exports as CSV.
    let started = gw.get_json("/api/audit?action=gateway_started").await?;
    assert!(started[0]["detail"].as_str().unwrap_or_default().starts_with("config sha256 "), "{started}");
    let csv =
        reqwest::Client::new().get(format!("{}/api/audit?format=csv", gw.base)).bearer_auth(&gw.token).send().await?;
    assert!(csv.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/csv")));
    let text = csv.text().await?;
    assert!(text.starts_with("id,at_ms,actor,client,action,target,site,detail,ended_ms\r\n"), "{text}");
    assert!(text.contains(",live_view,cam1,default,"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_reviews_are_audited_and_regulators_see_their_sites_only() -> anyhow::Result<()> {
    let w = world("").await?;
    let _ = Session::login(&w.gw.base, "li.reviewer", "not-the-password").await?;
    let reviewer = login(&w, "li.reviewer").await?;
    let (code, _) = reviewer.review(w.events.0, "dismissed", "误报").await?;
    assert_eq!(code, 200);
    let admin = login(&w, "admin").await?;
    let entries = poll("the review in the audit trail", Duration::from_secs(5), |_| async {
        let v = admin.json("/api/audit").await?;
        Ok(v.as_array().is_some_and(|a| a.iter().any(|e| e["action"] == "event_review")).then_some(v))
    })
    .await?;
    let actions: Vec<&str> = entries.as_array().into_iter().flatten().filter_map(|e| e["action"].as_str()).collect();
    for want in ["login_failed", "login", "event_review", "gateway_started"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    let review =
        entries.as_array().into_iter().flatten().find(|e| e["action"] == "event_review").cloned().unwrap_or_default();
    assert_eq!((review["actor"].as_str(), review["site"].as_str()), (Some("user:li.reviewer"), Some("a")));
    assert!(review["detail"].as_str().unwrap_or_default().contains("new → dismissed"), "{review}");
    // A regulator of site b does not see site a's review; a reviewer may not read the trail.
    let (ok, err) = user_add(&w.gw.dir.path().join("mingchu.toml"), "regulator", "b", "sun.regulator", PASSWORD);
    assert!(ok, "{err}");
    let b = login(&w, "sun.regulator").await?;
    let seen = b.json("/api/audit").await?;
    assert!(seen.as_array().is_some_and(|a| a.iter().all(|e| e["site"] == "b")), "{seen}");
    assert_eq!(reviewer.status(reqwest::Method::GET, "/api/audit").await?, 403);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_token_opens_one_path_as_its_principal() -> anyhow::Result<()> {
    let w = world("").await?;
    let reviewer = login(&w, "li.reviewer").await?;
    let mint = |path: String| {
        reviewer.req(reqwest::Method::POST, "/api/media-tokens").json(&serde_json::json!({ "path": path }))
    };
    let (a, b) = w.events;
    let r: serde_json::Value = mint(format!("/api/events/{a}/snapshot.jpg")).send().await?.json().await?;
    let url = r["url"].as_str().unwrap_or_default().to_owned();
    assert!(url.contains("?mt="), "{r}");
    let http = reqwest::Client::new();
    // The event has no snapshot: 404 from the handler means the token got past the door.
    let got = http.get(format!("{}{url}", w.gw.base)).send().await?;
    assert_eq!(got.status(), 404, "the token authenticates");
    assert!(got.text().await?.contains("has no snapshot"));
    let token = r["token"].as_str().unwrap_or_default();
    let other = http.get(format!("{}/api/events/{a}?mt={token}", w.gw.base)).send().await?;
    assert_eq!(other.status(), 401, "another path is refused");
    // Out of the reviewer's scope, the token is no key either.
    let r: serde_json::Value = mint(format!("/api/events/{b}/snapshot.jpg")).send().await?.json().await?;
    let got = http.get(format!("{}{}", w.gw.base, r["url"].as_str().unwrap_or_default())).send().await?;
    assert!(got.text().await?.contains(&format!("no event {b}")), "acts as the reviewer");
    assert_eq!(mint("/api/users".into()).send().await?.status(), 400, "only media paths");
    Ok(())
}

/// Reads an SSE response until the gateway ends it; how long that took, or None.
async fn feed_end(mut feed: reqwest::Response, within: Duration) -> Option<Duration> {
    let t = std::time::Instant::now();
    loop {
        match tokio::time::timeout(within.saturating_sub(t.elapsed()), feed.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return Some(t.elapsed()),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_feeds_end_when_their_session_or_token_is_withdrawn() -> anyhow::Result<()> {
    let w = world("").await?;
    // Two browsers of one reviewer; logging out of one ends its feed only.
    let one = login(&w, "li.reviewer").await?;
    let two = login(&w, "li.reviewer").await?;
    let feed_one = one.req(reqwest::Method::GET, "/api/events/stream").send().await?;
    let feed_two = two.req(reqwest::Method::GET, "/api/events/stream").send().await?;
    assert_eq!((feed_one.status(), feed_two.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(one.status(reqwest::Method::DELETE, "/api/session").await?, 204);
    let ended = feed_end(feed_one, Duration::from_secs(5)).await;
    assert!(ended.is_some(), "the logged-out browser's feed ended within 5 s");
    assert_eq!(feed_end(feed_two, Duration::from_millis(1500)).await, None, "the other browser's feed goes on");

    // A machine token's feed ends when the token is revoked.
    let admin = login(&w, "admin").await?;
    let r = admin
        .req(reqwest::Method::POST, "/api/tokens")
        .json(&serde_json::json!({"name": "platform", "role": "regulator", "sites": "*"}))
        .send()
        .await?;
    let created: serde_json::Value = r.json().await?;
    let secret = created["secret"].as_str().unwrap_or_default().to_owned();
    let http = reqwest::Client::new();
    let url = format!("{}/api/events/stream", w.gw.base);
    let feed = http.get(&url).bearer_auth(&secret).send().await?;
    assert_eq!(feed.status(), 200);
    let id = created["id"].as_i64().unwrap_or_default();
    assert_eq!(admin.status(reqwest::Method::DELETE, &format!("/api/tokens/{id}")).await?, 200);
    assert!(feed_end(feed, Duration::from_secs(5)).await.is_some(), "the revoked token's feed ended within 5 s");
    Ok(())
}
