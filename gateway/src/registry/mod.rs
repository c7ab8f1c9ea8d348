//! The camera registry: the sites, cameras and rules in force now, with one owner task
//! per camera. The config file provisions entries that are read-only here (change them
//! in the file and restart); entries made in the dashboard live in `settings.db` and
//! take effect at once, without touching the other cameras.

pub mod owner;
pub mod rules;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{CameraConfig, SiteConfig};
use crate::hub::{Hub, HubLimits};
use crate::ingest::Camera;
use crate::metrics::Metrics;
use crate::rules::{ResolvedRule, RuleConfig};
pub use rules::{ModelNames, RuleEntry, Source};
use store::{Kind, SettingsError, SettingsStore};

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such entry.
    #[error("no {0}")]
    NotFound(String),
    /// The entry comes from the config file.
    #[error("{0} is provisioned in the config file; change it there and restart")]
    Provisioned(String),
    /// The id is taken, or the entry is still in use.
    #[error("{0}")]
    Conflict(String),
    /// A field is wrong.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The field, e.g. `url`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The settings database failed.
    #[error(transparent)]
    Store(#[from] SettingsError),
    /// A blocking write could not run.
    #[error("settings write failed: {0}")]
    Task(String),
}

fn invalid(key: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid { key: key.into(), message: message.into() }
}

/// A site and where it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct SiteEntry {
    /// The site.
    #[serde(flatten)]
    pub site: SiteConfig,
    /// From the config file (read-only here).
    pub provisioned: bool,
}

/// A camera and where it comes from.
#[derive(Clone)]
pub struct CameraEntry {
    /// The camera.
    pub camera: Arc<Camera>,
    /// From the config file (read-only here).
    pub provisioned: bool,
}

#[derive(Default)]
struct Inner {
    sites: Vec<SiteEntry>,
    cameras: BTreeMap<String, CameraEntry>,
    rules: Vec<RuleEntry>,
}

/// What the registry starts from.
pub struct Provisioned {
    /// `[[sites]]` (or the built-in site).
    pub sites: Vec<SiteConfig>,
    /// `[[cameras]]`.
    pub cameras: Vec<CameraConfig>,
    /// `[[rules]]`, when the file has any.
    pub rules: Option<Vec<RuleConfig>>,
}

/// The registry.
pub struct Registry {
    inner: RwLock<Inner>,
    owners: std::sync::Mutex<HashMap<String, owner::Owner>>,
    store: SettingsStore,
    runtime: Arc<owner::Runtime>,
    metrics: Arc<Metrics>,
    provisioned_rules: Option<Vec<RuleConfig>>,
    model: Option<ModelNames>,
    rules_tx: watch::Sender<Arc<Vec<ResolvedRule>>>,
    shutdown: CancellationToken,
    /// One change at a time: validation, the write and the swap happen together.
    writes: tokio::sync::Mutex<()>,
}

fn lock_read(l: &RwLock<Inner>) -> std::sync::RwLockReadGuard<'_, Inner> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn lock_write(l: &RwLock<Inner>) -> std::sync::RwLockWriteGuard<'_, Inner> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Parses the stored rows of one table; a row this gateway cannot read is skipped and
/// said, never fatal.
fn parse_rows<T: serde::de::DeserializeOwned>(
    rows: Vec<(String, Option<String>)>,
    what: &str,
) -> Vec<(String, Option<T>)> {
    rows.into_iter()
        .filter_map(|(id, body)| match body.map(|b| serde_json::from_str::<T>(&b)).transpose() {
            Ok(v) => Some((id, v)),
            Err(e) => {
                warn!(id, error = %e, "settings.db: cannot read this {what}; it is left out");
                None
            }
        })
        .collect()
}

/// The rows of `settings.db`, read once at start.
pub struct Saved {
    sites: Vec<SiteConfig>,
    cameras: Vec<CameraConfig>,
    rules: Vec<(String, Option<RuleConfig>)>,
}

