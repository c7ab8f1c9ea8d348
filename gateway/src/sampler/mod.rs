//! Frame sampler: a hub consumer per camera that decodes only what detection needs.

mod decoder;
mod plan;
pub mod still;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::Hub;
pub use decoder::{Decoder, Picture, Pixels};
pub use plan::{Action, DecodeMode, SamplePlan};

/// Access units allowed to wait for the detection decoder before input is dropped.
const MAX_BACKLOG: u64 = 25;

/// Hands a picture to the detector; returns true when it replaced one the detector had
/// not taken yet (the detector is not keeping up with this camera).
pub type Deliver = Arc<dyn Fn(Picture) -> bool + Send + Sync>;

/// Runs the sampler of one camera until `cancel`, handing pictures to `deliver`.
pub async fn run(
    camera: String,
    hub: Arc<Hub>,
    fps: f64,
    mode: DecodeMode,
    deliver: Deliver,
    cancel: CancellationToken,
) {
    let subscription = hub.subscribe("sampler", 50);
    let mut plan = SamplePlan::new(fps, mode);
    let metrics = hub.metrics().clone();
    metrics.sample_interval.set(plan.interval().as_secs_f64());
    let mut decoder: Option<Decoder> = None;
    // Counted on the decoder's thread, read here.
    let replaced = Arc::new(AtomicU32::new(0));
    loop {
        let delivery = tokio::select! {
            _ = cancel.cancelled() => break,
            d = subscription.recv() => match d { Some(d) => d, None => break },
        };
        let unit = &delivery.unit;
        plan.note_overload(replaced.swap(0, Ordering::Relaxed));
        let action = plan.offer(unit.pts, unit.keyframe, delivery.dropped_before > 0);
        if action == Action::Skip {
            continue;
        }
        if decoder.is_none() {
            let (deliver, replaced) = (deliver.clone(), replaced.clone());
            let on_picture = move |p| {
                if deliver(p) {
                    replaced.fetch_add(1, Ordering::Relaxed);
                }
            };
            match Decoder::start(on_picture) {
                Ok(d) => decoder = Some(d),
                Err(e) => {
                    warn!(%camera, error = %e, "detection decoder unavailable; retrying in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            }
        }
        let Some(dec) = decoder.as_ref() else { continue };
        let backlog = dec.backlog();
        metrics.decoder_backlog.set(backlog as i64);
        if backlog > MAX_BACKLOG {
            // The decoder is behind real time (machine saturated): drop input rather than
            // queue it, resume at the next keyframe, and sample less so there is less
            // to decode.
            plan.note_overload(1);
            plan.resync();
            continue;
        }
        let fed = dec.push(unit.data.clone(), unit.pts, unit.arrival, unit.wall, action == Action::DecodeAndKeep);
        metrics.detect_decoded.inc();
        if action == Action::DecodeAndKeep {
            metrics.sample_interval.set(plan.interval().as_secs_f64());
        }
        if !fed || dec.error().is_some() {
            // A decoder that choked on garbage is rebuilt; the next keyframe restarts it.
            info!(%camera, "restarting the detection decoder");
            if let Some(d) = decoder.take() {
                let _ = tokio::task::spawn_blocking(move || d.stop()).await;
            }
            plan.resync();
        }
    }
    if let Some(d) = decoder.take() {
        let _ = tokio::task::spawn_blocking(move || d.stop()).await;
    }
}
