//! Live view over WebRTC (WHEP): the camera's own H.264, forwarded to each viewer.
//!
//! All viewers share one UDP socket. A reader task routes each datagram to its session by
//! source address, learning new addresses from STUN requests that name the session's ICE
//! username and carry a valid MESSAGE-INTEGRITY for its password. Each session runs on
//! its own task with its own hub queue.

mod session;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::ice::{IceCreds, StunMessage};
use str0m::{Candidate, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ingest::Camera;
pub use session::{Datagram, EndReason, RtpClock};

/// Why a viewer could not be added.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The offer is not a usable SDP offer.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// The gateway is at `webrtc.max_viewers`.
    #[error("too many viewers ({0}); try again later")]
    Full(usize),
    /// The owner already has its most views open (a share link's viewer cap).
    #[error("the limit of {0} viewers is reached; try later")]
    OwnerFull(usize),
    /// The UDP socket could not be set up.
    #[error("cannot open the WebRTC socket {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The DTLS certificate could not be made.
    #[error("cannot create a DTLS certificate")]
    Certificate,
}

/// Settings for live view.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Where the shared UDP socket binds.
    pub udp_listen: SocketAddr,
    /// ICE host candidates offered to viewers.
    pub candidates: Vec<SocketAddr>,
    /// Per-viewer hub queue length.
    pub viewer_queue: usize,
    /// Most viewers at once.
    pub max_viewers: usize,
}

/// Addresses one session may be reached at; a newer binding evicts the oldest.
const MAX_ADDRS_PER_SESSION: usize = 8;

struct SessionEntry {
    camera: String,
    ufrag: String,
    /// The local ICE password: a STUN request must be signed with it to bind an address.
    pass: String,
    /// Bound source addresses, oldest first.
    addrs: VecDeque<SocketAddr>,
    inbox: mpsc::Sender<Datagram>,
    cancel: CancellationToken,
    /// Who watches, as the audit trail names them.
    owner: String,
}

#[derive(Default)]
struct Routes {
    sessions: HashMap<String, SessionEntry>,
    by_ufrag: HashMap<String, String>,
    by_addr: HashMap<SocketAddr, String>,
}

impl Routes {
    /// Binds `source` to session `id` when `request` is signed with its ICE password;
    /// the session's oldest address goes when it has too many.
    fn bind(&mut self, id: &str, source: SocketAddr, request: &[u8]) -> bool {
        let Some(s) = self.sessions.get_mut(id) else { return false };
        if !stun_request_signed(request, &s.pass) {
            return false;
        }
        if let Some(old) = self.by_addr.insert(source, id.to_owned())
            && let Some(prev) = self.sessions.get_mut(&old)
        {
            prev.addrs.retain(|a| *a != source);
        }
        let Some(s) = self.sessions.get_mut(id) else { return false };
        s.addrs.retain(|a| *a != source);
        s.addrs.push_back(source);
        while s.addrs.len() > MAX_ADDRS_PER_SESSION {
            if let Some(gone) = s.addrs.pop_front() {
                self.by_addr.remove(&gone);
            }
        }
        true
    }
}

/// The WHEP service: creates, routes and ends viewer sessions.
pub struct Live {
    settings: LiveSettings,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    cert: DtlsCert,
    routes: Mutex<Routes>,
    cancel: CancellationToken,
}

