//! Starting and stopping camera-sim and mingchu processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::poll::poll;

/// Directory that overrides where [`binary`] finds the workspace binaries, e.g. to run
/// the tests against a release build or a build from another checkout.
pub const BIN_DIR_ENV: &str = "MINGCHU_E2E_BIN_DIR";

/// Path of a workspace binary built next to the test executable (or in `$MINGCHU_E2E_BIN_DIR`).
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => {
            // Test executables live in target/<profile>/deps; binaries one level up.
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent().and_then(Path::parent).expect("target profile directory").to_owned()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`, or ./dev.sh test)",
        path.display()
    );
    path
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Config lines that turn detection on with the default model installed by `./dev.sh setup`.
pub fn detect_config() -> String {
    detect_config_for("nanodet-g-416.toml")
}

/// Config lines that turn detection on with the model of manifest `models/{manifest}`.
pub fn detect_config_for(manifest: &str) -> String {
    let root = repo_root();
    format!(
        "[detect]\nmodel = \"{}\"\nort_library = \"{}\"\n",
        root.join("models").join(manifest).display(),
        root.join(".tools/onnxruntime/libonnxruntime.so.1.32.0").display()
    )
}

/// Writes a config as an installer would: readable by its owner only. A file that
/// exists keeps its mode.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

/// Runs `mingchu --check` on `text`; returns whether it passed and what it printed on stderr.
pub fn check_config(text: &str) -> (bool, String) {
    let dir = tempdir::TempDir::new("mingchu-check").expect("temp dir");
    let path = dir.path().join("check.toml");
    write_private(&path, text).expect("write config");
    let out = Command::new(binary("mingchu")).arg("--config").arg(&path).arg("--check").output().expect("run mingchu");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A child process killed when dropped, with its output lines available.
pub struct Proc {
    child: Child,
    name: String,
    lines: mpsc::Receiver<String>,
    /// Every output line up to and including the ready line, in order.
    pub startup: Vec<String>,
}

impl Proc {
    /// Spawns `cmd` and waits until an output line contains `ready`.
    pub fn spawn(name: &str, mut cmd: Command, ready: &str, timeout: Duration) -> anyhow::Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().context("stdout")?;
        let err = child.stderr.take().context("stderr")?;
        let tx2 = tx.clone();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var_os("E2E_VERBOSE").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                let _ = tx2.send(line);
            }
        });
        let mut proc = Self { child, name: name.to_owned(), lines: rx, startup: Vec::new() };
        proc.startup = proc.wait_lines(ready, timeout).with_context(|| format!("{name} did not become ready"))?;
        Ok(proc)
    }

    /// Waits for an output line containing `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let mut lines = self.wait_lines(needle, timeout)?;
        lines.pop().context("no line")
    }

    /// Waits for an output line containing `needle`; returns every line read until then,
    /// that one last.
    fn wait_lines(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    lines.push(line);
                    if done {
                        return Ok(lines);
                    }
                }
                Err(e) => {
                    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
                    if e == mpsc::RecvTimeoutError::Disconnected {
                        // Both pipes closed: the process is exiting; give it a moment to be reaped.
                        let reap_by = Instant::now() + Duration::from_secs(2);
                        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < reap_by {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    if let Ok(Some(status)) = self.child.try_wait() {
                        bail!("{} exited with {status} before printing `{needle}`; last output: {tail}", self.name);
                    }
                    bail!("{} printed no `{needle}` within {timeout:?}; last output: {tail}", self.name);
                }
            }
        }
    }

    /// All output lines so far.
    pub fn drain_lines(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (like a power cut) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A camera simulator process.
pub struct Sim {
    /// The process.
    pub proc: Proc,
    /// Its RTSP port.
    pub rtsp_port: u16,
    /// Its control API.
    pub control: SocketAddr,
}

/// Options for camera-sim.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Number of cameras.
    pub cameras: u32,
    /// Index of the first camera (cam1 by default).
    pub first_index: u32,
    /// Frames per second.
    pub fps: u32,
    /// GOP length in frames.
    pub gop: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Bit rate in kbit/s.
    pub bitrate_kbps: u32,
    /// RTSP port; 0 lets camera-sim pick a free one and report it.
    pub rtsp_port: u16,
    /// Scene to play instead of the test pattern (`default` or a file).
    pub scene: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            cameras: 1,
            first_index: 1,
            fps: 25,
            gop: 50,
            width: 640,
            height: 360,
            bitrate_kbps: 800,
            rtsp_port: 0,
            scene: None,
        }
    }
}

