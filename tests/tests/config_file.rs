//! The config file as an installer meets it: relative paths from the file's own
//! directory, `--check` reporting what a start would refuse, and camera passwords kept
//! out of every log line.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mingchu_e2e::poll::poll;
use mingchu_e2e::procs::tempdir::TempDir;
use mingchu_e2e::procs::{Proc, binary, check_config};

const TOKEN: &str = "config-file-token";

fn base_config(extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"./data\"\n[auth]\nadmin_token = \"{TOKEN}\"\n\
         [webrtc]\nudp_listen = \"127.0.0.1:0\"\n{extra}"
    )
}

/// Starts mingchu on `config` with `cwd` as its working directory; returns it with its
/// base URL.
fn start(config: &Path, cwd: &Path) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Command::new(binary("mingchu"));
    cmd.arg("--config").arg(config).current_dir(cwd).env("RUST_LOG", "info,str0m=warn");
    let proc = Proc::spawn("mingchu", cmd, "mingchu listening on", Duration::from_secs(30))?;
    let line = proc.startup.iter().rev().find(|l| l.contains("mingchu listening on http://")).cloned();
    let base = line.and_then(|l| l.split("listening on ").nth(1).map(str::to_owned));
    let base = base.ok_or_else(|| anyhow::anyhow!("no listen address in {:?}", proc.startup))?;
    Ok((proc, base))
}

async fn get(base: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let resp = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(TOKEN).send().await?;
    anyhow::ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
    Ok(resp.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_from_another_directory_it_finds_the_default_model_and_its_data_dir() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-cwd")?;
    let elsewhere = TempDir::new("mingchu-elsewhere")?;
    // No model or ONNX Runtime named: the shipped ones are found from the binary's tree.
    let config = dir.path().join("site.toml");
    std::fs::write(&config, base_config("[detect]\nfps = 1\n"))?;
    let (_gw, base) = start(&config, elsewhere.path())?;
    let health = get(&base, "/api/health").await?;
    assert_eq!(health["detect"]["state"], "on", "detection runs wherever the gateway is started from: {health}");
    assert!(dir.path().join("data/events.db").is_file(), "data_dir is relative to the config file");
    assert!(!elsewhere.path().join("data").exists(), "nothing is written to the working directory");
    Ok(())
}

#[test]
fn check_reports_every_rule_error_a_start_would() {
    let camera = "[[cameras]]\nid = \"cam1\"\nname = \"后厨\"\nurl = \"rtsp://127.0.0.1:8554/cam1\"\n";
    let rule = |body: &str| {
        base_config(&format!("{camera}[[rules]]\nid = \"r\"\nkind = \"presence\"\nsubject = \"animal\"\n{body}"))
    };
    let (ok, err) = check_config(&rule(""));
    assert!(ok, "a good rule passes: {err}");
    let cases = [
        (rule("cameras = [\"cam9\"]\n"), "rules[0].cameras[0]", "cam9"),
        (rule("zones = [[[0.1, 0.1], [0.5, 0.1]]]\n"), "rules[0].zones[0]", "3"),
        (rule("zones = [[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]]\n"), "rules[0].zones[0]", ""),
        (rule("timezone = \"Asia/Shanghia\"\n"), "rules[0].timezone", "Asia/Shanghia"),
        (rule("min_duration_s = -1\n"), "rules[0].min_duration_s", "-1"),
        (rule("cooldown_s = 1e9\n"), "rules[0].cooldown_s", ""),
        (rule("schedule = [{ from = \"25:00\", to = \"08:00\" }]\n"), "rules[0].schedule[0]", "25:00"),
        (rule("object = \"phone\"\n"), "rules[0].object", "proximity"),
        // Checked against the model the gateway would load.
        (rule("").replace("\"animal\"", "\"kat\""), "rules[0].subject", "kat"),
    ];
    for (text, key, detail) in cases {
        let (ok, err) = check_config(&text);
        assert!(!ok, "--check accepted:\n{text}");
        assert!(err.contains(&format!("`{key}")), "the error for\n{text}\nnames `{key}`: {err}");
        assert!(err.contains(detail), "the error names `{detail}`: {err}");
        assert_eq!(err.matches("config key").count(), 1, "the key is named once: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    // A rule the default model cannot see is not an error, but --check says so.
    let (ok, err) = check_config(&rule("").replace("\"animal\"", "\"hat\""));
    assert!(ok, "{err}");
    assert!(err.contains("warning: rule `r` disabled") && err.contains("hat"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_passwords_never_reach_the_log_or_the_api() -> anyhow::Result<()> {
    let dir = TempDir::new("mingchu-secret")?;
    let passwords = ["pa/ss", "c:l@n%2F", "tr?ck#y"];
    let mut cameras = String::new();
    for (i, password) in passwords.iter().enumerate() {
        // Nothing listens on the discard port: every attempt is refused and retried.
        cameras.push_str(&format!(
            "[[cameras]]\nid = \"cam{i}\"\nname = \"后厨 {i}\"\nurl = \"rtsp://admin:{password}@127.0.0.1:9/Streaming/Channels/101\"\n"
        ));
    }
    let config = dir.path().join("secret.toml");
    std::fs::write(&config, base_config(&format!("[detect]\nenabled = false\n{cameras}")))?;
    let (mut gw, base) = start(&config, dir.path())?;
    let mut lines = gw.startup.clone();
    for i in 0..passwords.len() {
        let id = format!("cam{i}");
        let cam = poll(&format!("{id} retried twice"), Duration::from_secs(20), |seen| {
            let (base, id) = (base.clone(), id.clone());
            async move {
                let cam = get(&base, &format!("/api/cameras/{id}")).await?;
                seen.show(&cam);
                Ok((cam["reconnects"].as_u64().unwrap_or(0) >= 2).then_some(cam))
            }
        })
        .await?;
        lines.push(cam.to_string());
    }
    lines.push(get(&base, "/api/cameras").await?.to_string());
    lines.extend(gw.drain_lines());
    assert!(lines.iter().any(|l| l.contains("admin:***@127.0.0.1:9")), "the redacted URL is logged: {lines:#?}");
    for password in passwords {
        for line in &lines {
            assert!(!line.contains(password), "password {password:?} shown in: {line}");
        }
    }
    Ok(())
}

#[test]
fn camera_sim_finds_its_scene_photos_from_another_directory() -> anyhow::Result<()> {
    let elsewhere = TempDir::new("camera-sim-cwd")?;
    let mut cmd = Command::new(binary("camera-sim"));
    cmd.args(["--listen", "127.0.0.1:0", "--cameras", "1", "--width", "320", "--height", "180"])
        .args(["--scene", "default"])
        .current_dir(elsewhere.path());
    let sim = Proc::spawn("camera-sim", cmd, "camera-sim ready", Duration::from_secs(30))?;
    assert!(sim.startup.iter().any(|l| l.contains("rtsp://127.0.0.1:")), "{:?}", sim.startup);
    Ok(())
}
