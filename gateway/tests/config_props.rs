//! Property tests for the config file and the rules in it: any text gives a validated config or
//! an error naming the file or the key, never a panic, and what validates is in range for the
//! code that turns it into durations, sockets and schedules.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use mingchu::config::{Config, ConfigError, Validated};
use mingchu::rules::{Roles, RuleError};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

const PATH: &str = "/etc/mingchu/gateway.toml";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A float as TOML writes it (`nan`, `inf` rather than Rust's `NaN`).
fn toml_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:?}")
    }
}

fn quoted(s: &str) -> String {
    // Debug quoting is valid TOML for printable text; other text is what the parser must reject.
    format!("{s:?}")
}

/// Floats a hand-edited config might hold.
fn weird_float() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (-10.0f64..1000.0).prop_map(toml_float),
        1 => Just("nan".to_owned()),
        1 => Just("inf".to_owned()),
        1 => Just("-inf".to_owned()),
        1 => Just("-0.0".to_owned()),
        1 => Just("1e-300".to_owned()),
        1 => Just("1e308".to_owned()),
        1 => Just("0.009999".to_owned()),
        1 => any::<f64>().prop_map(toml_float),
    ]
}

/// Values of every TOML type, for any key.
fn weird_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => weird_float(),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => Just("0".to_owned()),
        1 => Just("-1".to_owned()),
        1 => Just("18446744073709551615".to_owned()),
        1 => Just("true".to_owned()),
        1 => Just("[]".to_owned()),
        1 => Just("{}".to_owned()),
        1 => Just("1979-05-27T07:32:00Z".to_owned()),
        1 => Just("\"\"".to_owned()),
        1 => Just("\"[::]:0\"".to_owned()),
        1 => Just("\"0.0.0.0:8189\"".to_owned()),
        1 => Just("\"rtsp://\"".to_owned()),
        1 => Just("\"rtsp://user:pa@ss@[::1:554/x\"".to_owned()),
        1 => Just("[[[0.0, 0.0], [1.0, 0.0]]]".to_owned()),
        1 => Just("[[[0.0, 0.0], [nan, 0.5], [1.0, 1.0]]]".to_owned()),
        1 => Just("[{ from = \"24:00\", to = \"00:00\" }]".to_owned()),
        1 => Just("[{ days = [], from = \"08:00\", to = \"08:00\" }]".to_owned()),
        1 => Just("\"Etc/GMT+14\"".to_owned()),
        1 => Just("\"../../../etc/passwd\"".to_owned()),
        1 => "[A-Za-z_/+-]{0,20}".prop_map(|s| quoted(&s)),
        1 => "[0-9:]{0,6}".prop_map(|s| quoted(&s)),
        2 => ".{0,16}".prop_map(|s| quoted(&s)),
    ]
}

/// One `[table]` or `[[array]]` section.
#[derive(Debug, Clone)]
struct Section {
    header: &'static str,
    lines: Vec<(String, String)>,
}

impl Section {
    fn new(header: &'static str, lines: &[(&str, String)]) -> Self {
        Self { header, lines: lines.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect() }
    }
}

fn text(sections: &[Section]) -> String {
    let mut s = String::new();
    for sec in sections {
        s.push_str(sec.header);
        s.push('\n');
        for (k, v) in &sec.lines {
            s.push_str(&format!("{k} = {v}\n"));
        }
    }
    s
}

fn zone() -> impl Strategy<Value = String> {
    prop::collection::vec((0.0f64..=1.0, 0.0f64..=1.0), 3..6).prop_map(|pts| {
        let pts: Vec<String> = pts.iter().map(|(x, y)| format!("[{}, {}]", toml_float(*x), toml_float(*y))).collect();
        format!("[[{}]]", pts.join(", "))
    })
}

fn hhmm() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        1 => Just("24:00".to_owned()),
    ]
}

