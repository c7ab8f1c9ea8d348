//! Shared pieces of the end-to-end tests and benchmarks: start camera-sim and mingchu as
//! real processes on loopback, watch cameras over real WebRTC (WHEP), and decode what
//! arrives with GStreamer.

pub mod decode;
pub mod measure;
pub mod poll;
pub mod procs;
pub mod whep;

/// The simulator's latency stamp parser, shared so both sides agree on the format.
#[path = "../../camera-sim/src/stamp.rs"]
pub mod stamp;
