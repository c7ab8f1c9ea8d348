//! A GStreamer H.264 decoder for sampled pictures: appsrc → avdec_h264 → RGB → appsink.
//!
//! Pictures that are decoded only as references are dropped right after the decoder, so
//! colour conversion runs for kept pictures alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

/// The RGB bytes of a picture: the decoder's own buffer, or a copy.
pub enum Pixels {
    /// The converter's buffer, mapped readable. Dropping it returns the buffer to the
    /// converter's pool from whichever thread drops it, so no picture-sized block goes
    /// through the allocator per sample.
    Mapped { map: gst::MappedBuffer<gst::buffer::Readable>, len: usize },
    /// Bytes owned here (tests, pictures made in memory).
    Owned(Vec<u8>),
}

impl std::ops::Deref for Pixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Mapped { map, len } => &map.as_slice()[..*len],
            Pixels::Owned(v) => v,
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Self {
        Pixels::Owned(v)
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Pixels::Mapped { .. } => "mapped",
            Pixels::Owned(_) => "owned",
        };
        write!(f, "Pixels({kind}, {} bytes)", self.len())
    }
}

/// A decoded picture in packed RGB.
#[derive(Debug)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub stride: usize,
    /// RGB8 rows, `stride * height` bytes.
    pub rgb: Pixels,
    /// Presentation time on the gateway's media timeline.
    pub pts: Duration,
    /// When its access unit arrived from the camera.
    pub arrival: Instant,
    /// Wall-clock time of arrival.
    pub wall: SystemTime,
}

/// Why the decoder could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the H.264 decoder: {0}")]
pub struct DecoderError(String);

type Pending = Arc<Mutex<HashMap<u64, (Instant, SystemTime)>>>;

/// Largest picture analysed (8K UHD); larger ones are skipped.
const MAX_PIXELS: u64 = 7680 * 4320;

/// A running decoder; pictures come out through the callback given to [`Decoder::start`].
pub struct Decoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    keep: Pending,
}

impl Decoder {
    /// Starts a decoder; `on_picture` runs on a GStreamer thread for every kept picture.
    pub fn start(on_picture: impl Fn(Picture) + Send + Sync + 'static) -> Result<Self, DecoderError> {
        let err = |e: &dyn std::fmt::Display| DecoderError(e.to_string());
        let pipeline = gst::parse::launch(
            "appsrc name=src is-live=true format=time do-timestamp=false \
               caps=video/x-h264,stream-format=byte-stream,alignment=au ! \
             h264parse ! avdec_h264 name=dec max-threads=1 output-corrupt=false direct-rendering=false ! \
             videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=2 drop=true",
        )
        .map_err(|e| err(&e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| DecoderError("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| DecoderError("appsrc missing".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| DecoderError("appsink missing".into()))?;
        let dec = pipeline.by_name("dec").ok_or_else(|| DecoderError("avdec_h264 missing".into()))?;
        // `direct-rendering=false`: with direct rendering libav decodes into the output
        // buffer and keeps a reference to it while the picture is a reference frame, so
        // the base decoder copies every frame into a fresh 1.4 MB (720p) allocation to
        // make it writable. Without it, libav decodes into its own recycled buffers and
        // the picture is copied once into a buffer of the decoder's pool, which is
        // recycled too: the same copy, without an allocation per frame.
        let keep: Pending = Arc::new(Mutex::new(HashMap::new()));

        // The decoder runs on appsrc's streaming thread: give it low priority once, so a
        // saturated machine keeps serving live video first.
        if let Some(pad) = dec.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, |_, _| {
                crate::detect::priority::lower_this_thread();
                gst::PadProbeReturn::Remove
            });
        }
        // Drop reference-only pictures before colour conversion.
        let wanted = keep.clone();
        if let Some(pad) = dec.static_pad("src") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                    return gst::PadProbeReturn::Drop;
                };
                let keep = wanted.lock().map(|m| m.contains_key(&pts.nseconds())).unwrap_or(false);
                if keep { gst::PadProbeReturn::Ok } else { gst::PadProbeReturn::Drop }
            });
        }
        let pending = keep.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(info) = gst_video::VideoInfo::from_caps(caps) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let pts_ns = buffer.pts().map(|t| t.nseconds()).unwrap_or(0);
                    let Some((arrival, wall)) = pending.lock().ok().and_then(|mut m| m.remove(&pts_ns)) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let stride = info.stride().first().copied().unwrap_or(0).max(0) as usize;
                    let (width, height) = (info.width(), info.height());
                    let len = stride * height as usize;
                    if stride < width as usize * 3 || buffer.size() < len {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    if u64::from(width) * u64::from(height) > MAX_PIXELS {
                        // Copies of a picture this large (the pool, the analysis, the
                        // snapshot) would cost gigabytes; no camera sends one for real.
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    // The picture keeps the converter's buffer rather than a copy: a
                    // 2.7 MB copy per sample (at 720p), made here and freed on a detection
                    // thread, is what kept glibc's per-thread heaps growing.
                    let Some(Ok(map)) = sample.buffer_owned().map(gst::Buffer::into_mapped_buffer_readable) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    on_picture(Picture {
                        width,
                        height,
                        stride,
                        rgb: Pixels::Mapped { map, len },
                        pts: Duration::from_nanos(pts_ns),
                        arrival,
                        wall,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).map_err(|e| err(&e))?;
        Ok(Self { pipeline, src, keep })
    }

    /// Feeds one access unit; when `keep` the decoded picture goes to the callback.
    pub fn push(&self, data: Arc<[u8]>, pts: Duration, arrival: Instant, wall: SystemTime, keep: bool) -> bool {
        let pts_ns = pts.as_nanos() as u64;
        if keep && let Ok(mut m) = self.keep.lock() {
            // A picture the decoder never produced (corrupt input) must not pile up.
            if m.len() > 64 {
                m.clear();
            }
            m.insert(pts_ns, (arrival, wall));
        }
        let mut buffer = gst::Buffer::from_slice(data);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        }
        self.src.push_buffer(buffer).is_ok()
    }

    /// Access units waiting in front of the decoder.
    pub fn backlog(&self) -> u64 {
        self.src.current_level_buffers()
    }

    /// The first error the pipeline posted, if any.
    pub fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        }
    }

    /// Stops the pipeline.
    pub fn stop(self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
