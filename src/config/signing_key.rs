//! The keys of `kind = "jwt"` credentials: the private key headgate signs
//! with (PKCS#8 PEM: EC P-256, Ed25519 or RSA), parsed and tried once at
//! load, and the public keys the JWKS publishes (the current one's and
//! `previous_keys` during a rotation). Errors never quote a key.

use std::fmt;
use std::path::Path;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use toml::Spanned;

use super::LoadMode;
use super::diagnostics::Ctx;
use super::schema::RawCredential;

/// A private signing key with its public half as a JWK.
pub struct SigningKey {
    /// For `jsonwebtoken::encode`.
    pub key: EncodingKey,
    /// ES256, EdDSA or RS256, from the key's type.
    pub alg: Algorithm,
    /// The `kid` header and JWK member.
    pub kid: String,
    /// The public key, with `kid`, `alg` and `use = "sig"`.
    pub public: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

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

/// A PKCS#8 PEM private key: EC P-256 → ES256, Ed25519 → EdDSA, RSA →
/// RS256. The error never quotes the key.
pub fn parse_signing_key(pem: &[u8], kid: Option<&str>) -> Result<SigningKey, String> {
    let parsed = [
        (Algorithm::ES256, EncodingKey::from_ec_pem(pem)),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem)),
        (Algorithm::RS256, EncodingKey::from_rsa_pem(pem)),
    ];
    let (alg, key) = parsed
        .into_iter()
        .find_map(|(alg, k)| k.ok().map(|k| (alg, k)))
        .ok_or("not a PKCS#8 PEM private key of type EC P-256, Ed25519 or RSA")?;
    // Proves the key signs with its algorithm (a P-384 key parses as EC).
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &serde_json::json!({}),
        &key,
    )
    .map_err(|_| format!("the key cannot sign {alg:?}: only EC P-256, Ed25519 and RSA keys"))?;
    let public = Jwk::from_encoding_key(&key, alg)
        .ok()
        .or_else(|| {
            (alg == Algorithm::EdDSA)
                .then(|| ed25519_public(pem))
                .flatten()
        })
        .ok_or("the key's public half could not be derived")?;
    let public = published(public, kid)?;
    let kid = public.common.key_id.clone().unwrap_or_default();
    Ok(SigningKey {
        key,
        alg,
        kid,
        public,
    })
}

/// The public JWK of an Ed25519 PKCS#8 v2 key (with its public key
/// inside, as rcgen and some HSMs write them), which `jsonwebtoken` only
/// derives from v1 keys.
fn ed25519_public(pem: &[u8]) -> Option<Jwk> {
    use base64::Engine;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, KeyAlgorithm, OctetKeyPairParameters,
        OctetKeyPairType,
    };
    use ring::signature::KeyPair;
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).ok()?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    Some(Jwk {
        common: CommonParameters {
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x,
        }),
    })
}

/// A JWK as the JWKS lists it: `kid` (given, else the RFC 7638 SHA-256
/// thumbprint) and `use = "sig"`.
fn published(mut jwk: Jwk, kid: Option<&str>) -> Result<Jwk, String> {
    let kid = match kid {
        Some(k) => k.to_string(),
        None => jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| "the key's thumbprint could not be computed".to_string())?,
    };
    jwk.common.key_id = Some(kid);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
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

/// A PEM public key (or private key) as a published JWK.
pub fn parse_public_key(pem: &[u8], kid: Option<&str>) -> Result<Jwk, String> {
    if let Ok(k) = parse_signing_key(pem, kid) {
        return Ok(k.public);
    }
    let parsed = [
        (Algorithm::ES256, DecodingKey::from_ec_pem(pem)),
        (Algorithm::EdDSA, DecodingKey::from_ed_pem(pem)),
        (Algorithm::RS256, DecodingKey::from_rsa_pem(pem)),
    ];
    let jwk = parsed
        .into_iter()
        .find_map(|(alg, k)| {
            k.ok()
                .and_then(|k| Jwk::from_decoding_key(&k, Some(alg)).ok())
        })
        .ok_or("not a PEM public key of type EC P-256, Ed25519 or RSA")?;
    published(jwk, kid)
}
