//! The buffer probe in front of the RTP payloader: applies faults and stamps every access unit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::warn;

use crate::camera::Camera;
use crate::corrupt::{Jumble, corrupt_access_unit};
use crate::faults::Verdict;
use crate::stamp;

/// Installs the stamping/fault probe on `pad`, which must carry H.264 access units.
pub fn install(pad: &gst::Pad, camera: Arc<Camera>) {
    let counter = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_ref() else {
            return gst::PadProbeReturn::Ok;
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let corrupt = match camera.with_faults(|f| f.on_access_unit(Instant::now(), keyframe)) {
            Verdict::Drop => return swallow(info),
            Verdict::DropAndRequestKeyframe => {
                camera.request_keyframe();
                return swallow(info);
            }
            Verdict::Forward { corrupt } => corrupt,
        };

        let stamped = {
            let Ok(map) = buffer.map_readable() else {
                warn!(camera = camera.name(), "unreadable buffer passed unstamped");
                return gst::PadProbeReturn::Ok;
            };
            if corrupt {
                let seed = counter.fetch_add(1, Ordering::Relaxed) ^ stamp::unix_micros_now();
                let damaged = corrupt_access_unit(&map, keyframe, &mut Jumble::new(seed));
                stamp::insert_stamp(&damaged, stamp::unix_micros_now())
            } else {
                stamp::insert_stamp(&map, stamp::unix_micros_now())
            }
        };

        let mut out = gst::Buffer::from_mut_slice(stamped);
        {
            let out = out.make_mut();
            out.set_pts(buffer.pts());
            out.set_dts(buffer.dts());
            out.set_duration(buffer.duration());
            out.set_offset(buffer.offset());
            out.set_offset_end(buffer.offset_end());
            out.set_flags(buffer.flags());
        }
        info.data = Some(gst::PadProbeData::Buffer(out));
        gst::PadProbeReturn::Ok
    });
}

/// Drops the probed buffer by consuming it here and reporting it handled.
///
/// Returning `Drop` instead makes gstreamer-rs take the buffer out of the probe
/// info, and GStreamer before 1.24.8 then unrefs the NULL left behind, printing
/// a `gst_mini_object_unref` critical for every dropped unit.
fn swallow(info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    info.data = None;
    info.flow_res = Ok(gst::FlowSuccess::Ok);
    gst::PadProbeReturn::Handled
}
