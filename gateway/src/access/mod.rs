//! Who may do what: roles, site scopes, the `Principal` every request runs as, accounts,
//! login sessions and machine tokens.
//!
//! Every route asks the principal one question, [`Principal::can`], for an [`Action`];
//! what it may see is narrowed by [`Principal::sees_site`]. A resource outside the scope
//! is answered as if it did not exist.

pub mod audit;
pub mod media;
pub mod password;
pub mod share;
pub mod store;
pub mod throttle;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a person or integration is to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: accounts, tokens, every site.
    Admin,
    /// A food-safety regulator: the assigned sites (or all), watch, review, share links.
    Regulator,
    /// A site's own food-safety staff: watch and review their site.
    Reviewer,
    /// The kitchen manager: watch their site and mark events rectified.
    Operator,
}

impl Role {
    /// The name used in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Regulator => "regulator",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "regulator" => Role::Regulator,
            "reviewer" => Role::Reviewer,
            "operator" => Role::Operator,
            _ => return None,
        })
    }

    /// Every role, for listings and tests.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Regulator, Role::Reviewer, Role::Operator];
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which sites a principal sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    /// Every site (stored and shown as `"*"`).
    #[serde(with = "all_marker")]
    All,
    /// These sites only.
    Sites(BTreeSet<String>),
}

mod all_marker {
    pub fn serialize<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*")
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let v: String = serde::Deserialize::deserialize(d)?;
        if v == "*" { Ok(()) } else { Err(serde::de::Error::custom("expected \"*\" or a list of site ids")) }
    }
}

impl Scope {
    /// Stored form: `*` or comma-separated site ids.
    pub fn to_stored(&self) -> String {
        match self {
            Scope::All => "*".into(),
            Scope::Sites(s) => s.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }

    /// Reads the stored form.
    pub fn from_stored(s: &str) -> Scope {
        if s == "*" {
            return Scope::All;
        }
        Scope::Sites(s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect())
    }

    /// Whether `site` is inside.
    pub fn contains(&self, site: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Sites(s) => s.contains(site),
        }
    }
}

/// Something a route does, asked of the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See cameras and sites, watch live video.
    Watch,
    /// List and read events, snapshots and clips.
    ReadEvents,
    /// Mark an event rectified.
    Rectify,
    /// Confirm, dismiss or close an event.
    Review,
    /// Create and revoke share links.
    Share,
    /// Manage accounts and machine tokens.
    ManageAccess,
    /// Read the audit trail.
    ReadAudit,
    /// Read Prometheus metrics.
    ReadMetrics,
    /// Add, change and remove sites, cameras, zones and rules; read the system page.
    Configure,
}

impl Role {
    /// Whether this role may do `action` (within its scope).
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Regulator => matches!(action, Watch | ReadEvents | Review | Share | ReadAudit),
            Role::Reviewer => matches!(action, Watch | ReadEvents | Review),
            Role::Operator => matches!(action, Watch | ReadEvents | Rectify),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Who {
    /// A person logged in with a password.
    User {
        /// Account id.
        id: i64,
        /// Login name.
        name: String,
    },
    /// A named machine token.
    Token {
        /// Token id.
        id: i64,
        /// Its name.
        name: String,
    },
    /// `auth.admin_token` from the config file.
    ConfigToken,
    /// A parent with a share link.
    Share {
        /// Link id.
        id: i64,
    },
}

impl Who {
    /// How the audit trail and the event history name this actor.
    pub fn label(&self) -> String {
        match self {
            Who::User { name, .. } => format!("user:{name}"),
            Who::Token { name, .. } => format!("token:{name}"),
            Who::ConfigToken => "token:admin_token".into(),
            Who::Share { id } => format!("share:{id}"),
        }
    }
}

/// The identity every request runs as, made by the API's authentication from a session
/// cookie or a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Who.
    pub who: Who,
    /// Their role.
    pub role: Role,
    /// The sites they see.
    pub scope: Scope,
    /// When this credential stops working, UNIX ms (none for tokens that do not expire).
    pub expires_ms: Option<i64>,
    /// The login session it came from ([`store::session_key`]), so that a logout ends
    /// what was opened with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Principal {
    /// Whether the role allows `action` at all.
    pub fn can(&self, action: Action) -> bool {
        self.role.allows(action)
    }

