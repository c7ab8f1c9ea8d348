//! Access benchmark: what a login costs (argon2id), what a session or token lookup adds
//! to an API request, and what the permission check itself costs beside the request.
//!
//! Run: `./dev.sh bench`. Everything runs on 127.0.0.1. Writes `target/bench/access.md`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mingchu::access::{Action, Principal, Role, Scope, Who, password};
use mingchu_e2e::measure::percentile;
use mingchu_e2e::procs::{Gateway, binary, repo_root, tempdir::TempDir, write_private};

const PASSWORD: &str = "bench-password-食品";
const REQUESTS: usize = 500;

fn ms(v: &[Duration], p: f64) -> f64 {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    percentile(&ms, p).unwrap_or(f64::NAN)
}

async fn timed(n: usize, mut f: impl AsyncFnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut report = String::from("# Access benchmark\n\n");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    writeln!(
        report,
        "Machine: {cores} cores. Release build, one gateway with 8 cameras in 4 sites (no video needed).\n"
    )?;

    // In-process: hashing and verifying a password, and the permission check.
    let hashes = (0..10).map(|_| {
        let t = Instant::now();
        password::hash(PASSWORD).map(|_| t.elapsed())
    });
    let hashes: Vec<Duration> = hashes.collect::<Result<_, _>>()?;
    let stored = password::hash(PASSWORD)?;
    let mut verifies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        assert!(password::verify(PASSWORD, &stored)?);
        verifies.push(t.elapsed());
    }
    let p = Principal {
        who: Who::User { id: 1, name: "li".into() },
        role: Role::Reviewer,
        scope: Scope::Sites(BTreeSet::from(["s1".to_string(), "s3".to_string()])),
        expires_ms: None,
        session: None,
    };
    let sites: Vec<String> = (0..8).map(|i| format!("s{}", i % 4)).collect();
    let rounds = 1_000_000u32;
    let t = Instant::now();
    let mut seen = 0u32;
    for _ in 0..rounds {
        // One route's check: the role, then the scope of each camera listed.
        let p = std::hint::black_box(&p);
        if p.can(Action::Watch) {
            seen += sites.iter().filter(|s| p.sees_site(s)).count() as u32;
        }
    }
    let check_ns = t.elapsed().as_nanos() as f64 / f64::from(rounds);
    std::hint::black_box(seen);

    // Cross-process: a gateway with an account.
    let mut cams = Vec::new();
    for i in 0..8 {
        cams.push((format!("cam{i}"), format!("rtsp://127.0.0.1:9/cam{i}")));
    }
    let cam_refs: Vec<(&str, String)> = cams.iter().map(|(a, b)| (a.as_str(), b.clone())).collect();
    let mut text = Gateway::config(&cam_refs, "[detect]\nenabled = false\n");
    for s in 0..4 {
        text.push_str(&format!("[[sites]]\nid = \"s{s}\"\nname = \"site {s}\"\n\n"));
    }
    for i in 0..8 {
        text = text.replace(
            &format!("url = \"rtsp://127.0.0.1:9/cam{i}\"\n"),
            &format!("url = \"rtsp://127.0.0.1:9/cam{i}\"\nsite = \"s{}\"\n", i % 4),
        );
    }
    let dir = TempDir::new("mingchu-bench")?;
    let cfg = dir.path().join("mingchu.toml");
    write_private(&cfg, &text)?;
    let mut child = Command::new(binary("mingchu"))
        .arg("--config")
        .arg(&cfg)
        .args(["user", "add", "--role", "reviewer", "--sites", "s1,s3", "--password-stdin", "li"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child.stdin.take().map(|mut s| s.write_all(format!("{PASSWORD}\n").as_bytes())).transpose()?;
    anyhow::ensure!(child.wait()?.success(), "user add failed");
    let gw = Gateway::start_in(dir, &text)?;
    let http = reqwest::Client::new();
    let base = gw.base.clone();

    let mut cookie = String::new();
    let logins = timed(20, async || {
        let r = http
            .post(format!("{base}/api/session"))
            .json(&serde_json::json!({"name": "li", "password": PASSWORD}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "login: {}", r.status());
        cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_owned();
        Ok(())
    })
    .await?;
    let get = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await?;
        anyhow::ensure!(r.status() == 200, "{}", r.status());
        r.bytes().await?;
        Ok(())
    };
    // Warm up, then alternate so both see the same machine.
    for _ in 0..50 {
        get(http.get(format!("{base}/api/cameras")).header("cookie", &cookie)).await?;
    }
    let mut by_cookie = Vec::new();
    let mut by_token = Vec::new();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        get(http.get(format!("{base}/api/cameras")).header("cookie", &cookie)).await?;
        by_cookie.push(t.elapsed());
        let t = Instant::now();
        get(http.get(format!("{base}/api/cameras")).bearer_auth(&gw.token)).await?;
        by_token.push(t.elapsed());
    }

    writeln!(report, "| what | p50 | p90 | max |\n|---|---|---|---|")?;
    let row = |r: &mut String, what: &str, v: &[Duration]| {
        let max = v.iter().max().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
        writeln!(r, "| {what} | {:.2} ms | {:.2} ms | {max:.2} ms |", ms(v, 50.0), ms(v, 90.0))
    };
    row(&mut report, "argon2id hash (19 MiB, 2 passes), in process", &hashes)?;
    row(&mut report, "argon2id verify, in process", &verifies)?;
    row(&mut report, "login: POST /api/session (verify + session row)", &logins)?;
    row(&mut report, &format!("GET /api/cameras with the session cookie ({REQUESTS}×)"), &by_cookie)?;
    row(&mut report, &format!("GET /api/cameras with the config bearer token ({REQUESTS}×)"), &by_token)?;
    let req_ns = ms(&by_cookie, 50.0) * 1e6;
    writeln!(
        report,
        "\nThe permission check of that route (the role, then the site of each of the 8 cameras): \
         {check_ns:.1} ns per request, measured in process over {rounds} rounds — {:.4} % of the \
         request's p50. The session lookup (one SQLite read by hash) is the difference between the \
         two request rows.",
        check_ns / req_ns * 100.0
    )?;
    println!("{report}");
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("access.md"), &report)?;
    eprintln!("report written to {}", out.join("access.md").display());
    Ok(())
}
