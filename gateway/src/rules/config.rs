//! `[[rules]]` as written in the gateway TOML, and its validation against a model's labels.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::schedule::Schedule;
use super::zone::Polygon;

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A value is malformed, out of range or inconsistent.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Key path, e.g. `rules[2].schedule[0].from`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A subject or object that is neither a role of the model manifest nor a model label.
    #[error("config key `{key}`: `{name}` is neither a role in the model manifest nor a label of the model")]
    UnknownName {
        /// Key path, e.g. `rules[0].subject`.
        key: String,
        /// The name as written.
        name: String,
    },
    /// A role the model manifest maps to no labels: the model cannot see it.
    #[error(
        "config key `{key}`: the model has no labels for role `{role}`; this rule needs a kitchen-specific model that detects it"
    )]
    NoLabelsForRole {
        /// Key path, e.g. `rules[3].object`.
        key: String,
        /// The role.
        role: String,
    },
    /// Two rules share an id.
    #[error("config key `{key}`: rule id `{id}` is already used by an earlier rule")]
    DuplicateId {
        /// Key path of the later rule's id, e.g. `rules[4].id`.
        key: String,
        /// The id.
        id: String,
    },
}

impl RuleError {
    /// The config key the error is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Invalid { key, .. }
            | Self::UnknownName { key, .. }
            | Self::NoLabelsForRole { key, .. }
            | Self::DuplicateId { key, .. } => key,
        }
    }
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError::Invalid { key: key.into(), message: message.into() }
}

/// What a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The subject is present.
    Presence,
    /// The subject lacks an attribute (hat, mask) in its head region.
    MissingAttribute,
    /// The subject has an object near or overlapping it.
    Proximity,
}

impl RuleKind {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Presence => "presence",
            Self::MissingAttribute => "missing_attribute",
            Self::Proximity => "proximity",
        }
    }
}

/// How serious a violation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention.
    #[default]
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id, also the violation kind shown to people, e.g. `phone_use`. Required.
    pub id: String,
    /// `presence`, `missing_attribute` or `proximity`. Required.
    pub kind: RuleKind,
    /// Camera ids the rule applies to. Default: empty, meaning every camera.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// The tracked thing the rule is about: a role of the model manifest or a model label. Required.
    pub subject: String,
    /// `proximity`: the other role or label; `missing_attribute`: the attribute role (hat, mask).
    /// Required for those kinds, not allowed for `presence`.
    #[serde(default)]
    pub object: Option<String>,
    /// Polygons in normalised 0..=1 picture coordinates; the subject's anchor (bottom centre for
    /// people, centre otherwise) must be inside one. Default: the whole picture.
    #[serde(default)]
    pub zones: Option<Vec<Vec<[f32; 2]>>>,
    /// Weekly time ranges in which the rule is in force. Default: always.
    #[serde(default)]
    pub schedule: Option<Vec<ScheduleEntry>>,
    /// IANA time zone of `schedule`. Default `Asia/Shanghai`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Seconds the condition must hold on one subject track before it is a violation. Default 3.
    #[serde(default = "default_min_duration")]
    pub min_duration_s: f64,
    /// Seconds after a violation on a camera ends before this rule may raise another there. Default 60.
    #[serde(default = "default_cooldown")]
    pub cooldown_s: f64,
    /// Seconds without the condition on any subject that end a violation. Default 3.
    #[serde(default = "default_end_after")]
    pub end_after_s: f64,
    /// `info`, `warning` or `critical`. Default `warning`.
    #[serde(default)]
    pub severity: Severity,
    /// Least subject track score, on top of the detector's thresholds. Default 0.
    #[serde(default)]
    pub min_score: f32,
    /// `missing_attribute`: least short side in pixels of the estimated head region (top fifth of
    /// the person box, half its width); smaller heads give "cannot tell". Default 24.
    #[serde(default = "default_min_head_px")]
    pub min_head_px: u32,
    /// `proximity`: margin added around the subject box on each side, as a fraction of its width
    /// and height; the object's centre must fall inside it, or the boxes overlap. Default 0.1.
    #[serde(default = "default_proximity")]
    pub proximity: f32,
}

