//! Built-in HTTPS: the certificate and key files from `[server.tls]`, picked up again
//! when either file changes (a renewal by certbot or acme.sh) or on SIGHUP, without a
//! restart and without dropping a connection.
//!
//! A renewal that leaves the files half-written, or a key that does not match its
//! certificate, is refused with a warning and the previous certificate keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the files are looked at for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {key} {path}: {error}")]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The error (in the message, not as a source, so that it is said once).
        error: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind needed.
    #[error("{key} {path}: {message}")]
    Pem {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key is of a kind the TLS library cannot sign with, or not the certificate's.
    #[error("server.tls.key {key} does not fit server.tls.cert {cert}: {message}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `[server.tls]`: where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate that was loaded.
pub struct Loaded {
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// When the server's certificate expires, UNIX seconds (none if it cannot be read).
    pub not_after: Option<i64>,
}

/// Reads and checks both files.
pub fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let cert_pem = read("server.tls.cert", &files.cert)?;
    let key_pem = read("server.tls.key", &files.key)?;
    let pem_err =
        |key: &'static str, path: &Path, message: String| TlsError::Pem { key, path: path.to_owned(), message };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("server.tls.cert", &files.cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(pem_err("server.tls.cert", &files.cert, "holds no `BEGIN CERTIFICATE` block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_err("server.tls.key", &files.key, format!("holds no PEM private key ({e})")))?;
    let not_after =
        x509_parser::parse_x509_certificate(&chain[0]).ok().map(|(_, c)| c.validity().not_after.timestamp());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message: e.to_string(),
    })?;
    Ok(Loaded { key: Arc::new(key), not_after })
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read { key, path: path.to_owned(), error })
}

/// What a user graphs about the certificate.
#[derive(Clone, Default)]
pub struct TlsMetrics {
    /// When the certificate being served expires, UNIX seconds.
    pub expiry: Gauge,
    /// Certificates loaded again after a change.
    pub reloads: Counter,
    /// Changed files that could not be used (the previous certificate kept serving).
    pub reload_failures: Counter,
}

/// When each file last changed, as far as `stat` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

fn stamp(files: &TlsFiles) -> Stamp {
    let of = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    Stamp(of(&files.cert), of(&files.key))
}

/// The certificate being served, swapped in place when the files change.
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp when last looked at, whether that load worked or not.
    seen: Mutex<Stamp>,
    metrics: TlsMetrics,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the files once; an error here stops the start.
    pub fn open(files: TlsFiles, metrics: TlsMetrics) -> Result<Arc<Self>, TlsError> {
        let seen = stamp(&files);
        let loaded = load(&files)?;
        if let Some(t) = loaded.not_after {
            metrics.expiry.set(t);
        }
        Ok(Arc::new(Self { files, current: RwLock::new(loaded.key), seen: Mutex::new(seen), metrics }))
    }

    /// Loads the files again if they changed since last seen; true when a new certificate
    /// is now served. `force` loads even when nothing seems to have changed (SIGHUP).
    pub fn reload(&self, force: bool) -> bool {
        let now = stamp(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *seen == now {
                return false;
            }
            *seen = now;
        }
        match load(&self.files) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded.key;
                if let Some(t) = loaded.not_after {
                    self.metrics.expiry.set(t);
                }
                self.metrics.reloads.inc();
                info!(cert = %self.files.cert.display(), not_after = loaded.not_after, "TLS certificate loaded");
                true
            }
            Err(e) => {
                // Logged once per change of the files: the next change is tried again.
                self.metrics.reload_failures.inc();
                warn!(error = %e, "the changed TLS files cannot be used; still serving the previous certificate");
                false
            }
        }
    }

    /// The acceptor for the HTTP listener (HTTP/1.1 only, as the listener speaks).
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Looks at the files every [`WATCH_EVERY`] and on SIGHUP, until `cancel`.
pub async fn watch(certs: Arc<Certificates>, cancel: CancellationToken) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let certs = certs.clone();
        // Reading two small files; off the runtime's threads all the same.
        let _ = tokio::task::spawn_blocking(move || certs.reload(forced)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(dir: &Path, name: &str) -> TlsFiles {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params").self_signed(&key).expect("cert");
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mingchu-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_a_pair_and_names_what_is_wrong() {
        let d = dir("load");
        let files = self_signed(&d, "gw.example");
        let loaded = load(&files).expect("loads");
        assert!(loaded.not_after.is_some_and(|t| t > 1_700_000_000));
        // Another key: refused as not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&files.key, other.serialize_pem()).unwrap();
        let err = load(&files).err().expect("mismatch").to_string();
        assert!(err.contains("server.tls.key") && err.contains("does not fit"), "{err}");
        std::fs::write(&files.key, "not pem").unwrap();
        let err = load(&files).err().expect("bad key").to_string();
        assert!(err.contains("server.tls.key") && err.contains("key.pem"), "{err}");
        std::fs::write(&files.cert, "").unwrap();
        let err = load(&files).err().expect("no cert").to_string();
        assert!(err.contains("server.tls.cert") && err.contains("BEGIN CERTIFICATE"), "{err}");
        std::fs::remove_file(&files.cert).unwrap();
        let err = load(&files).err().expect("missing").to_string();
        assert!(err.contains("cannot read server.tls.cert"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_not() {
        let d = dir("reload");
        let files = self_signed(&d, "one.example");
        let metrics = TlsMetrics::default();
        let certs = Certificates::open(files.clone(), metrics.clone()).expect("open");
        let served = |c: &Certificates| c.current.read().unwrap().cert[0].clone();
        let first = served(&certs);
        assert!(!certs.reload(false), "nothing changed");
        // Half a renewal: a new certificate beside the old key.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["two.example".into()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(&files.cert, format!("{}\n", cert.pem())).unwrap();
        assert!(!certs.reload(true));
        assert_eq!(served(&certs), first, "the previous certificate keeps serving");
        assert_eq!(metrics.reload_failures.get(), 1);
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        assert!(certs.reload(true));
        assert_ne!(served(&certs), first);
        assert_eq!(metrics.reloads.get(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
