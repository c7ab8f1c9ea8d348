//! Live state of one simulated camera, shared by the RTSP side and the control API.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use tracing::{debug, warn};

use crate::faults::{ActiveFault, FaultState};
use crate::pipeline;

/// Elements of one running media (encoder chain) of a camera.
#[derive(Debug)]
pub struct MediaHandles {
    /// The capsfilter that fixes the picture size.
    pub capsfilter: glib::WeakRef<gst::Element>,
    /// The H.264 encoder.
    pub encoder: glib::WeakRef<gst::Element>,
}

#[derive(Debug)]
struct State {
    width: u32,
    height: u32,
    faults: FaultState,
    mounted: bool,
}

/// One simulated camera: name, current picture size, faults and running media.
#[derive(Debug)]
pub struct Camera {
    name: String,
    path: String,
    fps: u32,
    state: Mutex<State>,
    medias: Mutex<Vec<MediaHandles>>,
}

/// Point-in-time view of a camera for reporting.
#[derive(Clone, Debug)]
pub struct CameraSnapshot {
    /// Camera name, also the mount path without the slash.
    pub name: String,
    /// Current picture width.
    pub width: u32,
    /// Current picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Whether the mount point exists (false while offline).
    pub online: bool,
    /// Faults running now.
    pub faults: Vec<ActiveFault>,
}

impl Camera {
    /// A camera named `name`, mounted at `/name`, starting at the given size.
    pub fn new(name: String, width: u32, height: u32, fps: u32) -> Self {
        Self {
            path: format!("/{name}"),
            name,
            fps,
            state: Mutex::new(State { width, height, faults: FaultState::default(), mounted: true }),
            medias: Mutex::new(Vec::new()),
        }
    }

    /// Camera name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// RTSP mount path (`/name`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Fault bookkeeping stays usable even if some holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn medias(&self) -> MutexGuard<'_, Vec<MediaHandles>> {
        self.medias.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the fault state under the camera lock.
    pub fn with_faults<R>(&self, f: impl FnOnce(&mut FaultState) -> R) -> R {
        f(&mut self.state().faults)
    }

    /// Whether the mount point is currently installed.
    pub fn mounted(&self) -> bool {
        self.state().mounted
    }

    /// Records whether the mount point is installed.
    pub fn set_mounted(&self, mounted: bool) {
        self.state().mounted = mounted;
    }

    /// Current picture size (width, height).
    pub fn size(&self) -> (u32, u32) {
        let s = self.state();
        (s.width, s.height)
    }

    /// Raw caps for the current picture size.
    pub fn raw_caps(&self) -> Option<gst::Caps> {
        let (w, h) = self.size();
        let text = pipeline::raw_caps(w, h, self.fps);
        match text.parse::<gst::Caps>() {
            Ok(caps) => Some(caps),
            Err(e) => {
                warn!(camera = %self.name, caps = %text, error = %e, "cannot build raw caps");
                None
            }
        }
    }

    /// Remembers a newly configured media so later size changes and key-frame requests reach it.
    pub fn register_media(&self, handles: MediaHandles) {
        let mut medias = self.medias();
        medias.retain(|m| m.capsfilter.upgrade().is_some());
        medias.push(handles);
    }

    /// Changes the picture size for running and future media; returns how many running media were updated.
    pub fn set_size(&self, width: u32, height: u32) -> usize {
        {
            let mut s = self.state();
            s.width = width;
            s.height = height;
        }
        let Some(caps) = self.raw_caps() else {
            return 0;
        };
        let mut updated = 0;
        let mut medias = self.medias();
        medias.retain(|m| m.capsfilter.upgrade().is_some());
        for m in medias.iter() {
            if let Some(filter) = m.capsfilter.upgrade() {
                // The encoder follows the new caps with fresh SPS/PPS and an IDR.
                filter.set_property("caps", &caps);
                updated += 1;
            }
        }
        updated
    }

    /// Asks every running encoder of this camera for a key frame with headers.
    pub fn request_keyframe(&self) {
        let encoders: Vec<gst::Element> = self.medias().iter().filter_map(|m| m.encoder.upgrade()).collect();
        for enc in encoders {
            // Sent off the streaming thread: the request may come from a probe that
            // runs while the encoder holds its stream lock.
            enc.call_async(|enc| {
                let Some(pad) = enc.static_pad("src") else {
                    return;
                };
                let event = gst::event::CustomUpstream::new(
                    gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build(),
                );
                if !pad.send_event(event) {
                    debug!(element = %enc.name(), "key-frame request not handled");
                }
            });
        }
    }

    /// Current size, faults and mount state.
    pub fn snapshot(&self, now: Instant) -> CameraSnapshot {
        let s = self.state();
        CameraSnapshot {
            name: self.name.clone(),
            width: s.width,
            height: s.height,
            fps: self.fps,
            online: s.mounted,
            faults: s.faults.active(now),
        }
    }
}