fn schedule() -> impl Strategy<Value = String> {
    let day = prop_oneof![
        Just("mon"),
        Just("tue"),
        Just("wed"),
        Just("thu"),
        Just("fri"),
        Just("sat"),
        Just("sun"),
        Just("Mon")
    ];
    let entry = (prop::option::of(prop::collection::vec(day, 1..4)), hhmm(), hhmm())
        .prop_filter("an empty range", |(_, from, to)| from != to && from != "24:00");
    prop::collection::vec(entry, 1..3).prop_map(|entries| {
        let e: Vec<String> = entries
            .iter()
            .map(|(days, from, to)| {
                let days = days.as_ref().map_or(String::new(), |d| {
                    format!("days = [{}], ", d.iter().map(|d| quoted(d)).collect::<Vec<_>>().join(", "))
                });
                format!("{{ {days}from = {}, to = {} }}", quoted(from), quoted(to))
            })
            .collect();
        format!("[{}]", e.join(", "))
    })
}

fn timezone() -> impl Strategy<Value = String> {
    prop_oneof![Just("Asia/Shanghai"), Just("UTC"), Just("Europe/Berlin"), Just("America/St_Johns")].prop_map(quoted)
}

fn rule(i: usize) -> impl Strategy<Value = Section> {
    (
        prop_oneof![
            Just(("presence", "animal", None)),
            Just(("proximity", "person", Some("phone"))),
            Just(("missing_attribute", "person", Some("hat"))),
            Just(("presence", "cat", None)),
        ],
        prop::option::of(zone()),
        prop::option::of(schedule()),
        timezone(),
        (0.0f64..100.0, 0.0f64..600.0, 0.0f64..10.0, 0.0f32..=1.0, 0.0f32..=2.0),
        prop_oneof![Just("info"), Just("warning"), Just("critical")],
    )
        .prop_map(move |((kind, subject, object), zones, sched, tz, (min_d, cool, end, score, prox), severity)| {
            let mut lines = vec![
                ("id".to_owned(), quoted(&format!("rule_{i}"))),
                ("kind".to_owned(), quoted(kind)),
                ("subject".to_owned(), quoted(subject)),
                ("timezone".to_owned(), tz),
                ("min_duration_s".to_owned(), toml_float(min_d)),
                ("cooldown_s".to_owned(), toml_float(cool)),
                ("end_after_s".to_owned(), toml_float(end)),
                ("min_score".to_owned(), toml_float(f64::from(score))),
                ("proximity".to_owned(), toml_float(f64::from(prox))),
                ("severity".to_owned(), quoted(severity)),
            ];
            if let Some(o) = object {
                lines.push(("object".to_owned(), quoted(o)));
            }
            if let Some(z) = zones {
                lines.push(("zones".to_owned(), z));
            }
            if let Some(s) = sched {
                lines.push(("schedule".to_owned(), s));
            }
            Section { header: "[[rules]]", lines }
        })
}

/// A config that should validate: every section, a camera or two, a few rules.
fn valid_config() -> impl Strategy<Value = Vec<Section>> {
    (
        1u16..,
        prop::collection::vec(0u8..3, 0..3),
        (0.2f64..=600.0, 0.1f64..=3600.0, 0.01f64..=30.0),
        (0.0f64..=60.0, 0.0f64..=120.0, 1.0f64..=3600.0, 0.0f64..=3650.0),
        1usize..3,
        prop::collection::vec(rule(0), 0..3),
    )
        .prop_map(|(port, candidates, (stall, backoff, fps), (pre, post, clip, days), cameras, rules)| {
            let cand: Vec<String> =
                candidates.iter().map(|c| quoted(["192.168.1.10", "10.0.0.1", "::1"][*c as usize])).collect();
            let mut s = vec![
                Section::new("[server]", &[("listen", quoted("127.0.0.1:8080")), ("data_dir", quoted("./data"))]),
                Section::new("[auth]", &[("admin_token", quoted("0123456789abcdef"))]),
                Section::new(
                    "[webrtc]",
                    &[
                        ("udp_listen", quoted(&format!("127.0.0.1:{port}"))),
                        ("candidates", format!("[{}]", cand.join(", "))),
                        ("viewer_queue", "90".into()),
                        ("max_viewers", "1000".into()),
                    ],
                ),
                Section::new(
                    "[ingest]",
                    &[("stall_timeout_s", toml_float(stall)), ("max_backoff_s", toml_float(backoff))],
                ),
                Section::new(
                    "[detect]",
                    &[
                        ("enabled", "true".into()),
                        ("fps", toml_float(fps)),
                        ("threads", "1".into()),
                        ("workers", "2".into()),
                    ],
                ),
                Section::new(
                    "[events]",
                    &[
                        ("pre_roll_s", toml_float(pre)),
                        ("post_roll_s", toml_float(post)),
                        ("max_clip_s", toml_float(clip)),
                        ("retention_days", toml_float(days)),
                        ("max_bytes", "1073741824".into()),
                    ],
                ),
            ];
            for c in 0..cameras {
                s.push(Section::new(
                    "[[cameras]]",
                    &[
                        ("id", quoted(&format!("cam-{c}"))),
                        ("name", quoted("阳光小学 后厨")),
                        ("url", quoted(&format!("rtsp://admin:secret@10.0.0.{}:554/stream1", c + 2))),
                        ("transport", quoted(if c == 0 { "tcp" } else { "udp" })),
                    ],
                ));
            }
            for (i, mut r) in rules.into_iter().enumerate() {
                // Ids must be unique across rules.
                r.lines[0].1 = quoted(&format!("rule_{i}"));
                s.push(r);
            }
            s
        })
}

