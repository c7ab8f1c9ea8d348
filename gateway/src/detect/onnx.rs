//! ONNX Runtime, loaded from a shared library at run time, and one model session.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use super::model::ModelSpec;
use super::preprocess::Layout;

/// The ONNX Runtime release the gateway is built against.
pub const ORT_VERSION: &str = "1.32.0";

/// Why the detector could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// No ONNX Runtime library was found.
    #[error(
        "ONNX Runtime library not found at {0}; set `detect.ort_library` in the config or ORT_DYLIB_PATH \
         to libonnxruntime.so.{ORT_VERSION} (./dev.sh setup installs it under .tools/onnxruntime/)"
    )]
    LibraryMissing(PathBuf),
    /// The library could not be loaded (wrong file or version).
    #[error(
        "cannot load ONNX Runtime from {path} (set by detect.ort_library or ORT_DYLIB_PATH; version {ORT_VERSION} expected): {message}"
    )]
    Library {
        /// The library path.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The model file is missing, corrupt or does not match its manifest.
    #[error("model {path}: {message}")]
    Model {
        /// The ONNX file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Inference failed.
    #[error("inference failed: {0}")]
    Run(String),
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Where to look for the ONNX Runtime library: the config, then ORT_DYLIB_PATH, then the
/// place `./dev.sh setup` installs it.
pub fn library_path(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_owned();
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    PathBuf::from(format!(".tools/onnxruntime/libonnxruntime.so.{ORT_VERSION}"))
}

/// Loads ONNX Runtime once per process.
pub fn init_runtime(library: &Path) -> Result<&'static Environment, OnnxError> {
    if !library.exists() {
        return Err(OnnxError::LibraryMissing(library.to_owned()));
    }
    let env = ENVIRONMENT.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("mingchu").build().map_err(|e| e.to_string()))
    });
    env.as_ref().map_err(|message| OnnxError::Library { path: library.to_owned(), message: message.clone() })
}

/// One loaded model, ready to run.
pub struct OnnxModel {
    session: Session,
    input_name: String,
    input_shape: [usize; 4],
}

/// One output tensor, borrowed from the run.
pub struct OutputView<'a> {
    /// Output name.
    pub name: &'a str,
    /// Dimensions.
    pub shape: &'a [i64],
    /// Values, row-major.
    pub data: &'a [f32],
}

impl OnnxModel {
    /// Opens the model of `spec` with `threads` intra-op threads (no spinning, so an idle
    /// detector leaves the cores to the live relay).
    pub fn open(env: &Environment, spec: &ModelSpec, threads: usize) -> Result<Self, OnnxError> {
        let path = &spec.model_path;
        let model_err = |message: String| OnnxError::Model { path: path.clone(), message };
        let bytes = std::fs::read(path).map_err(|e| model_err(format!("cannot read: {e}")))?;
        if let Some(want) = &spec.manifest.sha256 {
            let got = hex(&Sha256::digest(&bytes));
            if !got.eq_ignore_ascii_case(want.trim()) {
                return Err(model_err(format!(
                    "sha256 is {got}, the manifest says {want}: the file is corrupt or not this model"
                )));
            }
        }
        let session = Session::builder(env)
            .and_then(|b| b.with_intra_threads(threads.max(1)).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
            .and_then(|b| b.with_inter_op_spinning(false).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .map_err(|e| model_err(format!("ONNX Runtime cannot load it: {e}")))?;
        let input = session.inputs().first().ok_or_else(|| model_err("the model has no input".into()))?;
        let m = &spec.manifest;
        let (w, h) = (m.input_width as usize, m.input_height as usize);
        let expected: [usize; 4] = match m.layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        };
        let shape: Vec<i64> = input.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
        let fits = shape.len() == 4 && shape.iter().zip(expected).all(|(&d, e)| d < 0 || d as usize == e);
        if !fits {
            return Err(model_err(format!(
                "input `{}` has shape {shape:?}; the manifest describes {expected:?} ({:?})",
                input.name(),
                m.layout
            )));
        }
        if session.outputs().is_empty() {
            return Err(model_err("the model has no output".into()));
        }
        Ok(Self { input_name: input.name().to_owned(), session, input_shape: expected })
    }

    /// Runs the model on one preprocessed input and hands the outputs to `read`.
    pub fn run<R>(&mut self, input: &[f32], read: impl FnOnce(&[OutputView<'_>]) -> R) -> Result<R, OnnxError> {
        let want: usize = self.input_shape.iter().product();
        if input.len() != want {
            return Err(OnnxError::Run(format!("input has {} values, the model takes {want}", input.len())));
        }
        let tensor =
            TensorRef::from_array_view((self.input_shape, input)).map_err(|e| OnnxError::Run(e.to_string()))?;
        let names: Vec<String> = self.session.outputs().iter().map(|o| o.name().to_owned()).collect();
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| OnnxError::Run(e.to_string()))?;
        let mut views = Vec::with_capacity(outputs.len());
        for (i, name) in names.iter().enumerate().take(outputs.len()) {
            let (shape, data) = outputs[i]
                .try_extract_tensor::<f32>()
                .map_err(|e| OnnxError::Run(format!("output `{name}` is not a float tensor: {e}")))?;
            views.push(OutputView { name, shape, data });
        }
        Ok(read(&views))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
