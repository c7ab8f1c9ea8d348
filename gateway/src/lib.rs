//! Mingchu (明厨): an edge gateway that pulls kitchen cameras over RTSP and relays them
//! live to phones and browsers over WebRTC (WHEP), without transcoding.
//!
//! Data flow: camera → [`ingest`] → [`hub`] → [`live`] viewers; [`api`] on top.

pub mod access;
pub mod analysis;
pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod csv;
pub mod detect;
pub mod events;
pub mod hub;
pub mod ingest;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod recorder;
pub mod registry;
pub mod rules;
pub mod sampler;
pub mod sqlite;
pub mod track;
