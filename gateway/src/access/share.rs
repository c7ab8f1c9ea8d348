//! Share links for parents: one site, chosen cameras, live view only, until an expiry,
//! optionally only within a weekly schedule (when lunch is cooked) and for a bounded
//! number of viewers at once. The link carries 256 random bits; only their hash is kept.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::store::{AccessError, AccessStore, digest, new_secret};
use crate::rules::ScheduleEntry;
use crate::rules::schedule::Schedule;

/// Longest a link may live.
pub const MAX_DAYS: f64 = 366.0;

/// A share link as stored (without its token).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareLink {
    /// Id.
    pub id: i64,
    /// The site shown.
    pub site: String,
    /// Its cameras shown.
    pub cameras: Vec<String>,
    /// e.g. "三年级二班家长群".
    pub label: String,
    /// Created, UNIX ms.
    pub created_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// When it stops working, UNIX ms.
    pub expires_ms: i64,
    /// When in the week it may be watched (site time); empty: at any time.
    pub schedule: Vec<ScheduleEntry>,
    /// Most viewers at once.
    pub max_viewers: Option<u32>,
    /// Revoked, UNIX ms.
    pub revoked_ms: Option<i64>,
}

/// Whether a link can be watched now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Availability {
    /// Open now.
    Open,
    /// Outside its schedule; opens again at `next_ms` (None: never within a week).
    Closed {
        /// Next opening, UNIX ms.
        next_ms: Option<i64>,
    },
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl ShareLink {
    /// Whether it can be watched at `now_ms` in the site's time zone `tz`.
    pub fn availability(&self, now_ms: i64, tz: &TimeZone) -> Availability {
        if self.revoked_ms.is_some() {
            return Availability::Revoked;
        }
        if now_ms >= self.expires_ms {
            return Availability::Expired;
        }
        let Some(schedule) = self.parsed_schedule() else { return Availability::Open };
        let at = |ms: i64| Timestamp::from_millisecond(ms).ok();
        if at(now_ms).is_some_and(|t| schedule.is_active(t, tz)) {
            return Availability::Open;
        }
        // The next minute it opens, within a week and before the link expires.
        let start = now_ms - now_ms.rem_euclid(60_000) + 60_000;
        let next_ms = (0..7 * 24 * 60)
            .map(|m| start + m * 60_000)
            .take_while(|ms| *ms < self.expires_ms)
            .find(|ms| at(*ms).is_some_and(|t| schedule.is_active(t, tz)));
        Availability::Closed { next_ms }
    }

    fn parsed_schedule(&self) -> Option<Schedule> {
        if self.schedule.is_empty() {
            return None;
        }
        Schedule::parse(&self.schedule, "schedule").ok()
    }
}

/// Checks a schedule for a link; the error names the entry.
pub fn check_schedule(entries: &[ScheduleEntry]) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    Schedule::parse(entries, "schedule").map(|_| ()).map_err(|e| e.to_string())
}

