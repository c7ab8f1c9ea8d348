//! Measurements taken in the same run as what they are compared with: frame rates of
//! viewers against the camera's own, latency through the gateway against a direct RTSP
//! client, process CPU and memory from /proc, and percentiles.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::poll::poll;
use crate::procs::Gateway;
use crate::stamp;
use crate::whep::Viewer;

/// Fewer camera frames than this in a window say nothing about rates.
const MIN_WINDOW_FRAMES: u64 = 10;
/// How long after a window its last frames may still be on their way to a viewer.
const SETTLE: Duration = Duration::from_secs(3);

/// One camera over one window: the frames the gateway received from it, and for each
/// viewer how many of the frames the camera made in that window reached it.
#[derive(Debug, Clone)]
pub struct Rates {
    /// The camera.
    pub camera: String,
    /// Length of the window.
    pub window: Duration,
    /// Access units the gateway received (`mingchu_frames_in_total`) during the window.
    pub camera_frames: u64,
    /// Per viewer, frames stamped by the camera during the window that reached it.
    pub viewer_frames: Vec<u64>,
}

impl Rates {
    /// The camera's frame rate as the gateway received it.
    pub fn camera_fps(&self) -> f64 {
        self.camera_frames as f64 / self.window.as_secs_f64()
    }

    /// Frame rate viewer `i` got.
    pub fn viewer_fps(&self, i: usize) -> f64 {
        self.viewer_frames.get(i).copied().unwrap_or(0) as f64 / self.window.as_secs_f64()
    }

    /// Fails unless the camera sent video in the window and every viewer got at least
    /// `share` (0..1) of it, and no viewer got frames more than once.
    pub fn check_viewers_keep_up(&self, share: f64) -> anyhow::Result<()> {
        ensure!(
            self.camera_frames >= MIN_WINDOW_FRAMES,
            "camera {} sent only {} frames in {:?}: nothing to compare viewers with",
            self.camera,
            self.camera_frames,
            self.window
        );
        for (i, &got) in self.viewer_frames.iter().enumerate() {
            // Two frames either way: the window edges are read on two different clocks.
            let (low, high) = (self.camera_frames as f64 * share - 2.0, self.camera_frames as f64 / share + 2.0);
            ensure!(
                (low..=high).contains(&(got as f64)),
                "viewer {i} of {} got {got} frames ({:.1} fps) while the camera sent {} ({:.1} fps) in {:?}; \
                 expected {low:.0}..={high:.0}",
                self.camera,
                self.viewer_fps(i),
                self.camera_frames,
                self.camera_fps(),
                self.window
            );
        }
        Ok(())
    }
}

/// Measures [`Rates`] of `camera` over the next `window`.
///
/// Viewer frames are counted by the camera's own stamp, not by arrival: a viewer that
/// just joined gets the cached GOP in one burst, which would otherwise count as a
/// high rate, and the frames made at the end of the window are waited for (up to a few
/// seconds) so a little delay is not mistaken for a loss.
pub async fn rates(gw: &Gateway, camera: &str, viewers: &[&Viewer], window: Duration) -> anyhow::Result<Rates> {
    let series = format!("mingchu_frames_in_total{{camera=\"{camera}\"}}");
    let c0 = gw.metric(&series).await?;
    let a = stamp::unix_micros_now();
    tokio::time::sleep(window).await;
    let b = stamp::unix_micros_now();
    let c1 = gw.metric(&series).await?;
    // A viewer that is not keeping up simply counts fewer frames below; how long to wait
    // for it is all that matters here.
    let _ = poll("viewers past the window", SETTLE, |_| async move {
        Ok(viewers.iter().all(|v| v.newest_stamp().is_some_and(|t| t >= b)).then_some(()))
    })
    .await;
    let viewer_frames =
        viewers.iter().map(|v| v.stamps().iter().filter(|&&t| (a..b).contains(&t)).count() as u64).collect();
    Ok(Rates {
        camera: camera.to_owned(),
        window: Duration::from_micros(b.saturating_sub(a)),
        camera_frames: (c1 - c0).max(0.0) as u64,
        viewer_frames,
    })
}

/// (stamp, latency µs) of each frame a plain RTSP client pulling `url` directly gets
/// during `duration`: the baseline the relay adds to. Blocking.
pub fn direct_rtsp_latencies(url: &str, duration: Duration) -> anyhow::Result<Vec<(u64, f64)>> {
    gst::init()?;
    let pipeline = gst::parse::launch(
        "rtspsrc name=src protocols=tcp latency=0 ! rtph264depay ! h264parse ! \
         video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    pipeline.by_name("src").context("src")?.set_property("location", url);
    let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).context("sink")?;
    pipeline.set_state(gst::State::Playing)?;
    let end = Instant::now() + duration;
    let mut out = Vec::new();
    while Instant::now() < end {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else { continue };
        let now = stamp::unix_micros_now();
        if let Some(buf) = sample.buffer()
            && let Ok(map) = buf.map_readable()
            && let Some(t) = stamp::parse_stamp(map.as_slice())
        {
            out.push((t, now as f64 - t as f64));
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(out)
}

/// Latency the relay adds to each frame both a viewer and a direct client got: the
/// viewer's latency minus the direct client's for the same stamp.
pub fn relay_added(relayed: &[(u64, i64)], direct: &[(u64, f64)]) -> Vec<f64> {
    let by_stamp: std::collections::HashMap<u64, f64> = direct.iter().copied().collect();
    relayed.iter().filter_map(|(t, l)| by_stamp.get(t).map(|d| *l as f64 - d)).collect()
}

/// CPU time (user + system) a process has used.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY-free: the tick rate is 100 on every Linux this runs on (USER_HZ).
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Share of one core a process used over `window` (100.0 = one full core).
pub async fn cpu_percent(pid: u32, window: Duration) -> Option<f64> {
    let t0 = Instant::now();
    let c0 = cpu_time(pid)?;
    tokio::time::sleep(window).await;
    let c1 = cpu_time(pid)?;
    Some((c1 - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0)
}

/// The `p`-th percentile (0..=100) of `values`, by nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v.get(rank.min(v.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_some());
        assert!(rss_mib(pid).unwrap_or(0.0) > 1.0);
    }
}
