//! Detection benchmark: per-frame cost against a bare `session.run`, how many 720p
//! cameras at 2 detect fps this machine sustains with live relay running (decode `all`
//! and `keyframes`), and how long a violation on screen takes to become an event.
//!
//! Run: `./dev.sh bench`. Everything runs on 127.0.0.1. Writes `target/bench/detect.md`.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use mingchu::detect::model::ModelSpec;
use mingchu::detect::onnx;
use mingchu::detect::service::Detector;
use mingchu_e2e::measure::{cpu_percent, percentile};
use mingchu_e2e::procs::{Gateway, Sim, SimOptions, detect_config, detect_config_for, repo_root};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

fn median_ms(v: &[Duration]) -> f64 {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    percentile(&ms, 50.0).unwrap_or(f64::NAN)
}

/// The shipped models: the default and its int8 version.
const MODELS: [&str; 2] = ["nanodet-g-416", "nanodet-g-416-int8"];

/// Stage timings on a 1280x720 picture made from a real photograph.
fn per_frame(report: &mut String, model: &str) -> anyhow::Result<()> {
    let root = repo_root();
    let spec = ModelSpec::load(&root.join(format!("models/{model}.toml")))?;
    let env = onnx::init_runtime(&root.join(".tools/onnxruntime/libonnxruntime.so.1.32.0"))?;
    let photo = image::open(root.join(".tools/photos/astronaut.png"))?.to_rgb8();
    let mut canvas = image::RgbImage::from_pixel(1280, 720, image::Rgb([90, 90, 90]));
    let person = image::imageops::resize(&photo, 600, 600, image::imageops::FilterType::Triangle);
    image::imageops::overlay(&mut canvas, &person, 300, 60);
    for threads in [1usize, 2] {
        let mut det = Detector::open(env, &spec, threads)?;
        let mut out = Vec::new();
        for _ in 0..5 {
            det.detect(canvas.as_raw(), 1280, 720, 1280 * 3, &mut out)?;
        }
        let (mut pre, mut inf, mut post, mut total, mut bare) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..30 {
            let t = Instant::now();
            let s = det.detect(canvas.as_raw(), 1280, 720, 1280 * 3, &mut out)?;
            total.push(t.elapsed());
            pre.push(s.preprocess);
            inf.push(s.inference);
            post.push(s.postprocess);
            bare.push(det.run_bare()?);
        }
        let people = out.iter().filter(|d| d.label == "person").count();
        let (t, b) = (median_ms(&total), median_ms(&bare));
        writeln!(
            report,
            "| {model} | {threads} | {:.2} | {:.2} | {:.2} | {t:.2} | {b:.2} | {:+.1} % | {people} |",
            median_ms(&pre),
            median_ms(&inf),
            median_ms(&post),
            (t - b) / b * 100.0
        )?;
    }
    Ok(())
}

/// Sum of a metric over all its label sets.
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

fn detect_frames(metrics: &str) -> f64 {
    metric_sum(metrics, "mingchu_detect_frames_total")
}

async fn metrics(gw: &Gateway) -> anyhow::Result<String> {
    Ok(reqwest::Client::new().get(format!("{}/metrics", gw.base)).bearer_auth(&gw.token).send().await?.text().await?)
}

/// N gateway cameras pulling one simulated 720p25 camera (one encoder serves them all,
/// so the simulator does not eat the cores being measured), 1 live viewer.
async fn capacity(report: &mut String, n: usize, decode: &str, model: &str, workers: usize) -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions {
        width: 1280,
        height: 720,
        bitrate_kbps: 2000,
        scene: Some("default".into()),
        ..Default::default()
    })?;
    let scene_start = Instant::now();
    let ids: Vec<String> = (1..=n).map(|i| format!("cam{i}")).collect();
    let cams: Vec<(&str, String)> = ids.iter().map(|id| (id.as_str(), sim.url("cam1"))).collect();
    let extra =
        format!("{}fps = 2\ndecode = \"{decode}\"\nworkers = {workers}\n", detect_config_for(&format!("{model}.toml")));
    let gw = Gateway::start_with(&Gateway::config(&cams, &extra))?;
    for id in &ids {
        gw.wait_state(id, "online", Duration::from_secs(20)).await?;
    }
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(15);
    let m0 = metrics(&gw).await?;
    let v0 = viewer.frames_received();
    let cpu = cpu_percent(gw.proc.pid(), window).await.unwrap_or(f64::NAN);
    let m1 = metrics(&gw).await?;
    let rate = (detect_frames(&m1) - detect_frames(&m0)) / window.as_secs_f64();
    let decoded = "mingchu_detect_decoded_total";
    let decoded_share =
        (metric_sum(&m1, decoded) - metric_sum(&m0, decoded)) / (n as f64 * 25.0 * window.as_secs_f64()) * 100.0;
    let viewer_fps = (viewer.frames_received() - v0) as f64 / window.as_secs_f64();
    // The cat is on screen from 25 s to 40 s of the scene: does every camera report it?
    let cat_gone = scene_start + Duration::from_secs(45);
    tokio::time::sleep(cat_gone.saturating_duration_since(Instant::now())).await;
    let events = gw.get_json("/api/events?limit=500").await?;
    let mut with_cat: Vec<&str> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["rule"] == "animal_in_kitchen")
        .filter_map(|e| e["camera"].as_str())
        .collect();
    with_cat.sort_unstable();
    with_cat.dedup();
    // Keyframes mode can sample at most once per GOP (2 s here).
    let demand = n as f64 * if decode == "keyframes" { 0.5 } else { 2.0 };
    writeln!(
        report,
        "| {model} | {workers} | {n} | {decode} | {demand:.1} | {rate:.1} | {:.0} % | {decoded_share:.0} % | {cpu:.0} % | {viewer_fps:.1} | {}/{n} |",
        rate / demand * 100.0,
        with_cat.len()
    )?;
    Ok(())
}