/// One entry of a rule's `schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Days the range starts on, `mon` … `sun`. Default: every day.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Start, "HH:MM", inclusive. Required.
    pub from: String,
    /// End, "HH:MM" ("24:00" for midnight), exclusive; earlier than `from` runs past midnight. Required.
    pub to: String,
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}
fn default_min_duration() -> f64 {
    3.0
}
fn default_cooldown() -> f64 {
    60.0
}
fn default_end_after() -> f64 {
    3.0
}
fn default_min_head_px() -> u32 {
    24
}
fn default_proximity() -> f32 {
    0.1
}

/// Role → labels, from the model manifest (e.g. `animal` → `cat`, `dog`, `bird`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Roles(pub HashMap<String, Vec<String>>);

impl Roles {
    /// Wraps a manifest's role map.
    pub fn new(roles: HashMap<String, Vec<String>>) -> Self {
        Self(roles)
    }

    /// The labels of `role`, or `None` if the manifest has no such role.
    pub fn labels(&self, role: &str) -> Option<&[String]> {
        self.0.get(role).map(Vec::as_slice)
    }

    /// Labels for a name in config: a role's labels, else the name itself if it is a model label.
    pub fn resolve(&self, name: &str, known_labels: &[String], key: &str) -> Result<Vec<String>, RuleError> {
        match self.labels(name) {
            Some([]) => Err(RuleError::NoLabelsForRole { key: key.into(), role: name.into() }),
            Some(labels) => Ok(labels.to_vec()),
            None if known_labels.iter().any(|l| l == name) => Ok(vec![name.to_string()]),
            None => Err(RuleError::UnknownName { key: key.into(), name: name.into() }),
        }
    }
}

impl From<HashMap<String, Vec<String>>> for Roles {
    fn from(roles: HashMap<String, Vec<String>>) -> Self {
        Self(roles)
    }
}

/// Which point of a subject box must lie in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Bottom centre: where a person stands.
    BottomCenter,
    /// Centre.
    Center,
}

/// A checked rule with its names resolved to model labels, ready for the engine.
#[derive(Debug, Clone)]
pub struct ResolvedRule {
    config: RuleConfig,
    subject_labels: Vec<String>,
    object_labels: Vec<String>,
    anchor: Anchor,
    fields: Fields,
}

impl ResolvedRule {
    /// The rule id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The config it was made from.
    pub fn config(&self) -> &RuleConfig {
        &self.config
    }

    /// The kind.
    pub fn kind(&self) -> RuleKind {
        self.config.kind
    }

    /// The severity.
    pub fn severity(&self) -> Severity {
        self.config.severity
    }

    /// Labels a subject track may have.
    pub fn subject_labels(&self) -> &[String] {
        &self.subject_labels
    }

    /// Labels of the object (proximity) or attribute (missing_attribute); empty for presence.
    pub fn object_labels(&self) -> &[String] {
        &self.object_labels
    }

    /// Which point of the subject box is tested against the zones.
    pub fn anchor(&self) -> Anchor {
        self.anchor
    }

    /// The zones; empty means the whole picture.
    pub fn zones(&self) -> &[Polygon] {
        &self.fields.zones
    }

    /// Whether the rule watches `camera`.
    pub fn applies_to(&self, camera: &str) -> bool {
        self.config.cameras.is_empty() || self.config.cameras.iter().any(|c| c == camera)
    }

    /// Whether the schedule is in force at `wall`.
    pub fn in_schedule(&self, wall: jiff::Timestamp) -> bool {
        let f = &self.fields;
        f.schedule.as_ref().is_none_or(|s| s.is_active(wall, &f.timezone))
    }

    /// How long the condition must hold on one track.
    pub fn min_duration(&self) -> Duration {
        self.fields.min_duration
    }

    /// Quiet time after a violation ends.
    pub fn cooldown(&self) -> Duration {
        self.fields.cooldown
    }

    /// Gap in the condition that ends a violation.
    pub fn end_after(&self) -> Duration {
        self.fields.end_after
    }
}

/// What a rule's own fields say, checked without a model.
#[derive(Debug, Clone)]
struct Fields {
    zones: Vec<Polygon>,
    schedule: Option<Schedule>,
    timezone: TimeZone,
    min_duration: Duration,
    cooldown: Duration,
    end_after: Duration,
}

