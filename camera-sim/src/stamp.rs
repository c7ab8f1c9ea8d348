//! Latency stamps carried inside H.264 access units.
//!
//! The simulator puts one SEI `user_data_unregistered` message into every
//! access unit: [`STAMP_UUID`] followed by the UNIX-epoch wall-clock time in
//! microseconds (big-endian `u64`) at the moment the unit left the encoder
//! chain. Anything downstream that sees the same H.264 bytes can subtract it
//! from its own clock to measure glass-to-glass latency without decoding.
//!
//! This file depends on nothing but `std` on purpose: other crates include it
//! with `#[path = "../../camera-sim/src/stamp.rs"] mod stamp;` so the writer
//! and every reader share one parser.

// Includers typically use only the parser, so the builder side would warn there.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// UUID that marks our SEI payload (8f3c5a1e-d247-4b9a-a60e-71c42b95e813).
pub const STAMP_UUID: [u8; 16] =
    [0x8f, 0x3c, 0x5a, 0x1e, 0xd2, 0x47, 0x4b, 0x9a, 0xa6, 0x0e, 0x71, 0xc4, 0x2b, 0x95, 0xe8, 0x13];

/// H.264 `nal_unit_type` of an SEI NAL.
pub const NAL_SEI: u8 = 6;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const SEI_USER_DATA_UNREGISTERED: u8 = 5;
const STAMP_PAYLOAD_LEN: usize = STAMP_UUID.len() + 8;

/// Location of one NAL unit inside an Annex-B buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NalSpan {
    /// Offset of the start code (including a leading zero byte of a 4-byte code).
    pub prefix: usize,
    /// Offset of the NAL header byte.
    pub start: usize,
    /// One past the last byte of the NAL, trailing zero bytes excluded.
    pub end: usize,
}

impl NalSpan {
    /// `nal_unit_type` of this NAL, read from `data` (the buffer the span came from).
    pub fn nal_type(&self, data: &[u8]) -> u8 {
        data.get(self.start).map_or(0, |h| h & 0x1f)
    }

    /// True for coded slice NALs (types 1..=5), i.e. the picture data itself.
    pub fn is_vcl(&self, data: &[u8]) -> bool {
        (1..=5).contains(&self.nal_type(data))
    }
}

/// Current wall-clock time as microseconds since the UNIX epoch (0 if the clock is before 1970).
pub fn unix_micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Splits an Annex-B buffer into its NAL units; bytes before the first start code are ignored.
pub fn nal_spans(data: &[u8]) -> Vec<NalSpan> {
    let mut spans = Vec::new();
    let mut prev_end = 0;
    let mut next = find_start_code(data, 0);
    while let Some(code_at) = next {
        let start = code_at + 3;
        next = find_start_code(data, start);
        let mut end = next.unwrap_or(data.len());
        // Zero bytes before the next start code are trailing_zero_8bits or the
        // first byte of a 4-byte start code, never NAL content.
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        let mut prefix = code_at;
        while prefix > prev_end && data[prefix - 1] == 0 {
            prefix -= 1;
        }
        if end > start {
            spans.push(NalSpan { prefix, start, end });
            prev_end = end;
        }
    }
    spans
}

/// Index of the first `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?.windows(3).position(|w| w == [0, 0, 1]).map(|p| p + from)
}

/// Turns an RBSP into NAL payload bytes by inserting emulation-prevention 0x03 bytes.
pub fn add_emulation_prevention(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 2);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// Strips emulation-prevention bytes from NAL payload bytes, giving the RBSP.
pub fn remove_emulation_prevention(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// A complete SEI NAL (4-byte start code included) carrying `micros`.
pub fn stamp_nal(micros: u64) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(3 + STAMP_PAYLOAD_LEN);
    rbsp.push(SEI_USER_DATA_UNREGISTERED);
    rbsp.push(STAMP_PAYLOAD_LEN as u8);
    rbsp.extend_from_slice(&STAMP_UUID);
    rbsp.extend_from_slice(&micros.to_be_bytes());
    rbsp.push(0x80); // rbsp_stop_one_bit + alignment

    let mut nal = Vec::with_capacity(START_CODE.len() + 1 + rbsp.len() + 4);
    nal.extend_from_slice(&START_CODE);
    nal.push(NAL_SEI); // forbidden_zero_bit 0, nal_ref_idc 0
    nal.extend_from_slice(&add_emulation_prevention(&rbsp));
    nal
}

