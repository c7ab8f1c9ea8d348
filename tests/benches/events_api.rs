//! Events API benchmark: what the dashboard's event queue, sites page and statistics
//! cost with 100,000 events stored (90 days of 8 cameras in 4 sites).
//!
//! Run: `./dev.sh bench`. Everything runs on 127.0.0.1. Writes `target/bench/events_api.md`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use mingchu_e2e::measure::percentile;
use mingchu_e2e::procs::{Gateway, repo_root, tempdir::TempDir};

const EVENTS: usize = 100_000;
const REQUESTS: usize = 200;
const DAY_MS: i64 = 86_400_000;

fn ms(v: &[Duration], p: f64) -> f64 {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    percentile(&ms, p).unwrap_or(f64::NAN)
}

/// Fills `events.db` in `data_dir` through the gateway's own schema, in one transaction.
fn fill(data_dir: &std::path::Path, now_ms: i64) -> anyhow::Result<()> {
    drop(mingchu::events::Store::open(data_dir)?);
    let mut c = rusqlite::Connection::open(data_dir.join("events.db"))?;
    let tx = c.transaction()?;
    {
        let mut ev = tx.prepare(
            "INSERT INTO events (camera, rule, kind, severity, track, start_ms, end_ms, peak_confidence, status, \
             clip_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0.8, ?8, 'ready')",
        )?;
        let mut tr = tx.prepare(
            "INSERT INTO event_transitions (event_id, from_status, to_status, by, at_ms, note) \
             VALUES (?1, 'new', ?2, 'user:li', ?3, '')",
        )?;
        let rules = [
            ("animal_in_kitchen", "presence", "critical"),
            ("no_hat", "missing_attribute", "warning"),
            ("phone_use", "proximity", "info"),
        ];
        let statuses = ["new", "confirmed", "dismissed", "rectified", "closed"];
        let span = 90 * DAY_MS;
        for i in 0..EVENTS {
            // Oldest first, like a real store: ids grow with time.
            let start = now_ms - span + (i as i64) * span / EVENTS as i64;
            let (rule, kind, severity) = rules[i % 3];
            let status = statuses[(i * 7) % 5];
            ev.execute(rusqlite::params![
                format!("cam{}", i % 8),
                rule,
                kind,
                severity,
                i as i64,
                start,
                start + 20_000,
                status
            ])?;
            if status != "new" {
                tr.execute(rusqlite::params![tx.last_insert_rowid(), status, start + 600_000])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
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
    let dir = TempDir::new("mingchu-bench-events")?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let t = Instant::now();
    fill(&data, now)?;
    let filled = t.elapsed();
    let gw = Gateway::start_in(dir, &text)?;
    let http = reqwest::Client::new();
    let base = gw.base.clone();
    // A reviewer of one site: every query is narrowed to its cameras.
    let token: serde_json::Value = http
        .post(format!("{base}/api/tokens"))
        .bearer_auth(&gw.token)
        .json(&serde_json::json!({"name": "bench-reviewer", "role": "reviewer", "sites": ["s1"]}))
        .send()
        .await?
        .json()
        .await?;
    let reviewer = token["secret"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!reviewer.is_empty(), "token: {token}");

    let week = now - 7 * DAY_MS;
    let queries: Vec<(String, String, &str)> = vec![
        ("newest page".into(), "/api/events?limit=50".into(), "admin"),
        ("one camera".into(), "/api/events?camera=cam3&limit=50".into(), "admin"),
        ("one site".into(), "/api/events?site=s2&limit=50".into(), "admin"),
        ("status new, one kind".into(), "/api/events?status=new&kind=missing_attribute&limit=50".into(), "admin"),
        (
            "severity and last 7 days".into(),
            format!("/api/events?severity=critical&from={week}&to={now}&limit=50"),
            "admin",
        ),
        ("page 200 deep (before_id)".into(), "/api/events?before_id=90000&limit=50".into(), "admin"),
        ("a reviewer's queue (scope: one site)".into(), "/api/events?status=new&limit=50".into(), "reviewer"),
        ("sites page (open today, last event, 7 days)".into(), "/api/sites".into(), "admin"),
        ("statistics, 7 days".into(), "/api/stats".into(), "admin"),
        ("statistics, 90 days".into(), format!("/api/stats?from={}&to={now}", now - 90 * DAY_MS), "admin"),
    ];
    let mut report = String::from("# Events API benchmark\n\n");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    writeln!(
        report,
        "Machine: {cores} cores. Release build; {EVENTS} events over 90 days on 8 cameras in 4 sites \
         (filled in {:.1} s); {REQUESTS} sequential requests per row over loopback, after 20 to warm up. \
         Goal: a filtered page's p95 ≤ 50 ms.\n",
        filled.as_secs_f64()
    )?;
    writeln!(report, "| request | rows | p50 | p95 | max |\n|---|---|---|---|---|")?;
    let mut worst_page_p95: f64 = 0.0;
    for (what, path, who) in &queries {
        let bearer = if *who == "admin" { gw.token.clone() } else { reviewer.clone() };
        let mut times = Vec::new();
        let mut rows = 0;
        for i in 0..REQUESTS + 20 {
            let t = Instant::now();
            let r = http.get(format!("{base}{path}")).bearer_auth(&bearer).send().await?;
            anyhow::ensure!(r.status() == 200, "{path}: {}", r.status());
            let v: serde_json::Value = r.json().await?;
            if i >= 20 {
                times.push(t.elapsed());
            }
            rows = v.as_array().map_or(1, Vec::len);
        }
        let p95 = ms(&times, 95.0);
        if path.starts_with("/api/events") {
            worst_page_p95 = worst_page_p95.max(p95);
        }
        let max = times.iter().max().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
        writeln!(report, "| {what}: `{path}` | {rows} | {:.2} ms | {p95:.2} ms | {max:.2} ms |", ms(&times, 50.0))?;
    }
    writeln!(
        report,
        "\nWorst p95 of a filtered event page: {worst_page_p95:.2} ms (goal ≤ 50 ms: {}).",
        if worst_page_p95 <= 50.0 { "met" } else { "not met" }
    )?;
    println!("{report}");
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("events_api.md"), &report)?;
    eprintln!("report written to {}", out.join("events_api.md").display());
    Ok(())
}
