//! The GStreamer pipeline that pulls one camera: rtspsrc → depayload → parse → appsink.
//!
//! Nothing is decoded here: access units leave as the camera encoded them.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::config::Transport;

/// Why a pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// GStreamer could not build the pipeline (a plugin is missing).
    #[error("cannot build the ingest pipeline: {0}")]
    Build(String),
    /// The pipeline refused to start.
    #[error("cannot start the ingest pipeline: {0}")]
    Start(String),
}

/// One encoded access unit as it leaves the pipeline.
pub struct PipelineUnit {
    /// Buffer PTS in nanoseconds, if the pipeline stamped one.
    pub pts_ns: Option<u64>,
    /// IDR picture.
    pub keyframe: bool,
    /// Annex-B bytes.
    pub data: Arc<[u8]>,
    /// Picture size, when the caps carry it.
    pub size: Option<(i32, i32)>,
}

/// What a running pipeline reports to its supervisor.
#[derive(Debug)]
pub enum PipelineEvent {
    /// The pipeline failed; the message names the element.
    Error(String),
    /// The camera ended the stream.
    Eos,
}

/// A running ingest pipeline; stopped (state NULL) on drop of the owner via [`RunningPipeline::stop`].
pub struct RunningPipeline {
    pipeline: gst::Pipeline,
}

impl RunningPipeline {
    /// Builds and starts the pipeline for `url`; `on_unit` runs on GStreamer's streaming
    /// thread for every access unit and must not block.
    pub fn start(
        url: &str,
        transport: Transport,
        on_unit: impl Fn(PipelineUnit) + Send + Sync + 'static,
    ) -> Result<Self, PipelineError> {
        // Only fixed text goes through the parser; the URL is set as a property, so no
        // character in it can change the pipeline.
        let desc = "rtspsrc name=src ! rtph264depay ! h264parse config-interval=-1 ! \
                    video/x-h264,stream-format=byte-stream,alignment=au ! \
                    appsink name=sink sync=false emit-signals=false";
        let pipeline = gst::parse::launch(desc)
            .map_err(|e| PipelineError::Build(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| PipelineError::Build("not a pipeline".into()))?;
        let src = pipeline.by_name("src").ok_or_else(|| PipelineError::Build("rtspsrc missing".into()))?;
        src.set_property("location", url);
        src.set_property_from_str("protocols", if transport == Transport::Tcp { "tcp" } else { "udp" });
        // No jitter buffer delay on TCP (nothing to reorder); a little on UDP.
        src.set_property("latency", if transport == Transport::Tcp { 0u32 } else { 100u32 });
        // Give up on a silent TCP connect after 5 s instead of GStreamer's 20 s.
        src.set_property("tcp-timeout", 5_000_000u64);
        src.set_property("teardown-timeout", gst::ClockTime::from_mseconds(100));
        src.set_property("do-retransmission", false);

        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| PipelineError::Build("appsink missing".into()))?;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(map) = buffer.map_readable() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let size = sample.caps().and_then(|caps| {
                        let s = caps.structure(0)?;
                        Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
                    });
                    let unit = PipelineUnit {
                        pts_ns: buffer.pts().map(|t| t.nseconds()),
                        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        data: Arc::from(map.as_slice()),
                        size,
                    };
                    on_unit(unit);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).map_err(|e| {
            let _ = pipeline.set_state(gst::State::Null);
            PipelineError::Start(e.to_string())
        })?;
        Ok(Self { pipeline })
    }

    /// The next error or end-of-stream posted on the bus, without waiting.
    pub fn poll_event(&self) -> Option<PipelineEvent> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])?;
        match msg.view() {
            gst::MessageView::Error(err) => {
                let element = msg.src().map(|s| s.name().to_string()).unwrap_or_else(|| "pipeline".into());
                Some(PipelineEvent::Error(format!("{element}: {}", err.error())))
            }
            gst::MessageView::Eos(_) => Some(PipelineEvent::Eos),
            _ => None,
        }
    }

    /// Stops the pipeline; may block briefly while rtspsrc tears down.
    pub fn stop(self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
