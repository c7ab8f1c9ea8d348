//! Byte-level damage to H.264 access units for the `corrupt` fault.
//!
//! The damage imitates a flaky camera: extra NAL units a decoder must skip and
//! bit errors inside predicted slices. Key frames stay intact so that the
//! picture recovers at the next GOP once the fault ends.

use crate::stamp::nal_spans;

/// NAL header bytes for appended garbage: forbidden bit set, or types H.264 leaves
/// unspecified/reserved. Types 24..=29 are avoided because RTP reuses them for
/// aggregation and fragmentation, which would damage the RTP layer instead.
const GARBAGE_HEADERS: [u8; 7] = [0x81, 0xe5, 0x96, 0x60, 0x17, 0x1e, 0x1f];

/// Non-IDR coded slice.
const NAL_SLICE: u8 = 1;

/// Bytes of a slice left alone so its header still parses.
const SLICE_HEADER_GUARD: usize = 4;

/// Cheap xorshift generator; the damage has to look random, not be unpredictable.
#[derive(Clone, Debug)]
pub struct Jumble(u64);

impl Jumble {
    /// Generator seeded with `seed` (any value works, including zero).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A byte that can never take part in a start code or emulation sequence.
    fn nonzero_byte(&mut self) -> u8 {
        (self.next() as u8).max(4)
    }
}

/// Damaged copy of `au`: slices of delta frames get flipped bytes, and 1–3 garbage NAL units are appended.
pub fn corrupt_access_unit(au: &[u8], keyframe: bool, rng: &mut Jumble) -> Vec<u8> {
    let mut out = au.to_vec();
    if !keyframe {
        for span in nal_spans(au) {
            if span.nal_type(au) != NAL_SLICE {
                continue;
            }
            let body = span.start + SLICE_HEADER_GUARD..span.end;
            if body.is_empty() {
                continue;
            }
            let flips = 1 + body.len() / 256;
            for _ in 0..flips.min(16) {
                let at = body.start + rng.below(body.len());
                let flipped = out[at] ^ (1 << rng.below(8));
                // Small values could forge or break a start code and split the NAL,
                // which would change the unit structure rather than its content.
                if out[at] > 3 && flipped > 3 {
                    out[at] = flipped;
                }
            }
        }
    }
    for _ in 0..1 + rng.below(3) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.push(GARBAGE_HEADERS[rng.below(GARBAGE_HEADERS.len())]);
        let len = 8 + rng.below(57);
        out.extend((0..len).map(|_| rng.nonzero_byte()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{insert_stamp, parse_stamp};

    fn unit(types: &[(u8, usize)]) -> Vec<u8> {
        let mut au = Vec::new();
        for (i, &(header, len)) in types.iter().enumerate() {
            au.extend_from_slice(&[0, 0, 0, 1, header]);
            au.extend((0..len).map(|j| 0x10 + ((i * 31 + j * 7) % 200) as u8));
        }
        au
    }

    #[test]
    fn delta_slices_are_damaged_and_garbage_appended() {
        let au = unit(&[(0x09, 1), (0x41, 600), (0x41, 600)]);
        let mut rng = Jumble::new(1);
        let out = corrupt_access_unit(&au, false, &mut rng);
        let before = nal_spans(&au);
        let after = nal_spans(&out);
        assert!(after.len() > before.len());
        assert!(after.len() <= before.len() + 3);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.start, a.start);
            assert_eq!(b.end, a.end);
        }
        assert_ne!(&out[..au.len()], &au[..]);
        for extra in &after[before.len()..] {
            assert!(GARBAGE_HEADERS.contains(&out[extra.start]));
        }
    }

    #[test]
    fn key_frames_keep_their_bytes() {
        let au = unit(&[(0x67, 10), (0x68, 4), (0x65, 900)]);
        let out = corrupt_access_unit(&au, true, &mut Jumble::new(7));
        assert_eq!(&out[..au.len()], &au[..]);
        assert!(out.len() > au.len());
    }

    #[test]
    fn stamp_survives_corruption() {
        let au = insert_stamp(&unit(&[(0x09, 1), (0x41, 300)]), 123_456);
        for seed in 0..50 {
            let out = corrupt_access_unit(&au, false, &mut Jumble::new(seed));
            assert_eq!(parse_stamp(&out), Some(123_456));
        }
    }

    #[test]
    fn garbage_input_never_panics() {
        let mut rng = Jumble::new(3);
        for len in 0..300 {
            let junk: Vec<u8> = (0..len).map(|i| (i % 5) as u8).collect();
            let out = corrupt_access_unit(&junk, len % 2 == 0, &mut rng);
            assert!(out.len() > junk.len());
        }
    }
}
