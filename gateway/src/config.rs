//! The gateway's one config file (TOML), validated at load with errors that name the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `cameras[2].url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `[[rules]]` entry is wrong; the error names its key.
    #[error(transparent)]
    Rule(#[from] crate::rules::RuleError),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server and storage.
    pub server: ServerConfig,
    /// API authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// WebRTC transport for live viewers.
    #[serde(default)]
    pub webrtc: WebrtcConfig,
    /// Camera ingest tuning.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Premises the cameras are in.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    /// The cameras to pull.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Object detection on sampled frames. Absent: the default model on every camera.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Event snapshots, clips and retention.
    #[serde(default)]
    pub events: EventsConfig,
    /// Hygiene rules. Absent: the built-in rules the default model can check
    /// (animals in the kitchen, phone use).
    #[serde(default)]
    pub rules: Option<Vec<crate::rules::RuleConfig>>,
}

/// `[detect]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Whether detection runs. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Model manifest. Default `models/nanodet-g-416.toml`.
    #[serde(default = "default_model")]
    pub model: PathBuf,
    /// ONNX Runtime library (`libonnxruntime.so.1.32.0`). Default: ORT_DYLIB_PATH, then
    /// `.tools/onnxruntime/libonnxruntime.so.1.32.0`.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Pictures analysed per second per camera. Default 2.
    #[serde(default = "default_detect_fps")]
    pub fps: f64,
    /// `all` (sample at `fps`, decoding each GOP up to its last sample) or `keyframes` (decode keyframes only). Default `all`.
    #[serde(default)]
    pub decode: crate::sampler::DecodeMode,
    /// ONNX Runtime intra-op threads per worker. Default 1.
    #[serde(default = "default_one")]
    pub threads: usize,
    /// Inference workers shared by all cameras. Default 1.
    #[serde(default = "default_one")]
    pub workers: usize,
    /// Cameras to analyse; empty means all. Default empty.
    #[serde(default)]
    pub cameras: Vec<String>,
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Seconds of video kept before an event in its clip. Default 5.
    #[serde(default = "default_pre_roll")]
    pub pre_roll_s: f64,
    /// Seconds of video kept after an event ends. Default 10.
    #[serde(default = "default_post_roll")]
    pub post_roll_s: f64,
    /// Longest clip in seconds; an event that lasts longer is cut here. Default 120.
    #[serde(default = "default_max_clip")]
    pub max_clip_s: f64,
    /// Days events are kept. Default 30.
    #[serde(default = "default_retention_days")]
    pub retention_days: f64,
    /// Most bytes of snapshots and clips; the oldest go first. Default 10 GiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Free space kept on the data disk; the oldest events go first. Default 1 GiB.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
}

fn default_model() -> PathBuf {
    "models/nanodet-g-416.toml".into()
}
fn default_ort_library() -> PathBuf {
    format!(".tools/onnxruntime/libonnxruntime.so.{}", crate::detect::onnx::ORT_VERSION).into()
}

/// `rel` next to the config if it is there, else in the directories the running binary
/// sits in or under (up to the repository root of a cargo build); the config-relative
/// path when found nowhere, so the error names where it was expected.
fn shipped_file(rel: &Path, config_dir: &Path) -> PathBuf {
    let beside_config = config_dir.join(rel);
    if beside_config.exists() {
        return beside_config;
    }
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    exe_dir
        .iter()
        .flat_map(|d| d.ancestors().take(4))
        .map(|d| d.join(rel))
        .find(|p| p.exists())
        .unwrap_or(beside_config)
}
fn default_detect_fps() -> f64 {
    2.0
}
fn default_one() -> usize {
    1
}
fn default_pre_roll() -> f64 {
    5.0
}
fn default_post_roll() -> f64 {
    10.0
}
fn default_max_clip() -> f64 {
    120.0
}
fn default_retention_days() -> f64 {
    30.0
}
fn default_max_bytes() -> u64 {
    10 << 30
}
fn default_min_free_bytes() -> u64 {
    1 << 30
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model: default_model(),
            ort_library: None,
            fps: default_detect_fps(),
            decode: crate::sampler::DecodeMode::All,
            threads: 1,
            workers: 1,
            cameras: Vec::new(),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            pre_roll_s: default_pre_roll(),
            post_roll_s: default_post_roll(),
            max_clip_s: default_max_clip(),
            retention_days: default_retention_days(),
            max_bytes: default_max_bytes(),
            min_free_bytes: default_min_free_bytes(),
        }
    }
}

