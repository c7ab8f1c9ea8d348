//! Property tests for what viewers send before they are routed: WHEP offers and STUN requests.

use std::net::SocketAddr;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// One certificate for every case: making one per case would dominate the run time.
fn cert() -> &'static DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("the test certificate")
    })
}

fn candidates() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 8189))]
}

/// A browser-like recvonly WHEP offer for H.264 (plus an audio section the gateway rejects).
fn offer_text(ufrag: &str, pt: u8, profile: &str, direction: &str, with_audio: bool) -> String {
    let mut s = String::new();
    s.push_str("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    s.push_str(if with_audio { "a=group:BUNDLE 0 1\r\n" } else { "a=group:BUNDLE 0\r\n" });
    s.push_str("a=msid-semantic: WMS\r\n");
    s.push_str(&format!("m=video 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"));
    s.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:0123456789abcdefghijklmn\r\na=ice-options:trickle\r\n"));
    s.push_str(
        "a=fingerprint:sha-256 5B:0C:D2:9E:56:2E:87:62:5A:59:1C:6D:50:37:E8:A2:24:AE:73:7B:1B:D4:34:7A:6F:CB:2D:9C:94:7A:36:69\r\n",
    );
    s.push_str(&format!("a=setup:actpass\r\na=mid:0\r\na={direction}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"));
    s.push_str(&format!("a=rtpmap:{pt} H264/90000\r\na=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n"));
    s.push_str(&format!("a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}\r\n"));
    if with_audio {
        s.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n");
        s.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"));
        s.push_str(
            "a=fingerprint:sha-256 5B:0C:D2:9E:56:2E:87:62:5A:59:1C:6D:50:37:E8:A2:24:AE:73:7B:1B:D4:34:7A:6F:CB:2D:9C:94:7A:36:69\r\n",
        );
        s.push_str("a=setup:actpass\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n");
    }
    s
}

fn valid_offer() -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9+/]{4,16}",
        96u8..=127,
        prop_oneof![Just("42e01f"), Just("42001f"), Just("640032"), Just("4d001f")],
        any::<bool>(),
    )
        .prop_map(|(ufrag, pt, profile, audio)| offer_text(&ufrag, pt, profile, "recvonly", audio))
}

/// An edit to an offer's lines: what a broken client or a hostile one might send.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, String),
    Insert(usize, String),
    Truncate(usize),
}

fn sdp_junk_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]=[ -~]{0,40}",
        "m=(video|audio|application) [0-9]{1,6} [A-Z/]{0,20} [0-9 ]{0,12}",
        "a=(rtpmap|fmtp|rtcp-fb|mid|ssrc|extmap|ice-ufrag|ice-pwd|setup|fingerprint|candidate):[ -~]{0,60}",
        "a=rtpmap:[0-9]{1,5} (H264|h264|VP8|opus)/[0-9]{0,8}(/[0-9]{0,3})?",
        "c=IN IP[46] [0-9a-f.:]{0,40}",
        ".{0,40}",
    ]
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<usize>(), sdp_junk_line()).prop_map(|(i, l)| LineEdit::Replace(i, l)),
        (any::<usize>(), sdp_junk_line()).prop_map(|(i, l)| LineEdit::Insert(i, l)),
        any::<usize>().prop_map(LineEdit::Truncate),
    ]
}

fn apply_edits(offer: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = offer.split("\r\n").map(str::to_owned).collect();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            LineEdit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            LineEdit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            LineEdit::Replace(i, l) if !lines.is_empty() => lines[i % n] = l.clone(),
            LineEdit::Insert(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            LineEdit::Truncate(i) => {
                // Cut at a byte offset, as a short read would, keeping the text valid UTF-8.
                let mut joined = lines.join("\r\n");
                let mut at = i % (joined.len() + 1);
                while !joined.is_char_boundary(at) {
                    at -= 1;
                }
                joined.truncate(at);
                lines = joined.split("\r\n").map(str::to_owned).collect();
            }
            _ => {}
        }
    }
    lines.join("\r\n")
}

/// What every rejected offer must look like: one line, saying it is a bad offer.
fn assert_one_line_rejection(e: &LiveError) {
    let m = e.to_string();
    assert!(matches!(e, LiveError::BadOffer(_)), "{m}");
    assert!(!m.contains('\n') && !m.contains('\r'), "message spans lines: {m:?}");
    assert!(!m.contains("PointerOffset"), "message shows parser internals: {m:?}");
}

