//! Accounts, login sessions and machine tokens in SQLite (`access.db` under `data_dir`).
//!
//! Secrets (session cookies, machine tokens) are 256 random bits, given out once and
//! stored only as SHA-256 hashes; passwords are stored as argon2id hashes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Role, Scope};

/// Why an access operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// SQLite reported an error.
    #[error("access database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// The name is taken.
    #[error("`{0}` already exists")]
    Duplicate(String),
    /// No such account or token.
    #[error("no {0}")]
    NotFound(String),
    /// A blocking task could not run.
    #[error("access database task failed: {0}")]
    Task(String),
}

/// An account as stored (without its password hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Sites seen.
    pub scope: Scope,
    /// Created, UNIX ms.
    pub created_ms: i64,
    /// Whether the account may log in.
    pub disabled: bool,
}

/// A machine token as stored (without its secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Token {
    /// Id.
    pub id: i64,
    /// Name, e.g. "district platform".
    pub name: String,
    /// Role it acts with.
    pub role: Role,
    /// Sites it sees.
    pub scope: Scope,
    /// Created, UNIX ms.
    pub created_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Last use, UNIX ms (to the minute).
    pub last_used_ms: Option<i64>,
    /// Revoked, UNIX ms.
    pub revoked_ms: Option<i64>,
}

/// A live login session, found by its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    /// The account.
    pub user: User,
    /// When it ends if it keeps being used, UNIX ms.
    pub expires_ms: i64,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Ends after this long without a request.
    pub idle_ms: i64,
    /// Ends this long after login.
    pub max_ms: i64,
}

/// Machine tokens start with this, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "mct_";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    password TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
    hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL UNIQUE,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    last_used_ms INTEGER,
    revoked_ms INTEGER
);
"#,
    r#"
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    site TEXT,
    detail TEXT NOT NULL DEFAULT '',
    ended_ms INTEGER
);
CREATE INDEX audit_at ON audit(at_ms);
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
    WHEN OLD.ended_ms IS NOT NULL OR NEW.at_ms != OLD.at_ms OR NEW.actor != OLD.actor
      OR NEW.action != OLD.action OR NEW.target != OLD.target OR NEW.detail != OLD.detail
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"#,
    r#"
CREATE TABLE shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL UNIQUE,
    site TEXT NOT NULL,
    cameras TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    schedule TEXT NOT NULL DEFAULT '',
    max_viewers INTEGER,
    revoked_ms INTEGER
);
"#,
];

/// A fresh secret: 256 random bits as 64 hex digits.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A login session's name in memory: the start of its stored hash, never the secret.
pub fn session_key(secret: &str) -> String {
    digest(secret)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn role_of(s: &str) -> rusqlite::Result<Role> {
    Role::parse(s)
        .ok_or_else(|| rusqlite::Error::InvalidColumnType(0, format!("role `{s}`"), rusqlite::types::Type::Text))
}

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_of(&r.get::<_, String>(2)?)?,
        scope: Scope::from_stored(&r.get::<_, String>(3)?),
        created_ms: r.get(4)?,
        disabled: r.get(5)?,
    })
}

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_of(&r.get::<_, String>(2)?)?,
        scope: Scope::from_stored(&r.get::<_, String>(3)?),
        created_ms: r.get(4)?,
        created_by: r.get(5)?,
        last_used_ms: r.get(6)?,
        revoked_ms: r.get(7)?,
    })
}

const USER_COLUMNS: &str = "id, name, role, scope, created_ms, disabled";
const TOKEN_COLUMNS: &str = "id, name, role, scope, created_ms, created_by, last_used_ms, revoked_ms";