/// One viewer's session as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// Session id (the last path segment of its WHEP resource).
    pub id: String,
    /// Camera watched.
    pub camera: String,
    /// Who watches (`user:li`, `share:3`).
    pub owner: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    /// Binds the shared socket and starts routing datagrams.
    pub async fn start(settings: LiveSettings, cancel: CancellationToken) -> Result<Arc<Self>, LiveError> {
        let socket =
            bind_udp(settings.udp_listen).map_err(|source| LiveError::Socket { addr: settings.udp_listen, source })?;
        let local = socket.local_addr().map_err(|source| LiveError::Socket { addr: settings.udp_listen, source })?;
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider.dtls_provider.generate_certificate().ok_or(LiveError::Certificate)?;
        let mut settings = settings;
        // A configured port 0 picks a free port; candidates must carry the real one.
        for c in &mut settings.candidates {
            if c.port() == 0 {
                c.set_port(local.port());
            }
        }
        let live = Arc::new(Self {
            settings,
            socket: Arc::new(socket),
            local,
            cert,
            routes: Mutex::new(Routes::default()),
            cancel,
        });
        tokio::spawn(live.clone().route_datagrams());
        info!(%local, "WebRTC media socket ready");
        Ok(live)
    }

    /// The UDP address media flows through.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Number of viewers connected or connecting.
    pub fn viewer_count(&self) -> usize {
        lock(&self.routes).sessions.len()
    }

    /// The sessions open now.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        lock(&self.routes)
            .sessions
            .iter()
            .map(|(id, s)| SessionInfo { id: id.clone(), camera: s.camera.clone(), owner: s.owner.clone() })
            .collect()
    }

    /// Answers a WHEP offer for `camera`; returns the session id and the SDP answer.
    /// `owner` names who watches (e.g. `user:li`), so that their sessions can be ended
    /// together ([`Live::end_owned_by`]); `on_end` runs once when the session ends, however
    /// it ends. `owner_cap` bounds the owner's sessions open at once.
    pub fn add_viewer(
        self: &Arc<Self>,
        camera: &Arc<Camera>,
        offer: &str,
        owner: &str,
        owner_cap: Option<usize>,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Result<(String, String), LiveError> {
        let offer = parse_offer(offer)?;
        if self.viewer_count() >= self.settings.max_viewers {
            return Err(LiveError::Full(self.settings.max_viewers));
        }
        let Answered { rtc, ufrag, pass, answer } = answer_offer(offer, &self.cert, &self.settings.candidates)?;

        let id = new_session_id();
        let (tx, rx) = mpsc::channel(256);
        let cancel = self.cancel.child_token();
        {
            let mut routes = lock(&self.routes);
            // Checked again under the lock that inserts, so concurrent offers cannot overshoot.
            if routes.sessions.len() >= self.settings.max_viewers {
                return Err(LiveError::Full(self.settings.max_viewers));
            }
            if let Some(cap) = owner_cap
                && routes.sessions.values().filter(|s| s.owner == owner).count() >= cap
            {
                return Err(LiveError::OwnerFull(cap));
            }
            routes.by_ufrag.insert(ufrag.clone(), id.clone());
            routes.sessions.insert(
                id.clone(),
                SessionEntry {
                    camera: camera.config.id.clone(),
                    ufrag,
                    pass,
                    addrs: VecDeque::new(),
                    inbox: tx,
                    cancel: cancel.clone(),
                    owner: owner.to_owned(),
                },
            );
        }
        let viewer = session::Viewer {
            rtc,
            subscription: camera.hub.subscribe("viewer", self.settings.viewer_queue),
            inbox: rx,
            socket: self.socket.clone(),
            local: self.local,
            cancel,
            id: id.clone(),
        };
        let gauge = camera.hub.metrics().viewers.clone();
        gauge.inc();
        let live = self.clone();
        let session_id = id.clone();
        info!(session = %id, camera = %camera.config.id, "viewer joined");
        // Released on every way out of the task, a panic included.
        let release = SessionRelease { live, id: session_id, gauge, on_end: Some(on_end) };
        tokio::spawn(async move {
            let _release = release;
            viewer.run().await;
        });
        Ok((id, answer))
    }

    /// Sessions of `owner` open now.
    pub fn count_owned_by(&self, owner: &str) -> usize {
        lock(&self.routes).sessions.values().filter(|s| s.owner == owner).count()
    }

    /// Ends every session of `owner` (a revoked token, a disabled account); returns how many.
    pub fn end_owned_by(&self, owner: &str) -> usize {
        let routes = lock(&self.routes);
        let mut n = 0;
        for s in routes.sessions.values().filter(|s| s.owner == owner) {
            s.cancel.cancel();
            n += 1;
        }
        n
    }

    /// Ends a session of `camera`; false when there is no such session.
    pub fn end_viewer(&self, camera: &str, id: &str) -> bool {
        let routes = lock(&self.routes);
        match routes.sessions.get(id) {
            Some(s) if s.camera == camera => {
                s.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    fn forget(&self, id: &str) {
        let mut routes = lock(&self.routes);
        if let Some(s) = routes.sessions.remove(id) {
            routes.by_ufrag.remove(&s.ufrag);
            for a in s.addrs {
                if routes.by_addr.get(&a).is_some_and(|v| v == id) {
                    routes.by_addr.remove(&a);
                }
            }
        }
    }

    async fn route_datagrams(self: Arc<Self>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, source) = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(v) => v,
                    // ICMP port unreachable from a departed viewer and the like.
                    Err(_) => continue,
                },
            };
            let data = &buf[..n];
            let at = Instant::now();
            let mut routes = lock(&self.routes);
            let mut target = routes.by_addr.get(&source).cloned();
            if let Some(ufrag) = stun_local_ufrag(data)
                && let Some(id) = routes.by_ufrag.get(&ufrag).cloned()
                && target.as_deref() != Some(id.as_str())
            {
                // A signed STUN request for our ufrag (re)binds the viewer's address, e.g.
                // after a phone moved from Wi-Fi to mobile data. Unsigned or forged ones
                // bind nothing: only the viewer that got the answer knows the password.
                if routes.bind(&id, source, data) {
                    target = Some(id);
                }
            }
            let Some(id) = target else { continue };
            if let Some(s) = routes.sessions.get(&id) {
                // A full inbox means the session is not keeping up: dropping a datagram is
                // what the network would do, and it never stalls the other viewers.
                let _ = s.inbox.try_send(Datagram { at, source, data: data.to_vec() });
            }
        }
    }
}