    /// Whether `site` is in scope (admins see every site).
    pub fn sees_site(&self, site: &str) -> bool {
        self.role == Role::Admin || self.scope.contains(site)
    }
}

/// Why a role and scope cannot be given to an account or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Reviewers and operators belong to sites.
    #[error("a {0} needs at least one site")]
    NoSite(Role),
    /// A site id that is not configured.
    #[error("no site `{0}` is configured")]
    UnknownSite(String),
}

/// Checks a role's scope against the configured sites; admins always get every site.
pub fn check_grant(role: Role, scope: Scope, sites: &[String]) -> Result<Scope, GrantError> {
    if role == Role::Admin {
        return Ok(Scope::All);
    }
    match &scope {
        Scope::All if matches!(role, Role::Reviewer | Role::Operator) => Err(GrantError::NoSite(role)),
        Scope::All => Ok(scope),
        Scope::Sites(s) if s.is_empty() => Err(GrantError::NoSite(role)),
        Scope::Sites(s) => {
            if let Some(unknown) = s.iter().find(|x| !sites.contains(x)) {
                return Err(GrantError::UnknownSite(unknown.clone()));
            }
            Ok(scope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(list: &[&str]) -> Scope {
        Scope::Sites(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn roles_allow_what_the_programme_gives_them() {
        use Action::*;
        let all = [Watch, ReadEvents, Rectify, Review, Share, ManageAccess, ReadAudit, ReadMetrics];
        let allowed = |r: Role| all.iter().copied().filter(|a| r.allows(*a)).collect::<Vec<_>>();
        assert_eq!(allowed(Role::Admin), all.to_vec());
        assert_eq!(allowed(Role::Regulator), vec![Watch, ReadEvents, Review, Share, ReadAudit]);
        assert_eq!(allowed(Role::Reviewer), vec![Watch, ReadEvents, Review]);
        assert_eq!(allowed(Role::Operator), vec![Watch, ReadEvents, Rectify]);
    }

    #[test]
    fn scope_limits_what_is_seen() {
        let p = Principal {
            who: Who::User { id: 1, name: "li".into() },
            role: Role::Reviewer,
            scope: sites(&["a"]),
            expires_ms: None,
            session: None,
        };
        assert!(p.sees_site("a") && !p.sees_site("b"));
        let admin = Principal { role: Role::Admin, scope: sites(&[]), ..p };
        assert!(admin.sees_site("b"), "admins see every site");
    }

    #[test]
    fn grants_are_checked_against_sites_and_roles() {
        let known = vec!["a".to_string(), "b".to_string()];
        assert_eq!(check_grant(Role::Admin, sites(&["zzz"]), &known), Ok(Scope::All));
        assert_eq!(check_grant(Role::Regulator, Scope::All, &known), Ok(Scope::All));
        assert_eq!(check_grant(Role::Operator, Scope::All, &known), Err(GrantError::NoSite(Role::Operator)));
        assert_eq!(check_grant(Role::Reviewer, sites(&[]), &known), Err(GrantError::NoSite(Role::Reviewer)));
        assert_eq!(check_grant(Role::Reviewer, sites(&["c"]), &known), Err(GrantError::UnknownSite("c".into())));
        assert_eq!(check_grant(Role::Reviewer, sites(&["a"]), &known), Ok(sites(&["a"])));
    }

    #[test]
    fn scopes_round_trip_through_storage() {
        for s in [Scope::All, sites(&["a", "b"]), sites(&["x"])] {
            assert_eq!(Scope::from_stored(&s.to_stored()), s);
        }
    }
}
