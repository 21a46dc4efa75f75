//! Encodings and digests: URL, base64, JSON, SHA-256, HMAC-SHA256.

use base64::Engine as _;
use hmac::Mac as _;
use liquid_core::Result;
use liquid_core::model::Value;
use sha2::Digest as _;

use super::Invocation;
use super::js::{self, decode_uri_component, encode_uri_component, hex, json_string, num};
use crate::error::ErrorKind;
use crate::guard::fail;

/// `url_encode`: `encodeURIComponent`, with a space as `+`.
pub(super) fn url_encode(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(
        encode_uri_component(&c.st()).replace("%20", "+"),
    ))
}

/// `url_decode`: `+` as a space, then percent-decoding; malformed input
/// fails the render.
pub(super) fn url_decode(c: &Invocation<'_>) -> Result<Value> {
    match decode_uri_component(&c.st().replace('+', " ")) {
        Some(d) => Ok(Value::scalar(d)),
        None => Err(fail(
            ErrorKind::RenderFailed,
            "url_decode: malformed percent-encoding",
        )),
    }
}

/// `base64_encode`: standard alphabet, padded.
pub(super) fn base64_encode(c: &Invocation<'_>) -> Result<Value> {
    let e = base64::engine::general_purpose::STANDARD.encode(c.st());
    Ok(Value::scalar(e))
}

/// `base64_url_safe_encode`: URL-safe alphabet, padded.
pub(super) fn base64_url_safe_encode(c: &Invocation<'_>) -> Result<Value> {
    let e = base64::engine::general_purpose::URL_SAFE.encode(c.st());
    Ok(Value::scalar(e))
}

/// `base64_decode`: what LiquidJS accepts, else the render fails.
pub(super) fn base64_decode(c: &Invocation<'_>) -> Result<Value> {
    match js::base64_decode(&c.st()) {
        Some(d) => Ok(Value::scalar(d)),
        None => Err(fail(
            ErrorKind::RenderFailed,
            "base64_decode: input is not base64",
        )),
    }
}

/// `sha256`: lower-case hex digest.
pub(super) fn sha256(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(hex(&sha2::Sha256::digest(c.st().as_bytes()))))
}

/// `hmac_sha256: key`: lower-case hex MAC.
pub(super) fn hmac_sha256(c: &Invocation<'_>) -> Result<Value> {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(c.sarg(0).as_bytes()) else {
        return Err(fail(ErrorKind::RenderFailed, "hmac_sha256: bad key"));
    };
    mac.update(c.st().as_bytes());
    Ok(Value::scalar(hex(&mac.finalize().into_bytes())))
}

/// `json[: indent]`: `JSON.stringify`.
pub(super) fn json(c: &Invocation<'_>) -> Result<Value> {
    let indent = if c.has_arg(0) {
        num(&c.arg(0)).clamp(0.0, 10.0) as usize
    } else {
        0
    };
    Ok(Value::scalar(json_string(c.input, indent)))
}
