//! Model manifests: which file, how to feed it, how to read its outputs, what its labels mean.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::decode::{DecodeConfig, OutputFormat, Thresholds};
use super::preprocess::{ChannelOrder, InputSpec, Layout, Placement};

/// Why a model manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest or a file it names cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML for this schema.
    #[error("model manifest {path}: {message}")]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A value is wrong.
    #[error("model manifest {path}: key `{key}`: {message}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// How the model's outputs are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// NanoDet (GFL): per-stride class scores and distribution box bins.
    Nanodet,
    /// YOLOv5-style `[1, N, 5 + C]` with objectness.
    Yolov5,
    /// YOLOv8-style `[1, 4 + C, N]` without objectness.
    Yolov8,
    /// YOLOX `[1, N, 5 + C]` with grid-relative boxes.
    Yolox,
}

/// A model manifest as written in `models/*.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, shown in logs and events.
    pub name: String,
    /// ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// SHA-256 of the file, checked at load when present.
    #[serde(default)]
    pub sha256: Option<String>,
    /// License of the weights.
    pub license: String,
    /// Where the weights come from and how they were converted.
    pub source: String,
    /// Output decoder.
    pub format: Format,
    /// Input width in pixels.
    pub input_width: u32,
    /// Input height in pixels.
    pub input_height: u32,
    /// Input tensor layout.
    pub layout: Layout,
    /// Colour order.
    pub channel_order: ChannelOrder,
    /// Per-channel mean subtracted (after `input_scale`).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Per-channel divisor.
    #[serde(default = "ones")]
    pub std: [f32; 3],
    /// Factor applied to 0..255 pixel values first (1/255 for most YOLO exports). Default 1.
    #[serde(default = "one")]
    pub input_scale: f32,
    /// Letterbox placement.
    pub letterbox: Placement,
    /// Strides of the output grids (NanoDet, YOLOX).
    #[serde(default)]
    pub strides: Vec<u32>,
    /// Largest distribution bin index (NanoDet).
    #[serde(default)]
    pub reg_max: u32,
    /// Labels file, one label per line, relative to the manifest.
    pub labels_file: PathBuf,
    /// Which labels play which role in the rules (person, phone, animal, hat, mask, …).
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Score thresholds: `default` and per label.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
}

impl Manifest {
    /// Parses manifest text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })
    }
}

/// The directory a manifest's relative paths start from.
fn manifest_dir(manifest_path: &Path) -> &Path {
    manifest_path.parent().unwrap_or(Path::new("."))
}

fn one() -> f32 {
    1.0
}
fn ones() -> [f32; 3] {
    [1.0; 3]
}

/// A manifest with its labels loaded and paths resolved.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The manifest.
    pub manifest: Manifest,
    /// Absolute path of the ONNX file.
    pub model_path: PathBuf,
    /// Labels in class order.
    pub labels: Vec<String>,
    /// Role → labels.
    pub roles: HashMap<String, Vec<String>>,
    /// Per-class score threshold, indexed like `labels`.
    pub class_thresholds: Vec<f32>,
}

