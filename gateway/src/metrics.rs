//! Prometheus metrics a user would graph: frames and bytes in, reconnects, viewers, drops.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set naming a camera.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabel {
    /// Camera id from the config.
    pub camera: String,
}

/// Label set naming a camera and a kind of consumer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    /// Camera id from the config.
    pub camera: String,
    /// Consumer kind, e.g. `viewer`.
    pub consumer: String,
}

/// Every metric the gateway exports, registered once.
pub struct Metrics {
    registry: Registry,
    frames_in: Family<CameraLabel, Counter>,
    bytes_in: Family<CameraLabel, Counter>,
    reconnects: Family<CameraLabel, Counter>,
    online: Family<CameraLabel, Gauge>,
    viewers: Family<CameraLabel, Gauge>,
    drops: Family<ConsumerLabel, Counter>,
    detect_decoded: Family<CameraLabel, Counter>,
    sample_interval: Family<CameraLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    recorder_buffered: Family<CameraLabel, Gauge>,
    decoder_backlog: Family<CameraLabel, Gauge>,
    whep_rejected: Counter,
    resident_bytes: Gauge,
    open_fds: Gauge,
    heap_in_use: Gauge,
    heap_free: Gauge,
    /// Detection counters, shared with the inference pool.
    pub detect: DetectMetrics,
    /// Events (with their files) removed by retention.
    pub retention_removed: Counter,
    /// HTTP connections open now.
    pub http_connections: Gauge,
    /// HTTP connections closed for being idle (or silent before their headers).
    pub http_idle_closed: Counter,
    /// TLS handshakes that failed or did not finish in time.
    pub tls_handshake_failures: Counter,
    /// The served certificate's expiry and its reloads.
    pub tls: crate::api::tls::TlsMetrics,
}

/// Detection counters.
#[derive(Clone, Default)]
pub struct DetectMetrics {
    /// Pictures analysed.
    pub frames: Counter,
    /// Pictures replaced before the detector got to them (detector busy).
    pub skipped: Counter,
    /// Seconds spent in preprocess + inference + decode.
    pub seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Violations started.
    pub violations: Counter,
    /// ONNX Runtime sessions open (one per worker).
    pub sessions: Gauge,
}

/// Per-camera handles, looked up once so the frame path does no hashing.
#[derive(Clone)]
pub struct CameraMetrics {
    /// Access units received from the camera.
    pub frames_in: Counter,
    /// Encoded bytes received from the camera.
    pub bytes_in: Counter,
    /// Connection attempts after the first.
    pub reconnects: Counter,
    /// 1 while the camera streams.
    pub online: Gauge,
    /// WebRTC viewers connected.
    pub viewers: Gauge,
    /// Access units fed to the detection decoder.
    pub detect_decoded: Counter,
    /// Seconds between pictures sampled for detection now (stretched under load).
    pub sample_interval: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Encoded bytes the clip recorder holds: pre-roll history and clips collecting.
    pub recorder_buffered: Gauge,
    /// Access units waiting in front of the detection decoder.
    pub decoder_backlog: Gauge,
    drops: Family<ConsumerLabel, Counter>,
    camera: String,
}

impl CameraMetrics {
    /// The drop counter for one kind of consumer of this camera.
    pub fn drops(&self, consumer: &str) -> Counter {
        self.drops.get_or_create(&ConsumerLabel { camera: self.camera.clone(), consumer: consumer.to_owned() }).clone()
    }
}

