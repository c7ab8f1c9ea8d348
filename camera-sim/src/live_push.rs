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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn pictures_wait_for_playing_and_carry_the_running_time() {
        gst::init().expect("GStreamer");
        let pipeline = gst::parse::launch("appsrc name=src is-live=true format=time ! appsink name=sink sync=false")
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let src = pipeline.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).expect("appsrc");
        let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).expect("appsink");
        let seen: Arc<Mutex<Vec<gst::ClockTime>>> = Arc::default();
        let record = seen.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(pts) = sample.buffer().and_then(|b| b.pts()) {
                        record.lock().expect("lock").push(pts);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        src.set_caps(Some(&gst::Caps::builder("video/x-raw").build()));
        let picture = gst::Buffer::from_mut_slice(vec![0u8; 16]);

        assert_eq!(push_now(&src, &picture), Err(PushError::NotPlaying), "not started yet");
        let started = std::time::Instant::now();
        pipeline.set_state(gst::State::Playing).expect("playing");
        // The sink cannot preroll before a picture arrives, so do not wait for the whole
        // pipeline: the source plays at once.
        while push_now(&src, &picture) == Err(PushError::NotPlaying) {
            assert!(started.elapsed() < Duration::from_secs(5), "the source never played");
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..2 {
            assert_eq!(push_now(&src, &picture), Ok(()));
            std::thread::sleep(Duration::from_millis(40));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().expect("lock").len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = pipeline.set_state(gst::State::Null);
        let pts = seen.lock().expect("lock").clone();
        assert_eq!(pts.len(), 3, "{pts:?}");
        // Running time since the pipeline started, not the clock's absolute time.
        let limit = gst::ClockTime::from_nseconds(started.elapsed().as_nanos() as u64);
        assert!(pts.iter().all(|t| *t <= limit), "{pts:?} within {limit}");
        assert!(pts.windows(2).all(|w| w[0] < w[1]), "{pts:?}");
    }
}
