//! Object detection on sampled frames: model manifests, ONNX Runtime, pre/post-processing.

pub mod decode;
pub mod geometry;
pub mod preprocess;

pub use geometry::{BBox, Detection};
pub mod model;
pub mod onnx;
pub mod priority;
pub mod service;
