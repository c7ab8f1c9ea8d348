//! A viewer's WHEP offer: the cheap checks, the SDP parser and the answer.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mingchu::live::{LiveError, answer_offer, parse_offer};
use str0m::config::DtlsCert;

fn cert() -> &'static DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("a DTLS certificate")
    })
}

fn one_line(e: &LiveError) {
    let m = e.to_string();
    assert!(!m.contains('\n') && !m.contains('\r'), "{m:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = std::str::from_utf8(data) else {
        return;
    };
    match parse_offer(offer) {
        Ok(offer) => {
            let candidates = [SocketAddr::from(([127, 0, 0, 1], 8189))];
            if let Err(e) = answer_offer(offer, cert(), &candidates) {
                one_line(&e);
            }
        }
        Err(e) => one_line(&e),
    }
});