/// How long camera-sim may take to print its ready line.
const SIM_READY: Duration = Duration::from_secs(20);
/// How long a restarted camera-sim keeps trying to get back a given RTSP port.
const SIM_REBIND: Duration = Duration::from_secs(10);

impl Sim {
    /// Starts camera-sim with a control API, both on ports it picks itself unless
    /// `opts.rtsp_port` asks for one.
    ///
    /// A fixed port is only asked for to bring a killed camera back where the gateway
    /// expects it. The port was just released, so it is free unless some other program
    /// took it in between (very unlikely: ephemeral ports are handed out at random) or the
    /// kernel has not let go of it yet; a failed bind is therefore retried for a few
    /// seconds instead of failing the test at once.
    pub fn start(opts: &SimOptions) -> anyhow::Result<Self> {
        let deadline = Instant::now() + SIM_REBIND;
        loop {
            match Self::try_start(opts) {
                Ok(sim) => return Ok(sim),
                Err(e)
                    if opts.rtsp_port != 0
                        && Instant::now() < deadline
                        && format!("{e:#}").contains("cannot listen") =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_start(opts: &SimOptions) -> anyhow::Result<Self> {
        let mut cmd = Command::new(binary("camera-sim"));
        cmd.args(["--listen", &format!("127.0.0.1:{}", opts.rtsp_port)])
            .args(["--control", "127.0.0.1:0"])
            .args(["--cameras", &opts.cameras.to_string()])
            .args(["--first-index", &opts.first_index.to_string()])
            .args(["--fps", &opts.fps.to_string()])
            .args(["--gop", &opts.gop.to_string()])
            .args(["--width", &opts.width.to_string()])
            .args(["--height", &opts.height.to_string()])
            .args(["--bitrate-kbps", &opts.bitrate_kbps.to_string()]);
        if let Some(scene) = &opts.scene {
            cmd.args(["--scene", scene]).arg("--photos").arg(repo_root().join(".tools/photos"));
        }
        let proc = Proc::spawn("camera-sim", cmd, "camera-sim ready", SIM_READY)?;
        let ready = proc.startup.last().context("no ready line")?;
        let (rtsp_port, control) = parse_sim_ready(ready)?;
        Ok(Self { proc, rtsp_port, control })
    }

    /// RTSP URL of camera `name`.
    pub fn url(&self, name: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{name}", self.rtsp_port)
    }

    /// POSTs to the control API, e.g. `cameras/cam1/faults/stall?secs=3`.
    pub async fn control(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.control_request(reqwest::Method::POST, path).await
    }

    /// GETs from the control API, e.g. `cameras/cam1`.
    pub async fn control_get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.control_request(reqwest::Method::GET, path).await
    }

    /// Ends every fault of camera `name` (an offline camera comes back at once).
    pub async fn clear_faults(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        self.control_request(reqwest::Method::DELETE, &format!("cameras/{name}/faults")).await
    }

    async fn control_request(&self, method: reqwest::Method, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("http://{}/{path}", self.control);
        let resp = reqwest::Client::new().request(method.clone(), url).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("camera-sim control {method} {path}: {status} {body}");
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }
}

/// The RTSP port and control address from camera-sim's ready line,
/// `camera-sim ready rtsp://127.0.0.1:PORT/cam1..camN control=http://127.0.0.1:PORT`.
pub fn parse_sim_ready(line: &str) -> anyhow::Result<(u16, SocketAddr)> {
    let field = |prefix: &str| -> anyhow::Result<&str> {
        let word = line.split_whitespace().find_map(|w| w.strip_prefix(prefix));
        word.with_context(|| format!("no `{prefix}` in camera-sim's ready line `{line}`"))
    };
    let rtsp = field("rtsp://")?;
    let rtsp: SocketAddr =
        rtsp.split('/').next().unwrap_or_default().parse().with_context(|| format!("RTSP address in `{line}`"))?;
    let control = field("control=http://")?;
    let control: SocketAddr =
        control.trim_end_matches('/').parse().with_context(|| format!("control address in `{line}`"))?;
    // Port 0 is what was asked for, never what was bound.
    anyhow::ensure!(rtsp.port() != 0 && control.port() != 0, "camera-sim reported port 0: `{line}`");
    Ok((rtsp.port(), control))
}

/// The address after `prefix` in a gateway start-up line such as
/// `mingchu listening on http://127.0.0.1:PORT`.
pub fn parse_addr_after(lines: &[String], prefix: &str) -> anyhow::Result<SocketAddr> {
    let rest = lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .with_context(|| format!("mingchu printed no `{prefix}` line: {lines:?}"))?;
    rest.trim().parse().with_context(|| format!("address in `{prefix}{rest}`"))
}

/// A gateway process with its config.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// Base URL of its HTTP server.
    pub base: String,
    /// The UDP address its WebRTC media uses.
    pub udp: SocketAddr,
    /// Its admin token.
    pub token: String,
    /// Where its config and data live.
    pub dir: tempdir::TempDir,
}

/// A temporary directory removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// Creates a fresh directory.
        pub fn new(prefix: &str) -> std::io::Result<Self> {
            let n: u64 = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }

        /// Takes over an existing directory (one a stopped gateway used), to start
        /// another gateway on the same data.
        pub fn adopt(path: PathBuf) -> Self {
            Self(path)
        }

        /// The path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The admin token the test gateways use.
pub const TOKEN: &str = "e2e-test-token";

/// How long the gateway may take to start listening (the detection model loads first).
const GATEWAY_READY: Duration = Duration::from_secs(30);

impl Gateway {
    /// A config for `cameras` (id, url); `extra` is appended. The gateway picks its HTTP
    /// and UDP ports itself and prints them, so no port is probed and reused later.
    pub fn config(cameras: &[(&str, String)], extra: &str) -> String {
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"./data\"\n\n[auth]\nadmin_token = \"{TOKEN}\"\n\n\
             [webrtc]\nudp_listen = \"127.0.0.1:0\"\n\n{extra}\n"
        );
        for (id, url) in cameras {
            text.push_str(&format!("[[cameras]]\nid = \"{id}\"\nname = \"测试 {id}\"\nurl = \"{url}\"\n\n"));
        }
        text
    }

    /// Starts mingchu with the config text.
    pub fn start_with(config: &str) -> anyhow::Result<Self> {
        let dir = tempdir::TempDir::new("mingchu-e2e")?;
        Self::start_in(dir, config)
    }

    /// Starts mingchu with the config text in `dir` (its data dir is `dir/data`).
    pub fn start_in(dir: tempdir::TempDir, config: &str) -> anyhow::Result<Self> {
        let path = dir.path().join("mingchu.toml");
        write_private(&path, config)?;
        let mut cmd = Command::new(binary("mingchu"));
        let log = std::env::var("MINGCHU_LOG").unwrap_or_else(|_| "info,str0m=warn".into());
        cmd.arg("--config").arg(&path).current_dir(dir.path()).env("RUST_LOG", log);
        let proc = Proc::spawn("mingchu", cmd, "mingchu listening on", GATEWAY_READY)?;
        // `https://` when the config has `[server.tls]`.
        let base = match parse_addr_after(&proc.startup, "mingchu listening on http://") {
            Ok(http) => format!("http://{http}"),
            Err(_) => format!("https://{}", parse_addr_after(&proc.startup, "mingchu listening on https://")?),
        };
        let udp = parse_addr_after(&proc.startup, "mingchu webrtc on udp ")?;
        Ok(Self { proc, base, udp, token: TOKEN.into(), dir })
    }

    /// Starts mingchu for `cameras`.
    pub fn start(cameras: &[(&str, String)]) -> anyhow::Result<Self> {
        // Relay tests measure the relay alone.
        Self::start_with(&Self::config(cameras, "[detect]\nenabled = false\n"))
    }

    /// GETs an API path as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let resp = reqwest::Client::new().get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// The status object of one camera from `GET /api/cameras/{id}`.
    pub async fn camera(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        self.get_json(&format!("/api/cameras/{id}")).await
    }

    /// Waits until camera `id` reports `state` (online/offline).
    pub async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        poll(&format!("camera {id} {state}"), timeout, |seen| async move {
            let cam = self.camera(id).await?;
            seen.show(&cam);
            Ok((cam["state"] == state).then_some(cam))
        })
        .await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = reqwest::Client::new().get(format!("{}/metrics", self.base)).bearer_auth(&self.token).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET /metrics: {status} {body}");
        }
        Ok(body)
    }

    /// The value of one series, e.g. `mingchu_frames_in_total{camera="cam1"}`; fails when
    /// the gateway does not export it.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        metric_value(&text, series).with_context(|| format!("no metric {series} in:\n{text}"))
    }
}

/// The value of `series` (name with its labels, as printed) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// `mingchu user add` with the password on stdin; returns (success, stderr).
pub fn user_add(cfg: &Path, role: &str, sites: &str, name: &str, password: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(binary("mingchu"))
        .arg("--config")
        .arg(cfg)
        .args(["user", "add", "--role", role, "--sites", sites, "--password-stdin", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mingchu user add");
    let _ = child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes());
    let out = child.wait_with_output().expect("wait");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}