/// The rules used when the config has no `[[rules]]`.
pub const DEFAULT_RULES: &str = r#"
[[rules]]
id = "animal_in_kitchen"
kind = "presence"
subject = "animal"
min_duration_s = 2.0
cooldown_s = 60.0
severity = "critical"

[[rules]]
id = "phone_use"
kind = "proximity"
subject = "person"
object = "phone"
min_duration_s = 3.0
cooldown_s = 60.0
severity = "warning"
"#;

/// Parses [`DEFAULT_RULES`].
pub fn default_rules() -> Vec<crate::rules::RuleConfig> {
    #[derive(Deserialize)]
    struct Rules {
        rules: Vec<crate::rules::RuleConfig>,
    }
    // The text is a constant checked by a unit test.
    toml::from_str::<Rules>(DEFAULT_RULES).map(|r| r.rules).unwrap_or_default()
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listen address for the API, WHEP and the web app. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory for the gateway's data. Default `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A request's headers must arrive within this many seconds. Default 10.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_s: f64,
    /// A connection with nothing moving for this many seconds is closed. Default 60.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_s: f64,
    /// Most HTTP connections open at once. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most event feeds (SSE) open at once. Default 64.
    #[serde(default = "default_max_event_streams")]
    pub max_event_streams: usize,
    /// Most event feeds one account or token has open at once (its tabs and devices).
    /// Default 4.
    #[serde(default = "default_max_event_streams_per_principal")]
    pub max_event_streams_per_principal: usize,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` name the client. Default none: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Serve HTTPS with this certificate. Absent: plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// A separate listen address serving `/metrics` without a token (e.g.
    /// `127.0.0.1:9464` for a local Prometheus). Unset: `/metrics` is on `listen` and
    /// needs the admin token.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Serve the dashboard from this directory (a `web/dist` built with `npm run build`)
    /// instead of the copy built into the binary.
    #[serde(default)]
    pub ui_dir: Option<PathBuf>,
}

/// `[server.tls]`: PEM files, read again when they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A machine token with the admin role, for scripts and the first start. Optional:
    /// accounts (`mingchu user add`) and named machine tokens need none.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// A login session ends after this many hours without a request. Default 12.
    #[serde(default = "default_session_idle_hours")]
    pub session_idle_hours: f64,
    /// A login session ends this many days after the login, used or not. Default 7.
    #[serde(default = "default_session_max_days")]
    pub session_max_days: f64,
    /// Audit entries older than this many days are removed. Default 180.
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: f64,
}

fn default_audit_retention_days() -> f64 {
    180.0
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            session_idle_hours: default_session_idle_hours(),
            session_max_days: default_session_max_days(),
            audit_retention_days: default_audit_retention_days(),
        }
    }
}

fn default_session_idle_hours() -> f64 {
    12.0
}
fn default_session_max_days() -> f64 {
    7.0
}

/// `[webrtc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebrtcConfig {
    /// UDP address all viewers' media flows through (one port for every viewer).
    /// Default `127.0.0.1:8189`.
    #[serde(default = "default_udp_listen")]
    pub udp_listen: String,
    /// Addresses offered to viewers as ICE host candidates, e.g. the LAN address of the box
    /// or a public address forwarded to `udp_listen`. Default: the `udp_listen` address,
    /// which must then not be a wildcard.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// STUN/TURN servers handed to viewers (WHEP `Link` headers) for use outside the LAN.
    #[serde(default)]
    pub ice_servers: Vec<IceServerConfig>,
    /// Access units a viewer may fall behind before it skips to the next keyframe. Default 90.
    #[serde(default = "default_viewer_queue")]
    pub viewer_queue: usize,
    /// Most viewers at once over all cameras; more get `503`. Default 1000.
    #[serde(default = "default_max_viewers")]
    pub max_viewers: usize,
}

/// One `[[webrtc.ice_servers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default)]
    pub credential: Option<String>,
}

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Seconds without an access unit before a camera counts as stalled. Default 2.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: f64,
    /// Longest wait between reconnection attempts, seconds. Default 5.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_s: f64,
}

