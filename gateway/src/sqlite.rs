//! Opening the gateway's SQLite databases: WAL, a busy timeout, foreign keys, and the
//! schema migrated forward — or refused when a newer gateway wrote it.

use std::path::Path;

use rusqlite::Connection;

/// Opens (creating) the database at `path` and applies the `migrations` it lacks, each
/// in its own transaction with the schema version (`user_version`) it reaches.
pub fn open(path: &Path, migrations: &[&str]) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > migrations.len() as i64 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!("schema version {version} is newer than this gateway knows ({})", migrations.len())),
        ));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(conn)
}
