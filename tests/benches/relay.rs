//! Relay benchmark: latency the gateway adds, time to first frame, and the gateway's CPU
//! and memory with 1 camera and 1, 20, 100 viewers, plus ingest CPU per camera.
//!
//! Run: `./dev.sh bench` (or `cargo bench -p mingchu-e2e --bench relay` after a release
//! build of the binaries). Everything runs on 127.0.0.1. Writes `target/bench/relay.md`.

use std::fmt::Write as _;
use std::time::Duration;

use mingchu_e2e::measure::{cpu_percent, direct_rtsp_latencies, percentile, relay_added, rss_mib};
use mingchu_e2e::procs::{Gateway, Sim, SimOptions};
use mingchu_e2e::whep::{Viewer, ViewerOptions};

const FPS: u32 = 25;
const GOP: u32 = 50; // 2 s
const MEASURE: Duration = Duration::from_secs(10);

fn camera_720p() -> SimOptions {
    SimOptions { fps: FPS, gop: GOP, width: 1280, height: 720, bitrate_kbps: 2000, ..Default::default() }
}

async fn connect_viewers(gw: &Gateway, n: usize) -> anyhow::Result<Vec<Viewer>> {
    let mut viewers = Vec::with_capacity(n);
    for _ in 0..n {
        viewers.push(Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?);
    }
    for v in &viewers {
        v.wait_frames(1, Duration::from_secs(20)).await?;
    }
    Ok(viewers)
}