/// How RTP reaches the gateway from a camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection (survives NAT and packet loss best).
    #[default]
    Tcp,
    /// RTP over UDP.
    Udp,
}

/// One `[[cameras]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Short id used in URLs and metrics: letters, digits, `-` and `_`.
    pub id: String,
    /// Name shown to people, e.g. "阳光小学 后厨".
    pub name: String,
    /// `rtsp://` or `rtsps://` URL of the camera's H.264 stream.
    pub url: String,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub transport: Transport,
    /// Whether to pull the camera. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The `[[sites]]` id this camera belongs to. May be left out when there is one site
    /// (or none: then every camera is in the built-in site `default`).
    #[serde(default)]
    pub site: String,
}

/// What kind of premises a site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// A school canteen.
    School,
    /// A kindergarten's kitchen.
    Kindergarten,
    /// An elder-care home's kitchen.
    ElderlyCare,
    /// Anything else.
    #[default]
    Other,
}

/// One `[[sites]]` entry: one operator's premises.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Short id: letters, digits, `-` and `_`.
    pub id: String,
    /// Name shown to people, e.g. "阳光小学食堂".
    pub name: String,
    /// `school`, `kindergarten`, `elderly_care` or `other` (default).
    #[serde(default)]
    pub kind: SiteKind,
    /// Street address.
    #[serde(default)]
    pub address: String,
    /// District (区/县), for regulators' filters.
    #[serde(default)]
    pub district: String,
    /// Who to call about this kitchen.
    #[serde(default)]
    pub contact: String,
    /// IANA time zone of schedules and reports. Default `Asia/Shanghai`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

