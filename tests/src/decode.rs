//! Decodes received H.264 with GStreamer (avdec_h264) to prove it is watchable.

use anyhow::Context;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// What decoding a run of access units produced.
#[derive(Debug, Default, Clone)]
pub struct Decoded {
    /// Pictures out of the decoder.
    pub pictures: u64,
    /// Sizes seen, in order of first appearance.
    pub sizes: Vec<(i32, i32)>,
    /// Errors the pipeline posted.
    pub errors: Vec<String>,
}

/// Decodes Annex-B access units in order.
pub fn decode(units: &[Vec<u8>]) -> anyhow::Result<Decoded> {
    gst::init()?;
    let pipeline = gst::parse::launch(
        "appsrc name=src is-live=false format=time caps=video/x-h264,stream-format=byte-stream,alignment=au ! \
         h264parse ! avdec_h264 max-threads=1 ! videoconvert ! appsink name=sink sync=false",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let src = pipeline.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).context("appsrc")?;
    let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).context("appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let feeder = {
        let units: Vec<Vec<u8>> = units.to_vec();
        std::thread::spawn(move || {
            for (i, u) in units.into_iter().enumerate() {
                let mut buf = gst::Buffer::from_mut_slice(u);
                if let Some(b) = buf.get_mut() {
                    b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 40));
                }
                if src.push_buffer(buf).is_err() {
                    break;
                }
            }
            let _ = src.end_of_stream();
        })
    };
    let mut out = Decoded::default();
    while let Ok(sample) = sink.pull_sample() {
        out.pictures += 1;
        if let Some(s) = sample.caps().and_then(|c| c.structure(0).map(|s| s.to_owned()))
            && let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height"))
            && out.sizes.last() != Some(&(w, h))
        {
            out.sizes.push((w, h));
        }
    }
    let _ = feeder.join();
    if let Some(bus) = pipeline.bus() {
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                out.errors.push(e.error().to_string());
            }
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(out)
}

/// What an MP4 file holds.
#[derive(Debug, Default, Clone)]
pub struct Mp4Info {
    /// Caps name of the video track, e.g. `video/x-h264`.
    pub codec: String,
    /// Access units in the file.
    pub units: Vec<Vec<u8>>,
    /// Whether the first access unit is a keyframe.
    pub keyframe_first: bool,
    /// Last minus first presentation time, seconds.
    pub duration_s: f64,
}

/// Demuxes an MP4 file into Annex-B access units, without decoding.
pub fn read_mp4(path: &std::path::Path) -> anyhow::Result<Mp4Info> {
    gst::init()?;
    let pipeline = gst::parse::launch(
        "filesrc name=src ! qtdemux ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au ! \
         appsink name=sink sync=false",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    pipeline.by_name("src").context("filesrc")?.set_property("location", path.to_string_lossy().as_ref());
    let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).context("appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let mut info = Mp4Info::default();
    let (mut first, mut last) = (None, None);
    while let Ok(sample) = sink.pull_sample() {
        if info.codec.is_empty() {
            info.codec = sample.caps().and_then(|c| c.structure(0).map(|s| s.name().to_string())).unwrap_or_default();
        }
        let Some(buf) = sample.buffer() else { continue };
        if info.units.is_empty() {
            info.keyframe_first = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        }
        if let Some(pts) = buf.pts() {
            first.get_or_insert(pts);
            last = Some(pts);
        }
        info.units.push(buf.map_readable()?.as_slice().to_vec());
    }
    pipeline.set_state(gst::State::Null)?;
    if let (Some(a), Some(b)) = (first, last) {
        info.duration_s = (b.nseconds().saturating_sub(a.nseconds())) as f64 / 1e9;
    }
    Ok(info)
}
