//! Wires the gateway together: cameras → hubs → live, and the HTTP server on top.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::{Config, Validated};
use crate::detect::model::ModelSpec;
use crate::detect::onnx;
use crate::detect::service::{DetectPool, Detector};
use crate::events::{Store, retention};
use crate::ingest;
use crate::live::{Live, LiveSettings};
use crate::metrics::Metrics;
use crate::recorder::ClipSettings;
use crate::rules::{ResolvedRule, Roles, RuleError};

/// How long requests in flight may take to finish once shutdown begins.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Creates the data directory, or narrows an existing one, to its owner alone: it holds
/// the event database, snapshots and clips of children's kitchens.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create server.data_dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o700);
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make server.data_dir {} private (mode 0700)", dir.display()))?;
        warn!(dir = %dir.display(), was = format!("{mode:04o}"), "server.data_dir was readable by others; now 0700");
    }
    Ok(())
}

/// Runs the gateway until `shutdown` fires.
pub async fn run(cfg: Validated, shutdown: CancellationToken) -> anyhow::Result<()> {
    gstreamer::init().context("cannot initialise GStreamer")?;
    str0m::crypto::from_feature_flags().install_process_default();
    let config = cfg.config;
    private_data_dir(&config.server.data_dir)?;

    let metrics = Arc::new(Metrics::new());
    let clock = crate::clock::real();

    let live = Live::start(
        LiveSettings {
            udp_listen: cfg.udp_listen,
            candidates: cfg.candidates.clone(),
            viewer_queue: config.webrtc.viewer_queue,
            max_viewers: config.webrtc.max_viewers,
        },
        shutdown.child_token(),
    )
    .await?;

    let mut tasks = tokio::task::JoinSet::new();
    let store = match Store::open(&config.server.data_dir) {
        Ok(s) => {
            let removed = retention::remove_partial_files(&config.server.data_dir);
            if removed > 0 {
                info!(removed, "removed files left half-written by an earlier stop");
            }
            Some(s)
        }
        Err(e) => {
            warn!(error = %e, "events are off: the event database cannot be opened");
            None
        }
    };
    let (event_feed, _) = tokio::sync::broadcast::channel(256);
    let detect_status = Arc::new(Mutex::new(serde_json::json!({ "state": "off" })));
    let retention_kick = Arc::new(tokio::sync::Notify::new());
    let retention_limits = retention::Limits {
        max_age: std::time::Duration::from_secs_f64(config.events.retention_days * 86_400.0),
        max_bytes: config.events.max_bytes,
        min_free_bytes: config.events.min_free_bytes,
    };
    if let Some(store) = &store {
        tasks.spawn(retention::run(
            retention::Retention {
                store: store.clone(),
                data_dir: config.server.data_dir.clone(),
                limits: retention_limits,
                every: std::time::Duration::from_secs(60),
                kick: retention_kick.clone(),
                removed: metrics.retention_removed.clone(),
                clock: clock.clone(),
            },
            shutdown.child_token(),
        ));
    }

    // Sites, cameras and rules: the file's, then those saved from the dashboard.
    let settings = crate::registry::store::SettingsStore::open(&config.server.data_dir)?;
    let saved = crate::registry::Saved::load(&settings)?;
    let rule_entries = saved.rule_entries(&config.rules);
    let mut pool = None;
    let mut model = None;
    let mut detection_parts = None;
    if let Some(store) = store.as_ref().filter(|_| config.detect.enabled) {
        match start_detection(&config, &metrics) {
            Ok((p, spec, status)) => {
                model = Some(crate::registry::ModelNames {
                    roles: crate::rules::Roles::new(spec.roles.clone()),
                    labels: spec.labels.clone(),
                });
                *detect_status.lock().unwrap_or_else(|p| p.into_inner()) = status;
                detection_parts = Some((p.clone(), store.clone()));
                pool = Some(p);
            }
            Err(DetectStartError::Config(e)) => return Err(e),
            Err(DetectStartError::Unavailable(e)) => {
                warn!(error = %e, "detection is off; live view keeps working");
                *detect_status.lock().unwrap_or_else(|p| p.into_inner()) =
                    serde_json::json!({ "state": "off", "error": e });
            }
        }
    }
    let (resolved, rule_entries) = crate::registry::rules::resolve(rule_entries, model.as_ref());
    for e in &rule_entries {
        if let Some(why) = &e.inactive
            && model.is_some()
        {
            warn!(rule = %e.rule.id, "rule does not run: {why}");
        }
    }
    if model.is_some() {
        let ids: Vec<&str> = resolved.iter().map(|r| r.id()).collect();
        info!(rules = ?ids, fps = config.detect.fps, decode = ?config.detect.decode, "detection on");
    }
    let (rules_tx, rules_rx) = tokio::sync::watch::channel(Arc::new(resolved));
    let detection = detection_parts.map(|(pool, store)| crate::registry::owner::Detection {
        pool,
        store,
        feed: event_feed.clone(),
        data_dir: config.server.data_dir.clone(),
        clips: ClipSettings {
            pre_roll: std::time::Duration::from_secs_f64(config.events.pre_roll_s),
            post_roll: std::time::Duration::from_secs_f64(config.events.post_roll_s),
            max_clip: std::time::Duration::from_secs_f64(config.events.max_clip_s),
        },
        rules: rules_rx,
        violations: metrics.detect.violations.clone(),
        retention_kick: retention_kick.clone(),
        fps: config.detect.fps,
        decode: config.detect.decode,
        only: config.detect.cameras.clone(),
    });
    let runtime = Arc::new(crate::registry::owner::Runtime {
        ingest: config.ingest.clone(),
        source: Arc::new(ingest::RtspSource),
        detection,
        clock: clock.clone(),
    });
    let registry = crate::registry::Registry::start(
        crate::registry::Provisioned {
            sites: crate::config::sites(&config),
            cameras: config.cameras.clone(),
            rules: config.rules.clone(),
        },
        saved,
        rule_entries,
        settings,
        runtime,
        metrics.clone(),
        model,
        rules_tx,
        shutdown.child_token(),
    );

    // Without accounts nobody but the config token could get in: refuse to start.
    let access = crate::access::store::AccessStore::open(&config.server.data_dir)?;
    let session_limits = session_limits(&config.auth);
    match access.users() {
        Ok(users) if users.is_empty() && config.auth.admin_token.is_none() => warn!(
            "no accounts and no auth.admin_token: nobody can log in; create an admin with \
             `mingchu --config FILE user add --role admin NAME`"
        ),
        _ => {}
    }
    let audit_keep_ms = (config.auth.audit_retention_days * 86_400_000.0) as i64;
    tasks.spawn(prune_sessions(access.clone(), session_limits, audit_keep_ms, clock.clone(), shutdown.child_token()));
    // The trail records each start with a digest of the config it ran with, so a changed
    // config shows as a changed digest.
    let started = crate::access::audit::Record {
        actor: "gateway".into(),
        action: "gateway_started",
        target: cfg.path.display().to_string(),
        detail: format!("config sha256 {}", cfg.digest),
        ..Default::default()
    };
    if let Err(e) = access.record(&started, crate::clock::unix_ms(clock.realtime())) {
        warn!(error = %e, "cannot write the audit trail");
    }

    let state = AppState {
        registry: registry.clone(),
        live,
        metrics,
        admin_token: config.auth.admin_token.as_deref().map(Arc::from),
        ice_links: Arc::new(api::ice_links(&config.webrtc.ice_servers)),
        started: Instant::now(),
        events: store,
        event_feed,
        data_dir: config.server.data_dir.clone(),
        detect_status,
        shutdown: shutdown.clone(),
        auth_failures: Arc::new(Mutex::new(crate::access::throttle::Throttle::new(
            crate::access::throttle::Policy::default(),
        ))),
        feeds: api::feeds::Feeds::new(config.server.max_event_streams, config.server.max_event_streams_per_principal),
        access: access.clone(),
        session_limits,
        login_by_ip: Arc::new(Mutex::new(crate::access::throttle::Throttle::new(Default::default()))),
        login_by_account: Arc::new(Mutex::new(crate::access::throttle::Throttle::new(Default::default()))),
        retention: retention_limits,
        clock: clock.clone(),
        media: Arc::new(crate::access::media::MediaKeys::default()),
        password_checks: Arc::new(tokio::sync::Semaphore::new(2)),
        ui: Arc::new(api::ui::Ui::new(config.server.ui_dir.clone())),
    };
    if let Some(why) = state.ui.missing() {
        warn!("the dashboard is off: {why}; the API, WHEP and share links work");
    }
    tasks.spawn(api::share::reap(state.clone(), shutdown.child_token()));
    let tls = match &config.server.tls {
        None => None,
        Some(t) => {
            let files = api::tls::TlsFiles { cert: t.cert.clone(), key: t.key.clone() };
            let certs = api::tls::Certificates::open(files, state.metrics.tls.clone())?;
            tasks.spawn(api::tls::watch(certs.clone(), shutdown.child_token()));
            Some(certs.acceptor().context("cannot set up TLS")?)
        }
    };
    let transport = api::server::Transport {
        tls,
        proxies: Arc::new(api::client::TrustedProxies::new(cfg.trusted_proxies.clone())),
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen {}", cfg.listen))?;
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on server.metrics_listen {addr}"))?,
        ),
        None => None,
    };
    info!(listen = %cfg.listen, cameras = registry.cameras().len(), "mingchu ready");
    // Printed for scripts and tests that wait for the server; with port 0 in the config
    // these lines are the only way to learn the ports picked.
    println!("mingchu webrtc on udp {}", state.live.local_addr());
    if let Some(m) = &metrics_listener {
        println!("mingchu metrics on http://{}", m.local_addr()?);
    }
    let scheme = if transport.tls.is_some() { "https" } else { "http" };
    println!("mingchu listening on {scheme}://{}", listener.local_addr()?);
    let limits = api::server::ConnLimits {
        header_timeout: Duration::from_secs_f64(config.server.header_timeout_s),
        idle_timeout: Duration::from_secs_f64(config.server.idle_timeout_s),
        max_connections: config.server.max_connections,
        // A client that stops reading a download must not hold up the clips still
        // being written below.
        drain: HTTP_DRAIN,
    };
    let conn_metrics = api::server::ConnMetrics {
        open: state.metrics.http_connections.clone(),
        idle_closed: state.metrics.http_idle_closed.clone(),
        tls_failed: state.metrics.tls_handshake_failures.clone(),
    };
    let metrics_server = metrics_listener.map(|l| {
        let router = api::metrics_router(state.clone());
        // Plain HTTP for a local Prometheus; the proxies are the main listener's concern.
        let plain = api::server::Transport::default();
        tokio::spawn(api::server::serve(
            l,
            router,
            limits,
            plain,
            api::server::ConnMetrics::default(),
            shutdown.clone(),
        ))
    });
    api::server::serve(listener, api::router(state), limits, transport, conn_metrics, shutdown.clone()).await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }

    // Teardown order: HTTP is closed; stop ingest, then release viewers.
    registry.stop().await;
    if let Some(p) = &pool {
        p.stop();
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            warn!(error = %e, "camera task ended abnormally");
        }
    }
    info!("mingchu stopped");
    Ok(())
}