/// The access database.
#[derive(Clone)]
pub struct AccessStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl AccessStore {
    /// Opens (creating and migrating) `access.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, AccessError> {
        let path = data_dir.join("access.db");
        let err = |source| AccessError::Sqlite { path: path.clone(), source };
        let conn = crate::sqlite::open(&path, MIGRATIONS).map_err(err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path })
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, AccessError> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|source| AccessError::Sqlite { path: self.path.clone(), source })
    }

    /// Runs `f` on this store in a blocking thread (SQLite and argon2 block).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AccessStore) -> Result<T, AccessError> + Send + 'static,
    ) -> Result<T, AccessError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this)).await.map_err(|e| AccessError::Task(e.to_string()))?
    }

    /// Adds an account with an already hashed password; returns it.
    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        scope: &Scope,
        hash: &str,
        now_ms: i64,
    ) -> Result<User, AccessError> {
        let r = self.with(|c| {
            c.execute(
                "INSERT INTO users (name, role, scope, password, created_ms, password_changed_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![name, role.as_str(), scope.to_stored(), hash, now_ms],
            )?;
            Ok(c.last_insert_rowid())
        });
        match r {
            Ok(id) => {
                Ok(User { id, name: name.into(), role, scope: scope.clone(), created_ms: now_ms, disabled: false })
            }
            Err(AccessError::Sqlite { source, .. }) if is_unique_violation(&source) => {
                Err(AccessError::Duplicate(name.into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Every account, by name.
    pub fn users(&self) -> Result<Vec<User>, AccessError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
            st.query_map([], row_to_user)?.collect()
        })
    }

    /// An account and its password hash, by login name (case-insensitive).
    pub fn user_with_hash(&self, name: &str) -> Result<Option<(User, String)>, AccessError> {
        self.with(|c| {
            c.query_row(&format!("SELECT {USER_COLUMNS}, password FROM users WHERE name = ?1"), params![name], |r| {
                Ok((row_to_user(r)?, r.get(6)?))
            })
            .optional()
        })
    }

    /// An account by id.
    pub fn user(&self, id: i64) -> Result<Option<User>, AccessError> {
        self.with(|c| {
            c.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), params![id], row_to_user).optional()
        })
    }

    /// Sets a new password hash and ends every session of the account.
    pub fn set_password(&self, id: i64, hash: &str, now_ms: i64) -> Result<(), AccessError> {
        let n = self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE users SET password = ?2, password_changed_ms = ?3 WHERE id = ?1",
                params![id, hash, now_ms],
            )?;
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
            tx.commit()?;
            Ok(n)
        })?;
        if n == 0 { Err(AccessError::NotFound(format!("account {id}"))) } else { Ok(()) }
    }

    /// Changes an account's role, scope or whether it may log in; disabling it ends its
    /// sessions.
    pub fn update_user(
        &self,
        id: i64,
        role: Option<Role>,
        scope: Option<&Scope>,
        disabled: Option<bool>,
    ) -> Result<User, AccessError> {
        self.with(|c| {
            let tx = c.transaction()?;
            if let Some(role) = role {
                tx.execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id, role.as_str()])?;
            }
            if let Some(scope) = scope {
                tx.execute("UPDATE users SET scope = ?2 WHERE id = ?1", params![id, scope.to_stored()])?;
            }
            if let Some(d) = disabled {
                tx.execute("UPDATE users SET disabled = ?2 WHERE id = ?1", params![id, d])?;
            }
            // A changed role or scope takes effect at once: sessions are made again at login.
            if role.is_some() || scope.is_some() || disabled == Some(true) {
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
            }
            tx.commit()
        })?;
        self.user(id)?.ok_or_else(|| AccessError::NotFound(format!("account {id}")))
    }

    /// Starts a session; returns the secret for the cookie.
    pub fn create_session(&self, user_id: i64, now_ms: i64, client: &str) -> Result<String, AccessError> {
        let secret = new_secret();
        let hash = digest(&secret);
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (hash, user_id, created_ms, last_ms, client) VALUES (?1, ?2, ?3, ?3, ?4)",
                params![hash, user_id, now_ms, client],
            )
        })?;
        Ok(secret)
    }

    /// The live session for `secret`, refreshed; an expired one is removed.
    pub fn session(&self, secret: &str, now_ms: i64, limits: SessionLimits) -> Result<Option<Session>, AccessError> {
        let hash = digest(secret);
        self.with(|c| {
            let found = c
                .query_row(
                    &format!(
                        "SELECT u.{}, s.created_ms, s.last_ms FROM sessions s JOIN users u ON u.id = s.user_id \
                         WHERE s.hash = ?1",
                        USER_COLUMNS.replace(", ", ", u.")
                    ),
                    params![hash],
                    |r| Ok((row_to_user(r)?, r.get::<_, i64>(6)?, r.get::<_, i64>(7)?)),
                )
                .optional()?;
            let Some((user, created, last)) = found else { return Ok(None) };
            if user.disabled || now_ms - last > limits.idle_ms || now_ms - created > limits.max_ms {
                c.execute("DELETE FROM sessions WHERE hash = ?1", params![hash])?;
                return Ok(None);
            }
            // Written at most once a minute: a page polling every second must not turn
            // every read into a write.
            if now_ms - last > 60_000.min(limits.idle_ms / 2) {
                c.execute("UPDATE sessions SET last_ms = ?2 WHERE hash = ?1", params![hash, now_ms])?;
            }
            let expires_ms = (now_ms + limits.idle_ms).min(created + limits.max_ms);
            Ok(Some(Session { user, expires_ms }))
        })
    }

    /// Ends one session.
    pub fn end_session(&self, secret: &str) -> Result<(), AccessError> {
        let hash = digest(secret);
        self.with(|c| c.execute("DELETE FROM sessions WHERE hash = ?1", params![hash]).map(|_| ()))
    }

    /// Ends every session of an account; returns how many.
    pub fn end_all_sessions(&self, user_id: i64) -> Result<usize, AccessError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE user_id = ?1", params![user_id]))
    }

    /// Removes sessions past their limits; returns how many.
    pub fn prune_sessions(&self, now_ms: i64, limits: SessionLimits) -> Result<usize, AccessError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE last_ms < ?1 OR created_ms < ?2",
                params![now_ms - limits.idle_ms, now_ms - limits.max_ms],
            )
        })
    }

    /// Creates a machine token; returns it and its secret (shown once).
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        scope: &Scope,
        by: &str,
        now_ms: i64,
    ) -> Result<(Token, String), AccessError> {
        let secret = format!("{TOKEN_PREFIX}{}", new_secret());
        let hash = digest(&secret);
        let r = self.with(|c| {
            c.execute(
                "INSERT INTO tokens (name, hash, role, scope, created_ms, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, hash, role.as_str(), scope.to_stored(), now_ms, by],
            )?;
            Ok(c.last_insert_rowid())
        });
        let id = match r {
            Ok(id) => id,
            Err(AccessError::Sqlite { source, .. }) if is_unique_violation(&source) => {
                return Err(AccessError::Duplicate(name.into()));
            }
            Err(e) => return Err(e),
        };
        let token = Token {
            id,
            name: name.into(),
            role,
            scope: scope.clone(),
            created_ms: now_ms,
            created_by: by.into(),
            last_used_ms: None,
            revoked_ms: None,
        };
        Ok((token, secret))
    }

    /// Every machine token, newest first.
    pub fn tokens(&self) -> Result<Vec<Token>, AccessError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id DESC"))?;
            st.query_map([], row_to_token)?.collect()
        })
    }

    /// Revokes a token; it stops working at once.
    pub fn revoke_token(&self, id: i64, now_ms: i64) -> Result<Token, AccessError> {
        self.with(|c| {
            c.execute("UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, now_ms])?;
            c.query_row(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"), params![id], row_to_token)
                .optional()
        })?
        .ok_or_else(|| AccessError::NotFound(format!("token {id}")))
    }

    /// The live (not revoked) token for `secret`.
    pub fn token(&self, secret: &str, now_ms: i64) -> Result<Option<Token>, AccessError> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = digest(secret);
        self.with(|c| {
            let t = c
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_ms IS NULL"),
                    params![hash],
                    row_to_token,
                )
                .optional()?;
            if let Some(t) = &t
                && t.last_used_ms.is_none_or(|l| now_ms - l > 60_000)
            {
                c.execute("UPDATE tokens SET last_used_ms = ?2 WHERE id = ?1", params![t.id, now_ms])?;
            }
            Ok(t)
        })
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (AccessStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("mingchu-access-{}-{}", std::process::id(), new_secret()));
        std::fs::create_dir_all(&dir).expect("dir");
        (AccessStore::open(&dir).expect("open"), dir)
    }

    const LIMITS: SessionLimits = SessionLimits { idle_ms: 3_600_000, max_ms: 86_400_000 };

    #[test]
    fn sessions_expire_when_idle_or_old_and_end_with_a_new_password() {
        let (s, dir) = store();
        let u = s.add_user("Li", Role::Reviewer, &Scope::from_stored("a"), "$argon2id$x", 0).expect("add");
        assert!(matches!(s.add_user("li", Role::Admin, &Scope::All, "h", 0), Err(AccessError::Duplicate(_))));
        let secret = s.create_session(u.id, 0, "127.0.0.1").expect("session");
        assert_eq!(s.session(&secret, 1000, LIMITS).expect("read").map(|x| x.user.name), Some("Li".into()));
        assert!(s.session("not-it", 1000, LIMITS).expect("read").is_none());
        // Used every 50 minutes it lives until its absolute limit.
        let mut t = 0;
        while t + 3_000_000 < LIMITS.max_ms {
            t += 3_000_000;
            assert!(s.session(&secret, t, LIMITS).expect("read").is_some(), "alive at {t}");
        }
        assert!(s.session(&secret, LIMITS.max_ms + 1, LIMITS).expect("read").is_none(), "too old");
        let idle = s.create_session(u.id, 0, "").expect("session");
        assert!(s.session(&idle, LIMITS.idle_ms + 1, LIMITS).expect("read").is_none(), "idle too long");
        let other = s.create_session(u.id, 0, "").expect("session");
        s.set_password(u.id, "$argon2id$y", 10).expect("passwd");
        assert!(s.session(&other, 20, LIMITS).expect("read").is_none(), "a new password ends sessions");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tokens_are_stored_hashed_and_stop_when_revoked() {
        let (s, dir) = store();
        let (t, secret) = s.create_token("platform", Role::Regulator, &Scope::All, "user:admin", 5).expect("create");
        assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() == TOKEN_PREFIX.len() + 64);
        let raw = std::fs::read(dir.join("access.db")).unwrap_or_default();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is not in the file");
        assert_eq!(s.token(&secret, 100).expect("read").map(|x| x.id), Some(t.id));
        assert!(s.token("mct_wrong", 100).expect("read").is_none());
        s.revoke_token(t.id, 200).expect("revoke");
        assert!(s.token(&secret, 300).expect("read").is_none());
        assert_eq!(s.tokens().expect("list")[0].revoked_ms, Some(200));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_database_from_a_newer_gateway_is_refused() {
        let (s, dir) = store();
        drop(s);
        let c = Connection::open(dir.join("access.db")).expect("open");
        c.pragma_update(None, "user_version", 99).expect("bump");
        drop(c);
        let e = AccessStore::open(&dir).err().expect("refused").to_string();
        assert!(e.contains("newer"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