/// The site every camera is in when no `[[sites]]` are configured.
pub const DEFAULT_SITE: &str = "default";

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    "./data".into()
}
fn default_header_timeout() -> f64 {
    10.0
}
fn default_idle_timeout() -> f64 {
    60.0
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_event_streams() -> usize {
    64
}
fn default_max_event_streams_per_principal() -> usize {
    4
}
fn default_udp_listen() -> String {
    "127.0.0.1:8189".into()
}
fn default_viewer_queue() -> usize {
    90
}
fn default_max_viewers() -> usize {
    1000
}
fn default_stall_timeout() -> f64 {
    2.0
}
fn default_max_backoff() -> f64 {
    5.0
}
fn default_true() -> bool {
    true
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            udp_listen: default_udp_listen(),
            candidates: Vec::new(),
            ice_servers: Vec::new(),
            viewer_queue: default_viewer_queue(),
            max_viewers: default_max_viewers(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { stall_timeout_s: default_stall_timeout(), max_backoff_s: default_max_backoff() }
    }
}

/// The config after validation, with addresses parsed.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The file as written.
    pub config: Config,
    /// `server.listen`, parsed.
    pub listen: SocketAddr,
    /// `webrtc.udp_listen`, parsed.
    pub udp_listen: SocketAddr,
    /// `server.metrics_listen`, parsed.
    pub metrics_listen: Option<SocketAddr>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<crate::api::client::Cidr>,
    /// ICE host candidate addresses (each with the `udp_listen` port).
    pub candidates: Vec<SocketAddr>,
    /// The file it was read from.
    pub path: PathBuf,
    /// SHA-256 of the file's text, hex (the audit trail shows config changes by it).
    pub digest: String,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Validated, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text read from `path`: it names the file in errors,
    /// and relative paths in it are taken from the file's directory.
    pub fn parse(text: &str, path: &Path) -> Result<Validated, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        let mut v = config.validate()?;
        v.path = path.to_owned();
        v.digest = {
            use sha2::Digest;
            sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(v)
    }

    /// Makes relative paths relative to `config_dir` (where the file is), so the gateway
    /// runs the same from any working directory. The shipped model and ONNX Runtime, when
    /// not configured, are looked for next to the config and then in the tree the binary
    /// was built in (`target/release/mingchu` → the repository root).
    fn resolve_paths(&mut self, config_dir: &Path) {
        self.server.data_dir = config_dir.join(&self.server.data_dir);
        if let Some(dir) = &mut self.server.ui_dir {
            *dir = config_dir.join(&*dir);
        }
        if let Some(tls) = &mut self.server.tls {
            tls.cert = config_dir.join(&tls.cert);
            tls.key = config_dir.join(&tls.key);
        }
        self.detect.model = if self.detect.model == default_model() {
            shipped_file(&self.detect.model, config_dir)
        } else {
            config_dir.join(&self.detect.model)
        };
        self.detect.ort_library = match self.detect.ort_library.take() {
            Some(p) => Some(config_dir.join(p)),
            None if std::env::var_os("ORT_DYLIB_PATH").is_some() => None,
            None => Some(shipped_file(&default_ort_library(), config_dir)),
        };
    }

    /// Checks values and cross-field rules.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let listen: SocketAddr = self
            .server
            .listen
            .parse()
            .map_err(|_| invalid("server.listen", format!("`{}` is not an IP:port address", self.server.listen)))?;
        let metrics_listen = match &self.server.metrics_listen {
            None => None,
            Some(m) => Some(
                m.parse::<SocketAddr>()
                    .map_err(|_| invalid("server.metrics_listen", format!("`{m}` is not an IP:port address")))?,
            ),
        };
        let sv = &self.server;
        for (key, v, min, max) in [
            ("server.header_timeout_s", sv.header_timeout_s, 0.5, 300.0),
            ("server.idle_timeout_s", sv.idle_timeout_s, 1.0, 3600.0),
        ] {
            if !(v.is_finite() && (min..=max).contains(&v)) {
                return Err(invalid(key, format!("must be between {min} and {max} seconds")));
            }
        }
        if !(1..=100_000).contains(&sv.max_connections) {
            return Err(invalid("server.max_connections", "must be between 1 and 100000"));
        }
        if !(1..=10_000).contains(&sv.max_event_streams) {
            return Err(invalid("server.max_event_streams", "must be between 1 and 10000"));
        }
        // Above `max_event_streams` it is that cap in effect.
        if !(1..=10_000).contains(&sv.max_event_streams_per_principal) {
            return Err(invalid("server.max_event_streams_per_principal", "must be between 1 and 10000"));
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in sv.trusted_proxies.iter().enumerate() {
            let net = p.parse().map_err(|e: crate::api::client::BadCidr| {
                invalid(format!("server.trusted_proxies[{i}]"), e.to_string())
            })?;
            trusted_proxies.push(net);
        }
        if let Some(t) = &self.auth.admin_token
            && t.trim().len() < 8
        {
            return Err(invalid("auth.admin_token", "must be at least 8 characters"));
        }
        if !(self.auth.session_idle_hours.is_finite() && (0.001..=720.0).contains(&self.auth.session_idle_hours)) {
            return Err(invalid("auth.session_idle_hours", "must be between 0.001 and 720 hours"));
        }
        if !(self.auth.session_max_days.is_finite() && (0.01..=365.0).contains(&self.auth.session_max_days)) {
            return Err(invalid("auth.session_max_days", "must be between 0.01 and 365 days"));
        }
        if !(self.auth.audit_retention_days.is_finite() && (1.0..=3650.0).contains(&self.auth.audit_retention_days)) {
            return Err(invalid("auth.audit_retention_days", "must be between 1 and 3650 days"));
        }
        let udp_listen: SocketAddr = self.webrtc.udp_listen.parse().map_err(|_| {
            invalid("webrtc.udp_listen", format!("`{}` is not an IP:port address", self.webrtc.udp_listen))
        })?;
        let mut candidates = Vec::new();
        for (i, c) in self.webrtc.candidates.iter().enumerate() {
            let ip: IpAddr = c
                .parse()
                .map_err(|_| invalid(format!("webrtc.candidates[{i}]"), format!("`{c}` is not an IP address")))?;
            if ip.is_unspecified() {
                return Err(invalid(format!("webrtc.candidates[{i}]"), "a wildcard address cannot be a candidate"));
            }
            candidates.push(SocketAddr::new(ip, udp_listen.port()));
        }
        if candidates.is_empty() {
            if udp_listen.ip().is_unspecified() {
                return Err(invalid(
                    "webrtc.candidates",
                    "required when webrtc.udp_listen is a wildcard address: list the addresses viewers reach this gateway on",
                ));
            }
            candidates.push(udp_listen);
        }
        for (i, s) in self.webrtc.ice_servers.iter().enumerate() {
            if s.urls.is_empty() {
                return Err(invalid(format!("webrtc.ice_servers[{i}].urls"), "needs at least one URL"));
            }
            for (j, u) in s.urls.iter().enumerate() {
                if !["stun:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)) || u.contains(['\r', '\n', '>', '<'])
                {
                    return Err(invalid(
                        format!("webrtc.ice_servers[{i}].urls[{j}]"),
                        format!("`{u}` is not a stun:, turn: or turns: URL"),
                    ));
                }
            }
        }
        if !(1..=10_000).contains(&self.webrtc.viewer_queue) {
            return Err(invalid("webrtc.viewer_queue", "must be between 1 and 10000"));
        }
        if self.webrtc.max_viewers == 0 {
            return Err(invalid("webrtc.max_viewers", "must be at least 1"));
        }
        if !(0.2..=600.0).contains(&self.ingest.stall_timeout_s) {
            return Err(invalid("ingest.stall_timeout_s", "must be between 0.2 and 600 seconds"));
        }
        if !(0.1..=3600.0).contains(&self.ingest.max_backoff_s) {
            return Err(invalid("ingest.max_backoff_s", "must be between 0.1 and 3600 seconds"));
        }
        let d = &self.detect;
        // Below 0.01 (one picture per 100 s) the sampling interval stops being a sane duration.
        if !(d.fps.is_finite() && (0.01..=30.0).contains(&d.fps)) {
            return Err(invalid("detect.fps", "must be from 0.01 to 30"));
        }
        if !(1..=16).contains(&d.threads) {
            return Err(invalid("detect.threads", "must be between 1 and 16"));
        }
        if !(1..=16).contains(&d.workers) {
            return Err(invalid("detect.workers", "must be between 1 and 16"));
        }
        let e = &self.events;
        for (key, v, max) in [
            ("events.pre_roll_s", e.pre_roll_s, 60.0),
            ("events.post_roll_s", e.post_roll_s, 120.0),
            ("events.max_clip_s", e.max_clip_s, 3600.0),
            ("events.retention_days", e.retention_days, 3650.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(invalid(key, format!("must be between 0 and {max}")));
            }
        }
        if e.max_clip_s < 1.0 {
            return Err(invalid("events.max_clip_s", "must be at least 1 second"));
        }
        if let Some(rules) = &self.rules {
            crate::rules::check_unique_ids(rules)?;
            for (i, rule) in rules.iter().enumerate() {
                crate::rules::check(i, rule)?;
                for (k, id) in rule.cameras.iter().enumerate() {
                    if !self.cameras.iter().any(|c| &c.id == id) {
                        return Err(invalid(
                            format!("rules[{i}].cameras[{k}]"),
                            format!("no camera `{id}` is configured"),
                        ));
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            if !valid_id(&cam.id) {
                return Err(invalid(
                    format!("cameras[{i}].id"),
                    format!("`{}` must be 1-64 letters, digits, `-` or `_`", cam.id),
                ));
            }
            if !seen.insert(cam.id.as_str()) {
                return Err(invalid(format!("cameras[{i}].id"), format!("`{}` is used by another camera", cam.id)));
            }
            if cam.name.trim().is_empty() {
                return Err(invalid(format!("cameras[{i}].name"), "must not be empty"));
            }
            check_rtsp_url(&cam.url).map_err(|m| invalid(format!("cameras[{i}].url"), m))?;
        }
        let mut site_ids = std::collections::HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            if !valid_id(&site.id) {
                return Err(invalid(
                    format!("sites[{i}].id"),
                    format!("`{}` must be 1-64 letters, digits, `-` or `_`", site.id),
                ));
            }
            if !site_ids.insert(site.id.clone()) {
                return Err(invalid(format!("sites[{i}].id"), format!("`{}` is used by another site", site.id)));
            }
            if site.name.trim().is_empty() {
                return Err(invalid(format!("sites[{i}].name"), "must not be empty"));
            }
            if jiff::tz::TimeZone::get(&site.timezone).is_err() {
                return Err(invalid(
                    format!("sites[{i}].timezone"),
                    format!("`{}` is not an IANA time zone", site.timezone),
                ));
            }
        }
        let mut config = self;
        let only_site = match config.sites.as_slice() {
            [] => Some(DEFAULT_SITE.to_owned()),
            [one] => Some(one.id.clone()),
            _ => None,
        };
        for (i, cam) in config.cameras.iter_mut().enumerate() {
            if cam.site.is_empty() {
                cam.site = only_site.clone().ok_or_else(|| {
                    invalid(format!("cameras[{i}].site"), "required when more than one site is configured")
                })?;
            } else if !(site_ids.contains(cam.site.as_str()) || config.sites.is_empty() && cam.site == DEFAULT_SITE) {
                return Err(invalid(format!("cameras[{i}].site"), format!("no site `{}` is configured", cam.site)));
            }
        }
        let this = config;
        for (i, id) in this.detect.cameras.iter().enumerate() {
            if !this.cameras.iter().any(|c| &c.id == id) {
                return Err(invalid(format!("detect.cameras[{i}]"), format!("no camera `{id}` is configured")));
            }
        }
        Ok(Validated {
            config: this,
            listen,
            udp_listen,
            metrics_listen,
            trusted_proxies,
            candidates,
            path: PathBuf::new(),
            digest: String::new(),
        })
    }
}

/// Whether `id` can name a camera or site: 1-64 letters, digits, `-` or `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The sites as configured, or the one built-in site when none are.
pub fn sites(config: &Config) -> Vec<SiteConfig> {
    if !config.sites.is_empty() {
        return config.sites.clone();
    }
    vec![SiteConfig {
        id: DEFAULT_SITE.into(),
        name: "默认站点".into(),
        kind: SiteKind::Other,
        address: String::new(),
        district: String::new(),
        contact: String::new(),
        timezone: default_timezone(),
    }]
}

/// A warning when others than the owner and group can read the config file, which holds
/// the admin token and camera passwords.
pub fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then(|| {
        format!(
            "config {} is readable by every user (mode {mode:04o}) and holds the admin token and camera \
             passwords; run `chmod 640 {}`",
            path.display(),
            path.display()
        )
    })
}

/// Checks that a camera URL is an RTSP URL with a host.
pub fn check_rtsp_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("rtsp://")
        .or_else(|| url.strip_prefix("rtsps://"))
        .ok_or_else(|| format!("`{}` is not an rtsp:// or rtsps:// URL", redact(url)))?;
    let (_, host_and_path) = split_userinfo(rest);
    let host = host_and_path.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{}` has no host", redact(url)));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` contains whitespace or control characters", redact(url)));
    }
    Ok(())
}

