//! Retention: events older than the limit go, and the oldest go first when the stored
//! bytes exceed the budget or the disk runs low, so recording never stops on a full disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Store;

/// Limits retention enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events older than this are deleted.
    pub max_age: Duration,
    /// Most bytes of snapshots and clips.
    pub max_bytes: u64,
    /// Free space to keep on the data disk.
    pub min_free_bytes: u64,
}

/// Free bytes on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// One retention pass at wall time `now`; returns how many events were deleted.
pub async fn enforce(
    store: &Store,
    data_dir: &Path,
    limits: Limits,
    now: SystemTime,
) -> Result<usize, super::StoreError> {
    let mut deleted = 0;
    let cutoff = crate::clock::unix_ms(now) - limits.max_age.as_millis() as i64;
    loop {
        let batch = store.oldest(100, Some(cutoff), false).await?;
        if batch.is_empty() {
            break;
        }
        for (id, files, _) in batch {
            remove(store, data_dir, id, files).await?;
            deleted += 1;
        }
    }
    let mut total = store.total_bytes().await?;
    'budget: loop {
        let low_disk = || free_bytes(data_dir).is_some_and(|f| f < limits.min_free_bytes);
        if total <= limits.max_bytes && !low_disk() {
            break;
        }
        let batch = store.oldest(10, None, low_disk()).await?;
        if batch.is_empty() {
            if low_disk() {
                warn!(dir = %data_dir.display(), "the data disk is low on space and no event is left to delete");
            }
            break;
        }
        for (id, files, bytes) in batch {
            remove(store, data_dir, id, files).await?;
            deleted += 1;
            total = total.saturating_sub(bytes);
            if total <= limits.max_bytes && !low_disk() {
                break 'budget;
            }
        }
    }
    Ok(deleted)
}

async fn remove(store: &Store, data_dir: &Path, id: i64, files: super::EventFiles) -> Result<(), super::StoreError> {
    let paths: Vec<PathBuf> = [files.snapshot, files.clip]
        .into_iter()
        .flatten()
        .filter_map(|rel| {
            let path = super::stored_file(data_dir, &rel);
            if path.is_none() {
                warn!(event = id, path = %rel, "stored path is outside the data directory; not deleted");
            }
            path
        })
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        for path in paths {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(path = %path.display(), error = %e, "cannot delete an expired file");
            }
        }
    })
    .await;
    store.delete(id).await
}

/// Removes `*.part` files a crash left under `snapshots/` and `clips/`: nothing refers to
/// them, and they were never served.
pub fn remove_partial_files(data_dir: &Path) -> usize {
    let mut removed = 0;
    for top in ["snapshots", "clips"] {
        let Ok(cameras) = std::fs::read_dir(data_dir.join(top)) else { continue };
        for dir in cameras.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else { continue };
            for f in files.flatten() {
                let plain_file = f.file_type().is_ok_and(|t| t.is_file());
                if plain_file
                    && f.file_name().to_string_lossy().ends_with(".part")
                    && std::fs::remove_file(f.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// What the retention task works with.
pub struct Retention {
    /// The event database.
    pub store: Store,
    /// Where snapshots and clips live.
    pub data_dir: PathBuf,
    /// What to enforce.
    pub limits: Limits,
    /// How often a pass runs without a kick.
    pub every: Duration,
    /// Notified when a clip was written, to run a pass at once.
    pub kick: std::sync::Arc<tokio::sync::Notify>,
    /// Counts events removed.
    pub removed: prometheus_client::metrics::counter::Counter,
    /// Wall time for the age cut-off.
    pub clock: crate::clock::Clock,
}

/// Runs retention every `every`, and whenever `kick` is notified (a clip was written),
/// until `cancel`.
pub async fn run(r: Retention, cancel: CancellationToken) {
    let Retention { store, data_dir, limits, every, kick, removed, clock } = r;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            _ = kick.notified() => {}
        }
        match enforce(&store, &data_dir, limits, clock.realtime()).await {
            Ok(0) => {}
            Ok(n) => {
                removed.inc_by(n as u64);
                info!(deleted = n, "retention removed old events");
            }
            Err(e) => warn!(error = %e, "retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NewEvent;

    #[tokio::test]
    async fn oldest_go_first_when_over_budget_and_too_old_go_anyway() {
        let dir = std::env::temp_dir().join(format!("mingchu-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("snapshots")).expect("dir");
        let store = Store::open(&dir).expect("open");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_ms = crate::clock::unix_ms(now);
        let mut ids = Vec::new();
        for (i, age_days) in [40i64, 3, 2, 1].iter().enumerate() {
            let id = store
                .insert(NewEvent {
                    camera: "cam1".into(),
                    rule: "r".into(),
                    kind: "presence".into(),
                    severity: "warning".into(),
                    track: i as i64,
                    start_ms: now_ms - age_days * 86_400_000,
                    confidence: 0.5,
                })
                .await
                .expect("insert");
            let rel = format!("snapshots/{id}.jpg");
            std::fs::write(dir.join(&rel), vec![0u8; 1000]).expect("write");
            store.set_snapshot(id, rel, 1000).await.expect("snapshot");
            store.set_clip(id, None, 0, 0.0).await.expect("clip state");
            store.end(id, now_ms - age_days * 86_400_000 + 1000, 0.5).await.expect("end");
            ids.push(id);
        }
        let limits = Limits { max_age: Duration::from_secs(30 * 86_400), max_bytes: 2000, min_free_bytes: 0 };
        let deleted = enforce(&store, &dir, limits, now).await.expect("enforce");
        assert_eq!(deleted, 2, "the 40-day-old one by age, then the oldest over budget");
        assert!(store.get(ids[0]).await.expect("get").is_none());
        assert!(store.get(ids[1]).await.expect("get").is_none());
        assert!(store.get(ids[3]).await.expect("get").is_some());
        assert!(!dir.join(format!("snapshots/{}.jpg", ids[1])).exists(), "files go with the rows");
        assert!(free_bytes(&dir).is_some());
    }
}