#[derive(Debug, Clone)]
enum Edit {
    Value(usize, usize, String),
    Drop(usize, usize),
    DropSection(usize),
    DuplicateSection(usize),
    Unknown(usize, String, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<usize>(), any::<usize>(), weird_value()).prop_map(|(s, k, v)| Edit::Value(s, k, v)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(s, k)| Edit::Drop(s, k)),
        1 => any::<usize>().prop_map(Edit::DropSection),
        1 => any::<usize>().prop_map(Edit::DuplicateSection),
        1 => (any::<usize>(), "[a-z_]{1,12}", weird_value()).prop_map(|(s, k, v)| Edit::Unknown(s, k, v)),
    ]
}

fn apply(sections: &mut Vec<Section>, edits: &[Edit]) {
    for e in edits {
        if sections.is_empty() {
            return;
        }
        let n = sections.len();
        match e {
            Edit::Value(s, k, v) => {
                let lines = &mut sections[s % n].lines;
                if !lines.is_empty() {
                    let m = lines.len();
                    lines[k % m].1 = v.clone();
                }
            }
            Edit::Drop(s, k) => {
                let lines = &mut sections[s % n].lines;
                if !lines.is_empty() {
                    let m = lines.len();
                    lines.remove(k % m);
                }
            }
            Edit::DropSection(s) => {
                sections.remove(s % n);
            }
            Edit::DuplicateSection(s) => {
                let sec = sections[s % n].clone();
                sections.push(sec);
            }
            Edit::Unknown(s, k, v) => sections[s % n].lines.push((k.clone(), v.clone())),
        }
    }
}

/// What the model's manifest would say, for resolving rule names.
fn coco() -> (Roles, Vec<String>) {
    let labels: Vec<String> = ["person", "cat", "dog", "cell phone"].iter().map(|s| (*s).to_owned()).collect();
    let roles = HashMap::from([
        ("person".to_owned(), vec!["person".to_owned()]),
        ("animal".to_owned(), vec!["cat".to_owned(), "dog".to_owned()]),
        ("phone".to_owned(), vec!["cell phone".to_owned()]),
        ("hat".to_owned(), vec![]),
    ]);
    (Roles::new(roles), labels)
}

/// Checks what every outcome must satisfy and returns it.
fn check(text: &str, probe_at: i64) -> Result<Validated, ConfigError> {
    let r = Config::parse(text, Path::new(PATH));
    match &r {
        Ok(v) => check_validated(v, probe_at),
        Err(ConfigError::Parse { path, message }) => {
            assert_eq!(path, Path::new(PATH));
            assert!(!message.is_empty());
        }
        Err(ConfigError::Invalid { key, message }) => {
            assert!(!key.is_empty(), "an error names no key: {message}");
            assert!(!message.is_empty() && !message.contains('\n'), "`{key}`: {message:?}");
        }
        Err(e) => {
            assert!(!matches!(e, ConfigError::Read { .. }), "parsing text read a file: {e}");
            let m = e.to_string();
            assert!(m.starts_with("config") && !m.contains('\n'), "{m:?}");
        }
    }
    r
}

