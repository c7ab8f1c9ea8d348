//! Starting and stopping camera-sim and mingchu processes.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Path of a workspace binary built next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
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

/// A free loopback TCP port.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free TCP port")
}

/// A free loopback UDP port.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free UDP port")
}

/// A child process killed when dropped, with its output lines available.
pub struct Proc {
    child: Child,
    name: String,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Spawns `cmd` and waits until a stdout line contains `ready`.
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
        let mut proc = Self { child, name: name.to_owned(), lines: rx };
        proc.wait_line(ready, timeout).with_context(|| format!("{name} did not become ready"))?;
        Ok(proc)
    }

    /// Waits for an output line containing `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        bail!("{} exited with {status} before printing `{needle}`", self.name);
                    }
                    bail!("{} printed no `{needle}` within {timeout:?}", self.name);
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
    /// Its control API, when enabled.
    pub control: Option<SocketAddr>,
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
    /// RTSP port; 0 picks one.
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

impl Sim {
    /// Starts camera-sim with a control API.
    pub fn start(opts: &SimOptions) -> anyhow::Result<Self> {
        let rtsp_port = if opts.rtsp_port == 0 { free_tcp_port() } else { opts.rtsp_port };
        let control: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse()?;
        let mut cmd = Command::new(binary("camera-sim"));
        cmd.args(["--listen", &format!("127.0.0.1:{rtsp_port}")])
            .args(["--control", &control.to_string()])
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
        let proc = Proc::spawn("camera-sim", cmd, "camera-sim ready", Duration::from_secs(20))?;
        Ok(Self { proc, rtsp_port, control: Some(control) })
    }

    /// RTSP URL of camera `name`.
    pub fn url(&self, name: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{name}", self.rtsp_port)
    }

    /// POSTs to the control API, e.g. `cameras/cam1/faults/stall?secs=3`.
    pub async fn control(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let addr = self.control.context("no control API")?;
        let resp = reqwest::Client::new().post(format!("http://{addr}/{path}")).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("camera-sim control {path}: {status} {body}");
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }
}

/// A gateway process with its config.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// Base URL of its HTTP server.
    pub base: String,
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

impl Gateway {
    /// A config for `cameras` (id, url) with free loopback ports; `extra` is appended.
    pub fn config(cameras: &[(&str, String)], extra: &str) -> (String, u16) {
        let http = free_tcp_port();
        let udp = free_udp_port();
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:{http}\"\ndata_dir = \"./data\"\n\n[auth]\nadmin_token = \"{TOKEN}\"\n\n\
             [webrtc]\nudp_listen = \"127.0.0.1:{udp}\"\n\n{extra}\n"
        );
        for (id, url) in cameras {
            text.push_str(&format!("[[cameras]]\nid = \"{id}\"\nname = \"测试 {id}\"\nurl = \"{url}\"\n\n"));
        }
        (text, http)
    }

    /// Starts mingchu with the config text.
    pub fn start_with(config: &str, http_port: u16) -> anyhow::Result<Self> {
        let dir = tempdir::TempDir::new("mingchu-e2e")?;
        Self::start_in(dir, config, http_port)
    }

    /// Starts mingchu with the config text in `dir` (its data dir is `dir/data`).
    pub fn start_in(dir: tempdir::TempDir, config: &str, http_port: u16) -> anyhow::Result<Self> {
        let path = dir.path().join("mingchu.toml");
        std::fs::write(&path, config)?;
        let mut cmd = Command::new(binary("mingchu"));
        let log = std::env::var("MINGCHU_LOG").unwrap_or_else(|_| "info,str0m=warn".into());
        cmd.arg("--config").arg(&path).current_dir(dir.path()).env("RUST_LOG", log);
        let proc = Proc::spawn("mingchu", cmd, "mingchu listening on", Duration::from_secs(20))?;
        Ok(Self { proc, base: format!("http://127.0.0.1:{http_port}"), token: TOKEN.into(), dir })
    }

    /// Starts mingchu for `cameras`.
    pub fn start(cameras: &[(&str, String)]) -> anyhow::Result<Self> {
        // Relay tests measure the relay alone.
        let (config, port) = Self::config(cameras, "[detect]\nenabled = false\n");
        Self::start_with(&config, port)
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
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let cam = self.camera(id).await?;
            if cam["state"] == state {
                return Ok(cam);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("camera {id} did not become {state} within {timeout:?}: {cam}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
