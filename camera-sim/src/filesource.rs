//! Looped decoding of `--video-file`, fanned out to every file-backed camera.
//!
//! One decoder serves all cameras: it runs in real time (the appsink syncs to the
//! clock) and each camera media's appsrc re-timestamps what it gets, so loops and
//! joins never show up as timestamp jumps downstream.
//!
//! Limits: looping is a flushing seek to the start on EOS, so the file must be
//! seekable and there is a short gap (a few frames) at every wrap. Only the first
//! video stream is used; audio is ignored. The decoder keeps running while no one
//! watches, costing CPU even for idle cameras.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{debug, error, info, warn};

use crate::live_push::push_now;

const STOP_MESSAGE: &str = "camera-sim-stop";

/// Appsrcs of running camera media that want decoded frames.
#[derive(Debug, Default)]
pub struct FileFeed {
    targets: Mutex<Vec<glib::WeakRef<gst_app::AppSrc>>>,
}

impl FileFeed {
    /// Starts feeding frames into `appsrc` until its media goes away.
    pub fn attach(&self, appsrc: &gst_app::AppSrc) {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        targets.retain(|t| t.upgrade().is_some());
        targets.push(appsrc.downgrade());
    }

    fn push(&self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let targets: Vec<gst_app::AppSrc> = {
            let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
            targets.retain(|t| t.upgrade().is_some());
            targets.iter().filter_map(|t| t.upgrade()).collect()
        };
        let caps = sample.caps_owned();
        for src in targets {
            if caps.is_some() && src.caps() != caps {
                src.set_caps(caps.as_ref());
            }
            // The file's own timestamps restart at every loop: stamp with the media's running time.
            if let Err(e) = push_now(&src, buffer) {
                debug!(error = ?e, "file frame not accepted by camera media");
            }
        }
    }
}

/// Error starting the file decoder.
#[derive(Debug)]
pub struct FileSourceError(String);

impl std::fmt::Display for FileSourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FileSourceError {}

/// The running file decoder.
#[derive(Debug)]
pub struct FileSource {
    pipeline: gst::Pipeline,
    feed: Arc<FileFeed>,
    bus_thread: Option<JoinHandle<()>>,
}

impl FileSource {
    /// Opens `path`, checks that it decodes, and starts playing it in a loop.
    pub fn start(path: &Path) -> Result<Self, FileSourceError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            FileSourceError(format!("video file {}: {what}: {e}", path.display()))
        };
        if !path.is_file() {
            return Err(FileSourceError(format!("video file {} does not exist", path.display())));
        }
        let pipeline = gst::parse::launch(
            "filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=I420 \
             ! appsink name=sink sync=true max-buffers=1 drop=true",
        )
        .map_err(|e| fail("cannot build decoder", &e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("cannot build decoder", &"not a pipeline"))?;
        let file = pipeline.by_name("file").ok_or_else(|| fail("cannot build decoder", &"filesrc missing"))?;
        file.set_property("location", path.to_string_lossy().as_ref());
        let sink = pipeline
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| fail("cannot build decoder", &"appsink missing"))?;

        let feed = Arc::new(FileFeed::default());
        let sink_feed = feed.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    sink_feed.push(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        // Prerolling first turns an undecodable file into a start-up error.
        pipeline.set_state(gst::State::Paused).map_err(|e| fail("cannot open", &e))?;
        let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
        if let Err(e) = result {
            let detail = first_error(&pipeline).unwrap_or_else(|| e.to_string());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(fail("cannot decode", &detail));
        }
        pipeline.set_state(gst::State::Playing).map_err(|e| fail("cannot play", &e))?;

        let bus = pipeline.bus().ok_or_else(|| fail("cannot watch", &"pipeline has no bus"))?;
        let looped = pipeline.downgrade();
        let bus_thread = std::thread::Builder::new()
            .name("file-loop".into())
            .spawn(move || watch_bus(&bus, &looped))
            .map_err(|e| fail("cannot start loop thread", &e))?;
        info!(file = %path.display(), "looping video file");
        Ok(Self { pipeline, feed, bus_thread: Some(bus_thread) })
    }

    /// Where camera media register their appsrcs.
    pub fn feed(&self) -> Arc<FileFeed> {
        self.feed.clone()
    }

    /// Stops decoding and waits for the loop thread.
    pub fn stop(mut self) {
        let stop = gst::message::Application::new(gst::Structure::new_empty(STOP_MESSAGE));
        let _ = self.pipeline.post_message(stop);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(e.error().to_string());
        }
    }
    None
}

fn watch_bus(bus: &gst::Bus, pipeline: &glib::WeakRef<gst::Pipeline>) {
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => {
                let Some(p) = pipeline.upgrade() else { return };
                debug!("video file ended, looping");
                if let Err(e) = p.seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::ZERO) {
                    error!(error = %e, "cannot loop video file; its cameras stop getting frames");
                }
            }
            gst::MessageView::Error(e) => {
                error!(error = %e.error(), debug = ?e.debug(), "video file decoder failed");
                return;
            }
            gst::MessageView::Warning(w) => warn!(warning = %w.error(), "video file decoder"),
            gst::MessageView::Application(a) if a.structure().is_some_and(|s| s.name() == STOP_MESSAGE) => {
                return;
            }
            _ => {}
        }
    }
}
