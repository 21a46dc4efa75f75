//! `[tls]`: certificates trusted for upstreams besides the webpki roots.

use std::path::Path;

use toml::Spanned;

use super::diagnostics::Ctx;

/// Reads `[tls] ca_file` (PEM, one or more certificates).
pub(super) fn extra_roots(
    ctx: &mut Ctx<'_>,
    file: Option<&Spanned<String>>,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let Some(f) = file else { return Vec::new() };
    let path = ctx
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join(f.get_ref());
    let certs: Result<Vec<_>, _> = match rustls::pki_types::CertificateDer::pem_file_iter(&path) {
        Ok(it) => it.collect(),
        Err(e) => Err(e),
    };
    match certs {
        Ok(c) if !c.is_empty() => c,
        _ => {
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