/// Copy of the access unit `au` with a stamp SEI inserted before its first slice NAL.
///
/// An access unit without slices gets the SEI appended, and bytes without any
/// start code get it prepended, so the stamp is never lost.
pub fn insert_stamp(au: &[u8], micros: u64) -> Vec<u8> {
    let sei = stamp_nal(micros);
    let spans = nal_spans(au);
    let at = match spans.iter().find(|s| s.is_vcl(au)) {
        Some(vcl) => vcl.prefix,
        None if spans.is_empty() => 0,
        None => au.len(),
    };
    let mut out = Vec::with_capacity(au.len() + sei.len());
    out.extend_from_slice(&au[..at]);
    out.extend_from_slice(&sei);
    out.extend_from_slice(&au[at..]);
    out
}

/// The stamp in an Annex-B access unit, if it carries an SEI with [`STAMP_UUID`].
pub fn parse_stamp(au: &[u8]) -> Option<u64> {
    nal_spans(au)
        .into_iter()
        .filter(|s| s.nal_type(au) == NAL_SEI && au[s.start] & 0x80 == 0)
        .find_map(|s| stamp_in_sei(&remove_emulation_prevention(&au[s.start + 1..s.end])))
}

/// Walks the SEI messages of one SEI RBSP looking for our payload.
fn stamp_in_sei(rbsp: &[u8]) -> Option<u64> {
    let mut i = 0;
    // A lone 0x80 left means only rbsp_trailing_bits remain.
    while i < rbsp.len() && !(rbsp.len() - i == 1 && rbsp[i] == 0x80) {
        let payload_type = read_sei_number(rbsp, &mut i)?;
        let payload_size = read_sei_number(rbsp, &mut i)?;
        let end = i.checked_add(payload_size)?;
        let payload = rbsp.get(i..end)?;
        if payload_type == usize::from(SEI_USER_DATA_UNREGISTERED)
            && payload.len() >= STAMP_PAYLOAD_LEN
            && payload[..STAMP_UUID.len()] == STAMP_UUID
        {
            let bytes: [u8; 8] = payload[STAMP_UUID.len()..STAMP_PAYLOAD_LEN].try_into().ok()?;
            return Some(u64::from_be_bytes(bytes));
        }
        i = end;
    }
    None
}