impl Metrics {
    /// Registers all metrics under the `mingchu` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mingchu");
        let frames_in = Family::<CameraLabel, Counter>::default();
        let bytes_in = Family::<CameraLabel, Counter>::default();
        let reconnects = Family::<CameraLabel, Counter>::default();
        let online = Family::<CameraLabel, Gauge>::default();
        let viewers = Family::<CameraLabel, Gauge>::default();
        let drops = Family::<ConsumerLabel, Counter>::default();
        let whep_rejected = Counter::default();
        let recorder_buffered = Family::<CameraLabel, Gauge>::default();
        let decoder_backlog = Family::<CameraLabel, Gauge>::default();
        let resident_bytes = Gauge::default();
        let open_fds = Gauge::default();
        let heap_in_use = Gauge::default();
        let heap_free = Gauge::default();
        let detect_decoded = Family::<CameraLabel, Counter>::default();
        let sample_interval = Family::<CameraLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register("frames_in", "Access units received from cameras", frames_in.clone());
        registry.register("bytes_in", "Encoded video bytes received from cameras", bytes_in.clone());
        registry.register("reconnects", "Camera reconnection attempts", reconnects.clone());
        registry.register("camera_online", "1 while the camera streams", online.clone());
        registry.register("viewers", "WebRTC viewers connected", viewers.clone());
        registry.register(
            "dropped_frames",
            "Access units a slow consumer skipped to catch up at a keyframe",
            drops.clone(),
        );
        registry.register("whep_rejected", "WHEP offers rejected as malformed", whep_rejected.clone());
        registry.register(
            "recorder_buffered_bytes",
            "Encoded bytes the clip recorder holds (pre-roll history and clips collecting)",
            recorder_buffered.clone(),
        );
        registry.register(
            "detect_decoder_backlog",
            "Access units waiting in front of the detection decoder",
            decoder_backlog.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the gateway process",
            resident_bytes.clone(),
        );
        registry.register("process_open_fds", "Open file descriptors of the gateway process", open_fds.clone());
        registry.register("heap_in_use_bytes", "Bytes allocated and not yet freed", heap_in_use.clone());
        registry.register(
            "heap_free_bytes",
            "Bytes free inside the allocator's heaps, held and not given back to the system",
            heap_free.clone(),
        );
        let detect = DetectMetrics::default();
        let retention_removed = Counter::default();
        let http_connections = Gauge::default();
        let http_idle_closed = Counter::default();
        registry.register("http_connections", "HTTP connections open", http_connections.clone());
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or did not finish within server.header_timeout_s",
            tls_handshake_failures.clone(),
        );
        let tls = crate::api::tls::TlsMetrics::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires (UNIX seconds)",
            tls.expiry.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS certificates loaded again after their files changed",
            tls.reloads.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "Changed TLS files that could not be used (the previous certificate kept serving)",
            tls.reload_failures.clone(),
        );
        registry.register(
            "http_idle_closed",
            "HTTP connections closed because nothing moved on them for server.idle_timeout_s",
            http_idle_closed.clone(),
        );
        registry.register("detect_frames", "Pictures analysed by the detector", detect.frames.clone());
        registry.register("detect_skipped", "Pictures replaced by a newer one before analysis", detect.skipped.clone());
        registry.register(
            "detect_seconds",
            "Time spent preprocessing, running and decoding the model",
            detect.seconds.clone(),
        );
        registry.register("violations", "Hygiene violations started", detect.violations.clone());
        registry.register("detect_sessions", "ONNX Runtime sessions open", detect.sessions.clone());
        registry.register(
            "retention_removed",
            "Events removed with their snapshots and clips by age, byte budget or low disk",
            retention_removed.clone(),
        );
        registry.register("detect_decoded", "Access units decoded for detection", detect_decoded.clone());
        registry.register(
            "detect_sample_interval_seconds",
            "Seconds between pictures sampled for detection (longer than 1/fps while the detector is saturated)",
            sample_interval.clone(),
        );
        Self {
            registry,
            frames_in,
            bytes_in,
            reconnects,
            online,
            viewers,
            drops,
            detect_decoded,
            sample_interval,
            recorder_buffered,
            decoder_backlog,
            whep_rejected,
            resident_bytes,
            open_fds,
            heap_in_use,
            heap_free,
            detect,
            retention_removed,
            http_connections,
            http_idle_closed,
            tls_handshake_failures,
            tls,
        }
    }

    /// Handles for one camera.
    pub fn camera(&self, camera: &str) -> CameraMetrics {
        let label = CameraLabel { camera: camera.to_owned() };
        CameraMetrics {
            frames_in: self.frames_in.get_or_create(&label).clone(),
            bytes_in: self.bytes_in.get_or_create(&label).clone(),
            reconnects: self.reconnects.get_or_create(&label).clone(),
            online: self.online.get_or_create(&label).clone(),
            viewers: self.viewers.get_or_create(&label).clone(),
            detect_decoded: self.detect_decoded.get_or_create(&label).clone(),
            sample_interval: self.sample_interval.get_or_create(&label).clone(),
            recorder_buffered: self.recorder_buffered.get_or_create(&label).clone(),
            decoder_backlog: self.decoder_backlog.get_or_create(&label).clone(),
            drops: self.drops.clone(),
            camera: camera.to_owned(),
        }
    }

    /// Counts a rejected WHEP offer.
    pub fn whep_rejected(&self) {
        self.whep_rejected.inc();
    }

    /// The text exposition format, with the process figures read now.
    pub fn encode(&self) -> String {
        let memory = crate::memory::read();
        self.resident_bytes.set(memory.resident as i64);
        self.open_fds.set(memory.open_fds as i64);
        self.heap_in_use.set(memory.heap_in_use as i64);
        self.heap_free.set(memory.heap_free as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
