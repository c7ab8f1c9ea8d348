//! Encoder settings and the `gst-launch` lines the media factories run.
//!
//! Launch lines are only ever built from validated numbers and fixed names,
//! never from free text, so nothing here needs escaping.

/// Name of the capsfilter that fixes the raw picture size; changed at run time.
pub const CAPS_ELEMENT: &str = "caps";
/// Name of the H.264 encoder; receives key-frame requests.
pub const ENCODER_ELEMENT: &str = "enc";
/// Name of the RTP payloader; its sink pad carries whole access units.
pub const PAYLOADER_ELEMENT: &str = "pay0";
/// Name of the appsrc that file- and scene-backed cameras read pictures from.
pub const APPSRC_ELEMENT: &str = "src";

/// Test patterns handed out to cameras in turn, so streams are easy to tell apart.
const PATTERNS: [&str; 6] = ["ball", "smpte", "pinwheel", "circular", "spokes", "gamut"];

/// Picture size limits; x264 needs even sizes for 4:2:0.
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 4096;

/// Encoding parameters shared by all cameras.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoSettings {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Maximum distance between key frames, in frames.
    pub gop: u32,
}

impl VideoSettings {
    /// Checks every field against the ranges the pipeline accepts.
    pub fn validate(&self) -> Result<(), String> {
        validate_size(self.width, self.height)?;
        if !(1..=120).contains(&self.fps) {
            return Err(format!("fps must be 1..=120, got {}", self.fps));
        }
        if !(50..=100_000).contains(&self.bitrate_kbps) {
            return Err(format!("bitrate must be 50..=100000 kbit/s, got {}", self.bitrate_kbps));
        }
        if !(1..=1000).contains(&self.gop) {
            return Err(format!("gop must be 1..=1000 frames, got {}", self.gop));
        }
        Ok(())
    }
}

/// Checks a picture size: even, and within 16..=4096 on both sides.
pub fn validate_size(width: u32, height: u32) -> Result<(), String> {
    for (what, v) in [("width", width), ("height", height)] {
        if !(MIN_SIDE..=MAX_SIDE).contains(&v) || v % 2 != 0 {
            return Err(format!("{what} must be an even number in {MIN_SIDE}..={MAX_SIDE}, got {v}"));
        }
    }
    Ok(())
}

/// Where a camera's raw pictures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A live `videotestsrc` pattern.
    TestPattern,
    /// Frames pushed by the shared file decoder into an appsrc.
    File,
    /// Scene pictures pushed into an appsrc by the scene player.
    Scene,
}

/// Which optional overlay elements are installed (they live in the pango plugin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlays {
    /// `textoverlay` is available for the camera name.
    pub text: bool,
    /// `clockoverlay` is available for the wall clock.
    pub clock: bool,
}

/// Raw caps the capsfilter is set to; I420 keeps x264 at a 4:2:0 profile browsers decode.
pub fn raw_caps(width: u32, height: u32, fps: u32) -> String {
    format!("video/x-raw,format=I420,width={width},height={height},framerate={fps}/1")
}

