//! One WHEP viewer: a str0m peer fed from the camera's hub, on its own task.
//!
//! Each viewer reads its own hub queue, so a viewer that falls behind skips to the next
//! keyframe while the camera and every other viewer carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::hub::Subscription;

/// A datagram routed to this session by the shared socket's reader.
pub struct Datagram {
    /// When it arrived.
    pub at: Instant,
    /// Sender.
    pub source: SocketAddr,
    /// Payload.
    pub data: Vec<u8>,
}

/// How long a viewer may take from answer to connected media before it is reaped.
const CONNECT_DEADLINE: Duration = Duration::from_secs(20);
/// Silence after which a connected viewer counts as gone. Browsers send ICE consent
/// checks every ~5 s (RFC 7675), so this only fires when the peer really vanished.
const SILENCE_LIMIT: Duration = Duration::from_secs(15);
/// Least time between two keyframe replays for one viewer; doubles while requests keep
/// coming (a lossy link asking again and again) up to [`KEYFRAME_REPLAY_MAX_GAP`].
const KEYFRAME_REPLAY_GAP: Duration = Duration::from_millis(1000);
/// Longest wait between two replays; past it the viewer waits for the camera's keyframe.
const KEYFRAME_REPLAY_MAX_GAP: Duration = Duration::from_secs(8);

/// Maps source timestamps to this viewer's RTP clock, always moving forward.
#[derive(Debug, Default)]
pub struct RtpClock {
    offset: Option<i128>,
    last: Option<u64>,
}

impl RtpClock {
    /// The 90 kHz RTP time for a unit presented at `pts`.
    pub fn stamp(&mut self, pts: Duration) -> u64 {
        let src = (pts.as_nanos() * 9 / 100_000) as i128;
        let offset = *self.offset.get_or_insert(-src);
        let mut out = (src + offset).max(0) as u64;
        if let Some(last) = self.last {
            // Replays after a keyframe request carry older pts; keep RTP time monotonic.
            if out <= last {
                out = last + 1;
            }
        }
        self.last = Some(out);
        out
    }
}

/// Paces GOP replays for one viewer: the first request is answered at once; requests that
/// keep coming back space the replays out, since resending a GOP adds to a lossy link.
#[derive(Debug)]
pub struct ReplayPacer {
    last: Option<Instant>,
    gap: Duration,
}

impl Default for ReplayPacer {
    fn default() -> Self {
        Self { last: None, gap: KEYFRAME_REPLAY_GAP }
    }
}

impl ReplayPacer {
    /// Whether a keyframe request at `now` may be answered with a replay.
    pub fn allow(&mut self, now: Instant) -> bool {
        let Some(last) = self.last else {
            self.last = Some(now);
            return true;
        };
        let since = now.saturating_duration_since(last);
        if since < self.gap {
            return false;
        }
        // Asked again soon after the wait: back off. A quiet spell resets the pace.
        self.gap = if since < self.gap * 2 { (self.gap * 2).min(KEYFRAME_REPLAY_MAX_GAP) } else { KEYFRAME_REPLAY_GAP };
        self.last = Some(now);
        true
    }
}

/// Everything a viewer task needs.
pub struct Viewer {
    /// The negotiated peer.
    pub rtc: Rtc,
    /// The camera's access units.
    pub subscription: Subscription,
    /// Datagrams for this viewer.
    pub inbox: mpsc::Receiver<Datagram>,
    /// The shared UDP socket.
    pub socket: Arc<UdpSocket>,
    /// The socket's address as the viewer sees it.
    pub local: SocketAddr,
    /// Ends the session (DELETE or shutdown).
    pub cancel: CancellationToken,
    /// Session id, for logs.
    pub id: String,
}

/// Why a viewer session ended.
#[derive(Debug)]
pub enum EndReason {
    /// DELETE or shutdown.
    Cancelled,
    /// The peer went away (ICE consent lost).
    Disconnected,
    /// The peer never connected.
    NeverConnected,
    /// The camera's hub closed.
    HubClosed,
    /// str0m reported an error.
    Rtc(String),
}

