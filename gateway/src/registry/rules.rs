//! Which rules are in force: the config file's `[[rules]]` (read-only), or else the
//! built-in rules, with the ones saved from the dashboard added, changed or removed.

use serde::Serialize;

use crate::rules::{ResolvedRule, Roles, RuleConfig};

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The config file's `[[rules]]`: read-only.
    File,
    /// Built into the gateway (used when the file has no `[[rules]]`).
    Builtin,
    /// Saved from the dashboard.
    Saved,
}

/// A rule, where it comes from, and why it does not run, if it does not.
#[derive(Debug, Clone, Serialize)]
pub struct RuleEntry {
    /// The rule.
    #[serde(flatten)]
    pub rule: RuleConfig,
    /// Where it comes from.
    pub source: Source,
    /// Why the model cannot run it (None: it runs).
    pub inactive: Option<String>,
}

/// What the model can see, for checking rules.
#[derive(Debug, Clone)]
pub struct ModelNames {
    /// Role → labels.
    pub roles: Roles,
    /// Every label.
    pub labels: Vec<String>,
}

/// The rules in force given the file's rules and the saved rows (a row without a body
/// removes a built-in rule).
pub fn entries(provisioned: &Option<Vec<RuleConfig>>, saved: &[(String, Option<RuleConfig>)]) -> Vec<RuleEntry> {
    let entry = |rule: RuleConfig, source| RuleEntry { rule, source, inactive: None };
    let mut out: Vec<RuleEntry> = match provisioned {
        Some(file) => file.iter().cloned().map(|r| entry(r, Source::File)).collect(),
        None => crate::config::default_rules().into_iter().map(|r| entry(r, Source::Builtin)).collect(),
    };
    for (id, body) in saved {
        let at = out.iter().position(|e| &e.rule.id == id);
        match (at, body) {
            // The file wins over a saved rule of the same id.
            (Some(i), _) if out[i].source == Source::File => {}
            (Some(i), Some(rule)) => out[i] = entry(rule.clone(), Source::Saved),
            (Some(i), None) => {
                out.remove(i);
            }
            (None, Some(rule)) => out.push(entry(rule.clone(), Source::Saved)),
            (None, None) => {}
        }
    }
    out
}

/// Checks every entry against the model: those it can run, and the entries with the
/// reason for those it cannot. Without a model nothing runs.
pub fn resolve(mut entries: Vec<RuleEntry>, model: Option<&ModelNames>) -> (Vec<ResolvedRule>, Vec<RuleEntry>) {
    let mut resolved = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let Some(m) = model else {
            e.inactive = Some("detection is off".into());
            continue;
        };
        match crate::rules::validate(i, &e.rule, &m.roles, &m.labels) {
            Ok(r) => {
                e.inactive = None;
                resolved.push(r);
            }
            Err(err) => e.inactive = Some(err.to_string()),
        }
    }
    (resolved, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> RuleConfig {
        let mut r = crate::config::default_rules().remove(0);
        r.id = id.into();
        r
    }

    #[test]
    fn saved_rows_change_add_and_remove_builtins_but_never_file_rules() {
        let builtin = crate::config::default_rules();
        let first = builtin[0].id.clone();
        let mut changed = builtin[0].clone();
        changed.min_duration_s = 9.0;
        let saved = vec![(first.clone(), Some(changed.clone())), ("mine".into(), Some(rule("mine")))];
        let e = entries(&None, &saved);
        assert_eq!(e.len(), builtin.len() + 1);
        assert_eq!(e[0].source, Source::Saved);
        assert_eq!(e[0].rule.min_duration_s, 9.0);
        assert_eq!(e.last().map(|r| r.source), Some(Source::Saved));
        let removed = entries(&None, &[(first.clone(), None)]);
        assert!(removed.iter().all(|r| r.rule.id != first));
        let file = Some(vec![rule("file_rule")]);
        let e = entries(&file, &[("file_rule".into(), Some(changed)), (first, None)]);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].rule.id.as_str(), e[0].source), ("file_rule", Source::File));
    }

    #[test]
    fn without_a_model_nothing_runs_and_each_says_why() {
        let (resolved, entries) = resolve(entries(&None, &[]), None);
        assert!(resolved.is_empty());
        assert!(entries.iter().all(|e| e.inactive.as_deref() == Some("detection is off")));
    }
}
