//! Platform signature schemes: verify a signed request or webhook on its
//! raw body, and sign like each platform does (for tests and examples).
//!
//! | platform | signature |
//! |---|---|
//! | vapi | `x-vapi-secret`, `Authorization: Bearer`, or the HMAC plan (`x-signature` over `{timestamp}.{body}`) |
//! | retell | `x-retell-signature: v=<ms>,d=<hex>`, HMAC-SHA256(key, body + ts) |
//! | elevenlabs | `elevenlabs-signature: t=<s>,v0=<hex>`, HMAC-SHA256(secret, "t.body") |
//!
//! Every successful check returns a [`Fingerprint`] of the delivery, which
//! the replay guard remembers.

use std::time::Duration;

use base64::Engine as _;
use hmac::Mac as _;
use http::{HeaderMap, HeaderName};
use sha2::Digest as _;

use super::Platform;
use crate::secret::Secret;

/// Retell's request and webhook signature header.
pub const RETELL_SIGNATURE: &str = "x-retell-signature";

/// What the replay guard remembers of a verified delivery.
pub type Fingerprint = [u8; 32];

/// The MAC of an HMAC plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlgorithm {
    /// HMAC-SHA256 (the default).
    Sha256,
    /// HMAC-SHA512.
    Sha512,
    /// HMAC-SHA1.
    Sha1,
}

impl MacAlgorithm {
    /// Config names, in the order `check` lists them.
    pub const NAMES: &[(&str, MacAlgorithm)] = &[
        ("sha256", MacAlgorithm::Sha256),
        ("sha512", MacAlgorithm::Sha512),
        ("sha1", MacAlgorithm::Sha1),
    ];
}

/// How an HMAC plan's signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigEncoding {
    /// Lower- or upper-case hex (the default).
    Hex,
    /// Standard base64.
    Base64,
}

impl SigEncoding {
    /// Config names.
    pub const NAMES: &[(&str, SigEncoding)] =
        &[("hex", SigEncoding::Hex), ("base64", SigEncoding::Base64)];
}

/// Vapi's configurable HMAC verification plan.
#[derive(Debug, Clone)]
pub struct HmacPlan {
    /// The MAC.
    pub algorithm: MacAlgorithm,
    /// Header carrying the signature.
    pub signature_header: HeaderName,
    /// Header carrying the timestamp (empty: none).
    pub timestamp_header: Option<HeaderName>,
    /// What is signed: `{timestamp}` and `{body}` are substituted.
    pub payload: String,
    /// How the signature is written.
    pub encoding: SigEncoding,
    /// Prefix before the signature (e.g. `sha256=`).
    pub prefix: String,
    /// Accept only the HMAC plan: a plain shared secret (`x-vapi-secret`,
    /// `Authorization: Bearer`) is refused.
    pub required: bool,
}

/// Verifies a delivery signed with `platform`'s scheme (`plan` is used by
/// the Vapi scheme only); the fingerprint on success.
pub fn verify(
    platform: Platform,
    plan: &HmacPlan,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: f64,
) -> Option<Fingerprint> {
    match platform {
        Platform::Retell => verify_retell(secret, headers, body, tolerance, now),
        Platform::ElevenLabs => verify_elevenlabs(secret, headers, body, tolerance, now),
        Platform::Vapi | Platform::LiveKit | Platform::Generic => {
            verify_vapi(plan, secret, headers, body, tolerance, now)
        }
    }
}

