//! Waiting for a condition with a deadline: the one way the tests wait for something to
//! happen. A fixed sleep either wastes time on a fast machine or fails on a slow one.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::bail;

/// How often a condition is checked unless a test asks otherwise.
pub const EVERY: Duration = Duration::from_millis(50);

/// The last value a condition looked at, for the failure message.
#[derive(Clone, Debug, Default)]
pub struct Seen(Arc<Mutex<Option<String>>>);

impl Seen {
    /// Remembers `value` (by its `Display`) as the latest state seen.
    pub fn show(&self, value: &dyn Display) {
        self.store(value.to_string());
    }

    /// Remembers `value` (by its `Debug`) as the latest state seen.
    pub fn debug(&self, value: &dyn Debug) {
        self.store(format!("{value:?}"));
    }

    fn store(&self, text: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }

    fn last(&self) -> String {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_else(|| "nothing".into())
    }
}

/// Checks `check` every [`EVERY`] until it returns `Ok(Some(value))` and returns that
/// value; `Ok(None)` means "not yet". Fails when `check` fails, or when `timeout` passes,
/// naming `what`, the timeout and the last value `check` recorded in its [`Seen`].
///
/// The condition is always checked once more after the deadline, so a check that became
/// true while the machine was too busy to run the poller still counts.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut(Seen) -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    poll_every(what, timeout, EVERY, check).await
}

/// [`poll`] with its own checking interval, for conditions that are costly to check.
pub async fn poll_every<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut(Seen) -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let seen = Seen::default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_try = tokio::time::Instant::now() >= deadline;
        match check(seen.clone()).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) if last_try => bail!("{what}: not within {timeout:?}; last seen: {}", seen.last()),
            Ok(None) => {}
            Err(e) => return Err(e.context(format!("{what}: check failed (last seen: {})", seen.last()))),
        }
        tokio::time::sleep_until((tokio::time::Instant::now() + every).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_ready() {
        let mut n = 0;
        let got = poll("counting", Duration::from_secs(5), |_| {
            n += 1;
            let n = n;
            async move { Ok((n >= 3).then_some(n)) }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
    }

    #[tokio::test]
    async fn times_out_naming_what_and_the_last_value() {
        let err = poll("the answer", Duration::from_millis(120), |seen| async move {
            seen.show(&41);
            Ok(None::<()>)
        })
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("the answer") && err.contains("120ms") && err.contains("41"), "{err}");
    }

    #[tokio::test]
    async fn a_failing_check_stops_at_once() {
        let started = std::time::Instant::now();
        let err = poll("a broken check", Duration::from_secs(30), |_| async {
            Err::<Option<()>, _>(anyhow::anyhow!("boom"))
        })
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(err.contains("boom") && err.contains("a broken check"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