impl Viewer {
    /// Runs until the viewer leaves or is cancelled.
    pub async fn run(mut self) -> EndReason {
        let created = Instant::now();
        let mut mid: Option<Mid> = None;
        let mut pt: Option<Pt> = None;
        let mut connected = false;
        let mut clock = RtpClock::default();
        let mut replays = ReplayPacer::default();
        let mut sent_frames: u64 = 0;
        let mut last_heard = Instant::now();
        let reason = loop {
            // Drain everything str0m wants to do before sleeping.
            let deadline = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break Ok(t),
                    Ok(Output::Transmit(t)) => {
                        // UDP to one peer: a send error only concerns this viewer.
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::Connected => connected = true,
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            break Err(EndReason::Disconnected);
                        }
                        Event::MediaAdded(m) => mid = Some(m.mid),
                        Event::KeyframeRequest(_)
                            if replays.allow(Instant::now()) && self.subscription.restart_from_gop() =>
                        {
                            debug!(session = %self.id, "keyframe request answered from the GOP cache");
                        }
                        _ => {}
                    },
                    Err(e) => break Err(EndReason::Rtc(e.to_string())),
                }
            };
            let deadline = match deadline {
                Ok(d) => d,
                Err(r) => break r,
            };
            if !self.rtc.is_alive() {
                break EndReason::Disconnected;
            }
            if !connected && created.elapsed() > CONNECT_DEADLINE {
                break EndReason::NeverConnected;
            }
            if connected && last_heard.elapsed() > SILENCE_LIMIT {
                break EndReason::Disconnected;
            }
            if pt.is_none()
                && connected
                && let Some(mid) = mid
                && let Some(writer) = self.rtc.writer(mid)
            {
                pt = writer.payload_params().find(|p| p.spec().codec == Codec::H264).map(|p| p.pt());
            }
            let sending = connected && pt.is_some();
            // Wake at least once a second to notice silence and the connect deadline.
            let deadline = deadline.min(Instant::now() + Duration::from_secs(1));
            let sleep = tokio::time::sleep_until(deadline.max(Instant::now()).into());
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break EndReason::Cancelled,
                d = self.inbox.recv() => {
                    let Some(d) = d else { break EndReason::Cancelled };
                    let Ok(contents) = d.data.as_slice().try_into() else { continue };
                    let input = Input::Receive(d.at, Receive {
                        proto: Protocol::Udp,
                        source: d.source,
                        destination: self.local,
                        contents,
                    });
                    match self.rtc.handle_input(input) {
                        Ok(()) => last_heard = d.at,
                        // A stray or forged datagram must not end the viewer's session;
                        // only an error that leaves the connection dead does.
                        Err(e) if self.rtc.is_alive() => debug!(session = %self.id, error = %e, "datagram rejected"),
                        Err(e) => break EndReason::Rtc(e.to_string()),
                    }
                }
                delivery = self.subscription.recv(), if sending => {
                    let Some(delivery) = delivery else { break EndReason::HubClosed };
                    let (Some(mid), Some(pt)) = (mid, pt) else { continue };
                    let Some(writer) = self.rtc.writer(mid) else { continue };
                    let rtp = clock.stamp(delivery.unit.pts);
                    let data = delivery.unit.data.clone();
                    if let Err(e) = writer.write(pt, Instant::now(), MediaTime::from_90khz(rtp), data) {
                        debug!(session = %self.id, error = %e, "write failed");
                    } else {
                        sent_frames += 1;
                    }
                }
                _ = sleep => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        break EndReason::Rtc(e.to_string());
                    }
                }
            }
        };
        self.rtc.disconnect();
        info!(session = %self.id, ?reason, sent_frames, "viewer left");
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_back_off_while_requests_keep_coming() {
        let t0 = Instant::now();
        let mut p = ReplayPacer::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(p.allow(at(0)));
        assert!(!p.allow(at(500)), "within the first gap");
        assert!(p.allow(at(1000)));
        assert!(!p.allow(at(2500)), "the gap doubled to 2 s");
        assert!(p.allow(at(3000)));
        assert!(!p.allow(at(6000)), "now 4 s");
        // A quiet spell resets the pace.
        assert!(p.allow(at(60_000)));
        assert!(p.allow(at(61_000)));
    }

    #[test]
    fn rtp_clock_starts_at_zero_and_stays_monotonic() {
        let mut c = RtpClock::default();
        assert_eq!(c.stamp(Duration::from_secs(10)), 0);
        assert_eq!(c.stamp(Duration::from_millis(10_040)), 3600);
        // A replayed (older) unit still moves forward.
        assert_eq!(c.stamp(Duration::from_secs(10)), 3601);
        assert_eq!(c.stamp(Duration::from_millis(10_080)), 7200);
    }
}