/// Login session limits from `[auth]`.
pub fn session_limits(auth: &crate::config::AuthConfig) -> crate::access::store::SessionLimits {
    crate::access::store::SessionLimits {
        idle_ms: (auth.session_idle_hours * 3_600_000.0) as i64,
        max_ms: (auth.session_max_days * 86_400_000.0) as i64,
    }
}

/// Removes expired sessions and audit entries past their retention every hour.
async fn prune_sessions(
    access: crate::access::store::AccessStore,
    limits: crate::access::store::SessionLimits,
    audit_keep_ms: i64,
    clock: crate::clock::Clock,
    cancel: CancellationToken,
) {
    loop {
        let now = crate::clock::unix_ms(clock.realtime());
        let a = access.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            a.prune_sessions(now, limits)?;
            a.prune_audit(now - audit_keep_ms)
        })
        .await;
        if let Ok(Err(e)) = pruned {
            warn!(error = %e, "cannot remove expired sessions or old audit entries");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

enum DetectStartError {
    /// The config is wrong: stop with this error.
    Config(anyhow::Error),
    /// Detection cannot run here (model or runtime missing): run without it.
    Unavailable(String),
}

/// Loads the model and runtime, checks the file's rules against the model, and starts
/// the detector pool; each camera's owner attaches its sampler, recorder and analysis.
fn start_detection(
    config: &Config,
    metrics: &Metrics,
) -> Result<(Arc<DetectPool>, ModelSpec, serde_json::Value), DetectStartError> {
    let d = &config.detect;
    let spec = ModelSpec::load(&d.model).map_err(|e| DetectStartError::Unavailable(e.to_string()))?;
    let (_, disabled) = resolve_rules(config, &spec).map_err(|e| DetectStartError::Config(e.into()))?;
    for why in disabled {
        warn!(model = %spec.manifest.name, "{why}");
    }
    let library = onnx::library_path(d.ort_library.as_deref());
    let env = onnx::init_runtime(&library).map_err(|e| DetectStartError::Unavailable(e.to_string()))?;
    let mut detectors = Vec::new();
    for _ in 0..d.workers {
        detectors
            .push(Detector::open(env, &spec, d.threads).map_err(|e| DetectStartError::Unavailable(e.to_string()))?);
    }
    let pool = DetectPool::start(detectors, metrics.detect.clone());
    let status = serde_json::json!({
        "state": "on",
        "model": spec.manifest.name,
        "cameras": if d.cameras.is_empty() { serde_json::json!("all") } else { serde_json::json!(d.cameras) },
        "fps": d.fps,
        "workers": d.workers,
    });
    Ok((pool, spec, status))
}

/// Checks the configured (or built-in) rules against the model; a rule the model cannot
/// see (no labels for a role it needs) is left out, and said why.
fn resolve_rules(config: &Config, spec: &ModelSpec) -> Result<(Vec<ResolvedRule>, Vec<String>), RuleError> {
    let rules = config.rules.clone().unwrap_or_else(crate::config::default_rules);
    let roles = Roles::new(spec.roles.clone());
    let mut resolved = Vec::new();
    let mut disabled = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match crate::rules::validate(i, rule, &roles, &spec.labels) {
            Ok(r) => resolved.push(r),
            Err(e @ RuleError::NoLabelsForRole { .. }) => disabled.push(format!("rule `{}` disabled: {e}", rule.id)),
            Err(e) => return Err(e),
        }
    }
    Ok((resolved, disabled))
}

/// What a start would find wrong beyond the file itself: rules checked against the model
/// the gateway would load. `Ok` carries notes for the installer (rules the model cannot
/// see, detection that would be off and why); `Err` is a config error the start refuses.
pub fn check_detection(config: &Config) -> Result<Vec<String>, RuleError> {
    let d = &config.detect;
    if !d.enabled {
        return Ok(Vec::new());
    }
    let spec = match ModelSpec::load(&d.model) {
        Ok(spec) => spec,
        Err(e) => return Ok(vec![format!("detection would be off: {e}")]),
    };
    let (_, mut notes) = resolve_rules(config, &spec)?;
    let library = onnx::library_path(d.ort_library.as_deref());
    if !library.exists() {
        notes.push(format!("detection would be off: {}", onnx::OnnxError::LibraryMissing(library)));
    }
    Ok(notes)
}
