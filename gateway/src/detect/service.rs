//! The inference pool: one bounded slot per camera (the newest picture wins, never a
//! backlog) and worker threads that run the model on whichever camera waited longest.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use super::Detection;
use super::decode::Decoder as OutputDecoder;
use super::model::ModelSpec;
use super::onnx::{OnnxError, OnnxModel};
use super::preprocess::{InputSpec, preprocess};
use crate::metrics::DetectMetrics;
use crate::sampler::Picture;

/// One picture with what the model saw in it.
pub struct Analysis {
    /// The picture.
    pub picture: Arc<Picture>,
    /// Detections in picture pixels, best first.
    pub detections: Vec<Detection>,
    /// Preprocess + inference + decode time.
    pub infer_time: Duration,
}

/// Timings of one inference, split by stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Letterbox and normalise.
    pub preprocess: Duration,
    /// `session.run`.
    pub inference: Duration,
    /// Output decoding and NMS.
    pub postprocess: Duration,
}

/// A model with its buffers: preprocess → ONNX Runtime → decode.
pub struct Detector {
    model: OnnxModel,
    spec: InputSpec,
    decoder: OutputDecoder,
    labels: Vec<String>,
    input: Vec<f32>,
}

/// Why a picture could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// ONNX Runtime failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The picture could not be turned into a tensor.
    #[error("preprocessing failed: {0}")]
    Preprocess(String),
    /// The outputs were not what the manifest describes.
    #[error("cannot decode the model's outputs: {0}")]
    Decode(String),
}

impl Detector {
    /// Opens the model of `spec` with `threads` intra-op threads.
    pub fn open(env: &ort::environment::Environment, spec: &ModelSpec, threads: usize) -> Result<Self, DetectError> {
        let model = OnnxModel::open(env, spec, threads)?;
        let decoder = OutputDecoder::new(spec.decode_config()).map_err(|e| DetectError::Decode(e.to_string()))?;
        Ok(Self { model, spec: spec.input_spec(), decoder, labels: spec.labels.clone(), input: Vec::new() })
    }

    /// Detects objects in an RGB picture; fills `out`.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        stride: usize,
        out: &mut Vec<Detection>,
    ) -> Result<StageTimes, DetectError> {
        let t0 = Instant::now();
        let letterbox = preprocess(rgb, width, height, stride, &self.spec, &mut self.input)
            .map_err(|e| DetectError::Preprocess(e.to_string()))?;
        let t1 = Instant::now();
        let decoder = &mut self.decoder;
        let labels = &self.labels;
        let mut t2 = t1;
        let decoded = self.model.run(&self.input, |outputs| {
            t2 = Instant::now();
            let views: Vec<(&str, &[i64], &[f32])> = outputs.iter().map(|o| (o.name, o.shape, o.data)).collect();
            decoder.decode(&views, &letterbox, labels, out)
        })?;
        decoded.map_err(|e| DetectError::Decode(e.to_string()))?;
        Ok(StageTimes { preprocess: t1 - t0, inference: t2 - t1, postprocess: t2.elapsed() })
    }

    /// Runs the bare model on the last preprocessed input (for the overhead benchmark).
    pub fn run_bare(&mut self) -> Result<Duration, DetectError> {
        let t0 = Instant::now();
        self.model.run(&self.input, |_| ())?;
        Ok(t0.elapsed())
    }
}

struct Slot {
    picture: Option<(Picture, Instant)>,
    results: mpsc::Sender<Analysis>,
}

struct Shared {
    slots: Mutex<Vec<Slot>>,
    ready: Condvar,
    stopped: std::sync::atomic::AtomicBool,
}

/// The pool: cameras submit pictures, workers answer on each camera's channel.
pub struct DetectPool {
    shared: Arc<Shared>,
    metrics: DetectMetrics,
}

impl DetectPool {
    /// Starts one worker thread per detector.
    pub fn start(detectors: Vec<Detector>, metrics: DetectMetrics) -> Arc<Self> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        metrics.sessions.set(detectors.len() as i64);
        let pool = Arc::new(Self { shared: shared.clone(), metrics });
        for (i, mut det) in detectors.into_iter().enumerate() {
            let pool = pool.clone();
            let spawned = std::thread::Builder::new().name(format!("detect-{i}")).spawn(move || pool.work(&mut det));
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start a detection worker");
            }
        }
        pool
    }

    /// Registers a camera; returns its slot index and the channel its analyses arrive on.
    pub fn add_camera(&self) -> (usize, mpsc::Receiver<Analysis>) {
        let (tx, rx) = mpsc::channel(4);
        let mut slots = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.push(Slot { picture: None, results: tx });
        (slots.len() - 1, rx)
    }

    /// Offers a picture of camera `slot`; a picture still waiting there is replaced,
    /// and then this returns true.
    pub fn submit(&self, slot: usize, picture: Picture) -> bool {
        let mut slots = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = slots.get_mut(slot) else { return false };
        let replaced = s.picture.replace((picture, Instant::now())).is_some();
        if replaced {
            self.metrics.skipped.inc();
        }
        self.shared.ready.notify_one();
        replaced
    }

    /// Stops the workers.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.ready.notify_all();
    }

    fn work(&self, det: &mut Detector) {
        super::priority::lower_this_thread();
        let mut out = Vec::new();
        loop {
            let (picture, results) = {
                let mut slots = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if self.shared.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    // The camera whose picture waited longest goes first: fair under load.
                    let next = slots
                        .iter()
                        .enumerate()
                        .filter_map(|(i, s)| s.picture.as_ref().map(|(_, t)| (i, *t)))
                        .min_by_key(|&(_, t)| t)
                        .map(|(i, _)| i);
                    if let Some(i) = next
                        && let Some((p, _)) = slots[i].picture.take()
                    {
                        break (p, slots[i].results.clone());
                    }
                    slots = self.shared.ready.wait(slots).unwrap_or_else(|p| p.into_inner());
                }
            };
            let started = Instant::now();
            // A panic on a strange model output must cost one picture, not the worker.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                det.detect(&picture.rgb, picture.width, picture.height, picture.stride, &mut out)
            }));
            let result =
                result.unwrap_or_else(|_| Err(DetectError::Decode("the decoder panicked on this output".into())));
            match result {
                Ok(_) => {
                    let infer_time = started.elapsed();
                    self.metrics.frames.inc();
                    self.metrics.seconds.inc_by(infer_time.as_secs_f64());
                    let analysis = Analysis { picture: Arc::new(picture), detections: out.clone(), infer_time };
                    // A camera whose analysis task is behind loses this result, not the pool.
                    let _ = results.try_send(analysis);
                }
                Err(e) => warn!(error = %e, "detection failed on a picture"),
            }
        }
    }
}
