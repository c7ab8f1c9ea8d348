//! One still picture as JPEG from an H.264 keyframe: a fresh view of a camera for drawing
//! zones, and the picture a connection test shows.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use super::Decoder;

/// Why no picture came out.
#[derive(Debug, thiserror::Error)]
pub enum StillError {
    /// The decoder could not start.
    #[error("{0}")]
    Decoder(#[from] super::decoder::DecoderError),
    /// The keyframe did not decode in time.
    #[error("the keyframe did not decode within {0:?}")]
    Timeout(Duration),
    /// JPEG encoding failed.
    #[error("{0}")]
    Encode(#[from] crate::events::SnapshotError),
}

/// A decoded still.
#[derive(Debug, Clone)]
pub struct Still {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The picture as JPEG.
    pub jpeg: Vec<u8>,
}

/// Decodes one IDR access unit (Annex-B, SPS/PPS in front) to JPEG. Blocking: run it
/// off the async threads.
pub fn decode_keyframe(data: std::sync::Arc<[u8]>, timeout: Duration) -> Result<Still, StillError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let decoder = Decoder::start(move |p| {
        let _ = tx.try_send(crate::events::render(&p.rgb, p.width, p.height, p.stride, &[]).map(|jpeg| Still {
            width: p.width,
            height: p.height,
            jpeg,
        }));
    })?;
    decoder.push(data, Duration::ZERO, Instant::now(), SystemTime::now(), true);
    let picture = rx.recv_timeout(timeout);
    decoder.stop();
    Ok(picture.map_err(|_| StillError::Timeout(timeout))??)
}
