//! Bad configs, requests and SDP get clear errors, and the gateway keeps serving.

use std::process::Command;
use std::time::Duration;

use mingchu_e2e::measure::rates;
use mingchu_e2e::procs::{Gateway, Sim, SimOptions, binary, check_config};
use mingchu_e2e::whep::{Viewer, ViewerOptions, post_offer};

/// Exit status of camera-sim for a mistake in what it was asked to do.
const SIM_EXIT_USAGE: i32 = 2;

#[test]
fn camera_sim_reports_a_missing_photo_dir_in_one_line() {
    let missing = "/nonexistent/mingchu-e2e-photos";
    let out = Command::new(binary("camera-sim"))
        .args(["--listen", "127.0.0.1:0", "--scene", "default", "--photos", missing])
        // A user's mistake is not a bug: no backtrace even when one is asked for.
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run camera-sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SIM_EXIT_USAGE), "exit status for a missing photo dir; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line of error: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(missing), "the error names the directory: {stderr}");
    assert!(!stderr.contains("stack backtrace") && !stderr.contains("Stack backtrace"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
}

const BASE: &str = "[server]\nlisten = \"127.0.0.1:18080\"\n[auth]\nadmin_token = \"long-enough-token\"\n";

#[test]
fn bad_configs_are_rejected_naming_the_key() {
    let (ok, _) = check_config(&format!(
        "{BASE}[[cameras]]\nid = \"cam1\"\nname = \"后厨\"\nurl = \"rtsp://127.0.0.1:8554/cam1\"\n"
    ));
    assert!(ok, "a good config passes --check");

    let cases = [
        (format!("{BASE}[server2]\n"), "server2"),
        (
            format!("{BASE}[[cameras]]\nid = \"cam1\"\nname = \"x\"\nurl = \"http://127.0.0.1/cam1\"\n"),
            "cameras[0].url",
        ),
        (format!("{BASE}[[cameras]]\nid = \"cam 1\"\nname = \"x\"\nurl = \"rtsp://h/x\"\n"), "cameras[0].id"),
        (format!("{BASE}[[cameras]]\nid = \"cam1\"\nname = \"x\"\nurl = \"rtsp://h/x\"\nfps = 5\n"), "fps"),
        (format!("{BASE}[webrtc]\nudp_listen = \"0.0.0.0:8189\"\n"), "webrtc.candidates"),
        ("[server]\nlisten = \"127.0.0.1:1\"\n[auth\n".to_string(), "line 3"),
        (BASE.replace("long-enough-token", "short"), "auth.admin_token"),
    ];
    for (text, needle) in cases {
        let (ok, err) = check_config(&text);
        assert!(!ok, "config accepted:\n{text}");
        assert!(err.contains(needle), "error for\n{text}\ndoes not name `{needle}`: {err}");
    }
    let (ok, err) = check_config_missing();
    assert!(!ok && err.contains("cannot read config"), "{err}");
}

fn check_config_missing() -> (bool, String) {
    let out = Command::new(binary("mingchu"))
        .args(["--config", "/nonexistent/mingchu.toml", "--check"])
        .output()
        .expect("run");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_the_stream_keeps_flowing() -> anyhow::Result<()> {
    let sim = Sim::start(&SimOptions::default())?;
    let gw = Gateway::start(&[("cam1", sim.url("cam1"))])?;
    gw.wait_state("cam1", "online", Duration::from_secs(10)).await?;
    let viewer = Viewer::connect(&gw.base, &gw.token, "cam1", ViewerOptions::default()).await?;
    viewer.wait_frames(1, Duration::from_secs(5)).await?;

    let client = reqwest::Client::new();
    // No token, wrong token.
    let r = client.get(format!("{}/api/cameras", gw.base)).send().await?;
    assert_eq!(r.status(), 401);
    let r = client.get(format!("{}/api/cameras", gw.base)).bearer_auth("wrong").send().await?;
    assert_eq!(r.status(), 401);
    let r = client.post(format!("{}/api/cameras/cam1/whep", gw.base)).body("v=0").send().await?;
    assert_eq!(r.status(), 401, "WHEP needs the token too");

    let rejected_before = gw.metric("mingchu_whep_rejected_total").await?;
    let frames_before = gw.metric("mingchu_frames_in_total{camera=\"cam1\"}").await?;
    let whep = format!("{}/api/cameras/cam1/whep", gw.base);
    let mut malformed = 0;
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("unknown camera", "application/sdp", "v=0\r\n".into(), 404, "no camera"),
        ("wrong content type", "application/json", "{}".into(), 415, "application/sdp"),
        ("empty body", "application/sdp", String::new(), 400, "empty"),
        ("not SDP", "application/sdp", "hello world".into(), 400, "v=0"),
        ("no video", "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n".into(), 400, "no video"),
        ("VP8 only", "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n".into(), 400, "H.264"),
        ("garbage after v=0", "application/sdp", "v=0\r\nm=video H264/90000 \u{0}\u{1}\u{2}\r\n\r\n".into(), 400, "SDP"),
        ("truncated offer", "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n".into(), 400, "SDP"),
    ];
    for (what, ct, body, want, needle) in cases {
        let url = if what == "unknown camera" { format!("{}/api/cameras/nope/whep", gw.base) } else { whep.clone() };
        let (status, _, text) = post_offer(&url, &gw.token, ct, body).await?;
        assert_eq!(status, want, "{what}: {text}");
        let err: serde_json::Value = serde_json::from_str(&text)?;
        let msg = err["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: `{msg}` does not mention `{needle}`");
        assert!(!msg.contains('\n'), "{what}: reason is one line: {msg}");
        // Offers the gateway read and found wanting are what `whep_rejected` counts.
        if status == 400 {
            malformed += 1;
        }
    }
    // A huge body is refused, not buffered without end.
    let (status, _, _) = post_offer(&whep, &gw.token, "application/sdp", "v=0\r\n".repeat(100_000)).await?;
    assert_eq!(status, 413);
    // Unknown API paths need the token too; a bad event id is a JSON 400.
    let r = client.get(format!("{}/api/nope", gw.base)).send().await?;
    assert_eq!(r.status(), 401);
    let r = client.get(format!("{}/api/events/abc", gw.base)).bearer_auth(&gw.token).send().await?;
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await?;
    assert!(err["error"].as_str().unwrap_or_default().contains("abc"), "{err}");
    // A credential never travels in a URL: a token in the query is not taken.
    let r = client.get(format!("{}/api/events?access_token={}", gw.base, gw.token)).send().await?;
    assert_eq!(r.status(), 401);
    // DELETE of an unknown session.
    let r = client.delete(format!("{whep}/0123")).bearer_auth(&gw.token).send().await?;
    assert_eq!(r.status(), 404);

    // The viewer never noticed.
    rates(&gw, "cam1", &[&viewer], Duration::from_secs(2)).await?.check_viewers_keep_up(0.8)?;
    let rejected = gw.metric("mingchu_whep_rejected_total").await? - rejected_before;
    assert_eq!(rejected, f64::from(malformed), "whep_rejected_total counts the {malformed} malformed offers");
    let frames = gw.metric("mingchu_frames_in_total{camera=\"cam1\"}").await? - frames_before;
    assert!(frames > 0.0, "frames_in_total kept counting the camera's frames");
    Ok(())
}
