//! One consumer's bounded queue: on overflow it drops to the next keyframe.

use std::collections::VecDeque;
use std::sync::Arc;

use super::AccessUnit;

/// What the consumer takes out of its queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The access unit.
    pub unit: Arc<AccessUnit>,
    /// Access units dropped right before this one because the consumer fell behind.
    pub dropped_before: u64,
}

/// Bounded FIFO that never blocks the producer: when full it empties and waits for a keyframe.
#[derive(Debug)]
pub struct ConsumerQueue {
    items: VecDeque<Delivery>,
    capacity: usize,
    awaiting_keyframe: bool,
    pending_drops: u64,
    total_drops: u64,
}

impl ConsumerQueue {
    /// A queue of `capacity` access units; it starts by waiting for a keyframe.
    pub fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(capacity.min(256)),
            capacity: capacity.max(1),
            awaiting_keyframe: true,
            pending_drops: 0,
            total_drops: 0,
        }
    }

    /// Offers an access unit; returns how many units were dropped by this call.
    pub fn push(&mut self, unit: Arc<AccessUnit>) -> u64 {
        if self.awaiting_keyframe {
            if !unit.keyframe {
                return self.drop_units(1);
            }
            self.awaiting_keyframe = false;
        }
        if self.items.len() >= self.capacity {
            // The consumer is behind by a whole queue: what it holds is stale. Skip to the
            // next keyframe so it resumes on a decodable picture.
            let stale = self.items.len() as u64;
            self.items.clear();
            let dropped = self.drop_units(stale);
            if unit.keyframe {
                self.enqueue(unit);
                return dropped;
            }
            self.awaiting_keyframe = true;
            return dropped + self.drop_units(1);
        }
        self.enqueue(unit);
        0
    }

    fn enqueue(&mut self, unit: Arc<AccessUnit>) {
        let dropped_before = std::mem::take(&mut self.pending_drops);
        self.items.push_back(Delivery { unit, dropped_before });
    }

    fn drop_units(&mut self, n: u64) -> u64 {
        self.pending_drops += n;
        self.total_drops += n;
        n
    }

    /// Takes the oldest delivery.
    pub fn pop(&mut self) -> Option<Delivery> {
        self.items.pop_front()
    }

    /// Units waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Most units the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Units dropped over the queue's life.
    pub fn total_drops(&self) -> u64 {
        self.total_drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::test_unit;

    #[test]
    fn waits_for_keyframe_at_start() {
        let mut q = ConsumerQueue::new(4);
        assert_eq!(q.push(test_unit(1, false)), 1);
        assert!(q.is_empty());
        assert_eq!(q.push(test_unit(2, true)), 0);
        let d = q.pop().expect("keyframe queued");
        assert_eq!(d.unit.seq, 2);
        assert_eq!(d.dropped_before, 1);
    }

    #[test]
    fn overflow_skips_to_next_keyframe() {
        let mut q = ConsumerQueue::new(3);
        q.push(test_unit(1, true));
        q.push(test_unit(2, false));
        q.push(test_unit(3, false));
        // Full: this delta frame empties the queue and is itself dropped.
        assert_eq!(q.push(test_unit(4, false)), 4);
        assert!(q.is_empty());
        assert_eq!(q.push(test_unit(5, false)), 1);
        assert_eq!(q.push(test_unit(6, true)), 0);
        let d = q.pop().expect("resynced on keyframe");
        assert_eq!((d.unit.seq, d.dropped_before), (6, 5));
        assert_eq!(q.total_drops(), 5);
    }

    #[test]
    fn overflow_on_keyframe_keeps_it() {
        let mut q = ConsumerQueue::new(2);
        q.push(test_unit(1, true));
        q.push(test_unit(2, false));
        assert_eq!(q.push(test_unit(3, true)), 2);
        assert_eq!(q.pop().map(|d| d.unit.seq), Some(3));
    }
}
