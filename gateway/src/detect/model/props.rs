//! Property tests for model manifests: any manifest text and labels file give a usable model
//! or an error naming the manifest, and a manifest that loads always yields a decoder and an
//! input spec that accept it.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::*;
use crate::detect::decode::Decoder;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const PATH: &str = "/models/m.toml";

/// TOML values a hand-edited manifest might hold where a number, string or list belongs.
fn weird_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just("-0.0".to_owned()),
        Just("1e308".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967296".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"nanodet\"".to_owned()),
        Just("[]".to_owned()),
        Just("[0]".to_owned()),
        Just("[0, 0, 0]".to_owned()),
        Just("[nan, inf, -inf]".to_owned()),
        Just("[1, 2]".to_owned()),
        Just("[4294967295, 1]".to_owned()),
        Just("true".to_owned()),
        Just("{}".to_owned()),
        Just("1979-05-27".to_owned()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        "\"[^\"\\\\]{0,12}\"",
    ]
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// A manifest that should load, as (key, value) lines, plus its labels.
fn valid_parts() -> impl Strategy<Value = (Vec<(String, String)>, Vec<String>)> {
    (
        prop_oneof![Just("nanodet"), Just("yolov5"), Just("yolov8"), Just("yolox")],
        32u32..=4096,
        32u32..=4096,
        prop_oneof![Just("nchw"), Just("nhwc")],
        prop_oneof![Just("rgb"), Just("bgr")],
        prop_oneof![Just("top-left"), Just("center")],
        prop::collection::vec(prop_oneof![Just(8u32), Just(16), Just(32), Just(64)], 1..4),
        1u32..16,
        prop::collection::btree_set("[a-z][a-z ]{0,8}", 1..6),
        prop::collection::vec(0.01f32..=1.0, 3),
        0.0f32..=1.0,
    )
        .prop_map(|(format, w, h, layout, order, letterbox, strides, reg_max, labels, std, threshold)| {
            let labels: Vec<String> = labels.into_iter().map(|l| l.trim().to_owned()).collect();
            let mut lines = vec![
                ("name".to_owned(), quoted("m")),
                ("file".to_owned(), quoted("m.onnx")),
                ("license".to_owned(), quoted("MIT")),
                ("source".to_owned(), quoted("test")),
                ("format".to_owned(), quoted(format)),
                ("input_width".to_owned(), w.to_string()),
                ("input_height".to_owned(), h.to_string()),
                ("layout".to_owned(), quoted(layout)),
                ("channel_order".to_owned(), quoted(order)),
                ("mean".to_owned(), "[103.53, 116.28, 123.675]".to_owned()),
                ("std".to_owned(), format!("[{:?}, {:?}, {:?}]", std[0], std[1], std[2])),
                ("input_scale".to_owned(), "1.0".to_owned()),
                ("letterbox".to_owned(), quoted(letterbox)),
                ("strides".to_owned(), format!("{strides:?}")),
                ("reg_max".to_owned(), reg_max.to_string()),
                ("labels_file".to_owned(), quoted("labels.txt")),
                ("roles.person".to_owned(), format!("[{}]", quoted(&labels[0]))),
                ("thresholds.default".to_owned(), format!("{threshold:?}")),
            ];
            lines.push((format!("thresholds.{}", quoted(&labels[labels.len() - 1])), "0.5".to_owned()));
            (lines, labels)
        })
}

/// Dotted keys as TOML text; `a.b = v` puts `b` in table `a`, which is how `[roles]` reads too.
fn manifest_text(lines: &[(String, String)]) -> String {
    lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// An edit to one line of a manifest.
#[derive(Debug, Clone)]
enum Edit {
    Value(usize, String),
    Drop(usize),
    Duplicate(usize),
    Unknown(String, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), weird_value()).prop_map(|(i, v)| Edit::Value(i, v)),
        1 => any::<usize>().prop_map(Edit::Drop),
        1 => any::<usize>().prop_map(Edit::Duplicate),
        1 => ("[a-z_]{1,10}(\\.[a-z_]{1,6})?", weird_value()).prop_map(|(k, v)| Edit::Unknown(k, v)),
    ]
}

fn apply(lines: &mut Vec<(String, String)>, edits: &[Edit]) {
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Value(i, v) if !lines.is_empty() => lines[i % n].1 = v.clone(),
            Edit::Drop(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.push(l);
            }
            Edit::Unknown(k, v) => lines.push((k.clone(), v.clone())),
            _ => {}
        }
    }
}

