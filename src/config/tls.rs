//! `[tls]`: certificates trusted for upstreams besides the webpki roots
//! (`ca_file`), and the public listener's own certificate and key
//! (`cert_file`, `key_file`).

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::diagnostics::Ctx;

/// Reads `[tls] ca_file` (PEM, one or more certificates).
pub(super) fn extra_roots(
    ctx: &mut Ctx<'_>,
    file: Option<&Spanned<String>>,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let Some(f) = file else { return Vec::new() };
    let path = ctx
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join(f.get_ref());
    match crate::net::tls::certificates(&path) {
        Ok(c) => c,
        Err(_) => {
            ctx.err(
                f.span().start,
                "config.invalid_ca_file",
                format!(
                    "`{}` is not a readable PEM file of certificates",
                    path.display()
                ),
            );
            Vec::new()
        }
    }
}

/// `[tls] cert_file`, `key_file`: the public listener serves HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Reads `[tls] cert_file` and `key_file`: both or neither, and they must
/// load now (so `check` catches a bad pair before `serve` does).
pub(super) fn listener(
    ctx: &mut Ctx<'_>,
    cert: Option<&Spanned<String>>,
    key: Option<&Spanned<String>>,
) -> Option<ListenerTls> {
    let dir = ctx.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (cert, key) = match (cert, key) {
        (None, None) => return None,
        (Some(c), Some(k)) => (c, k),
        (Some(s), None) | (None, Some(s)) => {
            let msg = "[tls] needs both `cert_file` and `key_file` to serve HTTPS";
            ctx.err(s.span().start, "config.invalid_tls", msg);
            return None;
        }
    };
    let tls = ListenerTls {
        cert_file: dir.join(cert.get_ref()),
        key_file: dir.join(key.get_ref()),
    };
    if let Err(e) = crate::net::tls::certified_key(&tls.cert_file, &tls.key_file) {
        ctx.err(cert.span().start, "config.invalid_tls", e);
        return None;
    }
    Some(tls)
}
