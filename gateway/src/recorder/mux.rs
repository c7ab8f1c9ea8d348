//! Writes access units into an MP4 file without re-encoding (h264parse → mp4mux).

use std::path::Path;
use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::hub::AccessUnit;

/// Why a clip could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write clip {path}: {message}")]
pub struct MuxError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Muxes `units` into `final_path`, through a temporary file renamed at the end so a
/// crash never leaves a half clip under the served name. Blocks; returns the byte size.
pub fn write_mp4(units: &[Arc<AccessUnit>], final_path: &Path) -> Result<u64, MuxError> {
    let fail = |m: String| MuxError { path: final_path.display().to_string(), message: m };
    let first = units.first().ok_or_else(|| fail("no video to write".into()))?;
    let tmp = final_path.with_extension("mp4.part");
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au ! \
         h264parse ! mp4mux faststart=true ! filesink name=sink",
    )
    .map_err(|e| fail(e.to_string()))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| fail("not a pipeline".into()))?;
    let sink = pipeline.by_name("sink").ok_or_else(|| fail("filesink missing".into()))?;
    sink.set_property("location", tmp.to_string_lossy().as_ref());
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| fail("appsrc missing".into()))?;
    pipeline.set_state(gst::State::Playing).map_err(|e| fail(e.to_string()))?;
    let base = first.pts;
    for u in units {
        let mut buf = gst::Buffer::from_slice(u.data.clone());
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(u.pts.saturating_sub(base).as_nanos() as u64));
            if !u.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        if src.push_buffer(buf).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let bus = pipeline.bus().ok_or_else(|| fail("no bus".into()))?;
    let result = match bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error])
    {
        Some(msg) => match msg.view() {
            gst::MessageView::Error(e) => Err(fail(e.error().to_string())),
            _ => Ok(()),
        },
        None => Err(fail("muxing timed out".into())),
    };
    let _ = pipeline.set_state(gst::State::Null);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let bytes = std::fs::metadata(&tmp).map(|m| m.len()).map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, final_path).map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}
