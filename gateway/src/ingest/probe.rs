//! Testing a camera before it is saved: connect once, take the first keyframe, and show
//! its picture, codec and size.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{PipelineEvent, RunningPipeline};
use crate::config::Transport;
use crate::sampler::still::{Still, StillError, decode_keyframe};

/// What a connection test found.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The video codec (`H.264`: the only one the gateway forwards).
    pub codec: &'static str,
    /// The first keyframe, decoded.
    pub still: Still,
    /// How long until the first keyframe arrived.
    pub took: Duration,
}

/// Why a connection test failed, in words for the installer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The pipeline failed: unreachable, refused, wrong path or credentials.
    #[error("{0}")]
    Connect(String),
    /// The stream is not H.264.
    #[error("the camera's video is not H.264 (set the camera's encoder to H.264): {0}")]
    NotH264(String),
    /// Connected, but no keyframe came.
    #[error("no picture from the camera within {0:?}")]
    Timeout(Duration),
    /// The keyframe did not decode.
    #[error("the camera's picture did not decode: {0}")]
    Still(#[from] StillError),
}

/// The pipeline's error in the installer's words, with GStreamer's own after it.
fn explain(e: &str) -> String {
    let l = e.to_ascii_lowercase();
    let why = if l.contains("unauthorized") {
        "the camera refused the user name or password (RTSP 401)"
    } else if l.contains("not found") {
        "the camera has no stream at this path (RTSP 404)"
    } else if l.contains("could not open resource") || l.contains("connection refused") {
        "nothing answers at this address and port"
    } else if l.contains("timeout") || l.contains("timed out") {
        "the camera did not answer in time"
    } else {
        return e.to_owned();
    };
    format!("{why} ({e})")
}

/// Connects to `url` and waits up to `timeout` for a keyframe. Blocking.
pub fn probe(url: &str, transport: Transport, timeout: Duration) -> Result<Probe, ProbeError> {
    let started = Instant::now();
    let (tx, rx) = mpsc::sync_channel(1);
    let running = RunningPipeline::start(url, transport, move |unit| {
        if unit.keyframe {
            let _ = tx.try_send(unit.data);
        }
    })
    .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let outcome = loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break Err(ProbeError::Timeout(timeout));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(50))) {
            Ok(data) => break Ok(data),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(ProbeError::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        match running.poll_event() {
            Some(PipelineEvent::Error(e)) if e.contains("not-negotiated") || e.contains("not negotiated") => {
                break Err(ProbeError::NotH264(e));
            }
            Some(PipelineEvent::Error(e)) => break Err(ProbeError::Connect(explain(&e))),
            Some(PipelineEvent::Eos) => break Err(ProbeError::Connect("the camera ended the stream".into())),
            None => {}
        }
    };
    running.stop();
    let data = outcome?;
    let took = started.elapsed();
    let still = decode_keyframe(data, Duration::from_secs(5))?;
    Ok(Probe { codec: "H.264", still, took })
}