/// Splits what follows `scheme://` into the userinfo, if any, and the host with the path.
///
/// Camera vendors print passwords with `/`, `:`, `@` or `?` in them unescaped, and
/// GStreamer takes such URLs, so the userinfo runs to the *last* `@`: that can swallow a
/// path segment containing `@`, but never leaves a password outside the userinfo.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, rest),
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match split_userinfo(rest) {
        (Some(userinfo), host) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"
[auth]
admin_token = "change-me-please"
[[cameras]]
id = "cam1"
name = "阳光小学 后厨"
url = "rtsp://127.0.0.1:8554/cam1"
"#;

    fn parse(text: &str) -> Result<Validated, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let v = parse(GOOD).expect("valid");
        assert_eq!(v.config.cameras[0].transport, Transport::Tcp);
        assert_eq!(v.candidates, vec!["127.0.0.1:8189".parse().unwrap()]);
        assert_eq!(v.config.ingest.stall_timeout_s, 2.0);
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let text = GOOD.replace("data_dir", "dataa_dir");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("dataa_dir"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn non_rtsp_url_is_rejected_by_key() {
        let text = GOOD.replace("rtsp://127.0.0.1:8554/cam1", "http://127.0.0.1/cam1");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("cameras[0].url"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_bad_addresses_are_rejected() {
        let twice = format!("{GOOD}\n[[cameras]]\nid = \"cam1\"\nname = \"x\"\nurl = \"rtsp://h/x\"\n");
        assert!(parse(&twice).unwrap_err().to_string().contains("cameras[1].id"));
        let bad_listen = GOOD.replace("127.0.0.1:8080", "localhost");
        assert!(parse(&bad_listen).unwrap_err().to_string().contains("server.listen"));
        let wildcard = format!("{GOOD}\n[webrtc]\nudp_listen = \"0.0.0.0:8189\"\n");
        assert!(parse(&wildcard).unwrap_err().to_string().contains("webrtc.candidates"));
    }

    #[test]
    fn server_limits_are_checked_by_key() {
        let v = parse(GOOD).expect("valid");
        assert_eq!((v.config.server.header_timeout_s, v.config.server.max_connections), (10.0, 1024));
        assert_eq!(v.metrics_listen, None);
        for (line, key) in [
            ("header_timeout_s = 0", "server.header_timeout_s"),
            ("idle_timeout_s = nan", "server.idle_timeout_s"),
            ("max_connections = 0", "server.max_connections"),
            ("max_event_streams = 0", "server.max_event_streams"),
            ("metrics_listen = \"localhost\"", "server.metrics_listen"),
            ("max_event_streams_per_principal = 0", "server.max_event_streams_per_principal"),
            ("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/40\"]", "server.trusted_proxies[1]"),
            ("tls = { cert = \"c.pem\" }", "key"),
        ] {
            let text = GOOD.replace("data_dir = \"./data\"", &format!("data_dir = \"./data\"\n{line}"));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        let text = GOOD.replace("data_dir = \"./data\"", "data_dir = \"./data\"\nmetrics_listen = \"127.0.0.1:0\"");
        assert_eq!(parse(&text).expect("valid").metrics_listen, Some("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn cameras_belong_to_configured_sites() {
        let v = parse(GOOD).expect("valid");
        assert_eq!(v.config.cameras[0].site, DEFAULT_SITE, "no sites: the built-in one");
        assert_eq!(sites(&v.config)[0].timezone, "Asia/Shanghai");
        let one = format!("{GOOD}\n[[sites]]\nid = \"sunny\"\nname = \"阳光小学食堂\"\nkind = \"school\"\n");
        let v = parse(&one).expect("valid");
        assert_eq!(v.config.cameras[0].site, "sunny", "one site: cameras are in it");
        let two = format!("{one}\n[[sites]]\nid = \"care\"\nname = \"敬老院\"\nkind = \"elderly_care\"\n");
        let e = parse(&two).unwrap_err().to_string();
        assert!(e.contains("cameras[0].site") && e.contains("more than one site"), "{e}");
        let named = two
            .replace("url = \"rtsp://127.0.0.1:8554/cam1\"", "url = \"rtsp://127.0.0.1:8554/cam1\"\nsite = \"care\"");
        assert_eq!(parse(&named).expect("valid").config.cameras[0].site, "care");
        let unknown = two
            .replace("url = \"rtsp://127.0.0.1:8554/cam1\"", "url = \"rtsp://127.0.0.1:8554/cam1\"\nsite = \"nope\"");
        assert!(parse(&unknown).unwrap_err().to_string().contains("no site `nope`"));
        let tz = one.replace("kind = \"school\"", "kind = \"school\"\ntimezone = \"Mars/Olympus\"");
        assert!(parse(&tz).unwrap_err().to_string().contains("sites[0].timezone"));
        let kind = one.replace("kind = \"school\"", "kind = \"canteen\"");
        assert!(parse(&kind).unwrap_err().to_string().contains("kind"));
        let dup = format!("{one}\n[[sites]]\nid = \"sunny\"\nname = \"x\"\n");
        assert!(parse(&dup).unwrap_err().to_string().contains("sites[1].id"));
    }

    #[test]
    fn wrong_type_is_named() {
        let text = GOOD.replace("data_dir = \"./data\"", "data_dir = 5");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("data_dir"), "{err}");
    }

    #[test]
    fn default_rules_parse() {
        let rules = default_rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].id, "phone_use");
    }

    #[test]
    fn detect_and_events_sections_are_checked() {
        let v = parse(GOOD).expect("valid");
        assert!(v.config.detect.enabled);
        assert_eq!(v.config.events.pre_roll_s, 5.0);
        for fps in ["0", "1e-300"] {
            let bad = format!("{GOOD}\n[detect]\nfps = {fps}\n");
            assert!(parse(&bad).unwrap_err().to_string().contains("detect.fps"));
        }
        let bad = format!("{GOOD}\n[detect]\ncameras = [\"cam9\"]\n");
        assert!(parse(&bad).unwrap_err().to_string().contains("detect.cameras[0]"));
        let bad = format!("{GOOD}\n[detect]\ndecode = \"some\"\n");
        assert!(parse(&bad).unwrap_err().to_string().contains("decode"));
        let bad = format!("{GOOD}\n[[rules]]\nid = \"a\"\nkind = \"presence\"\nsubject = \"cat\"\nbogus = 1\n");
        assert!(parse(&bad).unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("rtsp://admin:secret@10.0.0.2:554/s1"), "rtsp://admin:***@10.0.0.2:554/s1");
        assert_eq!(redact("rtsp://10.0.0.2/s1"), "rtsp://10.0.0.2/s1");
        assert_eq!(redact("rtsp://viewer@10.0.0.2/s1"), "rtsp://viewer@10.0.0.2/s1", "no password to hide");
        assert_eq!(redact("rtsp://10.0.0.2/live@main"), "rtsp://10.0.0.2/live@main");
    }

    #[test]
    fn redacts_passwords_with_any_character_a_camera_accepts() {
        for password in ["pa/ss", "p:ss", "p@ss", "p%2Fss%40", "a/b:c@d%e", "/", ":", "@", "?x#y", "pa/ss@h/x"] {
            let url = format!("rtsp://admin:{password}@10.0.0.2:554/Streaming/Channels/101");
            let shown = redact(&url);
            assert_eq!(shown, "rtsp://admin:***@10.0.0.2:554/Streaming/Channels/101", "for password {password:?}");
            assert!(check_rtsp_url(&url).is_ok(), "{password:?}");
            // Errors about the URL show it redacted too.
            let bad = format!("rtsp://admin:{password}@ /x");
            let err = check_rtsp_url(&bad).unwrap_err();
            assert!(!err.contains(password) || password.len() == 1, "{err} shows {password:?}");
            assert!(err.contains("admin:***@"), "{err}");
        }
    }
}