impl Saved {
    /// Reads every table.
    pub fn load(store: &SettingsStore) -> Result<Saved, SettingsError> {
        fn flat<T>(v: Vec<(String, Option<T>)>) -> Vec<T> {
            v.into_iter().filter_map(|(_, b)| b).collect()
        }
        Ok(Saved {
            sites: flat(parse_rows(store.load(Kind::Sites)?, "site")),
            cameras: flat(parse_rows(store.load(Kind::Cameras)?, "camera")),
            rules: parse_rows(store.load(Kind::Rules)?, "rule"),
        })
    }

    /// The rule entries in force with these rows, before the model checks them.
    pub fn rule_entries(&self, provisioned: &Option<Vec<RuleConfig>>) -> Vec<RuleEntry> {
        rules::entries(provisioned, &self.rules)
    }
}

impl Registry {
    /// Starts an owner for every camera, provisioned and saved. `rules_tx` carries the
    /// rules to every analysis task; `rules` are the entries it was first given.
    #[allow(clippy::too_many_arguments)] // each part is separate state the registry owns
    pub fn start(
        provisioned: Provisioned,
        saved: Saved,
        rules: Vec<RuleEntry>,
        store: SettingsStore,
        runtime: Arc<owner::Runtime>,
        metrics: Arc<Metrics>,
        model: Option<ModelNames>,
        rules_tx: watch::Sender<Arc<Vec<ResolvedRule>>>,
        shutdown: CancellationToken,
    ) -> Arc<Registry> {
        let mut inner = Inner { rules, ..Default::default() };
        inner.sites = provisioned.sites.into_iter().map(|site| SiteEntry { site, provisioned: true }).collect();
        for site in saved.sites {
            if inner.sites.iter().any(|s| s.site.id == site.id) {
                warn!(site = %site.id, "settings.db has a site the config file also provisions; the file's is used");
                continue;
            }
            inner.sites.push(SiteEntry { site, provisioned: false });
        }
        let reg = Arc::new(Registry {
            inner: RwLock::new(Inner::default()),
            owners: Default::default(),
            store,
            runtime,
            metrics,
            provisioned_rules: provisioned.rules,
            model,
            rules_tx,
            shutdown,
            writes: tokio::sync::Mutex::new(()),
        });
        let mut cameras = Vec::new();
        for cfg in provisioned.cameras {
            cameras.push((cfg, true));
        }
        for cfg in saved.cameras {
            if cameras.iter().any(|(c, _)| c.id == cfg.id) {
                warn!(camera = %cfg.id, "settings.db has a camera the config file also provisions; the file's is used");
                continue;
            }
            if !inner.sites.iter().any(|s| s.site.id == cfg.site) {
                warn!(camera = %cfg.id, site = %cfg.site, "a saved camera's site no longer exists; it is left out");
                continue;
            }
            cameras.push((cfg, false));
        }
        for (cfg, provisioned) in cameras {
            let camera = reg.new_camera(cfg, None);
            reg.start_owner(&camera);
            inner.cameras.insert(camera.config.id.clone(), CameraEntry { camera, provisioned });
        }
        *lock_write(&reg.inner) = inner;
        reg
    }

    fn new_camera(&self, cfg: CameraConfig, like: Option<&Camera>) -> Arc<Camera> {
        let clock = self.runtime.clock.clone();
        Arc::new(match like {
            // Same connection: the same hub and status, so viewers and counters go on.
            Some(old) if !changes_connection(&old.config, &cfg) => {
                Camera::with_parts(cfg, old.hub.clone(), old.state.clone(), clock)
            }
            // A new connection: the same hub (viewers stay attached), a fresh status.
            Some(old) => Camera::new(cfg, old.hub.clone(), clock),
            None => {
                let hub = Hub::new(HubLimits::default(), self.metrics.camera(&cfg.id));
                Camera::new(cfg, hub, clock)
            }
        })
    }