fn check_fields(index: usize, rule: &RuleConfig) -> Result<Fields, RuleError> {
    let key = |field: &str| format!("rules[{index}].{field}");
    if rule.id.trim().is_empty() {
        return Err(invalid(key("id"), "must not be empty"));
    }
    if let Some(k) = rule.cameras.iter().position(|c| c.trim().is_empty()) {
        return Err(invalid(key(&format!("cameras[{k}]")), "must not be empty"));
    }
    let min_duration = seconds(rule.min_duration_s, &key("min_duration_s"))?;
    let cooldown = seconds(rule.cooldown_s, &key("cooldown_s"))?;
    let end_after = seconds(rule.end_after_s, &key("end_after_s"))?;
    if !(0.0..=1.0).contains(&rule.min_score) {
        return Err(invalid(key("min_score"), format!("must be in 0..=1, got {}", rule.min_score)));
    }
    if !(0.0..=10.0).contains(&rule.proximity) {
        return Err(invalid(key("proximity"), format!("must be in 0..=10, got {}", rule.proximity)));
    }
    let timezone = TimeZone::get(&rule.timezone)
        .map_err(|e| invalid(key("timezone"), format!("unknown time zone `{}`: {e}", rule.timezone)))?;
    match (rule.kind, &rule.object) {
        (RuleKind::Presence, Some(_)) => {
            return Err(invalid(key("object"), "only `proximity` and `missing_attribute` rules take an object"));
        }
        (RuleKind::Presence, None) | (_, Some(_)) => {}
        (kind, None) => {
            return Err(invalid(key("object"), format!("required for kind = \"{}\"", kind.as_str())));
        }
    }
    let zones = match &rule.zones {
        None => Vec::new(),
        Some(z) if z.is_empty() => {
            return Err(invalid(key("zones"), "lists no polygons; leave it out for the whole picture"));
        }
        Some(z) => z
            .iter()
            .enumerate()
            .map(|(j, p)| Polygon::parse(p, &key(&format!("zones[{j}]"))))
            .collect::<Result<_, _>>()?,
    };
    let schedule = rule.schedule.as_deref().map(|s| Schedule::parse(s, &key("schedule"))).transpose()?;
    Ok(Fields { zones, schedule, timezone, min_duration, cooldown, end_after })
}

/// Checks everything about rule `index` that needs no model: durations, scores, time
/// zone, zones, schedule and whether its kind needs an object. Run at config load.
pub fn check(index: usize, rule: &RuleConfig) -> Result<(), RuleError> {
    check_fields(index, rule).map(|_| ())
}

/// Checks rule `index` and resolves its subject and object to the model's labels.
///
/// [`RuleError::NoLabelsForRole`] means the rule is sound but the loaded model cannot see what
/// it needs; the caller may disable the rule with a warning instead of refusing the config.
pub fn validate(
    index: usize,
    rule: &RuleConfig,
    roles: &Roles,
    known_labels: &[String],
) -> Result<ResolvedRule, RuleError> {
    let fields = check_fields(index, rule)?;
    let key = |field: &str| format!("rules[{index}].{field}");
    let subject_labels = roles.resolve(&rule.subject, known_labels, &key("subject"))?;
    let object_labels = match &rule.object {
        None => Vec::new(),
        Some(object) => {
            let labels = roles.resolve(object, known_labels, &key("object"))?;
            if let Some(shared) = labels.iter().find(|l| subject_labels.contains(l)) {
                return Err(invalid(key("object"), format!("label `{shared}` is also a subject label")));
            }
            labels
        }
    };

    let person: HashSet<&str> =
        roles.labels("person").unwrap_or_default().iter().map(String::as_str).chain(["person"]).collect();
    let anchor =
        if subject_labels.iter().all(|l| person.contains(l.as_str())) { Anchor::BottomCenter } else { Anchor::Center };

    Ok(ResolvedRule { config: rule.clone(), subject_labels, object_labels, anchor, fields })
}

/// Checks that rule ids are unique; the error names the later duplicate.
pub fn check_unique_ids(rules: &[RuleConfig]) -> Result<(), RuleError> {
    let mut seen = HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        if !seen.insert(r.id.as_str()) {
            return Err(RuleError::DuplicateId { key: format!("rules[{i}].id"), id: r.id.clone() });
        }
    }
    Ok(())
}