/// Scene time → event arrival on the SSE feed, for the person (enters at 10 s) and the
/// cat (enters at 25 s), with `min_duration_s = 1`.
async fn event_latency(report: &mut String) -> anyhow::Result<()> {
    let sim =
        Sim::start(&SimOptions { width: 1280, height: 720, scene: Some("default".into()), ..Default::default() })?;
    let t0 = SystemTime::now();
    let rules = "[[rules]]\nid = \"person\"\nkind = \"presence\"\nsubject = \"person\"\nmin_duration_s = 1\n\
                 [[rules]]\nid = \"animal\"\nkind = \"presence\"\nsubject = \"animal\"\nmin_duration_s = 1\n";
    let gw =
        Gateway::start_with(&Gateway::config(&[("cam1", sim.url("cam1"))], &format!("{}{rules}", detect_config())))?;
    let mut sse =
        reqwest::Client::new().get(format!("{}/api/events/stream", gw.base)).bearer_auth(&gw.token).send().await?;
    let mut seen: Vec<(String, f64)> = Vec::new();
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    while seen.len() < 2 && Instant::now() < deadline {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(5), sse.chunk()).await else { continue };
        let at = SystemTime::now().duration_since(t0).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for rule in ["person", "animal"] {
            if buf.contains(&format!("\"rule\":\"{rule}\"")) && !seen.iter().any(|(r, _)| r == rule) {
                seen.push((rule.to_owned(), at));
            }
        }
    }
    for (rule, at) in seen {
        let on_screen = if rule == "person" { 10.0 } else { 25.0 };
        writeln!(
            report,
            "| {rule} | {on_screen:.0} s | {at:.2} s | {:.2} s | {:.2} s |",
            at - on_screen,
            at - on_screen - 1.0
        )?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut report = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    writeln!(report, "# Detection benchmark\n\nMachine: {cores} cores. ONNX Runtime 1.32, CPU.\n")?;
    writeln!(report, "## Per frame (1280x720 picture, median of 30)\n")?;
    writeln!(
        report,
        "| model | intra-op threads | preprocess ms | session.run ms | postprocess ms | total ms | bare session.run ms | overhead | people found |\n|---|---|---|---|---|---|---|---|---|"
    )?;
    for model in MODELS {
        per_frame(&mut report, model)?;
    }

    writeln!(report, "\n## Cameras at 2 detect fps with live relay (1 viewer), 1 intra-op thread per worker\n")?;
    writeln!(
        report,
        "| model | workers | cameras | decode | pictures/s wanted | pictures/s analysed | served | frames decoded | gateway CPU | viewer fps | cameras that reported the cat |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for decode in ["keyframes", "all"] {
        for n in [4usize, 8, 16] {
            capacity(&mut report, n, decode, MODELS[0], 1).await?;
        }
    }
    for (n, workers) in [(8usize, 1usize), (16, 1), (16, 2)] {
        capacity(&mut report, n, "all", MODELS[1], workers).await?;
    }

    writeln!(report, "\n## Violation on screen → event on the SSE feed (min_duration_s = 1)\n")?;
    writeln!(
        report,
        "| rule | on screen at | event at | latency | latency beyond min_duration |\n|---|---|---|---|---|"
    )?;
    event_latency(&mut report).await?;

    println!("{report}");
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("detect.md"), &report)?;
    eprintln!("report written to {}", dir.join("detect.md").display());
    Ok(())
}
