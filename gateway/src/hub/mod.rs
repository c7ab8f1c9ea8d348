//! Per-camera fan-out of encoded access units to live viewers and other consumers.
//!
//! The producer (ingest) never waits: each consumer has its own bounded queue, and a
//! consumer that falls behind skips to the next keyframe (counted as drops).

mod gop;
mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::metrics::CameraMetrics;
pub use gop::GopCache;
pub use queue::{ConsumerQueue, Delivery};

/// One encoded H.264 picture in Annex-B byte-stream form (start codes, SPS/PPS before IDR).
#[derive(Debug)]
pub struct AccessUnit {
    /// Position in this camera's stream since the gateway started.
    pub seq: u64,
    /// Presentation time on the gateway's media timeline (monotonic across reconnects).
    pub pts: Duration,
    /// Whether the unit is an IDR picture a decoder can start from.
    pub keyframe: bool,
    /// The NAL units, each behind a start code; shared, so every viewer sends the same
    /// bytes without a copy.
    pub data: Arc<[u8]>,
    /// When the unit left the ingest pipeline.
    pub arrival: Instant,
    /// The same moment on the wall clock: stamped once, at ingest, and never read again
    /// from the clock for this unit.
    pub wall: SystemTime,
}

/// Limits of a camera's hub.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Most access units kept in the GOP cache.
    pub gop_max_units: usize,
    /// Most bytes kept in the GOP cache.
    pub gop_max_bytes: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        // 10 s at 30 fps, or 16 MiB: a GOP longer than that is not worth caching.
        Self { gop_max_units: 300, gop_max_bytes: 16 << 20 }
    }
}

/// The fan-out point of one camera.
pub struct Hub {
    inner: Mutex<Inner>,
    metrics: CameraMetrics,
    closed: AtomicBool,
}

struct Inner {
    gop: GopCache,
    slots: Vec<Arc<Slot>>,
    next_seq: u64,
}

struct Slot {
    /// How far the consumer may lag beyond a cached GOP.
    base_capacity: usize,
    queue: Mutex<ConsumerQueue>,
    notify: Notify,
    drops: prometheus_client::metrics::counter::Counter,
}

/// A consumer's end of the hub; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    slot: Arc<Slot>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; carry on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// A hub for one camera.
    pub fn new(limits: HubLimits, metrics: CameraMetrics) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                gop: GopCache::new(limits.gop_max_units, limits.gop_max_bytes),
                slots: Vec::new(),
                next_seq: 0,
            }),
            metrics,
            closed: AtomicBool::new(false),
        })
    }

    /// Hands an access unit to every consumer without waiting on any of them.
    pub fn publish(&self, pts: Duration, keyframe: bool, data: Arc<[u8]>, arrival: Instant, wall: SystemTime) {
        let mut inner = lock(&self.inner);
        let unit = Arc::new(AccessUnit { seq: inner.next_seq, pts, keyframe, data, arrival, wall });
        inner.next_seq += 1;
        inner.gop.push(unit.clone());
        for slot in &inner.slots {
            let dropped = lock(&slot.queue).push(unit.clone());
            if dropped > 0 {
                slot.drops.inc_by(dropped);
            }
            slot.notify.notify_one();
        }
    }

    /// Forgets the cached GOP and makes every consumer wait for a keyframe: the stream
    /// restarted, so what follows cannot be decoded against what came before.
    pub fn reset(&self) {
        let mut inner = lock(&self.inner);
        inner.gop.clear();
        for slot in &inner.slots {
            let mut q = lock(&slot.queue);
            *q = ConsumerQueue::new(q.capacity());
        }
    }

    /// A new consumer, starting with the cached GOP when there is one; `capacity` is how
    /// far it may fall behind beyond that GOP.
    pub fn subscribe(self: &Arc<Self>, consumer: &str, capacity: usize) -> Subscription {
        let mut inner = lock(&self.inner);
        let mut queue = ConsumerQueue::new(capacity.max(1) + inner.gop.units().len());
        for unit in inner.gop.units() {
            queue.push(unit.clone());
        }
        let slot = Arc::new(Slot {
            base_capacity: capacity.max(1),
            queue: Mutex::new(queue),
            notify: Notify::new(),
            drops: self.metrics.drops(consumer),
        });
        slot.notify.notify_one();
        inner.slots.push(slot.clone());
        Subscription { hub: self.clone(), slot }
    }

    /// The keyframe that starts the cached GOP: the newest picture a decoder can start
    /// from.
    pub fn keyframe(&self) -> Option<Arc<AccessUnit>> {
        lock(&self.inner).gop.units().first().filter(|u| u.keyframe).cloned()
    }

    /// Number of consumers attached.
    pub fn consumers(&self) -> usize {
        lock(&self.inner).slots.len()
    }

    /// Bytes in the GOP cache.
    pub fn cached_bytes(&self) -> usize {
        lock(&self.inner).gop.bytes()
    }

    /// Ends every subscription (gateway shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for slot in &lock(&self.inner).slots {
            slot.notify.notify_one();
        }
    }

    /// The camera's metric handles.
    pub fn metrics(&self) -> &CameraMetrics {
        &self.metrics
    }
}