fn ms(us: Option<f64>) -> String {
    us.map(|v| format!("{:.2}", v / 1000.0)).unwrap_or_else(|| "n/a".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut report = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    writeln!(report, "# Relay benchmark\n")?;
    writeln!(report, "Camera: camera-sim 1280x720 @ {FPS} fps, GOP {GOP} frames (2 s), 2 Mbit/s, RTSP over TCP.")?;
    writeln!(
        report,
        "Machine: {cores} cores. All traffic on 127.0.0.1. Viewers are str0m WHEP clients in the benchmark process.\n"
    )?;

    // 1. Latency: direct RTSP vs through the gateway, and time to first frame.
    let sim = Sim::start(&camera_720p())?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(15)).await?;
    // The direct client and the viewer receive the same frames at the same time; each
    // frame's stamp pairs its two arrivals.
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let url = sim.url("cam1");
    let skip = viewer.stats().stamped.len();
    let direct_pairs = tokio::task::spawn_blocking(move || direct_rtsp_latencies(&url, MEASURE)).await??;
    let relayed_pairs: Vec<(u64, i64)> = viewer.stats().stamped[skip..].to_vec();
    viewer.close(&gw.token).await?;
    let direct: Vec<f64> = direct_pairs.iter().map(|&(_, l)| l).collect();
    let relayed: Vec<f64> = relayed_pairs.iter().map(|&(_, l)| l as f64).collect();
    let added = relay_added(&relayed_pairs, &direct_pairs);
    let (d50, d99) = (percentile(&direct, 50.0), percentile(&direct, 99.0));
    let (r50, r99) = (percentile(&relayed, 50.0), percentile(&relayed, 99.0));
    writeln!(report, "## Latency (camera-sim stamp → client arrival, same clock)\n")?;
    writeln!(report, "| path | frames | p50 ms | p99 ms |\n|---|---|---|---|")?;
    writeln!(report, "| camera → RTSP client (direct) | {} | {} | {} |", direct.len(), ms(d50), ms(d99))?;
    writeln!(report, "| camera → mingchu → WebRTC viewer | {} | {} | {} |", relayed.len(), ms(r50), ms(r99))?;
    writeln!(
        report,
        "| **added by the relay** (same frames: relayed − direct arrival) | {} | **{}** | **{}** |",
        added.len(),
        ms(percentile(&added, 50.0)),
        ms(percentile(&added, 99.0))
    )?;

    // Time to first frame: new viewers joining at spread-out points of the GOP.
    let mut ttff = Vec::new();
    for i in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(170 + 37 * i)).await;
        let v = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
        v.wait_frames(1, Duration::from_secs(10)).await?;
        if let Some(t) = v.stats().first_frame_after {
            ttff.push(t.as_secs_f64() * 1e6);
        }
        v.close(&gw.token).await?;
    }
    writeln!(
        report,
        "\n## Time to first frame (offer POST → first complete keyframe, signalling and DTLS included)\n"
    )?;
    writeln!(
        report,
        "{} joins: p50 {} ms, max {} ms (the GOP cache hands over the last keyframe at once)",
        ttff.len(),
        ms(percentile(&ttff, 50.0)),
        ms(percentile(&ttff, 100.0))
    )?;

    // 2. Gateway CPU and RSS with 0, 1, 20, 100 viewers of one camera.
    writeln!(report, "\n## Gateway CPU and memory, 1 camera\n")?;
    writeln!(
        report,
        "| viewers | gateway CPU (% of one core) | per viewer | RSS MiB | min viewer fps |\n|---|---|---|---|---|"
    )?;
    let mut viewers: Vec<Viewer> = Vec::new();
    let mut base_cpu = None;
    for target in [0usize, 1, 20, 100] {
        let more = connect_viewers(&gw, target - viewers.len()).await?;
        viewers.extend(more);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before: Vec<u64> = viewers.iter().map(|v| v.frames_received()).collect();
        let cpu = cpu_percent(gw.proc.pid(), MEASURE).await.unwrap_or(f64::NAN);
        let rss = rss_mib(gw.proc.pid()).unwrap_or(f64::NAN);
        let min_fps = viewers
            .iter()
            .zip(&before)
            .map(|(v, b)| (v.frames_received() - b) as f64 / MEASURE.as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        let per_viewer = match (target, base_cpu) {
            (0, _) => {
                base_cpu = Some(cpu);
                "-".to_string()
            }
            (n, Some(b)) => format!("{:.2} %", (cpu - b) / n as f64),
            _ => "-".into(),
        };
        let min_fps = if min_fps.is_finite() { format!("{min_fps:.1}") } else { "-".into() };
        writeln!(report, "| {target} | {cpu:.1} % | {per_viewer} | {rss:.1} | {min_fps} |")?;
    }
    if let Some(b) = base_cpu {
        let cpu100 = cpu_percent(gw.proc.pid(), Duration::from_secs(5)).await.unwrap_or(f64::NAN);
        let per = (cpu100 - b) / 100.0;
        if per > 0.0 {
            writeln!(report, "\nAt 100 viewers: ≈{:.0} viewers per core of relay work.", 100.0 / per)?;
        }
    }
    for v in viewers {
        let _ = v.close(&gw.token).await;
    }
    drop(gw);
    drop(sim);

    // 3. Ingest CPU per camera, no viewers.
    let n = 4;
    let sim = Sim::start(&SimOptions { cameras: n, ..camera_720p() })?;
    let cams: Vec<(String, String)> = (1..=n).map(|i| (format!("cam{i}"), sim.url(&format!("cam{i}")))).collect();
    let refs: Vec<(&str, String)> = cams.iter().map(|(id, u)| (id.as_str(), u.clone())).collect();
    let gw = Gateway::start(&refs)?;
    for (id, _) in &cams {
        gw.wait_state(id, "online", Duration::from_secs(15)).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_percent(gw.proc.pid(), MEASURE).await.unwrap_or(f64::NAN);
    let rss = rss_mib(gw.proc.pid()).unwrap_or(f64::NAN);
    writeln!(report, "\n## Ingest, no viewers\n")?;
    writeln!(
        report,
        "{n} cameras (720p25, 2 Mbit/s): gateway {cpu:.1} % of one core in all, {:.2} % per camera; RSS {rss:.1} MiB.",
        cpu / n as f64
    )?;

    println!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("relay.md"), &report)?;
    eprintln!("report written to {}", dir.join("relay.md").display());
    Ok(())
}
