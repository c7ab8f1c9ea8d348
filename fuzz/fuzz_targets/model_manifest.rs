//! A model manifest and its labels file (the input holds both, split at the first NUL byte).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mingchu::detect::decode::Decoder;
use mingchu::detect::model::{Manifest, ModelSpec};

fuzz_target!(|data: &[u8]| {
    let (manifest, labels) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"person\ncat\n"[..]),
    };
    let (Ok(manifest), Ok(labels)) = (std::str::from_utf8(manifest), std::str::from_utf8(labels)) else {
        return;
    };
    let path = Path::new("/models/fuzz.toml");
    let Ok(m) = Manifest::parse(manifest, path) else {
        return;
    };
    if let Ok(spec) = ModelSpec::from_manifest(m, path, labels) {
        // A manifest that loads must start detection.
        Decoder::new(spec.decode_config()).expect("the decoder takes a manifest that loads");
        spec.input_spec().validate().expect("the input spec of a manifest that loads is valid");
    }
});
