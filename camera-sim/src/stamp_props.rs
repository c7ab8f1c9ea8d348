//! Property tests for the latency stamp: the parser reads whatever H.264 arrives without a
//! panic, and reads back exactly what the writer put in.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use crate::stamp::{
    NAL_SEI, STAMP_UUID, add_emulation_prevention, insert_stamp, nal_spans, parse_stamp, remove_emulation_prevention,
    stamp_nal,
};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Bytes rich in zeros, start codes and SEI headers, so the parser goes deep.
fn annexb_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..12),
        2 => prop::collection::vec(0u8..4, 0..8),
        2 => Just(vec![0, 0, 0, 1]),
        2 => Just(vec![0, 0, 1]),
        1 => Just(vec![0, 0, 1, NAL_SEI, 5, 24]),
        1 => Just(STAMP_UUID.to_vec()),
        1 => Just(vec![0, 0, 1, 0x65]),
        1 => Just(vec![0, 0, 1, 0x41]),
        1 => Just(vec![0xff; 4]),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

/// An access unit of parameter sets and slices, with or without a stamp of its own.
fn access_unit() -> impl Strategy<Value = Vec<u8>> {
    let nal = (
        prop_oneof![Just(0x09u8), Just(0x67), Just(0x68), Just(0x65), Just(0x41), Just(0x06)],
        prop::collection::vec(any::<u8>(), 1..40),
        any::<bool>(),
    )
        .prop_map(|(header, body, long_code)| {
            let mut n = if long_code { vec![0, 0, 0, 1] } else { vec![0, 0, 1] };
            n.push(header);
            n.extend_from_slice(&add_emulation_prevention(&body));
            // A NAL never ends in a zero byte (rbsp_trailing_bits ends in a one bit).
            if n.last() == Some(&0) {
                n.push(0x80);
            }
            n
        });
    prop::collection::vec(nal, 0..6).prop_map(|n| n.concat())
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Remove(usize),
    Insert(usize, u8),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let n = data.len().max(1);
        match *e {
            Edit::Flip(i, b) if !data.is_empty() => data[i % n] ^= b,
            Edit::Remove(i) if !data.is_empty() => {
                data.remove(i % n);
            }
            Edit::Insert(i, b) => data.insert(i % (data.len() + 1), b),
            Edit::Truncate(i) => data.truncate(i % (data.len() + 1)),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn stamps_read_back(au in access_unit(), micros in any::<u64>()) {
        // An access unit with a stamp of its own keeps it first; the simulator's never have one.
        prop_assume!(parse_stamp(&au).is_none());
        let stamped = insert_stamp(&au, micros);
        prop_assert_eq!(parse_stamp(&stamped), Some(micros));
        prop_assert_eq!(stamped.len(), au.len() + stamp_nal(micros).len());
    }

    #[test]
    fn stamps_in_arbitrary_bytes_read_back(bytes in annexb_bytes(), micros in any::<u64>()) {
        prop_assume!(parse_stamp(&bytes).is_none());
        prop_assert_eq!(parse_stamp(&insert_stamp(&bytes, micros)), Some(micros));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in annexb_bytes()) {
        let _ = parse_stamp(&bytes);
        let spans = nal_spans(&bytes);
        let mut last_end = 0;
        for s in &spans {
            prop_assert!(s.prefix <= s.start && s.start < s.end && s.end <= bytes.len(), "{s:?}");
            prop_assert!(s.prefix >= last_end, "{s:?} overlaps the NAL before");
            prop_assert_eq!(&bytes[s.start - 3..s.start], &[0, 0, 1][..]);
            prop_assert_ne!(bytes[s.end - 1], 0);
            last_end = s.end;
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), micros in any::<u64>()) {
        let _ = parse_stamp(&bytes);
        let _ = insert_stamp(&bytes, micros);
    }

    #[test]
    fn damaged_stamped_units_never_panic(
        au in access_unit(),
        micros in any::<u64>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut stamped = insert_stamp(&au, micros);
        apply(&mut stamped, &edits);
        let _ = parse_stamp(&stamped);
    }

    #[test]
    fn a_cut_stamp_is_never_misread(au in access_unit(), micros in any::<u64>(), cut in any::<usize>()) {
        prop_assume!(parse_stamp(&au).is_none());
        let stamped = insert_stamp(&au, micros);
        let cut = cut % (stamped.len() + 1);
        let got = parse_stamp(&stamped[..cut]);
        prop_assert!(got.is_none() || got == Some(micros), "read {got:?} from a cut stamp of {micros}");
    }

    #[test]
    fn emulation_prevention_round_trips(rbsp in prop::collection::vec(prop_oneof![3 => 0u8..4, 1 => any::<u8>()], 0..200)) {
        let escaped = add_emulation_prevention(&rbsp);
        prop_assert!(!escaped.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2), "{escaped:02x?}");
        prop_assert_eq!(remove_emulation_prevention(&escaped), rbsp);
    }
}
