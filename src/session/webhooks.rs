//! Platform webhooks (`POST /_hooks/<name>`): verify the platform's
//! signature on the raw body, then store or purge the call's session.
//!
//! | platform | signature | stores on | purges on |
//! |---|---|---|---|
//! | vapi | `x-vapi-secret`, `Authorization: Bearer`, or the HMAC plan (`x-signature` over `{timestamp}.{body}`) | any message with `message.call.id` | `end-of-call-report`, `status-update` with status `ended` |
//! | retell | `x-retell-signature: v=<ms>,d=<hex>`, HMAC-SHA256(key, body + ts) | `call_started` | `call_ended`, `call_analyzed` |
//! | elevenlabs | `elevenlabs-signature: t=<s>,v0=<hex>`, HMAC-SHA256(secret, "t.body") | — | `post_call_transcription` |
//!
//! A delivery seen before within the tolerance window is answered 2xx and
//! changes nothing (platforms retry).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::Mac as _;
use http::HeaderMap;
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use super::{Session, SessionError, SessionStore, Source, Store, validate, views};
use crate::config::{HmacPlan, Secret, Webhook};

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// A session was written.
    Stored,
    /// A session was removed.
    Purged,
    /// Valid, but nothing to do for this event type.
    Ignored,
    /// Seen before: nothing changed.
    Replayed,
}

impl HookOutcome {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            HookOutcome::Stored => "stored",
            HookOutcome::Purged => "purged",
            HookOutcome::Ignored => "ignored",
            HookOutcome::Replayed => "replayed",
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Missing, wrong or stale signature.
    #[error("webhook signature missing, invalid or outside the time window")]
    Unauthorized,
    /// Not the platform's payload shape.
    #[error("{0}")]
    InvalidPayload(String),
    /// The session could not be stored.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl HookError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            HookError::Unauthorized => "webhook.unauthorized",
            HookError::InvalidPayload(_) => "webhook.invalid_payload",
            HookError::Session(e) => e.code(),
        }
    }
}

/// Remembers recent deliveries for replay protection.
#[derive(Clone)]
pub struct ReplayGuard {
    seen: moka::sync::Cache<[u8; 32], ()>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(Duration::from_secs(3600))
    }
}

impl ReplayGuard {
    /// Keeps delivery fingerprints for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            seen: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(window)
                .build(),
        }
    }

    /// True the first time a fingerprint is offered within the window.
    fn first_time(&self, key: [u8; 32]) -> bool {
        let entry = self.seen.entry(key).or_insert(());
        entry.is_fresh()
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn mac(algorithm: &str, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
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
        "sha512" => run!(sha2::Sha512),
        "sha1" => run!(sha1::Sha1),
        _ => run!(sha2::Sha256),
    }
}

