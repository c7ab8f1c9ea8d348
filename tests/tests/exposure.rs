//! A gateway that is safe to put on a network: idle and silent connections are closed,
//! guessed tokens are slowed down, metrics need a token, responses carry security
//! headers, event feeds are capped and stored files are private.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::{Gateway, parse_addr_after};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway without cameras (none are needed here), with `server` lines added.
fn gateway(server: &str) -> anyhow::Result<Gateway> {
    let text = Gateway::config(&[], "[detect]\nenabled = false\n")
        .replace("data_dir = \"./data\"\n", &format!("data_dir = \"./data\"\n{server}\n"));
    Gateway::start_with(&text)
}

fn host(gw: &Gateway) -> String {
    gw.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_header_timeout_and_others_are_served() -> anyhow::Result<()> {
    let gw = gateway("header_timeout_s = 1\nidle_timeout_s = 30")?;
    let addr = host(&gw);
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(&addr).await?);
    }
    // A normal request succeeds while the hundred sit there.
    let body = gw.get_json("/api/health").await?;
    assert_eq!(body["status"], "ok");
    let mut closed = 0;
    for mut s in idle {
        let mut buf = [0u8; 256];
        // The gateway may answer the silent client with a 408 before it closes.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => anyhow::bail!("a silent connection was still open after {:?}", opened.elapsed()),
            }
        }
    }
    assert_eq!(closed, 100);
    assert!(opened.elapsed() < Duration::from_secs(10), "all closed after {:?}", opened.elapsed());
    let open = gw.metric("mingchu_http_connections").await?;
    assert!(open <= 2.0, "{open} connections still counted open");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_left_idle_is_closed() -> anyhow::Result<()> {
    let gw = gateway("idle_timeout_s = 2")?;
    let mut s = tokio::net::TcpStream::connect(host(&gw)).await?;
    let req = format!("GET /api/health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n", gw.token);
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await?;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "served");
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await?.unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(t.elapsed() >= Duration::from_millis(1500), "not before the idle timeout: {:?}", t.elapsed());
    assert!(gw.metric("mingchu_http_idle_closed_total").await? >= 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_slowed_down_and_the_right_one_works_after_the_wait() -> anyhow::Result<()> {
    let gw = gateway("")?;
    let client = reqwest::Client::new();
    let url = format!("{}/api/cameras", gw.base);
    for i in 0..5 {
        let r = client.get(&url).bearer_auth(format!("guess-{i}")).send().await?;
        assert_eq!(r.status(), 401, "the first five wrong tokens are answered");
    }
    let r = client.get(&url).bearer_auth("guess-5").send().await?;
    assert_eq!(r.status(), 401, "the sixth is answered and starts the wait");
    let r = client.get(&url).bearer_auth("guess-6").send().await?;
    assert_eq!(r.status(), 429, "then the address must wait");
    let wait: u64 =
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // While waiting, even the right token is refused: a guess must not be confirmed early.
    let r = client.get(&url).bearer_auth(&gw.token).send().await?;
    assert_eq!(r.status(), 429);
    // After the wait the right token works: the user is never locked out for good.
    let served = poll("the right token accepted after the wait", Duration::from_secs(5), |_| {
        let (client, url, token) = (client.clone(), url.clone(), gw.token.clone());
        async move { Ok((client.get(&url).bearer_auth(&token).send().await?.status() == 200).then_some(())) }
    })
    .await;
    served?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_unless_on_their_own_listener() -> anyhow::Result<()> {
    let gw = gateway("")?;
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/metrics", gw.base)).header("host", "evil.example").send().await?;
    assert_eq!(r.status(), 401, "no token, foreign Host");
    assert!(gw.metrics().await?.contains("mingchu_http_connections"), "with the token");

    let own = gateway("metrics_listen = \"127.0.0.1:0\"")?;
    let metrics_addr: std::net::SocketAddr = parse_addr_after(&own.proc.startup, "mingchu metrics on http://")?;
    let r = client.get(format!("http://{metrics_addr}/metrics")).send().await?;
    assert_eq!(r.status(), 200, "served without a token on its own listener");
    assert!(r.text().await?.contains("mingchu_process_resident_memory_bytes"));
    let r = client.get(format!("http://{metrics_addr}/api/cameras")).send().await?;
    assert_eq!(r.status(), 404, "nothing but /metrics there");
    let r = client.get(format!("{}/metrics", own.base)).send().await?;
    assert_eq!(r.status(), 401, "still closed on the main listener");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_api_answers_carry_security_headers() -> anyhow::Result<()> {
    let gw = gateway("")?;
    let client = reqwest::Client::new();
    let page = client.get(format!("{}/", gw.base)).send().await?;
    assert_eq!(page.status(), 200);
    let h = page.headers();
    let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
    assert_eq!(h.get("referrer-policy").map(|v| v.as_bytes()), Some(&b"no-referrer"[..]));
    let html = page.text().await?;
    assert!(!html.contains("<script>") && !html.contains("<script type=\"module\">\n"), "no inline script");
    assert!(!html.contains("<style"), "no inline style");
    // Every script and stylesheet the page loads is the gateway's own, hashed and kept.
    let assets: Vec<&str> = html.split('"').filter(|s| s.starts_with("/assets/")).collect();
    assert!(!assets.is_empty(), "the page loads the built app: {html}");
    for path in assets {
        let r = client.get(format!("{}{path}", gw.base)).send().await?;
        assert_eq!(r.status(), 200, "{path}");
        let cache = r.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(cache.contains("immutable"), "{path}: {cache}");
    }
    // An app route gets the page; a missing file is a 404, not the page.
    let route = client.get(format!("{}/events/12", gw.base)).send().await?;
    assert_eq!(route.status(), 200);
    let missing = client.get(format!("{}/assets/nope.js", gw.base)).send().await?;
    assert_eq!(missing.status(), 404);
    let api = client.get(format!("{}/api/health", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(api.headers().get("cache-control").map(|v| v.as_bytes()), Some(&b"private, no-store"[..]));
    let refused = client.get(format!("{}/api/health", gw.base)).send().await?;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers().get("cache-control").map(|v| v.as_bytes()), Some(&b"private, no-store"[..]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_feeds_are_capped_and_a_closed_one_frees_its_place() -> anyhow::Result<()> {
    let gw = gateway("max_event_streams = 2")?;
    let client = reqwest::Client::new();
    let url = format!("{}/api/events/stream", gw.base);
    let a = client.get(&url).bearer_auth(&gw.token).send().await?;
    let b = client.get(&url).bearer_auth(&gw.token).send().await?;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = client.get(&url).bearer_auth(&gw.token).send().await?;
    assert_eq!(c.status(), 503, "a third feed is refused");
    let err: serde_json::Value = c.json().await?;
    assert!(err["error"].as_str().unwrap_or_default().contains("event feeds"), "{err}");
    drop(a);
    poll("a feed place freed after a client left", Duration::from_secs(5), |_| {
        let (client, url, token) = (client.clone(), url.clone(), gw.token.clone());
        async move { Ok((client.get(&url).bearer_auth(&token).send().await?.status() == 200).then_some(())) }
    })
    .await?;
    drop(b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_take_every_event_feed() -> anyhow::Result<()> {
    let gw = gateway("max_event_streams = 8\nmax_event_streams_per_principal = 2")?;
    let client = reqwest::Client::new();
    let url = format!("{}/api/events/stream", gw.base);
    let a = client.get(&url).bearer_auth(&gw.token).send().await?;
    let b = client.get(&url).bearer_auth(&gw.token).send().await?;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = client.get(&url).bearer_auth(&gw.token).send().await?;
    assert_eq!(c.status(), 429, "a third feed of one principal is refused");
    let err: serde_json::Value = c.json().await?;
    assert!(err["error"].as_str().unwrap_or_default().contains("2 event feeds open"), "{err}");
    drop((a, b));
    Ok(())
}

#[test]
fn the_data_directory_and_database_are_private() -> anyhow::Result<()> {
    let gw = gateway("")?;
    let data = gw.dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&data)?, 0o700, "data dir");
    let db = data.join("events.db");
    assert!(db.exists(), "the event database is created at start");
    assert_eq!(mode(&db)?, 0o600, "events.db");
    drop(gw);

    // An existing, world-readable data directory is narrowed, and a world-readable config
    // is warned about.
    let dir = mingchu_e2e::procs::tempdir::TempDir::new("mingchu-e2e")?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    let text = Gateway::config(&[], "[detect]\nenabled = false\n");
    std::fs::write(dir.path().join("mingchu.toml"), &text)?;
    std::fs::set_permissions(dir.path().join("mingchu.toml"), std::fs::Permissions::from_mode(0o644))?;
    let mut gw = Gateway::start_in(dir, &text)?;
    assert_eq!(mode(&gw.dir.path().join("data"))?, 0o700, "narrowed at start");
    let warned = gw.proc.startup.iter().find(|l| l.contains("readable by every user")).cloned();
    let log = match warned {
        Some(l) => l,
        None => gw.proc.wait_line("readable by every user", Duration::from_secs(5))?,
    };
    assert!(log.contains("chmod 640"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_built_dashboard_the_gateway_serves_the_api_and_says_how_to_build_it() -> anyhow::Result<()> {
    let empty = mingchu_e2e::procs::tempdir::TempDir::new("mingchu-no-ui")?;
    let gw = gateway(&format!("ui_dir = {:?}", empty.path().display().to_string()))?;
    let client = reqwest::Client::new();
    let page = client.get(format!("{}/", gw.base)).send().await?;
    assert_eq!(page.status(), 503);
    let text = page.text().await?;
    assert!(text.contains("npm ci && npm run build"), "{text}");
    let api = client.get(format!("{}/api/health", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(api.status(), 200);
    assert!(
        gw.proc.startup.iter().any(|l| l.contains("dashboard is off") && l.contains("npm run build")),
        "the log says so"
    );
    Ok(())
}
