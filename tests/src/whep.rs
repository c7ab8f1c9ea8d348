//! A WHEP viewer built on str0m: the same WebRTC stack a browser speaks to, on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::poll::poll;
use crate::stamp;

/// A complete frame as the viewer received it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Arrival (monotonic).
    pub at: Instant,
    /// Relay latency: arrival wall clock minus the simulator's stamp, when present.
    pub latency_us: Option<i64>,
    /// Annex-B data (empty unless the viewer keeps frames).
    pub data: Vec<u8>,
}

/// Counters a viewer keeps.
#[derive(Debug, Default, Clone)]
pub struct ViewerStats {
    /// Frames received.
    pub frames: u64,
    /// Time from sending the offer to the first complete frame.
    pub first_frame_after: Option<Duration>,
    /// Arrival of the last frame.
    pub last_frame_at: Option<Instant>,
    /// Relay latencies measured from stamps.
    pub latencies_us: Vec<i64>,
    /// (simulator stamp, latency) pairs, to match frames against another receiver.
    pub stamped: Vec<(u64, i64)>,
    /// Whether ICE+DTLS completed.
    pub connected: bool,
    /// Whether the session ended (server gone or ICE lost).
    pub ended: bool,
    /// Whether the viewer has stopped reading after [`Viewer::pause`]: no frame is
    /// counted after this is set.
    pub paused: bool,
}

/// Options for a viewer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewerOptions {
    /// Keep frame data and send it on the channel (for decoding).
    pub keep_frames: bool,
}

/// A connected WHEP viewer running on its own task.
pub struct Viewer {
    /// Live counters.
    pub stats: Arc<Mutex<ViewerStats>>,
    /// Frames, when `keep_frames` was set.
    pub frames: Option<mpsc::UnboundedReceiver<Frame>>,
    /// The WHEP session resource (absolute URL).
    pub location: String,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    want_keyframe: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Posts `offer` to a WHEP endpoint; returns the status, Location and body.
pub async fn post_offer(
    url: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((status, location, resp.text().await?))
}

impl Viewer {
    /// Connects to `base`/api/cameras/`camera`/whep.
    pub async fn connect(base: &str, token: &str, camera: &str, opts: ViewerOptions) -> anyhow::Result<Self> {
        Self::connect_to(base, &format!("/api/cameras/{camera}/whep"), token, opts).await
    }

    /// Connects to the WHEP endpoint at `base` + `path` (e.g. a share link's camera).
    pub async fn connect_to(base: &str, path: &str, token: &str, opts: ViewerOptions) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().context("no offer")?;
        let started = Instant::now();
        let url = format!("{base}{path}");
        let (status, location, body) = post_offer(&url, token, "application/sdp", offer.to_sdp_string()).await?;
        if status != 201 {
            bail!("WHEP offer answered {status}: {body}");
        }
        let location = format!("{base}{}", location.context("no Location header")?);
        let answer = SdpAnswer::from_sdp_string(&body).context("bad SDP answer")?;
        rtc.sdp_api().accept_answer(pending, answer)?;

        let stats = Arc::new(Mutex::new(ViewerStats::default()));
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let want_keyframe = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            rtc,
            socket,
            local,
            stats.clone(),
            if opts.keep_frames { Some(tx) } else { None },
            paused.clone(),
            stop.clone(),
            want_keyframe.clone(),
            started,
        ));
        Ok(Self {
            stats,
            frames: opts.keep_frames.then_some(rx),
            location,
            paused,
            stop,
            want_keyframe,
            task: Some(task),
        })
    }

    /// Stops reading the socket, as a viewer on a stalled network would.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Pauses and waits until the viewer's task has really stopped reading, so the frame
    /// count no longer moves.
    pub async fn pause_and_wait(&self) -> anyhow::Result<()> {
        self.pause();
        poll("viewer paused", Duration::from_secs(5), |_| async { Ok(self.stats().paused.then_some(())) }).await
    }

    /// Sends a PLI, as a decoder that lost a picture does.
    pub fn request_keyframe(&self) {
        self.want_keyframe.store(true, Ordering::SeqCst);
    }

    /// A copy of the counters.
    pub fn stats(&self) -> ViewerStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Frames received so far.
    pub fn frames_received(&self) -> u64 {
        self.stats().frames
    }

    /// Frames per second received over the next `window`.
    pub async fn fps_over(&self, window: Duration) -> f64 {
        let before = self.frames_received();
        tokio::time::sleep(window).await;
        (self.frames_received() - before) as f64 / window.as_secs_f64()
    }

    /// Waits until at least `n` frames arrived.
    pub async fn wait_frames(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        poll(&format!("{n} frames at the viewer"), timeout, |seen| async move {
            let got = self.frames_received();
            seen.show(&format!("{got} frames"));
            Ok((got >= n).then_some(()))
        })
        .await
    }

    /// Stamps (simulator clock, UNIX µs) of the frames received so far, in arrival order.
    pub fn stamps(&self) -> Vec<u64> {
        self.stats.lock().map(|s| s.stamped.iter().map(|&(t, _)| t).collect()).unwrap_or_default()
    }

    /// The newest simulator stamp received so far.
    pub fn newest_stamp(&self) -> Option<u64> {
        self.stats.lock().ok().and_then(|s| s.stamped.iter().map(|&(t, _)| t).max())
    }

    /// Sends WHEP DELETE and stops the task.
    pub async fn close(mut self, token: &str) -> anyhow::Result<u16> {
        let status = reqwest::Client::new().delete(&self.location).bearer_auth(token).send().await?.status().as_u16();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(status)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    stats: Arc<Mutex<ViewerStats>>,
    frames: Option<mpsc::UnboundedSender<Frame>>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    want_keyframe: Arc<AtomicBool>,
    started: Instant,
) {
    let mut buf = vec![0u8; 2048];
    let mut mid = None;
    loop {
        if let Some(mid) = mid
            && want_keyframe.swap(false, Ordering::SeqCst)
            && let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, None)
        {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if paused.load(Ordering::SeqCst) {
            if let Ok(mut s) = stats.lock() {
                s.paused = true;
            }
            // Neither read nor answer: the server sees a viewer whose network stalled.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        if let Ok(mut s) = stats.lock() {
                            s.connected = true;
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => break None,
                    Event::MediaAdded(m) => mid = Some(m.mid),
                    Event::MediaData(m) => {
                        mid = Some(m.mid);
                        let at = Instant::now();
                        let stamp_us = stamp::parse_stamp(&m.data);
                        let latency_us = stamp_us.map(|t| stamp::unix_micros_now() as i64 - t as i64);
                        if let Ok(mut s) = stats.lock() {
                            s.frames += 1;
                            s.first_frame_after.get_or_insert(at - started);
                            s.last_frame_at = Some(at);
                            if let (Some(t), Some(l)) = (stamp_us, latency_us) {
                                s.latencies_us.push(l);
                                s.stamped.push((t, l));
                            }
                        }
                        if let Some(tx) = &frames {
                            let _ = tx.send(Frame { at, latency_us, data: m.data.to_vec() });
                        }
                    }
                    _ => {}
                },
                Err(_) => break None,
            }
        };
        let Some(deadline) = deadline else { break };
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                if rtc.handle_input(input).is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(wait) => {
                if rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                    break;
                }
            }
        }
    }
    if let Ok(mut s) = stats.lock() {
        s.ended = true;
    }
}
