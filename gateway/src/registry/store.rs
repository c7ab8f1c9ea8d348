//! `settings.db`: the sites, cameras and rules made in the dashboard, as JSON rows that
//! survive a restart. The config file's entries are never written here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

/// Why the settings database failed.
#[derive(Debug, thiserror::Error)]
#[error("settings database {path}: {source}")]
pub struct SettingsError {
    path: PathBuf,
    source: rusqlite::Error,
}

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sites (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE cameras (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_ms INTEGER NOT NULL);
-- A NULL body is a built-in rule that was removed.
CREATE TABLE rules (id TEXT PRIMARY KEY, body TEXT, updated_ms INTEGER NOT NULL);
"#];

/// Which table.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `sites`.
    Sites,
    /// `cameras`.
    Cameras,
    /// `rules`.
    Rules,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Sites => "sites",
            Kind::Cameras => "cameras",
            Kind::Rules => "rules",
        }
    }
}

/// The settings database.
#[derive(Clone)]
pub struct SettingsStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SettingsStore {
    /// Opens (creating and migrating) `settings.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, SettingsError> {
        let path = data_dir.join("settings.db");
        let conn =
            crate::sqlite::open(&path, MIGRATIONS).map_err(|source| SettingsError { path: path.clone(), source })?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path })
    }

    fn err(&self, source: rusqlite::Error) -> SettingsError {
        SettingsError { path: self.path.clone(), source }
    }

    /// Every row of `kind`, in id order: (id, body).
    pub fn load(&self, kind: Kind) -> Result<Vec<(String, Option<String>)>, SettingsError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st =
            c.prepare(&format!("SELECT id, body FROM {} ORDER BY id", kind.table())).map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Writes (inserting or replacing) one row; a `None` body marks it removed.
    pub fn put(&self, kind: Kind, id: &str, body: Option<&str>, now_ms: i64) -> Result<(), SettingsError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        c.execute(
            &format!("INSERT OR REPLACE INTO {} (id, body, updated_ms) VALUES (?1, ?2, ?3)", kind.table()),
            params![id, body, now_ms],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Deletes one row.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<(), SettingsError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        c.execute(&format!("DELETE FROM {} WHERE id = ?1", kind.table()), params![id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_reopen_and_removed_builtins_keep_a_null_body() {
        let dir = std::env::temp_dir().join(format!("mingchu-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = SettingsStore::open(&dir).unwrap();
        s.put(Kind::Cameras, "cam9", Some("{\"id\":\"cam9\"}"), 1).unwrap();
        s.put(Kind::Rules, "no_hat", None, 2).unwrap();
        s.put(Kind::Cameras, "cam9", Some("{\"id\":\"cam9\",\"x\":1}"), 3).unwrap();
        drop(s);
        let s = SettingsStore::open(&dir).unwrap();
        assert_eq!(s.load(Kind::Cameras).unwrap(), vec![("cam9".into(), Some("{\"id\":\"cam9\",\"x\":1}".into()))]);
        assert_eq!(s.load(Kind::Rules).unwrap(), vec![("no_hat".into(), None)]);
        s.delete(Kind::Cameras, "cam9").unwrap();
        assert!(s.load(Kind::Cameras).unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
