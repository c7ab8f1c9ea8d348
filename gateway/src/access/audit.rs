//! The audit trail: who watched which camera from when to when, logins, reviews, and
//! accounts, tokens and configuration changed. Append-only (a trigger refuses edits; only
//! a live view's end is filled in once), kept for `auth.audit_retention_days`.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::store::{AccessError, AccessStore};

/// One thing that happened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// Id, increasing.
    pub id: i64,
    /// When, UNIX ms.
    pub at_ms: i64,
    /// Who: `user:NAME`, `token:NAME`, `token:admin_token`, or the name tried at a failed login.
    pub actor: String,
    /// The client's address.
    pub client: String,
    /// What: `login`, `login_failed`, `logout`, `password_changed`, `user_added`,
    /// `user_changed`, `token_created`, `token_revoked`, `live_view`, `event_review`,
    /// `gateway_started`.
    pub action: String,
    /// What it was done to (a camera, an event, an account).
    pub target: String,
    /// The site concerned, if any.
    pub site: Option<String>,
    /// Details (a review's from → to and note, a changed role).
    pub detail: String,
    /// For a live view: when it ended, UNIX ms.
    pub ended_ms: Option<i64>,
}

/// A new entry.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Who.
    pub actor: String,
    /// Client address.
    pub client: String,
    /// What.
    pub action: &'static str,
    /// To what.
    pub target: String,
    /// Site concerned.
    pub site: Option<String>,
    /// Details.
    pub detail: String,
}

/// Filters for reading the trail.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// At or after, UNIX ms.
    pub from: Option<i64>,
    /// Before, UNIX ms.
    pub to: Option<i64>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries below this id (paging newest first).
    pub before_id: Option<i64>,
    /// Page size (default 100, at most 10000).
    pub limit: Option<u32>,
    /// `csv` for a spreadsheet; JSON otherwise.
    pub format: Option<String>,
    /// Only these sites (the caller's scope); set by the API.
    #[serde(skip)]
    pub sites: Option<Vec<String>>,
}

const COLUMNS: &str = "id, at_ms, actor, client, action, target, site, detail, ended_ms";

impl AccessStore {
    /// Appends an entry; returns its id.
    pub fn record(&self, r: &Record, now_ms: i64) -> Result<i64, AccessError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (at_ms, actor, client, action, target, site, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![now_ms, r.actor, r.client, r.action, r.target, r.site, r.detail],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Fills in when a live view ended (once).
    pub fn end_view(&self, id: i64, now_ms: i64) -> Result<(), AccessError> {
        self.with(|c| {
            c.execute("UPDATE audit SET ended_ms = ?2 WHERE id = ?1 AND ended_ms IS NULL", params![id, now_ms])
                .map(|_| ())
        })
    }

    /// Entries matching `f`, newest first.
    pub fn audit(&self, f: &AuditFilter) -> Result<Vec<Entry>, AccessError> {
        self.with(|c| {
            let mut sql = format!("SELECT {COLUMNS} FROM audit WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut add = |cond: &str, v: rusqlite::types::Value, sql: &mut String| {
                args.push(v);
                sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
            };
            if let Some(v) = f.from {
                add(" AND at_ms >= ?", v.into(), &mut sql);
            }
            if let Some(v) = f.to {
                add(" AND at_ms < ?", v.into(), &mut sql);
            }
            if let Some(v) = &f.actor {
                add(" AND actor = ?", v.clone().into(), &mut sql);
            }
            if let Some(v) = &f.action {
                add(" AND action = ?", v.clone().into(), &mut sql);
            }
            if let Some(v) = f.before_id {
                add(" AND id < ?", v.into(), &mut sql);
            }
            if let Some(sites) = &f.sites {
                let mut marks = Vec::new();
                for s in sites {
                    args.push(s.clone().into());
                    marks.push(format!("?{}", args.len()));
                }
                sql.push_str(&format!(" AND site IN ({})", marks.join(",")));
            }
            let limit = f.limit.unwrap_or(100).clamp(1, 10_000);
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
            let mut st = c.prepare(&sql)?;
            st.query_map(rusqlite::params_from_iter(args), |r| {
                Ok(Entry {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    client: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    site: r.get(6)?,
                    detail: r.get(7)?,
                    ended_ms: r.get(8)?,
                })
            })?
            .collect()
        })
    }

    /// Removes entries older than `before_ms`; returns how many.
    pub fn prune_audit(&self, before_ms: i64) -> Result<usize, AccessError> {
        self.with(|c| c.execute("DELETE FROM audit WHERE at_ms < ?1", params![before_ms]))
    }

    /// The newest entry's id, if any (for tests and tools).
    pub fn last_audit_id(&self) -> Result<Option<i64>, AccessError> {
        self.with(|c| c.query_row("SELECT max(id) FROM audit", [], |r| r.get(0)).optional().map(Option::flatten))
    }
}

/// The entries as CSV (RFC 4180), with a header row.
pub fn to_csv(entries: &[Entry]) -> String {
    use crate::csv::field;
    let mut out = String::from("id,at_ms,actor,client,action,target,site,detail,ended_ms\r\n");
    for e in entries {
        let row = [
            e.id.to_string(),
            e.at_ms.to_string(),
            field(&e.actor),
            field(&e.client),
            field(&e.action),
            field(&e.target),
            field(e.site.as_deref().unwrap_or("")),
            field(&e.detail),
            e.ended_ms.map(|v| v.to_string()).unwrap_or_default(),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (AccessStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "mingchu-audit-{}-{}",
            std::process::id(),
            crate::access::store::new_secret()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        (AccessStore::open(&dir).expect("open"), dir)
    }

    #[test]
    fn entries_are_append_only_and_a_view_ends_once() {
        let (s, dir) = store();
        let r = Record {
            actor: "user:li".into(),
            action: "live_view",
            target: "cam1".into(),
            site: Some("a".into()),
            ..Default::default()
        };
        let id = s.record(&r, 10).expect("record");
        s.end_view(id, 20).expect("end");
        s.end_view(id, 30).expect("second end is a no-op");
        let e = &s.audit(&AuditFilter::default()).expect("read")[0];
        assert_eq!((e.at_ms, e.ended_ms), (10, Some(20)));
        let edit = s.with(|c| c.execute("UPDATE audit SET actor = 'someone else' WHERE id = ?1", params![id]));
        assert!(edit.is_err(), "edits are refused");
        let scoped = AuditFilter { sites: Some(vec!["b".into()]), ..Default::default() };
        assert!(s.audit(&scoped).expect("read").is_empty());
        assert_eq!(s.prune_audit(15).expect("prune"), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let e = Entry {
            id: 1,
            at_ms: 2,
            actor: "=cmd()".into(),
            client: "127.0.0.1".into(),
            action: "login".into(),
            target: "a,b".into(),
            site: None,
            detail: "say \"hi\"".into(),
            ended_ms: None,
        };
        let csv = to_csv(&[e]);
        assert_eq!(csv.lines().nth(1), Some("1,2,'=cmd(),127.0.0.1,login,\"a,b\",,\"say \"\"hi\"\"\","));
    }
}
