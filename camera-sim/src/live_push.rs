//! Pushing raw pictures into a camera media's live appsrc, stamped with its running time.
//!
//! appsrc's own `do-timestamp` can stamp the first picture with the absolute
//! clock time when it races the media's first switch to PLAYING (the base time
//! is still 0); videorate then drops every later picture as "before the previous
//! one" and the media never prerolls. Stamping here, only once the element runs
//! with a clock and base time, rules that out.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Why a picture was not pushed.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The media is not playing yet (or any more); the picture is skipped.
    NotPlaying,
    /// The appsrc refused the buffer.
    Flow(gst::FlowError),
}

/// Pushes a copy of `buffer` (memory shared) into `src` with the current running time as PTS.
pub fn push_now(src: &gst_app::AppSrc, buffer: &gst::BufferRef) -> Result<(), PushError> {
    if src.current_state() != gst::State::Playing {
        return Err(PushError::NotPlaying);
    }
    let (Some(clock), Some(base)) = (src.clock(), src.base_time()) else {
        return Err(PushError::NotPlaying);
    };
    let pts = clock.time().saturating_sub(base);
    let mut copy = buffer.copy();
    {
        let copy = copy.make_mut();
        copy.set_pts(pts);
        copy.set_dts(gst::ClockTime::NONE);
    }
    src.push_buffer(copy).map(|_| ()).map_err(PushError::Flow)
}
