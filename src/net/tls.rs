//! HTTPS on the public listener: rustls with ALPN (`h2`, `http/1.1`), the
//! certificate and key read from PEM files and read again when they change
//! on disk (a certbot renewal), without a restart and without dropping a
//! connection: each handshake takes the certificate current at that moment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// How often the files are looked at for a change.
const POLL: Duration = Duration::from_secs(5);

/// The PEM certificates in `path`, at least one: a listener's chain or
/// the CAs trusted for upstreams.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "`{}`: not a readable PEM file of certificates ({e})",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The certificate chain and key in `cert` and `key`, ready to serve. The
/// error names the file, never key material.
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = certificates(cert)?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| format!("`{}`: not a readable PEM private key", key.display()))?;
    let signing = any_supported_type(&der)
        .map_err(|_| format!("`{}`: a key type rustls cannot sign with", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|_| format!("`{}` is not the key of `{}`", key.display(), cert.display()))?;
    Ok(ck)
}

/// The certificate every handshake is answered with, swapped in place when
/// the files change.
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

/// `ResolvesServerCert` needs `Debug`; the key is never shown.
impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current(<certificate and key>)")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.key.read().ok().map(|k| k.clone())
    }
}

/// An acceptor for `cert` and `key`, and a task (for as long as the
/// acceptor lives) that reloads them when their modification times change.
/// A new pair that does not load is logged and the old one kept.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let current = Arc::new(Current {
        key: RwLock::new(Arc::new(certified_key(cert, key)?)),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(current.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let watched = Arc::downgrade(&current);
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    tokio::spawn(async move {
        let mut seen = stamps(&cert, &key);
        loop {
            tokio::time::sleep(POLL).await;
            let Some(current) = watched.upgrade() else {
                return;
            };
            let now = stamps(&cert, &key);
            if now == seen {
                continue;
            }
            seen = now;
            reload(&current, &cert, &key);
        }
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn reload(current: &Current, cert: &Path, key: &Path) {
    match certified_key(cert, key) {
        Ok(k) => {
            if let Ok(mut g) = current.key.write() {
                *g = Arc::new(k);
            }
            tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
        }
        // Mid-renewal (one file written, not yet the other) or broken:
        // the next change is tried again.
        Err(e) => tracing::warn!(
            code = "tls.reload_failed",
            "keeping the current certificate: {e}"
        ),
    }
}

fn stamps(cert: &PathBuf, key: &PathBuf) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}