/// Seconds since the Unix epoch, the clock signed timestamps are read on.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Verifies a tool-call request signed by `platform` (Retell custom
/// functions) within the platform's tolerance; platforms that do not sign
/// their requests verify nothing.
pub fn verify_request(
    platform: Platform,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Fingerprint> {
    let tolerance = platform.signature().tolerance;
    match platform {
        Platform::Retell => verify_retell(secret, headers, body, tolerance, now_unix()),
        _ => None,
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn mac(algorithm: MacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            match hmac::Hmac::<$d>::new_from_slice(key) {
                Ok(mut m) => {
                    for p in parts {
                        m.update(p);
                    }
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }};
    }
    match algorithm {
        MacAlgorithm::Sha512 => run!(sha2::Sha512),
        MacAlgorithm::Sha1 => run!(sha1::Sha1),
        MacAlgorithm::Sha256 => run!(sha2::Sha256),
    }
}

fn decode_sig(s: &str, encoding: SigEncoding) -> Option<Vec<u8>> {
    match encoding {
        SigEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(s).ok(),
        SigEncoding::Hex => hex_decode(s),
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && crate::secret::ct_eq(a, b)
}

fn within(ts_secs: f64, tolerance: Duration, now: f64) -> bool {
    (now - ts_secs).abs() <= tolerance.as_secs_f64()
}

/// Parses a unix timestamp in seconds or milliseconds.
fn unix_secs(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    Some(if v > 1e11 { v / 1000.0 } else { v })
}

/// The fingerprint of what a signature covered (the signed message, or the
/// body for a shared-secret header), never of how the signature header was
/// spelled: a replay with the hex in upper case or an extra parameter is
/// the same delivery.
fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Vapi: `x-vapi-secret`, a bearer credential, or the HMAC plan. Returns
/// the delivery fingerprint.
pub fn verify_vapi(
    plan: &HmacPlan,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: f64,
) -> Option<Fingerprint> {
    if let Some(v) = header(headers, "x-vapi-secret").filter(|_| !plan.required) {
        return secret.matches(v.as_bytes()).then(|| fingerprint(&[body]));
    }
    if let Some(sig) = header(headers, plan.signature_header.as_str()) {
        let sig = sig.strip_prefix(plan.prefix.as_str()).unwrap_or(sig);
        let provided = decode_sig(sig, plan.encoding)?;
        let ts = match &plan.timestamp_header {
            Some(h) => {
                let ts = header(headers, h.as_str())?;
                if !within(unix_secs(ts)?, tolerance, now) {
                    return None;
                }
                ts.to_string()
            }
            None => String::new(),
        };
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut rest = plan.payload.as_str();
        while !rest.is_empty() {
            let next = [rest.find("{timestamp}"), rest.find("{body}")]
                .into_iter()
                .flatten()
                .min();
            match next {
                None => {
                    parts.push(rest.as_bytes());
                    break;
                }
                Some(i) => {
                    parts.push(&rest.as_bytes()[..i]);
                    if rest[i..].starts_with("{timestamp}") {
                        parts.push(ts.as_bytes());
                        rest = &rest[i + "{timestamp}".len()..];
                    } else {
                        parts.push(body);
                        rest = &rest[i + "{body}".len()..];
                    }
                }
            }
        }
        let expected = mac(plan.algorithm, secret.expose().as_bytes(), &parts);
        return ct_eq(&expected, &provided).then(|| fingerprint(&parts));
    }
    if let Some(auth) = header(headers, "authorization").filter(|_| !plan.required) {
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or(auth);
        return secret
            .matches(token.as_bytes())
            .then(|| fingerprint(&[body]));
    }
    None
}

/// The values of `name` in a `k=v,k=v` signature header (Retell, ElevenLabs).
fn sig_fields<'a>(sig: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    sig.split(',')
        .filter_map(move |part| match part.trim().split_once('=') {
            Some((k, v)) if k == name => Some(v),
            _ => None,
        })
}

/// Retell: `x-retell-signature: v=<unix ms>,d=<hex hmac-sha256(body + ts)>`.
pub fn verify_retell(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: f64,
) -> Option<Fingerprint> {
    let sig = header(headers, RETELL_SIGNATURE)?;
    let ts = sig_fields(sig, "v").next()?;
    let digest = sig_fields(sig, "d").next()?;
    if !within(unix_secs(ts)?, tolerance, now) {
        return None;
    }
    let provided = hex_decode(digest)?;
    let expected = mac(
        MacAlgorithm::Sha256,
        secret.expose().as_bytes(),
        &[body, ts.as_bytes()],
    );
    ct_eq(&expected, &provided).then(|| fingerprint(&[b"retell", ts.as_bytes(), body]))
}

/// ElevenLabs: `elevenlabs-signature: t=<unix s>,v0=<hex hmac-sha256("t.body")>`.
pub fn verify_elevenlabs(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: f64,
) -> Option<Fingerprint> {
    let sig = header(headers, "elevenlabs-signature")?;
    let ts = sig_fields(sig, "t").next()?;
    let digests: Vec<&str> = sig_fields(sig, "v0").collect();
    if !within(unix_secs(ts)?, tolerance, now) {
        return None;
    }
    let expected = mac(
        MacAlgorithm::Sha256,
        secret.expose().as_bytes(),
        &[ts.as_bytes(), b".", body],
    );
    digests
        .iter()
        .any(|d| hex_decode(d).is_some_and(|p| ct_eq(&expected, &p)))
        .then(|| fingerprint(&[b"elevenlabs", ts.as_bytes(), body]))
}

/// Signs like Retell does (for tests and examples).
pub fn sign_retell(key: &str, body: &[u8], ts_ms: u64) -> String {
    let ts = ts_ms.to_string();
    let d = mac(MacAlgorithm::Sha256, key.as_bytes(), &[body, ts.as_bytes()]);
    format!("v={ts},d={}", crate::hex::encode(&d))
}

/// Signs like ElevenLabs does (for tests and examples).
pub fn sign_elevenlabs(secret: &str, body: &[u8], ts: u64) -> String {
    let t = ts.to_string();
    let d = mac(
        MacAlgorithm::Sha256,
        secret.as_bytes(),
        &[t.as_bytes(), b".", body],
    );
    format!("t={t},v0={}", crate::hex::encode(&d))
}

/// Signs with a Vapi HMAC plan's defaults: hex HMAC-SHA256 of `ts.body`.
pub fn sign_vapi(secret: &str, body: &[u8], ts: &str) -> String {
    crate::hex::encode(&mac(
        MacAlgorithm::Sha256,
        secret.as_bytes(),
        &[ts.as_bytes(), b".", body],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use http::HeaderValue;

    fn plan() -> HmacPlan {
        HmacPlan {
            algorithm: MacAlgorithm::Sha256,
            signature_header: http::HeaderName::from_static("x-signature"),
            timestamp_header: Some(http::HeaderName::from_static("x-timestamp")),
            payload: "{timestamp}.{body}".into(),
            encoding: SigEncoding::Hex,
            prefix: String::new(),
            required: false,
        }
    }

    fn hm(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const TOL: Duration = Duration::from_secs(300);

    #[test]
    fn vapi_hmac_plan() {
        let s = Secret::new("whsec");
        let body = br#"{"message":{"type":"status-update"}}"#;
        let now = 1_700_000_000.0;
        let ts = "1700000000";
        let good = hm(&[
            ("x-signature", sign_vapi("whsec", body, ts)),
            ("x-timestamp", ts.into()),
        ]);
        assert!(verify_vapi(&plan(), &s, &good, body, TOL, now).is_some());
        assert!(verify_vapi(&plan(), &s, &good, b"tampered", TOL, now).is_none());
        assert!(
            verify_vapi(&plan(), &s, &good, body, TOL, now + 3600.0).is_none(),
            "stale timestamp"
        );
        let wrong = hm(&[
            ("x-signature", sign_vapi("other", body, ts)),
            ("x-timestamp", ts.into()),
        ]);
        assert!(verify_vapi(&plan(), &s, &wrong, body, TOL, now).is_none());
        assert!(verify_vapi(&plan(), &s, &HeaderMap::new(), body, TOL, now).is_none());
        let mut p = plan();
        p.encoding = SigEncoding::Base64;
        p.prefix = "sha256=".into();
        let raw = mac(MacAlgorithm::Sha256, b"whsec", &[ts.as_bytes(), b".", body]);
        let b64 = format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let h = hm(&[("x-signature", b64), ("x-timestamp", ts.into())]);
        assert!(verify_vapi(&p, &s, &h, body, TOL, now).is_some());
    }

    #[test]
    fn vapi_secret_and_bearer_forms() {
        let s = Secret::new("shh");
        let verdict = |name: &'static str, value: &str| {
            verify_vapi(&plan(), &s, &hm(&[(name, value.into())]), b"{}", TOL, 0.0).is_some()
        };
        assert!(verdict("x-vapi-secret", "shh"));
        assert!(!verdict("x-vapi-secret", "nope"));
        assert!(verdict("authorization", "Bearer shh"));
        assert!(!verdict("authorization", "Bearer sh"));
        // With the HMAC plan required, the plain forms are refused.
        let strict = HmacPlan {
            required: true,
            ..plan()
        };
        for (name, value) in [("x-vapi-secret", "shh"), ("authorization", "Bearer shh")] {
            let h = hm(&[(name, value.into())]);
            assert!(
                verify_vapi(&strict, &s, &h, b"{}", TOL, 0.0).is_none(),
                "{name}"
            );
        }
    }

    #[test]
    fn retell_signature() {
        let s = Secret::new("key_abc");
        let body = br#"{"event":"call_started","call":{"call_id":"c1"}}"#;
        let ms = 1_700_000_000_000u64;
        let h = hm(&[("x-retell-signature", sign_retell("key_abc", body, ms))]);
        assert!(verify_retell(&s, &h, body, TOL, 1_700_000_010.0).is_some());
        assert!(
            verify_retell(&s, &h, body, TOL, 1_700_001_000.0).is_none(),
            "outside 5 minutes"
        );
        assert!(verify_retell(&s, &h, b"{}", TOL, 1_700_000_010.0).is_none());
    }

    /// A replay with the signature re-spelled (hex case, extra parameters,
    /// an extra `v0=`) verifies, and must be recognised as the same
    /// delivery: the fingerprint is of what was signed.
    #[test]
    fn respelled_signatures_have_the_same_fingerprint() {
        let body = br#"{"event":"call_started","call":{"call_id":"c1"}}"#;
        let s = Secret::new("key_abc");
        let ms = 1_700_000_000_000u64;
        let sig = sign_retell("key_abc", body, ms);
        let now = 1_700_000_010.0;
        let fp = |v: String| verify_retell(&s, &hm(&[(RETELL_SIGNATURE, v)]), body, TOL, now);
        let original = fp(sig.clone()).unwrap();
        let (v, d) = sig.split_once(",d=").unwrap();
        for spelled in [
            format!("{v},d={}", d.to_uppercase()),
            format!("{sig},x=1"),
            format!("{v}, d={d}"),
        ] {
            assert_eq!(fp(spelled.clone()), Some(original), "{spelled}");
        }

        let e = Secret::new("wsec");
        let sig = sign_elevenlabs("wsec", body, 1_700_000_000);
        let fp =
            |v: String| verify_elevenlabs(&e, &hm(&[("elevenlabs-signature", v)]), body, TOL, now);
        let original = fp(sig.clone()).unwrap();
        for spelled in [
            format!("{sig},v0="),
            format!("{sig},v0=00"),
            sig.to_uppercase().replace("T=", "t=").replace("V0=", "v0="),
        ] {
            assert_eq!(fp(spelled.clone()), Some(original), "{spelled}");
        }

        let v = Secret::new("whsec");
        let ts = "1700000000";
        let hex = sign_vapi("whsec", body, ts);
        let fp = |sig: String| {
            let h = hm(&[("x-signature", sig), ("x-timestamp", ts.into())]);
            verify_vapi(&plan(), &v, &h, body, TOL, now)
        };
        let original = fp(hex.clone()).unwrap();
        assert_eq!(fp(hex.to_uppercase()), Some(original));
    }

    #[test]
    fn elevenlabs_signature() {
        let s = Secret::new("wsec");
        let body = br#"{"type":"post_call_transcription","data":{"conversation_id":"conv1"}}"#;
        let h = hm(&[(
            "elevenlabs-signature",
            sign_elevenlabs("wsec", body, 1_700_000_000),
        )]);
        assert!(
            verify_elevenlabs(&s, &h, body, Duration::from_secs(1800), 1_700_000_100.0).is_some()
        );
        assert!(
            verify_elevenlabs(&s, &h, body, Duration::from_secs(1800), 1_700_010_000.0).is_none()
        );
    }
}
