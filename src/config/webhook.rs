//! `[webhooks.NAME]`: an endpoint at `POST /_hooks/NAME` where a platform
//! announces calls, signed with the platform's scheme (docs/platforms.md "Platforms").

use std::time::Duration;

use super::LoadMode;
use super::diagnostics::Ctx;
use super::schema::{RawHmac, RawWebhook};
use crate::platform::{HmacPlan, MacAlgorithm, Platform, SigEncoding};
use crate::secret::Secret;

/// A webhook endpoint.
#[derive(Debug)]
pub struct Webhook {
    /// Name (`/_hooks/<name>`).
    pub name: String,
    /// Platform whose payloads it understands.
    pub platform: Platform,
    /// Signing secret (HMAC key, shared secret or bearer token).
    pub secret: Option<Secret>,
    /// Vapi HMAC plan.
    pub hmac: HmacPlan,
    /// Accepted clock skew for signed timestamps.
    pub tolerance: Duration,
    /// TTL for sessions it writes.
    pub ttl: Duration,
}

/// Builds `[webhooks.NAME]`; its platform is `platform`, else its name.
pub(super) fn webhook(
    ctx: &mut Ctx<'_>,
    name: &str,
    raw: &RawWebhook,
    default_ttl: Duration,
) -> Option<Webhook> {
    let (pname, off) = match &raw.platform {
        Some(p) => (p.get_ref().as_str(), p.span().start),
        None => (name, 0),
    };
    let platform = ctx.platform(pname, off)?;
    let secret = match &raw.secret_env {
        Some(env) => ctx.secret(env),
        None => {
            ctx.err(0, "config.webhook_secret_required", format!("[webhooks.{name}] needs `secret_env`: unsigned webhooks would let anyone register credentials"));
            None
        }
    };
    let preset = platform.signature();
    let hmac = hmac_plan(
        ctx,
        raw.hmac.as_ref().unwrap_or(&RawHmac::default()),
        platform,
    )?;
    let tolerance = ctx.duration(&raw.tolerance, preset.tolerance);
    let ttl = ctx.duration(&raw.ttl, default_ttl);
    if ctx.mode != LoadMode::Offline && secret.is_none() {
        return None;
    }
    Some(Webhook {
        name: name.to_string(),
        platform,
        secret,
        hmac,
        tolerance,
        ttl,
    })
}

/// The `hmac` table over the platform's signature preset.
fn hmac_plan(ctx: &mut Ctx<'_>, h: &RawHmac, platform: Platform) -> Option<HmacPlan> {
    let preset = platform.signature();
    let signature_header = h.signature_header.as_deref().unwrap_or(preset.header);
    let timestamp_header = h
        .timestamp_header
        .as_deref()
        .unwrap_or(preset.timestamp_header);
    let algorithm = ctx.choice(
        h.algorithm.as_ref(),
        "hmac.algorithm",
        MacAlgorithm::NAMES,
        MacAlgorithm::Sha256,
    );
    let encoding = ctx.choice(
        h.encoding.as_ref(),
        "hmac.encoding",
        SigEncoding::NAMES,
        SigEncoding::Hex,
    );
    Some(HmacPlan {
        algorithm,
        signature_header: ctx.header_name(signature_header, 0)?,
        timestamp_header: match timestamp_header {
            "" => None,
            t => Some(ctx.header_name(t, 0)?),
        },
        payload: h.payload.clone().unwrap_or_else(|| preset.payload.into()),
        encoding,
        prefix: h.prefix.clone().unwrap_or_default(),
        required: h.required.unwrap_or(false),
    })
}