fn decode_sig(s: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding {
        "base64" => base64::engine::general_purpose::STANDARD.decode(s).ok(),
        _ => hex_decode(s),
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
    !a.is_empty() && a.ct_eq(b).into()
}

fn within(ts_secs: f64, tolerance: Duration, now: f64) -> bool {
    (now - ts_secs).abs() <= tolerance.as_secs_f64()
}

/// Parses a unix timestamp in seconds or milliseconds.
fn unix_secs(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    Some(if v > 1e11 { v / 1000.0 } else { v })
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
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
) -> Option<[u8; 32]> {
    if let Some(v) = header(headers, "x-vapi-secret") {
        return secret.matches(v.as_bytes()).then(|| fingerprint(&[body]));
    }
    if let Some(sig) = header(headers, plan.signature_header.as_str()) {
        let sig = sig.strip_prefix(plan.prefix.as_str()).unwrap_or(sig);
        let provided = decode_sig(sig, &plan.encoding)?;
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
        let expected = mac(&plan.algorithm, secret.expose().as_bytes(), &parts);
        return ct_eq(&expected, &provided).then(|| fingerprint(&[sig.as_bytes(), body]));
    }
    if let Some(auth) = header(headers, "authorization") {
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
) -> Option<[u8; 32]> {
    let sig = header(headers, "x-retell-signature")?;
    let ts = sig_fields(sig, "v").next()?;
    let digest = sig_fields(sig, "d").next()?;
    if !within(unix_secs(ts)?, tolerance, now) {
        return None;
    }
    let provided = hex_decode(digest)?;
    let expected = mac("sha256", secret.expose().as_bytes(), &[body, ts.as_bytes()]);
    ct_eq(&expected, &provided).then(|| fingerprint(&[sig.as_bytes(), body]))
}

/// ElevenLabs: `elevenlabs-signature: t=<unix s>,v0=<hex hmac-sha256("t.body")>`.
pub fn verify_elevenlabs(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: f64,
) -> Option<[u8; 32]> {
    let sig = header(headers, "elevenlabs-signature")?;
    let ts = sig_fields(sig, "t").next()?;
    let digests: Vec<&str> = sig_fields(sig, "v0").collect();
    if !within(unix_secs(ts)?, tolerance, now) {
        return None;
    }
    let expected = mac(
        "sha256",
        secret.expose().as_bytes(),
        &[ts.as_bytes(), b".", body],
    );
    digests
        .iter()
        .any(|d| hex_decode(d).is_some_and(|p| ct_eq(&expected, &p)))
        .then(|| fingerprint(&[sig.as_bytes(), body]))
}

/// Verifies a delivery for `hook`'s platform; the fingerprint on success.
pub fn verify(hook: &Webhook, headers: &HeaderMap, body: &[u8]) -> Option<[u8; 32]> {
    let secret = hook.secret.as_ref()?;
    let now = now_unix();
    match hook.platform.as_str() {
        "retell" => verify_retell(secret, headers, body, hook.tolerance, now),
        "elevenlabs" => verify_elevenlabs(secret, headers, body, hook.tolerance, now),
        _ => verify_vapi(&hook.hmac, secret, headers, body, hook.tolerance, now),
    }
}

/// What a verified payload asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Store these variables under this id.
    Store(String, Value),
    /// Remove this id.
    Purge(String),
    /// Nothing to do.
    Ignore,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Interprets a platform payload (pure: no I/O).
pub fn interpret(platform: &str, payload: &Value) -> Result<Action, HookError> {
    let bad = |m: &str| HookError::InvalidPayload(m.to_string());
    match platform {
        "retell" => {
            let event =
                str_at(payload, "/event").ok_or_else(|| bad("Retell webhook without `event`"))?;
            let id = str_at(payload, "/call/call_id")
                .ok_or_else(|| bad("Retell webhook without `call.call_id`"))?;
            Ok(match event {
                "call_ended" | "call_analyzed" => Action::Purge(id.to_string()),
                "call_started" => Action::Store(id.to_string(), json!({ "call": payload["call"] })),
                _ => Action::Ignore,
            })
        }
        "elevenlabs" => {
            let kind =
                str_at(payload, "/type").ok_or_else(|| bad("ElevenLabs webhook without `type`"))?;
            let id = str_at(payload, "/data/conversation_id");
            Ok(match (kind, id) {
                (
                    "post_call_transcription" | "post_call_audio" | "call_initiation_failure",
                    Some(id),
                ) => Action::Purge(id.to_string()),
                (_, None) if kind.starts_with("post_call") => {
                    return Err(bad("ElevenLabs webhook without `data.conversation_id`"));
                }
                _ => Action::Ignore,
            })
        }
        _ => {
            let msg = payload
                .get("message")
                .ok_or_else(|| bad("Vapi server message without `message`"))?;
            let kind = str_at(msg, "/type")
                .ok_or_else(|| bad("Vapi server message without `message.type`"))?;
            let Some(id) = str_at(msg, "/call/id") else {
                return Ok(Action::Ignore);
            };
            let ended = kind == "end-of-call-report"
                || (kind == "status-update" && str_at(msg, "/status") == Some("ended"));
            if ended {
                return Ok(Action::Purge(id.to_string()));
            }
            let mut call = msg["call"].clone();
            views::vapi_call(&mut call);
            let mut vars = json!({ "call": call });
            if let Some(c) = msg.get("customer").filter(|c| c.is_object()) {
                vars["customer"] = c.clone();
            }
            Ok(Action::Store(id.to_string(), vars))
        }
    }
}

/// Handles one verified-or-not delivery end to end.
pub async fn deliver(
    hook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    store: &Store,
    replay: &ReplayGuard,
    max_session_bytes: usize,
) -> Result<HookOutcome, HookError> {
    let fp = verify(hook, headers, body).ok_or(HookError::Unauthorized)?;
    let payload: Value = serde_json::from_slice(body)
        .map_err(|_| HookError::InvalidPayload("body is not JSON".into()))?;
    let action = interpret(&hook.platform, &payload)?;
    if !replay.first_time(fp) {
        return Ok(HookOutcome::Replayed);
    }
    match action {
        Action::Ignore => Ok(HookOutcome::Ignored),
        Action::Purge(id) => {
            store.delete(&id).await?;
            Ok(HookOutcome::Purged)
        }
        Action::Store(id, vars) => {
            let vars = validate(vars, max_session_bytes)?;
            store
                .put(&id, Session::new(vars, Source::Webhook, hook.ttl))
                .await?;
            Ok(HookOutcome::Stored)
        }
    }
}

/// Signs like Retell does (for tests and examples).
pub fn sign_retell(key: &str, body: &[u8], ts_ms: u64) -> String {
    let ts = ts_ms.to_string();
    let d = mac("sha256", key.as_bytes(), &[body, ts.as_bytes()]);
    format!("v={ts},d={}", hex(&d))
}

/// Signs like ElevenLabs does (for tests and examples).
pub fn sign_elevenlabs(secret: &str, body: &[u8], ts: u64) -> String {
    let t = ts.to_string();
    let d = mac("sha256", secret.as_bytes(), &[t.as_bytes(), b".", body]);
    format!("t={t},v0={}", hex(&d))
}

/// Signs with a Vapi HMAC plan's defaults: hex HMAC-SHA256 of `ts.body`.
pub fn sign_vapi(secret: &str, body: &[u8], ts: &str) -> String {
    hex(&mac(
        "sha256",
        secret.as_bytes(),
        &[ts.as_bytes(), b".", body],
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn plan() -> HmacPlan {
        HmacPlan {
            algorithm: "sha256".into(),
            signature_header: http::HeaderName::from_static("x-signature"),
            timestamp_header: Some(http::HeaderName::from_static("x-timestamp")),
            payload: "{timestamp}.{body}".into(),
            encoding: "hex".into(),
            prefix: String::new(),
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
        p.encoding = "base64".into();
        p.prefix = "sha256=".into();
        let raw = mac("sha256", b"whsec", &[ts.as_bytes(), b".", body]);
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

    #[test]
    fn interpret_payloads() {
        let v = json!({"message": {"type": "status-update", "status": "in-progress", "call": {"id": "c1", "assistantOverrides": {"variableValues": {"token": "t"}}}}});
        match interpret("vapi", &v).unwrap() {
            Action::Store(id, vars) => {
                assert_eq!(id, "c1");
                assert_eq!(vars["call"]["metadata"]["token"], "t");
            }
            other => panic!("{other:?}"),
        }
        let ended =
            json!({"message": {"type": "status-update", "status": "ended", "call": {"id": "c1"}}});
        assert_eq!(
            interpret("vapi", &ended).unwrap(),
            Action::Purge("c1".into())
        );
        let eocr = json!({"message": {"type": "end-of-call-report", "call": {"id": "c1"}}});
        assert_eq!(
            interpret("vapi", &eocr).unwrap(),
            Action::Purge("c1".into())
        );
        assert!(interpret("vapi", &json!({"x": 1})).is_err());
        let r = json!({"event": "call_ended", "call": {"call_id": "r1"}});
        assert_eq!(interpret("retell", &r).unwrap(), Action::Purge("r1".into()));
        let e = json!({"type": "post_call_transcription", "data": {"conversation_id": "e1"}});
        assert_eq!(
            interpret("elevenlabs", &e).unwrap(),
            Action::Purge("e1".into())
        );
    }
}