/// A config that validates can be turned into what the gateway runs on without a panic.
fn check_validated(v: &Validated, probe_at: i64) {
    let c = &v.config;
    assert!(!v.candidates.is_empty());
    assert!(v.candidates.iter().all(|a| a.port() == v.udp_listen.port() && !a.ip().is_unspecified()));
    for (key, secs) in [
        ("ingest.stall_timeout_s", c.ingest.stall_timeout_s),
        ("ingest.max_backoff_s", c.ingest.max_backoff_s),
        ("events.pre_roll_s", c.events.pre_roll_s),
        ("events.post_roll_s", c.events.post_roll_s),
        ("events.max_clip_s", c.events.max_clip_s),
        ("detect interval", 1.0 / c.detect.fps),
        ("events.retention_days", c.events.retention_days * 86_400.0),
    ] {
        assert!(Duration::try_from_secs_f64(secs).is_ok(), "{key} = {secs} is not a duration");
    }
    assert!((1..=16).contains(&c.detect.threads) && (1..=16).contains(&c.detect.workers));
    for cam in &c.cameras {
        assert!(!cam.id.is_empty() && cam.id.len() <= 64, "camera id {:?}", cam.id);
        assert!(mingchu::config::check_rtsp_url(&cam.url).is_ok());
        let _ = mingchu::config::redact(&cam.url);
    }
    let (roles, labels) = coco();
    let wall = jiff::Timestamp::from_second(probe_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    for (i, rule) in c.rules.iter().flatten().enumerate() {
        match mingchu::rules::validate(i, rule, &roles, &labels) {
            Ok(r) => {
                assert!(r.min_duration() <= Duration::from_secs(86_400));
                assert!(r.cooldown() <= Duration::from_secs(86_400));
                assert!(r.end_after() <= Duration::from_secs(86_400));
                for z in r.zones() {
                    assert!(z.points().len() >= 3);
                    let _ = z.contains(0.5, 0.5);
                }
                let _ = r.in_schedule(wall);
            }
            Err(e) => check_rule_error(&e),
        }
    }
}

fn check_rule_error(e: &RuleError) {
    let m = e.to_string();
    assert!(e.key().starts_with("rules["), "{m}");
    assert!(!m.contains('\n'), "{m:?}");
}

fn probe() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1_700_000_000i64..1_900_000_000,
        1 => Just(jiff::Timestamp::MIN.as_second()),
        1 => Just(jiff::Timestamp::MAX.as_second()),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn generated_configs_validate(sections in valid_config(), at in probe()) {
        let text = text(&sections);
        let v = check(&text, at).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert!(!v.config.cameras.is_empty());
    }

    #[test]
    fn mutated_configs_never_panic(
        mut sections in valid_config(),
        edits in prop::collection::vec(edit(), 1..6),
        at in probe(),
    ) {
        apply(&mut sections, &edits);
        let _ = check(&text(&sections), at);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = check(&text, 0);
    }

    #[test]
    fn toml_shaped_text_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                Just("[server]".to_owned()),
                Just("[auth]".to_owned()),
                Just("[[cameras]]".to_owned()),
                Just("[[rules]]".to_owned()),
                Just("[webrtc]".to_owned()),
                ("[a-z_]{1,14}", weird_value()).prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..20,
        ),
    ) {
        let _ = check(&lines.join("\n"), 0);
    }
}

/// Rule fields anywhere in their types' ranges, checked on their own against a model.
#[test]
fn rule_fields_at_their_limits() {
    let base = text(&[
        Section::new("[server]", &[("listen", quoted("127.0.0.1:8080"))]),
        Section::new("[auth]", &[("admin_token", quoted("0123456789abcdef"))]),
    ]);
    for (key, value) in [
        ("min_duration_s", "1e308"),
        ("min_duration_s", "86400.0"),
        ("cooldown_s", "-0.0"),
        ("end_after_s", "nan"),
        ("min_score", "nan"),
        ("proximity", "inf"),
        ("min_head_px", "4294967295"),
        ("timezone", "\"\""),
        ("timezone", "\"Etc/GMT+14\""),
        ("zones", "[[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]"),
        ("zones", "[[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]]"),
        ("schedule", "[{ from = \"23:59\", to = \"24:00\" }, { from = \"00:00\", to = \"00:01\" }]"),
        ("schedule", "[{ from = \"9:05\", to = \"009:05\" }]"),
    ] {
        let text = format!("{base}[[rules]]\nid = \"r\"\nkind = \"presence\"\nsubject = \"animal\"\n{key} = {value}\n");
        for at in [0, jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second()] {
            let _ = check(&text, at);
        }
    }
}