fn row_to_share(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShareLink> {
    let cams: String = r.get(2)?;
    let schedule: String = r.get(7)?;
    Ok(ShareLink {
        id: r.get(0)?,
        site: r.get(1)?,
        cameras: cams.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        label: r.get(3)?,
        created_ms: r.get(4)?,
        created_by: r.get(5)?,
        expires_ms: r.get(6)?,
        schedule: serde_json::from_str(&schedule).unwrap_or_default(),
        max_viewers: r.get(8)?,
        revoked_ms: r.get(9)?,
    })
}

const COLUMNS: &str = "id, site, cameras, label, created_ms, created_by, expires_ms, schedule, max_viewers, revoked_ms";

/// What a new link is for.
#[derive(Debug, Clone)]
pub struct NewShare {
    /// Site.
    pub site: String,
    /// Cameras of that site.
    pub cameras: Vec<String>,
    /// Label.
    pub label: String,
    /// Expiry, UNIX ms.
    pub expires_ms: i64,
    /// Weekly schedule (checked).
    pub schedule: Vec<ScheduleEntry>,
    /// Viewer cap.
    pub max_viewers: Option<u32>,
}

impl AccessStore {
    /// Creates a link; returns it and its token (shown once).
    pub fn create_share(&self, s: &NewShare, by: &str, now_ms: i64) -> Result<(ShareLink, String), AccessError> {
        let token = new_secret();
        let hash = digest(&token);
        let schedule = serde_json::to_string(&s.schedule).unwrap_or_default();
        let id = self.with(|c| {
            c.execute(
                "INSERT INTO shares (hash, site, cameras, label, created_ms, created_by, expires_ms, schedule, max_viewers) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![hash, s.site, s.cameras.join(","), s.label, now_ms, by, s.expires_ms, schedule, s.max_viewers],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        let link = self.share(id)?.ok_or_else(|| AccessError::NotFound(format!("share link {id}")))?;
        Ok((link, token))
    }

    /// A link by id.
    pub fn share(&self, id: i64) -> Result<Option<ShareLink>, AccessError> {
        self.with(|c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM shares WHERE id = ?1"), params![id], row_to_share).optional()
        })
    }

    /// The link a token opens, revoked or expired ones included (their page says so).
    pub fn share_by_token(&self, token: &str) -> Result<Option<ShareLink>, AccessError> {
        let hash = digest(token);
        self.with(|c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM shares WHERE hash = ?1"), params![hash], row_to_share)
                .optional()
        })
    }

    /// Every link, newest first.
    pub fn shares(&self) -> Result<Vec<ShareLink>, AccessError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {COLUMNS} FROM shares ORDER BY id DESC"))?;
            st.query_map([], row_to_share)?.collect()
        })
    }

    /// Revokes a link.
    pub fn revoke_share(&self, id: i64, now_ms: i64) -> Result<ShareLink, AccessError> {
        self.with(|c| {
            c.execute("UPDATE shares SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, now_ms])
        })?;
        self.share(id)?.ok_or_else(|| AccessError::NotFound(format!("share link {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(schedule: Vec<ScheduleEntry>) -> ShareLink {
        ShareLink {
            id: 1,
            site: "a".into(),
            cameras: vec!["cam1".into()],
            label: String::new(),
            created_ms: 0,
            created_by: "user:wang".into(),
            expires_ms: i64::MAX / 2,
            schedule,
            max_viewers: None,
            revoked_ms: None,
        }
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("time").as_millisecond()
    }

    #[test]
    fn a_lunchtime_link_opens_at_lunch_and_says_when_it_opens_next() {
        let tz = TimeZone::get("Asia/Shanghai").expect("tz");
        let lunch = vec![ScheduleEntry {
            days: Some(["mon", "tue", "wed", "thu", "fri"].iter().map(|d| d.to_string()).collect()),
            from: "10:30".into(),
            to: "12:30".into(),
        }];
        let l = link(lunch);
        // Wednesday 2026-12-02, 11:00 in Shanghai = 03:00 UTC.
        assert_eq!(l.availability(ms("2026-12-02T03:00:00Z"), &tz), Availability::Open);
        // Wednesday 13:00 local: closed until Thursday 10:30 local (02:30 UTC).
        assert_eq!(
            l.availability(ms("2026-12-02T05:00:00Z"), &tz),
            Availability::Closed { next_ms: Some(ms("2026-12-03T02:30:00Z")) }
        );
        // Friday evening: next is Monday.
        assert_eq!(
            l.availability(ms("2026-12-04T12:00:00Z"), &tz),
            Availability::Closed { next_ms: Some(ms("2026-12-07T02:30:00Z")) }
        );
        let mut gone = link(Vec::new());
        assert_eq!(gone.availability(0, &tz), Availability::Open, "no schedule: always");
        gone.expires_ms = 10;
        assert_eq!(gone.availability(10, &tz), Availability::Expired);
        gone.revoked_ms = Some(5);
        assert_eq!(gone.availability(0, &tz), Availability::Revoked);
        assert!(check_schedule(&[ScheduleEntry { days: None, from: "25:00".into(), to: "12:00".into() }]).is_err());
    }
}
