//! Every model shipped in `models/` sees, through the gateway's own pre- and
//! post-processing and the real ONNX Runtime, what `models/reference-detections.json`
//! records for the fp32 model on real photographs.

use std::path::Path;

use mingchu::detect::geometry::{BBox, Detection};
use mingchu::detect::model::ModelSpec;
use mingchu::detect::onnx;
use mingchu::detect::service::Detector;
use mingchu_e2e::procs::repo_root;

/// Reference detections at least this sure must be found by every shipped model.
const FIRM: f64 = 0.45;
/// Anything a model reports above this must be in the reference.
const LOUD: f32 = 0.5;
const SCORE_TOLERANCE: f32 = 0.12;
const MIN_IOU: f32 = 0.6;
/// Reference photos that `./dev.sh setup` puts in `.tools/photos`.
const PHOTOS: &[&str] = &["astronaut", "chelsea", "coffee", "camera"];

struct Expected {
    label: String,
    score: f32,
    bbox: BBox,
}

fn reference(name: &str) -> anyhow::Result<Vec<Expected>> {
    let text = std::fs::read_to_string(repo_root().join("models/reference-detections.json"))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let images = json["images"].as_array().ok_or_else(|| anyhow::anyhow!("no images"))?;
    let image = images.iter().find(|i| i["name"] == name).ok_or_else(|| anyhow::anyhow!("{name} not in reference"))?;
    let mut out = Vec::new();
    for d in image["detections"].as_array().into_iter().flatten() {
        let b: Vec<f32> =
            d["box"].as_array().into_iter().flatten().filter_map(|v| v.as_f64()).map(|v| v as f32).collect();
        anyhow::ensure!(b.len() == 4, "bad box in reference for {name}");
        out.push(Expected {
            label: d["label"].as_str().unwrap_or_default().to_owned(),
            score: d["score"].as_f64().unwrap_or(0.0) as f32,
            bbox: BBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] },
        });
    }
    Ok(out)
}

fn detect(detector: &mut Detector, photo: &Path) -> anyhow::Result<Vec<Detection>> {
    let rgb = image::open(photo)?.to_rgb8();
    let (w, h) = rgb.dimensions();
    let mut out = Vec::new();
    detector.detect(rgb.as_raw(), w, h, w as usize * 3, &mut out)?;
    Ok(out)
}

fn shipped_manifests() -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut found: Vec<_> = std::fs::read_dir(repo_root().join("models"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    found.sort();
    Ok(found)
}

#[test]
fn every_shipped_model_sees_what_the_reference_records() -> anyhow::Result<()> {
    let root = repo_root();
    let env = onnx::init_runtime(&root.join(".tools/onnxruntime/libonnxruntime.so.1.32.0"))?;
    let manifests = shipped_manifests()?;
    assert!(manifests.len() >= 2, "the fp32 and int8 models are shipped: {manifests:?}");
    let mut failures = Vec::new();
    for manifest in &manifests {
        let spec = ModelSpec::load(manifest)?;
        let mut detector = Detector::open(env, &spec, 1)?;
        let model = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        for photo in PHOTOS {
            let found = detect(&mut detector, &root.join(format!(".tools/photos/{photo}.png")))?;
            let expected = reference(photo)?;
            for want in expected.iter().filter(|e| f64::from(e.score) >= FIRM) {
                let hit = found.iter().any(|d| {
                    d.label == want.label
                        && (d.score - want.score).abs() <= SCORE_TOLERANCE
                        && d.bbox.iou(&want.bbox) >= MIN_IOU
                });
                if !hit {
                    failures.push(format!(
                        "{model}: {photo}: missed {} {:.2} (found {:?})",
                        want.label,
                        want.score,
                        found.iter().map(|d| format!("{} {:.2}", d.label, d.score)).collect::<Vec<_>>()
                    ));
                }
            }
            for d in found.iter().filter(|d| d.score >= LOUD) {
                if !expected.iter().any(|e| e.label == d.label && d.bbox.iou(&e.bbox) >= MIN_IOU) {
                    failures.push(format!("{model}: {photo}: {} {:.2} is not in the reference", d.label, d.score));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