/// Reads an SEI payloadType/payloadSize: a run of 0xFF bytes plus one final byte, summed.
fn read_sei_number(rbsp: &[u8], i: &mut usize) -> Option<usize> {
    let mut value = 0usize;
    loop {
        let b = *rbsp.get(*i)?;
        *i += 1;
        value = value.checked_add(usize::from(b))?;
        if b != 0xff {
            return Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff, 0x12];
    const SLICE: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x00, 0x00, 0x03, 0x01, 0x7f];

    fn key_unit() -> Vec<u8> {
        [AUD, SPS, PPS, IDR].concat()
    }

    fn types(au: &[u8]) -> Vec<u8> {
        nal_spans(au).iter().map(|s| s.nal_type(au)).collect()
    }

    #[test]
    fn roundtrip_in_key_unit() {
        let au = key_unit();
        let micros = 1_767_000_000_123_456;
        let stamped = insert_stamp(&au, micros);
        assert_eq!(parse_stamp(&stamped), Some(micros));
        assert_eq!(types(&stamped), vec![9, 7, 8, NAL_SEI, 5]);
        assert_eq!(parse_stamp(&au), None);
    }

    #[test]
    fn roundtrip_in_delta_unit() {
        let au = [AUD, SLICE].concat();
        let stamped = insert_stamp(&au, 42);
        assert_eq!(parse_stamp(&stamped), Some(42));
        assert_eq!(types(&stamped), vec![9, NAL_SEI, 1]);
        // The original bytes stay untouched around the inserted NAL.
        assert!(stamped.starts_with(AUD));
        assert!(stamped.ends_with(SLICE));
    }

    #[test]
    fn found_after_other_sei_messages() {
        // An x264-style SEI with another UUID, then a second message that is ours.
        let mut rbsp = vec![5, 20];
        rbsp.extend_from_slice(&[0xdc; 20]);
        rbsp.extend_from_slice(&[5, 24]);
        rbsp.extend_from_slice(&STAMP_UUID);
        rbsp.extend_from_slice(&7u64.to_be_bytes());
        rbsp.push(0x80);
        let mut au = vec![0, 0, 0, 1, NAL_SEI];
        au.extend_from_slice(&add_emulation_prevention(&rbsp));
        au.extend_from_slice(SLICE);
        assert_eq!(parse_stamp(&au), Some(7));
    }

    #[test]
    fn emulation_prevention_applied() {
        for micros in [
            0,
            1,
            2,
            3,
            0x0000_0001_0000_0002,
            0x0000_0000_0300_0000,
            0x0100_0000_0000_0000,
            0x0000_0300_0003_0000,
            u64::MAX,
        ] {
            let nal = stamp_nal(micros);
            let payload = &nal[START_CODE.len() + 1..];
            assert!(
                !payload.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "start-code-like bytes for {micros:#x}: {payload:02x?}"
            );
            assert_eq!(*payload.last().unwrap(), 0x80);
            assert_eq!(nal_spans(&nal).len(), 1);
            assert_eq!(parse_stamp(&insert_stamp(&key_unit(), micros)), Some(micros));
        }
        // A zero timestamp needs escaping: 8 zero bytes after the UUID.
        assert!(stamp_nal(0).len() > START_CODE.len() + 1 + 2 + 24 + 1);
    }

    #[test]
    fn emulation_prevention_inverts() {
        let raw = [0u8, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0];
        let escaped = add_emulation_prevention(&raw);
        assert_eq!(remove_emulation_prevention(&escaped), raw);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in 0..600 {
            let mut buf: Vec<u8> = (0..len).map(|_| (next() % 7) as u8).collect();
            // Sprinkle start codes and SEI headers so the parser goes deep.
            if len > 8 {
                let at = (next() as usize) % (len - 5);
                buf[at..at + 5].copy_from_slice(&[0, 0, 1, NAL_SEI, 5]);
            }
            let _ = parse_stamp(&buf);
            let _ = insert_stamp(&buf, next());
        }
        assert_eq!(parse_stamp(&[]), None);
        assert_eq!(parse_stamp(&[0, 0, 1]), None);
        assert_eq!(parse_stamp(&[0, 0, 1, NAL_SEI]), None);
        assert_eq!(parse_stamp(&[0, 0, 1, NAL_SEI, 0xff, 0xff, 0xff]), None);
        // Declared size far larger than the NAL.
        assert_eq!(parse_stamp(&[0, 0, 1, NAL_SEI, 5, 0xff, 0xff, 0x10, 1, 2]), None);
    }

    #[test]
    fn truncated_stamp_is_not_misread() {
        let stamped = insert_stamp(&key_unit(), 0x0102_0304_0506_0708);
        for cut in 0..stamped.len() {
            let got = parse_stamp(&stamped[..cut]);
            assert!(got.is_none() || got == Some(0x0102_0304_0506_0708));
        }
    }

    #[test]
    fn wrong_uuid_ignored() {
        let mut nal = stamp_nal(99);
        nal[7] ^= 0x01; // first UUID byte
        assert_eq!(parse_stamp(&nal), None);
    }

    #[test]
    fn no_start_code_or_no_slice() {
        let stamped = insert_stamp(&[0xde, 0xad], 5);
        assert_eq!(parse_stamp(&stamped), Some(5));
        let params = [SPS, PPS].concat();
        let stamped = insert_stamp(&params, 6);
        assert_eq!(types(&stamped), vec![7, 8, NAL_SEI]);
        assert_eq!(parse_stamp(&stamped), Some(6));
    }

    #[test]
    fn spans_trim_zeros_and_skip_leading_junk() {
        let au = [&[0xaa, 0xbb][..], SPS, &[0, 0][..], IDR].concat();
        let spans = nal_spans(&au);
        assert_eq!(spans.len(), 2);
        assert_eq!(&au[spans[0].start..spans[0].end], &SPS[4..]);
        assert_eq!(&au[spans[1].start..spans[1].end], &IDR[3..]);
        assert_eq!(spans[0].prefix, 2);
        assert_eq!(spans[1].prefix, spans[0].end);
    }
}
