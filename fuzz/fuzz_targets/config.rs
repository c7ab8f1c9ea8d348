//! The gateway's config file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mingchu::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = Config::parse(text, Path::new("fuzz.toml")) {
        // What validates must be usable as durations without a panic.
        let c = &v.config;
        for secs in [c.ingest.stall_timeout_s, c.ingest.max_backoff_s, c.events.pre_roll_s, 1.0 / c.detect.fps] {
            assert!(std::time::Duration::try_from_secs_f64(secs).is_ok(), "{secs}");
        }
    }
});