impl Subscription {
    /// The next access unit; `None` once the hub is closed.
    pub async fn recv(&self) -> Option<Delivery> {
        loop {
            if let Some(d) = self.try_recv() {
                return Some(d);
            }
            if self.hub.closed.load(Ordering::SeqCst) {
                return None;
            }
            self.slot.notify.notified().await;
        }
    }

    /// The next access unit if one is waiting.
    pub fn try_recv(&self) -> Option<Delivery> {
        lock(&self.slot.queue).pop()
    }

    /// Replays the cached GOP into this consumer's queue, replacing what it held: the
    /// answer to a viewer's keyframe request, without asking the camera.
    pub fn restart_from_gop(&self) -> bool {
        let inner = lock(&self.hub.inner);
        let units = inner.gop.units();
        if units.is_empty() {
            return false;
        }
        let mut q = lock(&self.slot.queue);
        // The GOP may have grown since subscribing: make room for all of it.
        *q = ConsumerQueue::new(self.slot.base_capacity + units.len());
        for unit in units {
            q.push(unit.clone());
        }
        self.slot.notify.notify_one();
        true
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = lock(&self.hub.inner);
        inner.slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

#[cfg(test)]
pub(crate) fn test_unit(seq: u64, keyframe: bool) -> Arc<AccessUnit> {
    Arc::new(AccessUnit {
        seq,
        pts: Duration::from_millis(seq * 40),
        keyframe,
        data: Arc::from(vec![0u8; 100]),
        arrival: Instant::now(),
        wall: SystemTime::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn hub() -> Arc<Hub> {
        Hub::new(HubLimits::default(), Metrics::new().camera("cam1"))
    }

    fn publish(hub: &Hub, n: u64, keyframe: bool) {
        hub.publish(
            Duration::from_millis(n * 40),
            keyframe,
            Arc::from(vec![1u8; 10]),
            Instant::now(),
            SystemTime::now(),
        );
    }

    #[tokio::test]
    async fn new_consumer_starts_from_cached_keyframe() {
        let hub = hub();
        publish(&hub, 0, true);
        publish(&hub, 1, false);
        publish(&hub, 2, false);
        let sub = hub.subscribe("viewer", 64);
        let first = sub.recv().await.expect("cached GOP");
        assert!(first.unit.keyframe);
        assert_eq!(first.unit.seq, 0);
        assert_eq!(sub.try_recv().map(|d| d.unit.seq), Some(1));
        assert_eq!(sub.try_recv().map(|d| d.unit.seq), Some(2));
        assert!(sub.try_recv().is_none());
    }

    #[tokio::test]
    async fn slow_consumer_does_not_hold_back_others() {
        let hub = hub();
        let slow = hub.subscribe("viewer", 4);
        let fast = hub.subscribe("viewer", 4);
        for i in 0..14 {
            publish(&hub, i, i % 10 == 0);
            // The fast consumer keeps up, the slow one never reads.
            let d = fast.recv().await.expect("delivery");
            assert_eq!(d.unit.seq, i);
        }
        // The slow one resynced at the keyframe at 10 and holds at most its capacity.
        let d = slow.try_recv().expect("resynced");
        assert!(d.unit.keyframe);
        assert_eq!(d.unit.seq, 10);
        assert!(hub.metrics().drops("viewer").get() > 0);
    }

    #[tokio::test]
    async fn unsubscribe_on_drop_and_close_ends_recv() {
        let hub = hub();
        let a = hub.subscribe("viewer", 4);
        {
            let _b = hub.subscribe("viewer", 4);
            assert_eq!(hub.consumers(), 2);
        }
        assert_eq!(hub.consumers(), 1);
        hub.close();
        assert!(a.recv().await.is_none());
    }

    #[tokio::test]
    async fn keyframe_request_replays_gop() {
        let hub = hub();
        publish(&hub, 0, true);
        publish(&hub, 1, false);
        let sub = hub.subscribe("viewer", 64);
        while sub.try_recv().is_some() {}
        assert!(sub.restart_from_gop());
        assert_eq!(sub.try_recv().map(|d| d.unit.seq), Some(0));
    }

    #[tokio::test]
    async fn reset_waits_for_keyframe() {
        let hub = hub();
        publish(&hub, 0, true);
        let sub = hub.subscribe("viewer", 64);
        while sub.try_recv().is_some() {}
        hub.reset();
        publish(&hub, 1, false);
        assert!(sub.try_recv().is_none());
        publish(&hub, 2, true);
        assert_eq!(sub.try_recv().map(|d| d.unit.seq), Some(2));
    }
}