/// Runs an offer the whole way a viewer's would go, short of routing it.
fn negotiate(offer: &str) -> Result<Answered, LiveError> {
    answer_offer(parse_offer(offer)?, cert(), &candidates())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn generated_offers_are_answered(offer in valid_offer()) {
        check_offer(&offer).expect("passes the cheap checks");
        let answered = negotiate(&offer).expect("negotiates");
        prop_assert!(answered.answer.starts_with("v=0"));
        prop_assert!(!answered.ufrag.is_empty());
    }

    #[test]
    fn mutated_offers_never_panic(offer in valid_offer(), edits in prop::collection::vec(line_edit(), 1..6)) {
        let offer = apply_edits(&offer, &edits);
        if let Err(e) = negotiate(&offer) {
            assert_one_line_rejection(&e);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text_offers_never_panic(offer in ".{0,300}") {
        if let Err(e) = check_offer(&offer) {
            assert_one_line_rejection(&e);
        }
        if let Err(e) = parse_offer(&offer) {
            assert_one_line_rejection(&e);
        }
    }

    #[test]
    fn sdp_shaped_text_never_panics(lines in prop::collection::vec(sdp_junk_line(), 0..24)) {
        let offer = format!("v=0\r\n{}", lines.join("\r\n"));
        if let Err(e) = negotiate(&offer) {
            assert_one_line_rejection(&e);
        }
    }
}

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// One STUN attribute, padded to 4 bytes.
fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).expect("short attribute").to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A binding request as a browser sends it to an ICE-lite peer (the integrity is not checked
/// before routing, so any 20 bytes stand in for it).
fn binding_request(username: &str, trans_id: [u8; 12], controlling: bool, fingerprint: bool) -> Vec<u8> {
    let mut attrs = Vec::new();
    attr(&mut attrs, 0x0006, username.as_bytes());
    attr(&mut attrs, 0x0024, &0x6e7f_00ffu32.to_be_bytes());
    if controlling {
        attr(&mut attrs, 0x802a, &7u64.to_be_bytes());
        attr(&mut attrs, 0x0025, &[]);
    } else {
        attr(&mut attrs, 0x8029, &7u64.to_be_bytes());
    }
    attr(&mut attrs, 0x0008, &[0xab; 20]);
    if fingerprint {
        attr(&mut attrs, 0x8028, &0x1234_5678u32.to_be_bytes());
    }
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&u16::try_from(attrs.len()).expect("short message").to_be_bytes());
    msg.extend_from_slice(&MAGIC);
    msg.extend_from_slice(&trans_id);
    msg.extend_from_slice(&attrs);
    msg
}

fn binding_parts() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    ("[^:]{1,40}", ".{1,40}", any::<[u8; 12]>(), any::<bool>(), any::<bool>()).prop_map(
        |(local, remote, id, controlling, fingerprint)| {
            let msg = binding_request(&format!("{local}:{remote}"), id, controlling, fingerprint);
            (local, remote, msg)
        },
    )
}

/// A byte-level edit to a datagram.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(usize, u8),
    Set(usize, u8),
    Remove(usize),
    Insert(usize, u8),
    Truncate(usize),
    /// Rewrites the STUN length field, where the length checks live.
    Length(u16),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        any::<usize>().prop_map(ByteEdit::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<usize>().prop_map(ByteEdit::Truncate),
        any::<u16>().prop_map(ByteEdit::Length),
    ]
}

fn apply_byte_edits(data: &mut Vec<u8>, edits: &[ByteEdit]) {
    for edit in edits {
        let n = data.len().max(1);
        match *edit {
            ByteEdit::Flip(i, b) if !data.is_empty() => data[i % n] ^= b,
            ByteEdit::Set(i, b) if !data.is_empty() => data[i % n] = b,
            ByteEdit::Remove(i) if !data.is_empty() => {
                data.remove(i % n);
            }
            ByteEdit::Insert(i, b) => data.insert(i % (data.len() + 1), b),
            ByteEdit::Truncate(i) => data.truncate(i % (data.len() + 1)),
            ByteEdit::Length(len) if data.len() >= 4 => data[2..4].copy_from_slice(&len.to_be_bytes()),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn binding_requests_name_their_local_ufrag((local, _remote, msg) in binding_parts()) {
        prop_assert_eq!(stun_local_ufrag(&msg), Some(local));
    }

    #[test]
    fn mutated_binding_requests_never_panic(
        (_local, _remote, mut msg) in binding_parts(),
        edits in prop::collection::vec(byte_edit(), 1..5),
    ) {
        apply_byte_edits(&mut msg, &edits);
        // Checking the signature of whatever arrives never panics either.
        let _ = stun_request_signed(&msg, "a-local-ice-password-24c");
        if let Some(ufrag) = stun_local_ufrag(&msg) {
            // Whatever was found came out of the USERNAME attribute, which names no colon
            // before the local part ends.
            prop_assert!(!ufrag.contains(':'));
        }
    }

    #[test]
    fn arbitrary_datagrams_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let got = stun_local_ufrag(&data);
        prop_assert!(!stun_request_signed(&data, "a-local-ice-password-24c"), "random bytes are never signed");
        // DTLS and RTP start with a byte above 3: they are never taken for STUN.
        if data.first().is_some_and(|&b| b > 3) {
            prop_assert_eq!(got, None);
        }
    }

    #[test]
    fn stun_shaped_datagrams_never_panic(
        typ in prop_oneof![Just(0x0001u16), any::<u16>()],
        trans_id in any::<[u8; 12]>(),
        attrs in prop::collection::vec((any::<u16>(), prop::collection::vec(any::<u8>(), 0..48)), 0..6),
    ) {
        let mut body = Vec::new();
        for (t, v) in &attrs {
            attr(&mut body, *t, v);
        }
        let mut msg = typ.to_be_bytes().to_vec();
        msg.extend_from_slice(&u16::try_from(body.len()).expect("short body").to_be_bytes());
        msg.extend_from_slice(&MAGIC);
        msg.extend_from_slice(&trans_id);
        msg.extend_from_slice(&body);
        let _ = stun_local_ufrag(&msg);
    }
}

/// Found by `mutated_offers_never_panic`: the SDP parser quotes a lone carriage return it
/// stopped at, which used to reach the one-line error (and the HTTP reply) as a raw `\r`.
#[test]
fn parser_error_at_a_carriage_return_stays_on_one_line() {
    let offer = "v=0\r\n\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n";
    let e = parse_offer(offer).expect_err("a blank line is not SDP");
    assert_one_line_rejection(&e);
    assert!(e.to_string().contains("`\\r`"), "{e}");
}
