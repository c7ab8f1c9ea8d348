//! Events in SQLite under `data_dir` (WAL, versioned migrations).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Why the event store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("event database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A blocking task could not run.
    #[error("event database task failed: {0}")]
    Task(String),
}

/// Review state of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not reviewed yet.
    New,
    /// A reviewer confirmed the violation; the kitchen must rectify it.
    Confirmed,
    /// The kitchen says it rectified the violation; awaiting a re-check.
    Rectified,
    /// A reviewer dismissed it (false alarm).
    Dismissed,
    /// Rectification checked; nothing more to do.
    Closed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Confirmed => "confirmed",
            Status::Rectified => "rectified",
            Status::Dismissed => "dismissed",
            Status::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "confirmed" => Status::Confirmed,
            "rectified" => Status::Rectified,
            "dismissed" => Status::Dismissed,
            "closed" => Status::Closed,
            _ => Status::New,
        }
    }
}

/// An event as stored and served.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Id.
    pub id: i64,
    /// Camera id.
    pub camera: String,
    /// Rule id.
    pub rule: String,
    /// Kind of violation (the rule's kind of check, e.g. `presence`).
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Track of the offending subject.
    pub track: i64,
    /// When the condition began, UNIX ms.
    pub start_ms: i64,
    /// When it ended, UNIX ms (None while ongoing).
    pub end_ms: Option<i64>,
    /// Highest detection confidence seen.
    pub peak_confidence: f64,
    /// Review state.
    pub status: Status,
    /// Reviewer's note.
    pub note: String,
    /// Whether a snapshot is stored.
    pub has_snapshot: bool,
    /// `pending`, `ready` or `failed`.
    pub clip_state: String,
    /// Clip length in seconds once ready.
    pub clip_duration_s: Option<f64>,
}

/// A new event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Camera id.
    pub camera: String,
    /// Rule id.
    pub rule: String,
    /// Kind.
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// Track id.
    pub track: i64,
    /// Start, UNIX ms.
    pub start_ms: i64,
    /// Confidence.
    pub confidence: f64,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only this camera.
    pub camera: Option<String>,
    /// Only this kind or rule id.
    pub kind: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only this severity.
    pub severity: Option<String>,
    /// Only this site's cameras; the API turns it into `cameras`.
    pub site: Option<String>,
    /// Started at or after, UNIX ms.
    pub from: Option<i64>,
    /// Started before, UNIX ms.
    pub to: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<u32>,
    /// Only events with an id below this (paging newest first).
    pub before_id: Option<i64>,
    /// Only these cameras (the caller's scope); set by the API, not by the query.
    #[serde(skip)]
    pub cameras: Option<Vec<String>>,
}

/// One step of an event's review workflow.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Who made it (`user:NAME`, `token:NAME`).
    pub by: String,
    /// When, UNIX ms.
    pub at_ms: i64,
    /// What they wrote.
    pub note: String,
}

/// Stored files of an event, for serving and retention.
#[derive(Debug, Clone)]
pub struct EventFiles {
    /// Snapshot path, relative to the data dir.
    pub snapshot: Option<String>,
    /// Clip path, relative to the data dir, when ready.
    pub clip: Option<String>,
}

/// Where a path stored for an event lives under `data_dir`; `None` unless it is relative
/// and inside `snapshots/` or `clips/`, so a damaged or edited database can never make
/// the gateway serve or delete a file elsewhere.
pub fn stored_file(data_dir: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let rel = std::path::Path::new(rel);
    let mut parts = rel.components();
    let first = parts.next()?;
    let top_ok = matches!(first, Component::Normal(c) if c == "snapshots" || c == "clips");
    (top_ok && parts.all(|c| matches!(c, Component::Normal(_)))).then(|| data_dir.join(rel))
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    track INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,
    peak_confidence REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    note TEXT NOT NULL DEFAULT '',
    snapshot TEXT,
    clip TEXT,
    clip_state TEXT NOT NULL DEFAULT 'pending',
    clip_duration_s REAL,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_start ON events(start_ms);
CREATE INDEX events_camera ON events(camera, start_ms);
"#,
    r#"
CREATE TABLE event_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    by TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_transitions_event ON event_transitions(event_id, id);
"#,
    // The event queue pages one camera (or a site's few) newest first.
    r#"
CREATE INDEX events_camera_id ON events(camera, id);
"#,
];