    fn start_owner(&self, camera: &Arc<Camera>) {
        let o = owner::start(camera.clone(), self.runtime.clone(), self.shutdown.child_token());
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).insert(camera.config.id.clone(), o);
    }

    /// Every camera, in id order.
    pub fn cameras(&self) -> Vec<CameraEntry> {
        lock_read(&self.inner).cameras.values().cloned().collect()
    }

    /// One camera.
    pub fn camera(&self, id: &str) -> Option<CameraEntry> {
        lock_read(&self.inner).cameras.get(id).cloned()
    }

    /// Every site.
    pub fn sites(&self) -> Vec<SiteEntry> {
        lock_read(&self.inner).sites.clone()
    }

    /// One site.
    pub fn site(&self, id: &str) -> Option<SiteEntry> {
        lock_read(&self.inner).sites.iter().find(|s| s.site.id == id).cloned()
    }

    /// The rules, with where each comes from and whether the model can run it.
    pub fn rules(&self) -> Vec<RuleEntry> {
        lock_read(&self.inner).rules.clone()
    }

    /// The model's roles and labels (None while detection is off).
    pub fn model(&self) -> Option<&ModelNames> {
        self.model.as_ref()
    }

    async fn persist(&self, kind: Kind, id: &str, body: Option<String>, delete: bool) -> Result<(), RegistryError> {
        let store = self.store.clone();
        let id = id.to_owned();
        let now = crate::clock::unix_ms(self.runtime.clock.realtime());
        tokio::task::spawn_blocking(move || {
            if delete { store.delete(kind, &id) } else { store.put(kind, &id, body.as_deref(), now) }
        })
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))??;
        Ok(())
    }

    fn check_camera(&self, cfg: &CameraConfig) -> Result<(), RegistryError> {
        if !crate::config::valid_id(&cfg.id) {
            return Err(invalid("id", format!("`{}` must be 1-64 letters, digits, `-` or `_`", cfg.id)));
        }
        if cfg.name.trim().is_empty() || cfg.name.chars().count() > 100 {
            return Err(invalid("name", "must be 1 to 100 characters"));
        }
        crate::config::check_rtsp_url(&cfg.url).map_err(|m| invalid("url", m))?;
        if self.site(&cfg.site).is_none() {
            return Err(invalid("site", format!("no site `{}`", cfg.site)));
        }
        Ok(())
    }

    /// Adds a camera; it connects at once.
    pub async fn add_camera(&self, cfg: CameraConfig) -> Result<CameraEntry, RegistryError> {
        let _one = self.writes.lock().await;
        self.check_camera(&cfg)?;
        if self.camera(&cfg.id).is_some() {
            return Err(RegistryError::Conflict(format!("camera id `{}` is taken", cfg.id)));
        }
        self.persist(Kind::Cameras, &cfg.id, Some(json(&cfg)), false).await?;
        let camera = self.new_camera(cfg, None);
        self.start_owner(&camera);
        let entry = CameraEntry { camera, provisioned: false };
        lock_write(&self.inner).cameras.insert(entry.camera.config.id.clone(), entry.clone());
        info!(camera = %entry.camera.config.id, "camera added");
        Ok(entry)
    }

    /// Changes a camera made here; its owner reconnects only when the URL, transport or
    /// `enabled` changed.
    pub async fn update_camera(&self, cfg: CameraConfig) -> Result<CameraEntry, RegistryError> {
        let _one = self.writes.lock().await;
        let old = self.editable_camera(&cfg.id)?;
        self.check_camera(&cfg)?;
        self.persist(Kind::Cameras, &cfg.id, Some(json(&cfg)), false).await?;
        let camera = self.new_camera(cfg, Some(&old.camera));
        let entry = CameraEntry { camera: camera.clone(), provisioned: false };
        lock_write(&self.inner).cameras.insert(camera.config.id.clone(), entry.clone());
        let tx =
            self.owners.lock().unwrap_or_else(|p| p.into_inner()).get(&camera.config.id).map(|o| o.commands.clone());
        if let Some(tx) = tx {
            let _ = tx.send(owner::Command::Replace(camera)).await;
        }
        Ok(entry)
    }

    fn editable_camera(&self, id: &str) -> Result<CameraEntry, RegistryError> {
        let entry = self.camera(id).ok_or_else(|| RegistryError::NotFound(format!("camera `{id}`")))?;
        if entry.provisioned {
            return Err(RegistryError::Provisioned(format!("camera `{id}`")));
        }
        Ok(entry)
    }

    /// Removes a camera made here: its owner stops everything it ran, and its viewers end.
    /// Its events stay.
    pub async fn remove_camera(&self, id: &str) -> Result<(), RegistryError> {
        let _one = self.writes.lock().await;
        let entry = self.editable_camera(id)?;
        self.persist(Kind::Cameras, id, None, true).await?;
        lock_write(&self.inner).cameras.remove(id);
        let owner = self.owners.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Some(o) = owner {
            o.cancel.cancel();
            let _ = o.task.await;
        }
        entry.camera.hub.close();
        info!(camera = id, "camera removed");
        Ok(())
    }

    fn check_site(site: &SiteConfig) -> Result<(), RegistryError> {
        if !crate::config::valid_id(&site.id) {
            return Err(invalid("id", format!("`{}` must be 1-64 letters, digits, `-` or `_`", site.id)));
        }
        if site.name.trim().is_empty() || site.name.chars().count() > 100 {
            return Err(invalid("name", "must be 1 to 100 characters"));
        }
        for (key, v) in [("address", &site.address), ("district", &site.district), ("contact", &site.contact)] {
            if v.chars().count() > 200 {
                return Err(invalid(key, "must be at most 200 characters"));
            }
        }
        if jiff::tz::TimeZone::get(&site.timezone).is_err() {
            return Err(invalid("timezone", format!("`{}` is not an IANA time zone", site.timezone)));
        }
        Ok(())
    }

    /// Adds or changes a site made here.
    pub async fn put_site(&self, site: SiteConfig, create: bool) -> Result<SiteEntry, RegistryError> {
        let _one = self.writes.lock().await;
        Self::check_site(&site)?;
        match (self.site(&site.id), create) {
            (Some(_), true) => return Err(RegistryError::Conflict(format!("site id `{}` is taken", site.id))),
            (Some(s), false) if s.provisioned => return Err(RegistryError::Provisioned(format!("site `{}`", site.id))),
            (None, false) => return Err(RegistryError::NotFound(format!("site `{}`", site.id))),
            _ => {}
        }
        self.persist(Kind::Sites, &site.id, Some(json(&site)), false).await?;
        let entry = SiteEntry { site, provisioned: false };
        let mut inner = lock_write(&self.inner);
        match inner.sites.iter_mut().find(|s| s.site.id == entry.site.id) {
            Some(s) => *s = entry.clone(),
            None => inner.sites.push(entry.clone()),
        }
        Ok(entry)
    }

    /// Removes a site made here that has no cameras left.
    pub async fn remove_site(&self, id: &str) -> Result<(), RegistryError> {
        let _one = self.writes.lock().await;
        let site = self.site(id).ok_or_else(|| RegistryError::NotFound(format!("site `{id}`")))?;
        if site.provisioned {
            return Err(RegistryError::Provisioned(format!("site `{id}`")));
        }
        if self.cameras().iter().any(|c| c.camera.config.site == id) {
            return Err(RegistryError::Conflict(format!("site `{id}` still has cameras; move or remove them first")));
        }
        self.persist(Kind::Sites, id, None, true).await?;
        lock_write(&self.inner).sites.retain(|s| s.site.id != id);
        Ok(())
    }

    /// Adds or changes a rule (a built-in one is replaced by the saved copy).
    pub async fn put_rule(&self, rule: RuleConfig, create: bool) -> Result<RuleEntry, RegistryError> {
        let _one = self.writes.lock().await;
        let current = self.rules();
        let existing = current.iter().find(|r| r.rule.id == rule.id);
        match (existing, create) {
            (Some(_), true) => return Err(RegistryError::Conflict(format!("rule id `{}` is taken", rule.id))),
            (Some(r), false) if r.source == Source::File => {
                return Err(RegistryError::Provisioned(format!("rule `{}`", rule.id)));
            }
            (None, false) => return Err(RegistryError::NotFound(format!("rule `{}`", rule.id))),
            _ => {}
        }
        crate::rules::check(0, &rule).map_err(rule_invalid)?;
        for id in &rule.cameras {
            if self.camera(id).is_none() {
                return Err(invalid("cameras", format!("no camera `{id}`")));
            }
        }
        if let Some(m) = &self.model {
            match crate::rules::validate(0, &rule, &m.roles, &m.labels) {
                Ok(_) | Err(crate::rules::RuleError::NoLabelsForRole { .. }) => {}
                Err(e) => return Err(rule_invalid(e)),
            }
        }
        self.persist(Kind::Rules, &rule.id, Some(json(&rule)), false).await?;
        let mut next: Vec<RuleConfig> = current.iter().map(|r| r.rule.clone()).collect();
        let mut sources: Vec<Source> = current.iter().map(|r| r.source).collect();
        match next.iter().position(|r| r.id == rule.id) {
            Some(i) => {
                next[i] = rule.clone();
                sources[i] = Source::Saved;
            }
            None => {
                next.push(rule.clone());
                sources.push(Source::Saved);
            }
        }
        self.publish_rules(next, sources);
        Ok(self.rules().into_iter().find(|r| r.rule.id == rule.id).expect("just published"))
    }

    /// Removes a rule (a built-in one stays removed across restarts).
    pub async fn remove_rule(&self, id: &str) -> Result<(), RegistryError> {
        let _one = self.writes.lock().await;
        let current = self.rules();
        let Some(entry) = current.iter().find(|r| r.rule.id == id) else {
            return Err(RegistryError::NotFound(format!("rule `{id}`")));
        };
        if entry.source == Source::File {
            return Err(RegistryError::Provisioned(format!("rule `{id}`")));
        }
        let builtin = self.provisioned_rules.is_none() && crate::config::default_rules().iter().any(|r| r.id == id);
        // A built-in rule is held off by a row without a body; any other row just goes.
        self.persist(Kind::Rules, id, None, !builtin).await?;
        let (next, sources) = current.iter().filter(|r| r.rule.id != id).map(|r| (r.rule.clone(), r.source)).unzip();
        self.publish_rules(next, sources);
        Ok(())
    }

    fn publish_rules(&self, rules: Vec<RuleConfig>, sources: Vec<Source>) {
        let entries: Vec<RuleEntry> =
            rules.into_iter().zip(sources).map(|(rule, source)| RuleEntry { rule, source, inactive: None }).collect();
        let (resolved, entries) = rules::resolve(entries, self.model.as_ref());
        lock_write(&self.inner).rules = entries;
        self.rules_tx.send_replace(Arc::new(resolved));
    }

    /// Stops every owner and closes every hub (gateway shutdown).
    pub async fn stop(&self) {
        let owners: Vec<owner::Owner> =
            self.owners.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, o)| o).collect();
        for o in &owners {
            o.cancel.cancel();
        }
        for c in self.cameras() {
            c.camera.hub.close();
        }
        for o in owners {
            let _ = o.task.await;
        }
    }
}

fn rule_invalid(e: crate::rules::RuleError) -> RegistryError {
    let key = e.key().split_once('.').map_or(e.key(), |(_, k)| k).to_owned();
    RegistryError::Invalid { key, message: e.to_string() }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Whether a change needs a new connection to the camera.
pub fn changes_connection(old: &CameraConfig, new: &CameraConfig) -> bool {
    old.url != new.url || old.transport != new.transport || old.enabled != new.enabled
}
