//! Datagrams on the shared media socket: which viewer a STUN binding request is for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mingchu::live::stun_local_ufrag;

fuzz_target!(|data: &[u8]| {
    let ufrag = stun_local_ufrag(data);
    if data.first().is_some_and(|&b| b > 3) {
        assert_eq!(ufrag, None, "DTLS or RTP taken for STUN");
    }
});
