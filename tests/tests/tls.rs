//! A gateway reached directly serves HTTPS with its own certificate, marks its session
//! cookie `Secure`, and picks up a renewed certificate without a restart; behind a
//! reverse proxy it believes `X-Forwarded-For` only from the proxies it is told to trust.

use std::sync::Arc;
use std::time::Duration;

use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::{Gateway, tempdir::TempDir, user_add, write_private};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "食品安全-tls-pass-1";

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM, certificate DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn add_admin(cfg: &std::path::Path) {
    let (ok, err) = user_add(cfg, "admin", "", "admin", PASSWORD);
    assert!(ok, "user add: {err}");
}

/// What one HTTPS request got: the server's certificate, the status line and headers, the body.
struct Answer {
    cert: CertificateDer<'static>,
    head: String,
    body: String,
}

/// One HTTP/1.1 request over a fresh TLS connection that trusts exactly `roots`.
async fn https(
    addr: &str,
    roots: &[CertificateDer<'static>],
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> anyhow::Result<Answer> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = connector.connect(name, tcp).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await?;
    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned().expect("a server certificate");
    let mut out = Vec::new();
    // The gateway closes after the answer (connection: close); a TLS close without
    // close_notify still leaves the whole answer read.
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok(Answer { cert, head: head.to_owned(), body: body.to_owned() })
}

fn metric(text: &str, series: &str) -> f64 {
    mingchu_e2e::procs::metric_value(text, series).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_secure_cookies_and_a_renewed_certificate_picked_up() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-e2e")?;
    let (cert_pem, key_pem, first) = certificate();
    std::fs::create_dir_all(dir.path().join("tls"))?;
    write_private(&dir.path().join("tls/cert.pem"), &cert_pem)?;
    write_private(&dir.path().join("tls/key.pem"), &key_pem)?;
    let text = Gateway::config(&[], "[detect]\nenabled = false\n").replace(
        "data_dir = \"./data\"\n",
        "data_dir = \"./data\"\n[server.tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n",
    );
    let cfg = dir.path().join("mingchu.toml");
    write_private(&cfg, &text)?;
    add_admin(&cfg);
    let gw = Gateway::start_in(dir, &text)?;
    assert!(gw.base.starts_with("https://"), "{}", gw.base);
    let addr = gw.base.trim_start_matches("https://").to_owned();

    // Log in over TLS: the cookie is Secure as well as HttpOnly.
    let login = format!(r#"{{"name":"admin","password":"{PASSWORD}"}}"#);
    let json = "content-type: application/json\r\n";
    let a = https(&addr, std::slice::from_ref(&first), "POST", "/api/session", json, &login).await?;
    assert!(a.head.starts_with("HTTP/1.1 200"), "{}", a.head);
    let cookie = a.head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(a.cert, first);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(&addr).await?;
    plain.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "plain HTTP was served");

    let bearer = format!("authorization: Bearer {}\r\n", gw.token);
    let metrics = |roots: Vec<CertificateDer<'static>>| {
        let (addr, bearer) = (addr.clone(), bearer.clone());
        async move { https(&addr, &roots, "GET", "/metrics", &bearer, "").await }
    };
    let m = metrics(vec![first.clone()]).await?.body;
    let expiry = metric(&m, "mingchu_tls_certificate_expiry_timestamp_seconds");
    assert!(expiry > jiff::Timestamp::now().as_second() as f64, "expiry {expiry} in the future");

    // Half a renewal (a new certificate, the old key): refused, the old one still serves.
    let (cert2, key2, second) = certificate();
    std::fs::write(gw.dir.path().join("tls/cert.pem"), &cert2)?;
    let roots = vec![first.clone(), second.clone()];
    poll("the mismatched renewal refused", Duration::from_secs(15), |seen| {
        let m = metrics(roots.clone());
        async move {
            let a = m.await?;
            let failures = metric(&a.body, "mingchu_tls_reload_failures_total");
            seen.show(&failures);
            Ok((failures >= 1.0).then_some(a.cert))
        }
    })
    .await
    .map(|served| assert_eq!(served, first, "the previous certificate keeps serving"))?;

    // The key follows: the new pair is served on new connections, no restart.
    std::fs::write(gw.dir.path().join("tls/key.pem"), &key2)?;
    poll("the renewed certificate served", Duration::from_secs(15), |seen| {
        let m = metrics(roots.clone());
        let second = second.clone();
        async move {
            let a = m.await?;
            seen.show(&a.head.lines().next().unwrap_or_default());
            Ok((a.cert == second && metric(&a.body, "mingchu_tls_reloads_total") >= 1.0).then_some(()))
        }
    })
    .await?;
    Ok(())
}

/// A failed login of `name` that a proxy forwarded for `forwarded_for`; the status.
async fn fail_login(base: &str, forwarded_for: &str, name: &str) -> anyhow::Result<u16> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/session"))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({"name": name, "password": "not-the-password"}))
        .send()
        .await?;
    Ok(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() -> anyhow::Result<()> {
    for trusted in [true, false] {
        let dir = TempDir::new("mingchu-e2e")?;
        let proxies = if trusted { "trusted_proxies = [\"127.0.0.1\"]\n" } else { "" };
        let text = Gateway::config(&[], "[detect]\nenabled = false\n")
            .replace("data_dir = \"./data\"\n", &format!("data_dir = \"./data\"\n{proxies}"));
        let cfg = dir.path().join("mingchu.toml");
        write_private(&cfg, &text)?;
        add_admin(&cfg);
        let gw = Gateway::start_in(dir, &text)?;
        // Failures "from" one address, each for another name, so that only the address's
        // back-off grows: after six, the next one waits.
        let mut last = 0;
        for i in 0..7 {
            last = fail_login(&gw.base, "203.0.113.7", &format!("guess{i}")).await?;
        }
        assert_eq!(last, 429, "trusted={trusted}: the seventh try from one address backs off");
        // Another client behind the proxy is not held up by the first one's failures;
        // without a trusted proxy every request is 127.0.0.1's, and is.
        let other = fail_login(&gw.base, "198.51.100.9", "someone.else").await?;
        assert_eq!(other, if trusted { 401 } else { 429 }, "trusted={trusted}");
        // The trail is written in the background: wait for the last failure's row.
        let expect = if trusted { "198.51.100.9" } else { "127.0.0.1" };
        let gw = &gw;
        poll("the failed login's client in the audit trail", Duration::from_secs(10), |seen| async move {
            let audit = gw.get_json("/api/audit?action=login_failed").await?;
            seen.show(&audit);
            let n = audit.as_array().map(Vec::len).unwrap_or(0);
            let want = if trusted { 7 } else { 6 };
            Ok((n == want).then(|| audit[0]["client"].clone()))
        })
        .await
        .map(|client| assert_eq!(client, expect, "trusted={trusted}"))?;
        if trusted {
            // X-Forwarded-Proto from the trusted proxy marks the cookie Secure.
            let ok = reqwest::Client::new()
                .post(format!("{}/api/session", gw.base))
                .header("x-forwarded-for", "192.0.2.44")
                .header("x-forwarded-proto", "https")
                .json(&serde_json::json!({"name": "admin", "password": PASSWORD}))
                .send()
                .await?;
            assert_eq!(ok.status(), 200);
            let set = ok.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(set.contains("; Secure"), "{set}");
            poll("the login's client in the audit trail", Duration::from_secs(10), |seen| async move {
                let audit = gw.get_json("/api/audit?action=login").await?;
                seen.show(&audit);
                Ok((audit[0]["client"] == "192.0.2.44").then_some(()))
            })
            .await?;
        }
    }
    Ok(())
}
