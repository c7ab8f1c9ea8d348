//! The camera simulator's SEI latency stamp, read from whatever H.264 a viewer receives.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../camera-sim/src/stamp.rs"]
mod stamp;

fuzz_target!(|data: &[u8]| {
    let found = stamp::parse_stamp(data);
    let _ = stamp::nal_spans(data);
    if found.is_none() {
        // A stamp added to these bytes reads back.
        let micros = data.iter().fold(0u64, |acc, &b| acc.rotate_left(5) ^ u64::from(b));
        assert_eq!(stamp::parse_stamp(&stamp::insert_stamp(data, micros)), Some(micros));
    }
});