/// Loads from text, and checks what every outcome must satisfy.
fn check(text: &str, labels_text: &str) -> Result<ModelSpec, ManifestError> {
    let path = Path::new(PATH);
    let r = Manifest::parse(text, path).and_then(|m| ModelSpec::from_manifest(m, path, labels_text));
    match &r {
        Ok(spec) => {
            // A manifest that loads must start detection: its decoder and input spec accept it.
            let decode = spec.decode_config();
            if let Err(e) = Decoder::new(decode) {
                panic!("manifest loads but its decoder refuses it: {e}\n{text}");
            }
            if let Err(e) = spec.input_spec().validate() {
                panic!("manifest loads but its input spec is refused: {e}\n{text}");
            }
            assert_eq!(spec.class_thresholds.len(), spec.labels.len());
            assert!(spec.class_thresholds.iter().all(|t| (0.0..=1.0).contains(t)));
        }
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains(PATH), "error does not name the manifest: {m}");
            if let ManifestError::Invalid { key, message, .. } = e {
                assert!(!key.is_empty() && !message.is_empty() && !message.contains('\n'), "{m}");
            }
        }
    }
    r
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_manifests_load((lines, labels) in valid_parts()) {
        let text = manifest_text(&lines);
        let spec = check(&text, &labels.join("\n")).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(spec.labels, labels);
    }

    #[test]
    fn mutated_manifests_never_panic(
        (mut lines, labels) in valid_parts(),
        edits in prop::collection::vec(edit(), 1..5),
        extra_labels in prop::collection::vec(".{0,12}", 0..3),
    ) {
        apply(&mut lines, &edits);
        let mut labels = labels;
        labels.extend(extra_labels);
        let _ = check(&manifest_text(&lines), &labels.join("\n"));
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}", labels in ".{0,60}") {
        let _ = check(&text, &labels);
    }
}

/// The file-reading path: the labels file is found next to the manifest, wherever that is.
#[test]
fn load_reads_the_labels_next_to_the_manifest() {
    let dir = std::env::temp_dir().join(format!("mingchu-manifest-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = manifest_text(&[
        ("name".into(), quoted("m")),
        ("file".into(), quoted("m.onnx")),
        ("license".into(), quoted("MIT")),
        ("source".into(), quoted("test")),
        ("format".into(), quoted("yolov8")),
        ("input_width".into(), "640".into()),
        ("input_height".into(), "640".into()),
        ("layout".into(), quoted("nchw")),
        ("channel_order".into(), quoted("rgb")),
        ("letterbox".into(), quoted("center")),
        ("labels_file".into(), quoted("labels.txt")),
    ]);
    std::fs::write(dir.join("m.toml"), &text).expect("write manifest");
    std::fs::write(dir.join("labels.txt"), "person\n").expect("write labels");
    let spec = ModelSpec::load(&dir.join("m.toml")).expect("loads");
    assert_eq!(spec.labels, vec!["person"]);
    std::fs::remove_file(dir.join("labels.txt")).expect("remove labels");
    let e = ModelSpec::load(&dir.join("m.toml")).expect_err("labels are gone").to_string();
    assert!(e.contains("labels.txt"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn minimal_with(key: &str, value: &str) -> String {
    let mut lines: Vec<(String, String)> = vec![
        ("name".into(), quoted("m")),
        ("file".into(), quoted("m.onnx")),
        ("license".into(), quoted("MIT")),
        ("source".into(), quoted("test")),
        ("format".into(), quoted("nanodet")),
        ("input_width".into(), "32".into()),
        ("input_height".into(), "32".into()),
        ("layout".into(), quoted("nchw")),
        ("channel_order".into(), quoted("rgb")),
        ("letterbox".into(), quoted("top-left")),
        ("strides".into(), "[8]".into()),
        ("reg_max".into(), "1".into()),
        ("labels_file".into(), quoted("labels.txt")),
    ];
    lines.retain(|(k, _)| k != key);
    lines.push((key.into(), value.into()));
    manifest_text(&lines)
}

/// Found by `mutated_manifests_never_panic`: values the manifest took but detection could not
/// use (every frame then failed, or the decoder refused the model at start without naming the
/// manifest key). Each is now refused at load, naming its key.
#[test]
fn unusable_values_are_refused_at_load_with_their_key() {
    for (key, value) in [
        ("input_scale", "nan"),
        ("input_scale", "inf"),
        ("input_scale", "0.0"),
        ("mean", "[0.0, nan, 0.0]"),
        ("mean", "[-inf, 0.0, 0.0]"),
        ("strides", "[8, 0]"),
        ("reg_max", "4294967295"),
    ] {
        let text = minimal_with(key, value);
        assert!(check(&minimal_with("input_scale", "1.0"), "person").is_ok());
        match check(&text, "person") {
            Err(ManifestError::Invalid { key: k, .. }) if k == key || (key == "reg_max" && k == "format") => {}
            other => panic!("{key} = {value}: {other:?}"),
        }
    }
}
