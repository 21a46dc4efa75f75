//! The keys `kind = "jwt"` credentials sign with: a PKCS#8 PEM private
//! key (EC P-256, Ed25519 or RSA) parsed and tried once, and the public
//! keys the JWKS publishes. The config reads the key material and reports
//! where it failed; what a key is, and whether it signs, is decided here.
//! Errors never quote a key.

use std::fmt;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

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
