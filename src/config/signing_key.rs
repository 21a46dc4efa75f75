//! Where `kind = "jwt"` credentials' keys come from: the private key
//! headgate signs with (`signing_key_file` or `signing_key_env`) and the
//! public keys of `previous_keys`, read at load and handed to
//! [`crate::credentials::key`] to parse, their errors placed at the line
//! that named them. Errors never quote a key.

use std::path::Path;

use jsonwebtoken::jwk::Jwk;
use toml::Spanned;

use super::LoadMode;
use super::diagnostics::Ctx;
use super::schema::RawCredential;
use crate::credentials::key::{SigningKey, parse_public_key, parse_signing_key};

/// The signing key from `signing_key_file` or `signing_key_env`.
/// `Some(None)` offline when it is not at hand.
pub(super) fn signing_key(
    ctx: &mut Ctx<'_>,
    name: &str,
    raw: &RawCredential,
    off: usize,
) -> Option<Option<SigningKey>> {
    let (pem, at) = match (&raw.signing_key_file, &raw.signing_key_env) {
        (Some(f), None) => (read_key_file(ctx, f), f.span().start),
        (None, Some(e)) => (
            ctx.secret(e).map(|s| s.expose().as_bytes().to_vec()),
            e.span().start,
        ),
        _ => {
            let msg = format!(
                "[credentials.{name}] needs one of `signing_key_file` or `signing_key_env`"
            );
            ctx.err(off, "config.invalid_credential", msg);
            return None;
        }
    };
    let Some(pem) = pem else {
        return (ctx.mode == LoadMode::Offline).then_some(None);
    };
    match parse_signing_key(&pem, raw.key_id.as_ref().map(|k| k.get_ref().as_str())) {
        Ok(k) => Some(Some(k)),
        Err(why) => {
            ctx.err(at, "config.invalid_signing_key", why);
            None
        }
    }
}

/// A key file, relative to the config directory. Offline, a missing file
/// is a warning (the templates can still be tried).
fn read_key_file(ctx: &mut Ctx<'_>, f: &Spanned<String>) -> Option<Vec<u8>> {
    let dir = ctx.path.parent().unwrap_or(Path::new("."));
    match std::fs::read(dir.join(f.get_ref())) {
        Ok(b) => Some(b),
        Err(e) => {
            let msg = format!("cannot read key file `{}`: {e}", f.get_ref());
            match ctx.mode {
                LoadMode::Offline => ctx.warn(f.span().start, "config.invalid_signing_key", msg),
                _ => ctx.err(f.span().start, "config.invalid_signing_key", msg),
            }
            None
        }
    }
}

/// A `previous_keys` entry: a PEM public key (or the old private key),
/// `"file"` or `{ file = "…", key_id = "…" }` to keep the `kid` it was
/// published with.
pub(super) fn previous_key(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<Jwk> {
    let (file, kid) = match raw.get_ref().split_once('#') {
        Some((f, k)) => (f.to_string(), Some(k)),
        None => (raw.get_ref().clone(), None),
    };
    let pem = read_key_file(ctx, &Spanned::new(raw.span(), file))?;
    match parse_public_key(&pem, kid) {
        Ok(j) => Some(j),
        Err(why) => {
            ctx.err(raw.span().start, "config.invalid_signing_key", why);
            None
        }
    }
}
