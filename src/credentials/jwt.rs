//! JWTs headgate signs per session (RFC 7519) with `jsonwebtoken`: the
//! registered claims set here, the `[claims]` rendered by the caller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::error::CredentialError;
use crate::config::credentials::JwtIssuer;

/// Signs a token for `claims` (already rendered), valid for the issuer's
/// `ttl` from now.
pub(crate) fn mint(
    name: &str,
    issuer: &JwtIssuer,
    claims: &[(String, String)],
) -> Result<String, CredentialError> {
    let key = issuer
        .key
        .as_ref()
        .ok_or_else(|| CredentialError::unavailable(name, "no signing key is loaded"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let mut body = Map::new();
    for (k, v) in claims {
        body.insert(k.clone(), Value::String(v.clone()));
    }
    body.insert("iss".into(), issuer.issuer.clone().into());
    body.insert("aud".into(), issuer.audience.clone().into());
    body.insert("iat".into(), now.into());
    body.insert("nbf".into(), now.into());
    body.insert("exp".into(), (now + issuer.ttl.as_secs().max(1)).into());
    body.insert("jti".into(), jti().into());
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &body, &key.key)
        .map_err(|_| CredentialError::unavailable(name, "the JWT could not be signed"))
}

/// 128 random bits, hex: unique per token.
fn jti() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // SystemRandom fails only without an OS RNG; then the clock and a
    // counter still keep ids distinct.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