/// Forgets a session and its viewer count when its task ends.
struct SessionRelease {
    live: Arc<Live>,
    id: String,
    gauge: prometheus_client::metrics::gauge::Gauge,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for SessionRelease {
    fn drop(&mut self) {
        self.gauge.dec();
        self.live.forget(&self.id);
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

/// The local ufrag a STUN binding request is addressed to, if the datagram is one.
pub fn stun_local_ufrag(data: &[u8]) -> Option<String> {
    // STUN starts with two zero bits; DTLS and RTP do not.
    if data.len() < 20 || data[0] > 3 {
        return None;
    }
    let msg = StunMessage::parse(data).ok()?;
    if !msg.is_binding_request() {
        return None;
    }
    let (local, _remote) = msg.split_username()?;
    Some(local.to_owned())
}

/// Whether a STUN request carries a valid MESSAGE-INTEGRITY for `password`.
pub fn stun_request_signed(data: &[u8], password: &str) -> bool {
    let Ok(msg) = StunMessage::parse(data) else { return false };
    msg.verify(password.as_bytes(), |key, parts| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 20];
        out.copy_from_slice(&tag.as_ref()[..20]);
        out
    })
}

/// ICE credentials from the operating system's CSPRNG: str0m's own come from a
/// non-cryptographic generator, and the password is what keeps others from binding a
/// viewer's session.
fn new_ice_creds() -> IceCreds {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut word = |n: usize| -> String { (0..n).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect() };
    IceCreds { ufrag: word(16), pass: word(24) }
}

/// A viewer's WHEP offer, checked and parsed; errors are one line.
pub fn parse_offer(offer: &str) -> Result<SdpOffer, LiveError> {
    check_offer(offer)?;
    SdpOffer::from_sdp_string(offer).map_err(|e| LiveError::BadOffer(one_line(&e.to_string())))
}

/// A new viewer's peer, before it is routed.
pub struct Answered {
    /// The ICE-lite peer that answered.
    pub rtc: Rtc,
    /// Its local ICE ufrag, which the viewer's STUN requests name.
    pub ufrag: String,
    /// Its local ICE password, which signs the viewer's STUN requests.
    pub pass: String,
    /// The SDP answer.
    pub answer: String,
}

/// Answers `offer` with a new ICE-lite, H.264-only peer offering `candidates`.
pub fn answer_offer(offer: SdpOffer, cert: &DtlsCert, candidates: &[SocketAddr]) -> Result<Answered, LiveError> {
    let creds = new_ice_creds();
    let (ufrag, pass) = (creds.ufrag.clone(), creds.pass.clone());
    let mut rtc: Rtc = RtcConfig::new()
        .set_ice_lite(true)
        .set_local_ice_credentials(creds)
        .set_dtls_cert(cert.clone())
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    for addr in candidates {
        match Candidate::host(*addr, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => warn!(%addr, error = %e, "unusable ICE candidate address"),
        }
    }
    let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| LiveError::BadOffer(one_line(&e.to_string())))?;
    let answer = answer.to_sdp_string();
    if !answer.lines().any(|l| l.starts_with("m=video") && !l.starts_with("m=video 0 ")) {
        return Err(LiveError::BadOffer("no video section could be negotiated with H.264".into()));
    }
    Ok(Answered { rtc, ufrag, pass, answer })
}

/// Cheap checks that give a clearer reason than the SDP parser for common mistakes.
fn check_offer(offer: &str) -> Result<(), LiveError> {
    let offer = offer.trim_start();
    if offer.is_empty() {
        return Err(LiveError::BadOffer("the body is empty".into()));
    }
    if !offer.starts_with("v=0") {
        return Err(LiveError::BadOffer("an SDP offer starts with `v=0`".into()));
    }
    if !offer.lines().any(|l| l.starts_with("m=video")) {
        return Err(LiveError::BadOffer("the offer has no video section (m=video)".into()));
    }
    if !offer.to_ascii_lowercase().contains("h264/90000") {
        return Err(LiveError::BadOffer("the offer does not accept H.264".into()));
    }
    Ok(())
}

