//! The programme's review workflow (预警 → 整改 → 复核): who may move an event from one
//! status to another.
//!
//! ```text
//! new ──confirm──▶ confirmed ──rectify──▶ rectified ──close──▶ closed
//!  │ └──────────────rectify──────────────▶ │ └──reject──▶ confirmed
//!  └──dismiss──▶ dismissed
//! ```
//! The kitchen's operator marks an event rectified (with a note saying what was done);
//! reviewers and regulators confirm, dismiss, close, or send a rectification back.

use super::Status;
use crate::access::Role;

/// Whether `role` may move an event from `from` to `to`.
pub fn allowed(role: Role, from: Status, to: Status) -> bool {
    use Status::*;
    let reviews = matches!(role, Role::Admin | Role::Regulator | Role::Reviewer);
    let rectifies = matches!(role, Role::Admin | Role::Operator);
    match (from, to) {
        (New | Confirmed, Rectified) => rectifies,
        (New, Confirmed | Dismissed | Closed) => reviews,
        (Confirmed, Dismissed | Closed) => reviews,
        (Rectified, Closed | Confirmed) => reviews,
        // An admin may reopen a finished event, e.g. one dismissed by mistake.
        (Dismissed | Closed, New) => role == Role::Admin,
        _ => false,
    }
}

/// Whether a transition needs a note (an operator says what was rectified).
pub fn needs_note(to: Status) -> bool {
    to == Status::Rectified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_makes_only_its_own_moves() {
        use Status::*;
        let all = [New, Confirmed, Rectified, Dismissed, Closed];
        let moves = |r: Role| {
            let mut v = Vec::new();
            for f in all {
                for t in all {
                    if allowed(r, f, t) {
                        v.push((f, t));
                    }
                }
            }
            v
        };
        assert_eq!(moves(Role::Operator), vec![(New, Rectified), (Confirmed, Rectified)]);
        let review = vec![
            (New, Confirmed),
            (New, Dismissed),
            (New, Closed),
            (Confirmed, Dismissed),
            (Confirmed, Closed),
            (Rectified, Confirmed),
            (Rectified, Closed),
        ];
        assert_eq!(moves(Role::Reviewer), review);
        assert_eq!(moves(Role::Regulator), review);
        assert!(allowed(Role::Admin, Dismissed, New) && !allowed(Role::Regulator, Dismissed, New));
        assert!(!allowed(Role::Admin, New, New), "no move to the same status");
    }
}