/// The event database.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const COLUMNS: &str = "id, camera, rule, kind, severity, track, start_ms, end_ms, peak_confidence, status, note, \
                       snapshot IS NOT NULL, clip_state, clip_duration_s";

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        camera: r.get(1)?,
        rule: r.get(2)?,
        kind: r.get(3)?,
        severity: r.get(4)?,
        track: r.get(5)?,
        start_ms: r.get(6)?,
        end_ms: r.get(7)?,
        peak_confidence: r.get(8)?,
        status: Status::parse(&r.get::<_, String>(9)?),
        note: r.get(10)?,
        has_snapshot: r.get(11)?,
        clip_state: r.get(12)?,
        clip_duration_s: r.get(13)?,
    })
}

impl Store {
    /// Opens (creating and migrating) `events.db` in `data_dir`. Clips that were being
    /// written when the gateway last stopped are marked failed: their files never made
    /// it past the temporary name; violations left open are closed.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("events.db");
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let conn = crate::sqlite::open(&path, MIGRATIONS).map_err(err)?;
        conn.execute("UPDATE events SET clip_state = 'failed' WHERE clip_state = 'pending'", []).map_err(err)?;
        // Violations still open when the gateway stopped will never see their end; without
        // one, age retention would never remove them. Their end is unknown: close them
        // at their start.
        conn.execute("UPDATE events SET end_ms = start_ms WHERE end_ms IS NULL", []).map_err(err)?;
        // Fresh planner statistics (cheap: only tables that changed much), so filtered
        // pages pick the index that avoids sorting.
        conn.execute_batch("PRAGMA optimize=0x10002").map_err(err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// Runs `f` on the connection in a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Adds an event; returns its id.
    pub async fn insert(&self, e: NewEvent) -> Result<i64, StoreError> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO events (camera, rule, kind, severity, track, start_ms, peak_confidence) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![e.camera, e.rule, e.kind, e.severity, e.track, e.start_ms, e.confidence],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// Raises the peak confidence.
    pub async fn update_peak(&self, id: i64, confidence: f64) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "UPDATE events SET peak_confidence = max(peak_confidence, ?2) WHERE id = ?1",
                params![id, confidence],
            )
            .map(|_| ())
        })
        .await
    }

    /// Records the end of the violation.
    pub async fn end(&self, id: i64, end_ms: i64, confidence: f64) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "UPDATE events SET end_ms = ?2, peak_confidence = max(peak_confidence, ?3) WHERE id = ?1",
                params![id, end_ms, confidence],
            )
            .map(|_| ())
        })
        .await
    }

    /// Records the snapshot file (relative path) and its size.
    pub async fn set_snapshot(&self, id: i64, rel: String, bytes: u64) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "UPDATE events SET snapshot = ?2, bytes = bytes + ?3 WHERE id = ?1",
                params![id, rel, bytes as i64],
            )
            .map(|_| ())
        })
        .await
    }

    /// Records the finished clip (relative path), or a failure when `rel` is None.
    pub async fn set_clip(&self, id: i64, rel: Option<String>, bytes: u64, duration_s: f64) -> Result<(), StoreError> {
        self.with(move |c| {
            match rel {
                Some(rel) => c.execute(
                    "UPDATE events SET clip = ?2, clip_state = 'ready', clip_duration_s = ?4, bytes = bytes + ?3 WHERE id = ?1",
                    params![id, rel, bytes as i64, duration_s],
                ),
                None => c.execute("UPDATE events SET clip_state = 'failed' WHERE id = ?1", params![id]),
            }
            .map(|_| ())
        })
        .await
    }

    /// One event.
    pub async fn get(&self, id: i64) -> Result<Option<Event>, StoreError> {
        self.with(move |c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"), params![id], row_to_event).optional()
        })
        .await
    }

    /// The stored files of an event.
    pub async fn files(&self, id: i64) -> Result<Option<EventFiles>, StoreError> {
        self.with(move |c| {
            c.query_row(
                "SELECT snapshot, CASE WHEN clip_state = 'ready' THEN clip END FROM events WHERE id = ?1",
                params![id],
                |r| Ok(EventFiles { snapshot: r.get(0)?, clip: r.get(1)? }),
            )
            .optional()
        })
        .await
    }

    /// Events matching `filter`, newest first.
    pub async fn list(&self, filter: Filter) -> Result<Vec<Event>, StoreError> {
        self.with(move |c| {
            let mut sql = format!("SELECT {COLUMNS} FROM events WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(cam) = filter.camera {
                args.push(cam.into());
                sql.push_str(&format!(" AND camera = ?{}", args.len()));
            }
            if let Some(cams) = filter.cameras {
                let mut marks = Vec::new();
                for cam in cams {
                    args.push(cam.into());
                    marks.push(format!("?{}", args.len()));
                }
                sql.push_str(&format!(" AND camera IN ({})", marks.join(",")));
            }
            if let Some(kind) = filter.kind {
                args.push(kind.clone().into());
                args.push(kind.into());
                sql.push_str(&format!(" AND (kind = ?{} OR rule = ?{})", args.len() - 1, args.len()));
            }
            if let Some(status) = filter.status {
                args.push(status.as_str().to_owned().into());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(severity) = filter.severity {
                args.push(severity.into());
                sql.push_str(&format!(" AND severity = ?{}", args.len()));
            }
            if let Some(from) = filter.from {
                args.push(from.into());
                sql.push_str(&format!(" AND start_ms >= ?{}", args.len()));
            }
            if let Some(to) = filter.to {
                args.push(to.into());
                sql.push_str(&format!(" AND start_ms < ?{}", args.len()));
            }
            if let Some(before) = filter.before_id {
                args.push(before.into());
                sql.push_str(&format!(" AND id < ?{}", args.len()));
            }
            let limit = filter.limit.unwrap_or(50).clamp(1, 500);
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_event)?;
            rows.collect()
        })
        .await
    }

    /// What the statistics need of every event started in `[from_ms, to_ms)`, of
    /// `cameras` when given.
    pub async fn stat_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        cameras: Option<Vec<String>>,
    ) -> Result<Vec<super::stats::StatRow>, StoreError> {
        self.with(move |c| {
            let mut sql = String::from(
                "SELECT camera, kind, start_ms, status,                  (SELECT min(at_ms) FROM event_transitions t WHERE t.event_id = e.id)                  FROM events e WHERE start_ms >= ?1 AND start_ms < ?2",
            );
            let mut args: Vec<rusqlite::types::Value> = vec![from_ms.into(), to_ms.into()];
            if let Some(cams) = cameras {
                let mut marks = Vec::new();
                for cam in cams {
                    args.push(cam.into());
                    marks.push(format!("?{}", args.len()));
                }
                sql.push_str(&format!(" AND camera IN ({})", marks.join(",")));
            }
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                Ok(super::stats::StatRow {
                    camera: r.get(0)?,
                    kind: r.get(1)?,
                    start_ms: r.get(2)?,
                    status: Status::parse(&r.get::<_, String>(3)?),
                    reviewed_ms: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// How many events are stored, and when the oldest started (UNIX ms).
    pub async fn span(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.with(|c| {
            c.query_row("SELECT count(*), min(start_ms) FROM events", [], |r| {
                Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?))
            })
        })
        .await
    }

    /// Sets status and/or note; returns the updated event.
    pub async fn patch(
        &self,
        id: i64,
        status: Option<Status>,
        note: Option<String>,
    ) -> Result<Option<Event>, StoreError> {
        self.with(move |c| {
            if let Some(s) = status {
                c.execute("UPDATE events SET status = ?2 WHERE id = ?1", params![id, s.as_str()])?;
            }
            if let Some(n) = note {
                c.execute("UPDATE events SET note = ?2 WHERE id = ?1", params![id, n])?;
            }
            c.query_row(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"), params![id], row_to_event).optional()
        })
        .await
    }

    /// Moves an event from `from` to `to` and records who did it, unless its status is no
    /// longer `from` (someone else moved it first): then `Ok(None)`.
    pub async fn transition(&self, id: i64, t: Transition) -> Result<Option<Event>, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE events SET status = ?2, note = CASE WHEN ?3 = '' THEN note ELSE ?3 END \
                 WHERE id = ?1 AND status = ?4",
                params![id, t.to.as_str(), t.note, t.from.as_str()],
            )?;
            if n == 0 {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO event_transitions (event_id, from_status, to_status, by, at_ms, note) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, t.from.as_str(), t.to.as_str(), t.by, t.at_ms, t.note],
            )?;
            let e = tx.query_row(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"), params![id], row_to_event)?;
            tx.commit()?;
            Ok(Some(e))
        })
        .await
    }

    /// An event's workflow steps, oldest first.
    pub async fn history(&self, id: i64) -> Result<Vec<Transition>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT from_status, to_status, by, at_ms, note FROM event_transitions WHERE event_id = ?1 ORDER BY id",
            )?;
            st.query_map(params![id], |r| {
                Ok(Transition {
                    from: Status::parse(&r.get::<_, String>(0)?),
                    to: Status::parse(&r.get::<_, String>(1)?),
                    by: r.get(2)?,
                    at_ms: r.get(3)?,
                    note: r.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }

    /// Total bytes of stored snapshots and clips.
    pub async fn total_bytes(&self) -> Result<u64, StoreError> {
        self.with(|c| c.query_row("SELECT COALESCE(SUM(bytes), 0) FROM events", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|b| b.max(0) as u64)
    }

    /// The oldest events whose clip is settled (up to `n`), for retention: id, files and
    /// bytes. Events still going on are included only when `include_ongoing`.
    pub async fn oldest(
        &self,
        n: u32,
        older_than_ms: Option<i64>,
        include_ongoing: bool,
    ) -> Result<Vec<(i64, EventFiles, u64)>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, snapshot, clip, bytes FROM events \
                 WHERE clip_state != 'pending' AND (?1 IS NULL OR start_ms < ?1) AND (?3 OR end_ms IS NOT NULL) \
                 ORDER BY id ASC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![older_than_ms, n, include_ongoing], |r| {
                Ok((r.get(0)?, EventFiles { snapshot: r.get(1)?, clip: r.get(2)? }, r.get::<_, i64>(3)?.max(0) as u64))
            })?;
            rows.collect()
        })
        .await
    }

    /// Deletes an event row.
    pub async fn delete(&self, id: i64) -> Result<(), StoreError> {
        self.with(move |c| c.execute("DELETE FROM events WHERE id = ?1", params![id]).map(|_| ())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_files_stay_inside_their_directories() {
        let dir = std::path::Path::new("/var/lib/mingchu");
        assert_eq!(stored_file(dir, "clips/cam1/7.mp4"), Some(dir.join("clips/cam1/7.mp4")));
        assert_eq!(stored_file(dir, "snapshots/cam1/7.jpg"), Some(dir.join("snapshots/cam1/7.jpg")));
        for bad in ["/etc/passwd", "../x", "clips/../../x", "mingchu.db", "", "clips/./x/../y", "config/x"] {
            assert_eq!(stored_file(dir, bad), None, "{bad}");
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mingchu-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    fn new_event(camera: &str, start_ms: i64) -> NewEvent {
        NewEvent {
            camera: camera.into(),
            rule: "phone_use".into(),
            kind: "proximity".into(),
            severity: "warning".into(),
            track: 7,
            start_ms,
            confidence: 0.5,
        }
    }

    #[tokio::test]
    async fn insert_update_list_and_patch() {
        let dir = tmp("crud");
        let store = Store::open(&dir).expect("open");
        let a = store.insert(new_event("cam1", 1000)).await.expect("insert");
        let b = store.insert(new_event("cam2", 2000)).await.expect("insert");
        store.update_peak(a, 0.9).await.expect("peak");
        store.end(a, 5000, 0.7).await.expect("end");
        let e = store.get(a).await.expect("get").expect("exists");
        assert_eq!((e.end_ms, e.peak_confidence), (Some(5000), 0.9));
        let only2 = store.list(Filter { camera: Some("cam2".into()), ..Default::default() }).await.expect("list");
        assert_eq!(only2.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
        let all = store.list(Filter::default()).await.expect("list");
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b, a], "newest first");
        let p = store.patch(a, Some(Status::Confirmed), Some("戴口罩".into())).await.expect("patch").expect("exists");
        assert_eq!((p.status, p.note.as_str()), (Status::Confirmed, "戴口罩"));
        let confirmed =
            store.list(Filter { status: Some(Status::Confirmed), ..Default::default() }).await.expect("list");
        assert_eq!(confirmed.len(), 1);
    }

    #[tokio::test]
    async fn pending_clips_fail_on_reopen() {
        let dir = tmp("reopen");
        let id = {
            let store = Store::open(&dir).expect("open");
            store.insert(new_event("cam1", 1000)).await.expect("insert")
        };
        let store = Store::open(&dir).expect("reopen");
        assert_eq!(store.get(id).await.expect("get").expect("exists").clip_state, "failed");
        assert!(store.files(id).await.expect("files").expect("exists").clip.is_none());
    }
}