/// A parser message on one line, without the parser's memory addresses.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(|l| match l.find("Parse error at PointerOffset(") {
            Some(i) => l[..i].trim_end(),
            None => l.trim(),
        })
        .filter(|l| !l.is_empty())
        // The parser quotes the character it stopped at, which may be a lone `\r`.
        .map(escape_controls)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `s` with control characters written as escapes (`\r`), so it stays on one line.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Keyframes to many viewers leave in bursts; a larger buffer absorbs them. The kernel
    // caps this at net.core.wmem_max / rmem_max.
    let _ = socket.set_send_buffer_size(8 << 20);
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_checks_name_the_problem() {
        let e = check_offer("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = check_offer("hello").unwrap_err().to_string();
        assert!(e.contains("v=0"), "{e}");
        let e = check_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").unwrap_err().to_string();
        assert!(e.contains("no video"), "{e}");
        let e =
            check_offer("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n").unwrap_err().to_string();
        assert!(e.contains("H.264"), "{e}");
    }

    #[test]
    fn parser_messages_become_one_line() {
        let m = one_line("SDP parse: Parse error at PointerOffset(0x7fc0d800c7da)\nUnexpected `m`\nExpected `o`\n");
        assert_eq!(m, "SDP parse:; Unexpected `m`; Expected `o`");
    }

    #[test]
    fn non_stun_is_not_routed_by_ufrag() {
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        assert_eq!(stun_local_ufrag(&[0x00; 10]), None);
        assert_eq!(stun_local_ufrag(&[0x00; 64]), None);
    }

    fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// A binding request from a viewer, signed with `password` when given.
    fn request(username: &str, password: Option<&str>) -> Vec<u8> {
        let msg = StunMessage::binding_request(username, str0m::ice::TransId::new(), true, 7, 100, false);
        let mut buf = vec![0u8; 512];
        let n = msg.to_bytes(password.map(str::as_bytes), &mut buf, hmac).expect("serialises");
        buf.truncate(n);
        buf
    }

    fn routes_with(id: &str, ufrag: &str, pass: &str) -> Routes {
        let (tx, _rx) = mpsc::channel(1);
        let mut r = Routes::default();
        r.by_ufrag.insert(ufrag.into(), id.into());
        r.sessions.insert(
            id.into(),
            SessionEntry {
                camera: "cam1".into(),
                ufrag: ufrag.into(),
                pass: pass.into(),
                addrs: VecDeque::new(),
                inbox: tx,
                cancel: CancellationToken::new(),
                owner: "user:li".into(),
            },
        );
        r
    }

    #[test]
    fn only_a_request_signed_with_the_session_password_binds_an_address() {
        let mut r = routes_with("s1", "localufrag", "the-local-password-24ch");
        let viewer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let unsigned = request("localufrag:remote", None);
        assert_eq!(stun_local_ufrag(&unsigned), None, "an unsigned request is not even read");
        assert!(!r.bind("s1", viewer, &unsigned), "unsigned request");
        let wrong = request("localufrag:remote", Some("a-guessed-password"));
        assert_eq!(stun_local_ufrag(&wrong).as_deref(), Some("localufrag"), "it names the session");
        assert!(!r.bind("s1", viewer, &wrong), "signed with another password");
        assert!(r.by_addr.is_empty());
        let good = request("localufrag:remote", Some("the-local-password-24ch"));
        assert!(r.bind("s1", viewer, &good));
        assert_eq!(r.by_addr.get(&viewer).map(String::as_str), Some("s1"));
    }

    #[test]
    fn a_session_keeps_at_most_a_few_addresses() {
        let mut r = routes_with("s1", "u", "the-local-password-24ch");
        let good = request("u:remote", Some("the-local-password-24ch"));
        for port in 1000..1100u16 {
            assert!(r.bind("s1", SocketAddr::from(([127, 0, 0, 1], port)), &good));
        }
        assert_eq!(r.by_addr.len(), MAX_ADDRS_PER_SESSION);
        assert!(r.by_addr.contains_key(&SocketAddr::from(([127, 0, 0, 1], 1099))), "the newest stays");
    }

    #[test]
    fn ice_credentials_are_long_and_distinct() {
        let a = new_ice_creds();
        let b = new_ice_creds();
        assert_eq!((a.ufrag.len(), a.pass.len()), (16, 24));
        assert_ne!(a.pass, b.pass);
        assert!(a.pass.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

#[cfg(test)]
mod props;