/// The launch line for camera number `index` named `name` (`name` must be a plain identifier).
pub fn launch_line(settings: &VideoSettings, index: usize, name: &str, source: Source, overlays: Overlays) -> String {
    let VideoSettings { width, height, fps, bitrate_kbps, gop } = *settings;
    let mut parts = Vec::new();
    match source {
        Source::TestPattern => {
            let pattern = PATTERNS[index % PATTERNS.len()];
            // The ball moves by itself; other patterns scroll so every stream has motion.
            let speed = if pattern == "ball" { 0 } else { 2 };
            parts.push(format!("videotestsrc is-live=true pattern={pattern} horizontal-speed={speed}"));
        }
        Source::File | Source::Scene => {
            // Leaky so a stalled encoder never backs frames up into the shared decoder
            // or the scene player. Scene pictures already have the right format and
            // size, so the three converters below pass them through untouched.
            parts.push(format!(
                "appsrc name={APPSRC_ELEMENT} is-live=true format=time \
                 max-buffers=2 leaky-type=downstream"
            ));
            parts.push("videoconvert".into());
            parts.push("videoscale".into());
            parts.push("videorate".into());
        }
    }
    parts.push(format!("capsfilter name={CAPS_ELEMENT} caps=\"{}\"", raw_caps(width, height, fps)));
    if overlays.text {
        parts.push(format!("textoverlay text={name} valignment=top halignment=left font-desc=\"Sans 20\""));
    }
    if overlays.clock {
        parts.push(
            "clockoverlay valignment=bottom halignment=right time-format=\"%H:%M:%S\" \
             font-desc=\"Sans 16\""
                .into(),
        );
    }
    if overlays.text || overlays.clock {
        parts.push("videoconvert".into());
    }
    // threads=1: zerolatency would otherwise cut each picture into one slice per
    // thread, and rtph264pay then repeats SPS/PPS before every IDR slice, which
    // makes depayloaders split key frames in two. Real cameras send one slice.
    parts.push(format!(
        "x264enc name={ENCODER_ELEMENT} tune=zerolatency speed-preset=ultrafast bframes=0 \
         threads=1 key-int-max={gop} bitrate={bitrate_kbps}"
    ));
    parts.push("h264parse config-interval=-1".into());
    parts.push("video/x-h264,stream-format=byte-stream,alignment=au".into());
    parts.push(format!("rtph264pay name={PAYLOADER_ELEMENT} pt=96 config-interval=-1"));
    format!("( {} )", parts.join(" ! "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: VideoSettings = VideoSettings { width: 1280, height: 720, fps: 25, bitrate_kbps: 2000, gop: 50 };

    #[test]
    fn defaults_validate() {
        assert_eq!(SETTINGS.validate(), Ok(()));
    }

    #[test]
    fn bad_values_rejected() {
        for bad in [
            VideoSettings { width: 1281, ..SETTINGS },
            VideoSettings { height: 8, ..SETTINGS },
            VideoSettings { width: 8192, ..SETTINGS },
            VideoSettings { fps: 0, ..SETTINGS },
            VideoSettings { bitrate_kbps: 0, ..SETTINGS },
            VideoSettings { gop: 0, ..SETTINGS },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn test_pattern_line_has_named_elements() {
        let overlays = Overlays { text: true, clock: true };
        let line = launch_line(&SETTINGS, 0, "cam1", Source::TestPattern, overlays);
        assert!(line.starts_with("( videotestsrc is-live=true pattern=ball"));
        for needle in [
            "capsfilter name=caps caps=\"video/x-raw,format=I420,width=1280,height=720,framerate=25/1\"",
            "textoverlay text=cam1",
            "x264enc name=enc tune=zerolatency speed-preset=ultrafast bframes=0 threads=1 key-int-max=50 bitrate=2000",
            "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au",
            "rtph264pay name=pay0 pt=96 config-interval=-1 )",
        ] {
            assert!(line.contains(needle), "{needle} missing from {line}");
        }
    }

    #[test]
    fn file_line_reads_appsrc_and_skips_missing_overlays() {
        let overlays = Overlays { text: false, clock: false };
        let line = launch_line(&SETTINGS, 1, "cam2", Source::File, overlays);
        assert!(line.starts_with("( appsrc name=src is-live=true"));
        assert!(!line.contains("overlay"));
        assert!(!line.contains("videotestsrc"));
    }

    #[test]
    fn scene_line_reads_appsrc() {
        let overlays = Overlays { text: true, clock: true };
        let line = launch_line(&SETTINGS, 0, "cam1", Source::Scene, overlays);
        assert!(line.starts_with("( appsrc name=src is-live=true"));
        assert!(line.contains("textoverlay text=cam1"));
        assert!(line.contains("clockoverlay"));
    }

    #[test]
    fn patterns_differ_between_neighbours() {
        let o = Overlays { text: false, clock: false };
        let a = launch_line(&SETTINGS, 0, "cam1", Source::TestPattern, o);
        let b = launch_line(&SETTINGS, 1, "cam2", Source::TestPattern, o);
        assert_ne!(a.split(" ! ").next(), b.split(" ! ").next());
    }
}