impl ModelSpec {
    /// Reads and checks a manifest and its labels file.
    pub fn load(manifest_path: &Path) -> Result<Self, ManifestError> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|source| ManifestError::Read { path: p.to_owned(), source });
        let manifest = Manifest::parse(&read(manifest_path)?, manifest_path)?;
        let labels_text = read(&manifest_dir(manifest_path).join(&manifest.labels_file))?;
        Self::from_manifest(manifest, manifest_path, &labels_text)
    }

    /// Checks a parsed manifest against the text of its labels file; `manifest_path` names
    /// the manifest in errors and is where its relative paths start.
    pub fn from_manifest(manifest: Manifest, manifest_path: &Path, labels_text: &str) -> Result<Self, ManifestError> {
        let invalid = |key: &str, message: String| ManifestError::Invalid {
            path: manifest_path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let dir = manifest_dir(manifest_path);
        let labels: Vec<String> =
            labels_text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        if labels.is_empty() {
            return Err(invalid("labels_file", "the labels file has no labels".into()));
        }
        if !(32..=4096).contains(&manifest.input_width) || !(32..=4096).contains(&manifest.input_height) {
            return Err(invalid("input_width", "input size must be 32..4096 pixels".into()));
        }
        if manifest.std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            return Err(invalid("std", "every std value must be a non-zero number".into()));
        }
        if let Some(c) = manifest.mean.iter().position(|m| !m.is_finite()) {
            return Err(invalid(
                "mean",
                format!("mean[{c}] is {}; every mean value must be a number", manifest.mean[c]),
            ));
        }
        if !manifest.input_scale.is_finite() || manifest.input_scale == 0.0 {
            return Err(invalid("input_scale", format!("is {}; it must be a non-zero number", manifest.input_scale)));
        }
        if manifest.strides.contains(&0) {
            return Err(invalid("strides", "a stride of 0 has no grid".into()));
        }
        if matches!(manifest.format, Format::Nanodet | Format::Yolox) && manifest.strides.is_empty() {
            return Err(invalid("strides", format!("{:?} needs its output strides", manifest.format)));
        }
        if manifest.format == Format::Nanodet && manifest.reg_max == 0 {
            return Err(invalid("reg_max", "nanodet needs reg_max (e.g. 7 or 10)".into()));
        }
        let mut roles = HashMap::new();
        for (role, names) in &manifest.roles {
            for n in names {
                if !labels.contains(n) {
                    return Err(invalid(&format!("roles.{role}"), format!("`{n}` is not one of the model's labels")));
                }
            }
            roles.insert(role.clone(), names.clone());
        }
        let default = manifest.thresholds.get("default").copied().unwrap_or(0.35);
        let mut class_thresholds = vec![default; labels.len()];
        for (label, t) in &manifest.thresholds {
            if !(0.0..=1.0).contains(t) {
                return Err(invalid(&format!("thresholds.{label}"), "must be between 0 and 1".into()));
            }
            if label == "default" {
                continue;
            }
            let Some(i) = labels.iter().position(|l| l == label) else {
                return Err(invalid(
                    &format!("thresholds.{label}"),
                    format!("`{label}` is not one of the model's labels"),
                ));
            };
            class_thresholds[i] = *t;
        }
        let model_path = dir.join(&manifest.file);
        let spec = Self { manifest, model_path, labels, roles, class_thresholds };
        // The decoder has limits of its own (classes, distribution bins); refusing the manifest
        // here names it at start instead of failing every frame later.
        spec.decode_config().validate().map_err(|e| invalid("format", e.to_string()))?;
        Ok(spec)
    }

    /// How to build the input tensor.
    pub fn input_spec(&self) -> InputSpec {
        let m = &self.manifest;
        let mut spec = if m.letterbox == Placement::TopLeft {
            InputSpec::nanodet(m.input_width, m.input_height)
        } else {
            InputSpec::yolo(m.input_width, m.input_height)
        };
        spec.layout = m.layout;
        spec.channel_order = m.channel_order;
        spec.mean = m.mean;
        spec.std = m.std;
        spec.scale = m.input_scale;
        spec
    }

    /// How to read the outputs, with the manifest's thresholds.
    pub fn decode_config(&self) -> DecodeConfig {
        let m = &self.manifest;
        let n = self.labels.len();
        let format = match m.format {
            Format::Nanodet => OutputFormat::Nanodet {
                strides: m.strides.clone(),
                reg_max: m.reg_max,
                num_classes: n,
                center_offset: 0.5,
            },
            Format::Yolov5 => OutputFormat::Yolov5 { num_classes: n },
            Format::Yolov8 => OutputFormat::Yolov8 { num_classes: n },
            Format::Yolox => OutputFormat::Yolox { strides: m.strides.clone(), num_classes: n },
        };
        let mut config = DecodeConfig::new(format, m.input_width, m.input_height);
        let default = m.thresholds.get("default").copied().unwrap_or(config.thresholds.default);
        let mut thresholds = Thresholds::new(default);
        for (i, t) in self.class_thresholds.iter().enumerate() {
            if *t != default {
                thresholds = thresholds.with_class(i, *t);
            }
        }
        config.thresholds = thresholds;
        config
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mingchu-manifest-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    const MANIFEST: &str = r#"
name = "m"
file = "m.onnx"
license = "MIT"
source = "test"
format = "nanodet"
input_width = 416
input_height = 416
layout = "nchw"
channel_order = "bgr"
mean = [103.53, 116.28, 123.675]
std = [57.375, 57.12, 58.395]
letterbox = "top-left"
strides = [8, 16, 32]
reg_max = 10
labels_file = "labels.txt"
[roles]
person = ["person"]
[thresholds]
default = 0.4
cat = 0.3
"#;

    #[test]
    fn loads_labels_roles_and_thresholds() {
        let d = tmp();
        write(&d, "labels.txt", "person\ncat\n\n");
        let p = write(&d, "m.toml", MANIFEST);
        let spec = ModelSpec::load(&p).expect("loads");
        assert_eq!(spec.labels, vec!["person", "cat"]);
        assert_eq!(spec.class_thresholds, vec![0.4, 0.3]);
        assert_eq!(spec.roles["person"], vec!["person"]);
        assert!(spec.model_path.ends_with("m.onnx"));
    }

    #[test]
    fn unknown_role_label_is_named() {
        let d = tmp();
        write(&d, "labels.txt", "person\ncat\n");
        let p = write(&d, "m.toml", &MANIFEST.replace("person = [\"person\"]", "hat = [\"chef hat\"]"));
        let e = ModelSpec::load(&p).unwrap_err().to_string();
        assert!(e.contains("roles.hat") && e.contains("chef hat"), "{e}");
        let p = write(&d, "m.toml", &MANIFEST.replace("format = \"nanodet\"", "format = \"ssd\""));
        let e = ModelSpec::load(&p).unwrap_err().to_string();
        assert!(e.contains("format") || e.contains("ssd"), "{e}");
    }
}
