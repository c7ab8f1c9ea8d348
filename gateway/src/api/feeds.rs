//! Open event feeds (SSE): bounded in total and per principal, and ended at once when the
//! credential that opened them is withdrawn (logout, a revoked token, a disabled account).
//!
//! A feed otherwise lives as long as its client keeps the connection, so a feed opened
//! before a logout would go on showing a kitchen's violations to a browser that no longer
//! holds a session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why a feed cannot be opened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedsFull {
    /// `server.max_event_streams` feeds are open.
    #[error("too many event feeds are open ({0}); try again later")]
    Total(usize),
    /// This principal has `server.max_event_streams_per_principal` open.
    #[error("you have {0} event feeds open already; close one (another tab or device)")]
    Principal(usize),
}

struct Entry {
    owner: String,
    session: Option<String>,
    cancel: CancellationToken,
}

/// The registry of open feeds.
pub struct Feeds {
    total: usize,
    per_owner: usize,
    open: Mutex<(u64, HashMap<u64, Entry>)>,
}

/// One open feed; closing it (dropping the guard) frees its place.
pub struct Feed {
    feeds: Arc<Feeds>,
    id: u64,
    /// Fires when the feed must end.
    pub ended: CancellationToken,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.feeds.lock().1.remove(&self.id);
    }
}

impl Feeds {
    /// At most `total` feeds, `per_owner` of them for one principal.
    pub fn new(total: usize, per_owner: usize) -> Arc<Self> {
        Arc::new(Self { total, per_owner, open: Mutex::new((0, HashMap::new())) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Entry>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a feed for `owner` (a principal's label), from login session `session`.
    pub fn open(self: &Arc<Self>, owner: &str, session: Option<&str>) -> Result<Feed, FeedsFull> {
        let mut open = self.lock();
        if open.1.len() >= self.total {
            return Err(FeedsFull::Total(self.total));
        }
        if open.1.values().filter(|e| e.owner == owner).count() >= self.per_owner {
            return Err(FeedsFull::Principal(self.per_owner));
        }
        open.0 += 1;
        let id = open.0;
        let ended = CancellationToken::new();
        let entry = Entry { owner: owner.to_owned(), session: session.map(str::to_owned), cancel: ended.clone() };
        open.1.insert(id, entry);
        Ok(Feed { feeds: self.clone(), id, ended })
    }

    /// Ends every feed of `owner`; returns how many.
    pub fn end_owned_by(&self, owner: &str) -> usize {
        self.end_where(|e| e.owner == owner)
    }

    /// Ends the feeds opened with login session `session`; returns how many.
    pub fn end_session(&self, session: &str) -> usize {
        self.end_where(|e| e.session.as_deref() == Some(session))
    }

    fn end_where(&self, pick: impl Fn(&Entry) -> bool) -> usize {
        let open = self.lock();
        open.1.values().filter(|e| pick(e)).map(|e| e.cancel.cancel()).count()
    }

    /// Feeds open now.
    pub fn len(&self) -> usize {
        self.lock().1.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_total_and_per_principal() {
        let feeds = Feeds::new(3, 2);
        let a1 = feeds.open("user:a", Some("s1")).unwrap();
        let _a2 = feeds.open("user:a", Some("s2")).unwrap();
        assert_eq!(feeds.open("user:a", None).err(), Some(FeedsFull::Principal(2)));
        let _b = feeds.open("user:b", None).unwrap();
        assert_eq!(feeds.open("user:c", None).err(), Some(FeedsFull::Total(3)));
        drop(a1);
        assert_eq!(feeds.len(), 2);
        assert!(feeds.open("user:a", None).is_ok(), "a closed feed frees its place");
    }

    #[test]
    fn withdrawn_credentials_end_their_feeds_only() {
        let feeds = Feeds::new(10, 10);
        let s1 = feeds.open("user:a", Some("s1")).unwrap();
        let s2 = feeds.open("user:a", Some("s2")).unwrap();
        let b = feeds.open("user:b", Some("s3")).unwrap();
        assert_eq!(feeds.end_session("s1"), 1);
        assert!(s1.ended.is_cancelled() && !s2.ended.is_cancelled());
        assert_eq!(feeds.end_owned_by("user:a"), 2);
        assert!(s2.ended.is_cancelled() && !b.ended.is_cancelled());
    }
}