/// Longest duration a rule may name (a day): longer ones would keep per-track state forever.
const MAX_SECONDS: f64 = 86_400.0;

fn seconds(value: f64, key: &str) -> Result<Duration, RuleError> {
    if !value.is_finite() || !(0.0..=MAX_SECONDS).contains(&value) {
        return Err(invalid(key, format!("must be a number of seconds from 0 to {MAX_SECONDS}, got {value}")));
    }
    Duration::try_from_secs_f64(value).map_err(|e| invalid(key, format!("out of range: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        rules: Vec<RuleConfig>,
    }

    fn parse(toml_text: &str) -> Vec<RuleConfig> {
        toml::from_str::<File>(toml_text).expect("parses").rules
    }

    fn coco_roles() -> (Roles, Vec<String>) {
        let roles = Roles::new(HashMap::from([
            ("person".to_string(), vec!["person".to_string()]),
            ("phone".to_string(), vec!["cell phone".to_string()]),
            ("animal".to_string(), vec!["cat".to_string(), "dog".to_string(), "bird".to_string()]),
            ("hat".to_string(), vec![]),
            ("mask".to_string(), vec![]),
        ]));
        let labels = ["person", "bicycle", "cat", "dog", "bird", "cell phone", "knife"].map(String::from).to_vec();
        (roles, labels)
    }

    #[test]
    fn full_example_parses_and_validates() {
        let rules = parse(
            r#"
            [[rules]]
            id = "phone_use"
            kind = "proximity"
            cameras = ["cam1"]
            subject = "person"
            object = "phone"
            zones = [[[0.0,0.0],[1.0,0.0],[1.0,1.0],[0.0,1.0]]]
            schedule = [{ days = ["mon","tue","wed","thu","fri"], from = "06:00", to = "20:00" }]
            timezone = "Asia/Shanghai"
            min_duration_s = 3.0
            cooldown_s = 60.0
            end_after_s = 3.0
            severity = "critical"
            min_score = 0.0
            min_head_px = 24
            proximity = 0.0
            "#,
        );
        let (roles, labels) = coco_roles();
        let r = validate(0, &rules[0], &roles, &labels).expect("valid");
        assert_eq!(r.subject_labels(), ["person"]);
        assert_eq!(r.object_labels(), ["cell phone"]);
        assert_eq!(r.anchor(), Anchor::BottomCenter);
        assert_eq!(r.severity(), Severity::Critical);
        assert!(r.applies_to("cam1") && !r.applies_to("cam2"));
    }

    #[test]
    fn defaults() {
        let rules = parse("[[rules]]\nid = \"animals\"\nkind = \"presence\"\nsubject = \"animal\"\n");
        let r = &rules[0];
        assert_eq!((r.min_duration_s, r.cooldown_s, r.end_after_s), (3.0, 60.0, 3.0));
        assert_eq!((r.severity, r.min_score, r.min_head_px, r.proximity), (Severity::Warning, 0.0, 24, 0.1));
        assert_eq!(r.timezone, "Asia/Shanghai");
        assert!(r.cameras.is_empty() && r.zones.is_none() && r.schedule.is_none() && r.object.is_none());
        let (roles, labels) = coco_roles();
        let v = validate(0, r, &roles, &labels).expect("valid");
        assert_eq!(v.subject_labels(), ["cat", "dog", "bird"]);
        assert_eq!(v.anchor(), Anchor::Center);
        assert_eq!(v.min_duration(), Duration::from_secs(3));
        assert!(v.applies_to("any"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = toml::from_str::<File>("[[rules]]\nid=\"a\"\nkind=\"presence\"\nsubject=\"person\"\ncolour=\"red\"\n");
        assert!(e.is_err());
        let e = toml::from_str::<File>(
            "[[rules]]\nid=\"a\"\nkind=\"presence\"\nsubject=\"person\"\nschedule=[{from=\"01:00\",to=\"02:00\",day=[\"mon\"]}]\n",
        );
        assert!(e.is_err());
    }

    #[test]
    fn names_resolve_through_roles_then_labels() {
        let (roles, labels) = coco_roles();
        let base = parse("[[rules]]\nid=\"a\"\nkind=\"presence\"\nsubject=\"knife\"\n").remove(0);
        assert_eq!(validate(0, &base, &roles, &labels).expect("label").subject_labels(), ["knife"]);

        let unknown = RuleConfig { subject: "unicorn".into(), ..base.clone() };
        let e = validate(3, &unknown, &roles, &labels).unwrap_err();
        assert!(matches!(&e, RuleError::UnknownName { name, .. } if name == "unicorn"));
        assert_eq!(e.key(), "rules[3].subject");

        let hat = RuleConfig {
            kind: RuleKind::MissingAttribute,
            subject: "person".into(),
            object: Some("hat".into()),
            ..base.clone()
        };
        let e = validate(1, &hat, &roles, &labels).unwrap_err();
        assert!(matches!(&e, RuleError::NoLabelsForRole { role, .. } if role == "hat"));
        assert_eq!(e.key(), "rules[1].object");
        assert!(e.to_string().contains("kitchen-specific model"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let (roles, labels) = coco_roles();
        let base = parse("[[rules]]\nid=\"a\"\nkind=\"proximity\"\nsubject=\"person\"\nobject=\"phone\"\n").remove(0);
        let key = |r: RuleConfig| validate(2, &r, &roles, &labels).unwrap_err().key().to_string();
        assert_eq!(key(RuleConfig { id: " ".into(), ..base.clone() }), "rules[2].id");
        assert_eq!(key(RuleConfig { object: None, ..base.clone() }), "rules[2].object");
        assert_eq!(key(RuleConfig { object: Some("person".into()), ..base.clone() }), "rules[2].object");
        assert_eq!(key(RuleConfig { kind: RuleKind::Presence, ..base.clone() }), "rules[2].object");
        assert_eq!(key(RuleConfig { min_duration_s: -1.0, ..base.clone() }), "rules[2].min_duration_s");
        assert_eq!(key(RuleConfig { cooldown_s: f64::NAN, ..base.clone() }), "rules[2].cooldown_s");
        assert_eq!(key(RuleConfig { end_after_s: f64::INFINITY, ..base.clone() }), "rules[2].end_after_s");
        assert_eq!(key(RuleConfig { end_after_s: 1e300, ..base.clone() }), "rules[2].end_after_s");
        assert_eq!(key(RuleConfig { min_score: f32::NAN, ..base.clone() }), "rules[2].min_score");
        assert_eq!(key(RuleConfig { proximity: -0.1, ..base.clone() }), "rules[2].proximity");
        assert_eq!(key(RuleConfig { timezone: "Mars/Olympus".into(), ..base.clone() }), "rules[2].timezone");
        assert_eq!(key(RuleConfig { cameras: vec!["cam1".into(), "".into()], ..base.clone() }), "rules[2].cameras[1]");
        assert_eq!(key(RuleConfig { zones: Some(vec![]), ..base.clone() }), "rules[2].zones");
        let zones = vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], vec![[0.0, 0.0], [1.0, 1.0]]];
        assert_eq!(key(RuleConfig { zones: Some(zones), ..base.clone() }), "rules[2].zones[1]");
        let zones = vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, -1.0]]];
        assert_eq!(key(RuleConfig { zones: Some(zones), ..base.clone() }), "rules[2].zones[0][2]");
        let schedule = vec![ScheduleEntry { days: None, from: "6am".into(), to: "07:00".into() }];
        assert_eq!(key(RuleConfig { schedule: Some(schedule), ..base.clone() }), "rules[2].schedule[0].from");
    }

    #[test]
    fn duplicate_ids_name_the_later_one() {
        let rules = parse(
            "[[rules]]\nid=\"a\"\nkind=\"presence\"\nsubject=\"person\"\n\
             [[rules]]\nid=\"b\"\nkind=\"presence\"\nsubject=\"person\"\n\
             [[rules]]\nid=\"a\"\nkind=\"presence\"\nsubject=\"cat\"\n",
        );
        let e = check_unique_ids(&rules).unwrap_err();
        assert_eq!(e.key(), "rules[2].id");
        assert!(check_unique_ids(&rules[..2]).is_ok());
    }
}
