//! The GOP cache: the access units since the last keyframe, so a new consumer starts at once.

use std::sync::Arc;

use super::AccessUnit;

/// Access units from the most recent keyframe on, bounded in count and bytes.
#[derive(Debug)]
pub struct GopCache {
    units: Vec<Arc<AccessUnit>>,
    bytes: usize,
    max_units: usize,
    max_bytes: usize,
}

impl GopCache {
    /// A cache that holds at most `max_units` access units and `max_bytes` bytes.
    pub fn new(max_units: usize, max_bytes: usize) -> Self {
        Self { units: Vec::new(), bytes: 0, max_units, max_bytes }
    }

    /// Adds an access unit; a keyframe starts a new GOP.
    pub fn push(&mut self, unit: Arc<AccessUnit>) {
        if unit.keyframe {
            self.units.clear();
            self.bytes = 0;
        } else if self.units.is_empty() {
            // Without its keyframe a delta frame is useless to a new consumer.
            return;
        }
        if self.units.len() >= self.max_units || self.bytes + unit.data.len() > self.max_bytes {
            // A camera with a very long GOP: give up on this GOP rather than grow without
            // bound; new consumers then wait for the next keyframe.
            self.units.clear();
            self.bytes = 0;
            return;
        }
        self.bytes += unit.data.len();
        self.units.push(unit);
    }

    /// Forgets everything, e.g. when the camera reconnects with new parameters.
    pub fn clear(&mut self) {
        self.units.clear();
        self.bytes = 0;
    }

    /// The cached GOP, keyframe first (empty when no keyframe has been seen).
    pub fn units(&self) -> &[Arc<AccessUnit>] {
        &self.units
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::test_unit;

    #[test]
    fn starts_at_last_keyframe() {
        let mut gop = GopCache::new(100, 1 << 20);
        gop.push(test_unit(0, false));
        assert!(gop.units().is_empty(), "a delta frame without keyframe is not cached");
        gop.push(test_unit(1, true));
        gop.push(test_unit(2, false));
        gop.push(test_unit(3, true));
        gop.push(test_unit(4, false));
        let seqs: Vec<u64> = gop.units().iter().map(|u| u.seq).collect();
        assert_eq!(seqs, vec![3, 4]);
        assert!(gop.units()[0].keyframe);
    }

    #[test]
    fn bounded_gop_is_dropped_not_grown() {
        let mut gop = GopCache::new(3, 1 << 20);
        gop.push(test_unit(1, true));
        gop.push(test_unit(2, false));
        gop.push(test_unit(3, false));
        assert_eq!(gop.units().len(), 3);
        gop.push(test_unit(4, false));
        assert!(gop.units().is_empty());
        gop.push(test_unit(5, false));
        assert!(gop.units().is_empty(), "stays empty until the next keyframe");
        gop.push(test_unit(6, true));
        assert_eq!(gop.units().len(), 1);
    }
}
