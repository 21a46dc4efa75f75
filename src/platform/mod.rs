//! Everything vendor-specific, in one room: which platforms headgate knows,
//! their presets (where the call id arrives, how webhooks are signed, which
//! API a miss fetches from), their signature schemes, how their webhook
//! payloads read, and how their call objects are shown to templates.
//!
//! The facts come from each platform's public docs; docs/platforms.md
//! lists them for operators. Nothing here does I/O.

pub mod payload;
pub mod signature;
pub mod views;

use std::fmt;
use std::time::Duration;

pub use payload::{Action, PayloadError, interpret};
pub use signature::{
    Fingerprint, HmacPlan, MacAlgorithm, SigEncoding, now_unix, sign_elevenlabs, sign_retell,
    sign_vapi, verify, verify_elevenlabs, verify_retell, verify_vapi,
};

/// A voice platform headgate has presets for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Vapi (`x-call-id`, server messages, `GET /call/{id}`).
    Vapi,
    /// ElevenLabs Agents (conversation id, post-call webhooks).
    ElevenLabs,
    /// Retell (signed custom-function bodies, call webhooks).
    Retell,
    /// LiveKit agents (the agent sets `x-session-id` itself).
    LiveKit,
    /// No platform: the generic session keys.
    Generic,
}

/// The defaults a platform's webhook signature scheme starts from; the
/// `hmac` table of a `[webhooks.NAME]` section overrides any of them.
#[derive(Debug, Clone, Copy)]
pub struct SignaturePreset {
    /// Header carrying the signature.
    pub header: &'static str,
    /// Header carrying the timestamp (`""`: the timestamp is inside the
    /// signature header).
    pub timestamp_header: &'static str,
    /// What is signed: `{timestamp}` and `{body}` are substituted.
    pub payload: &'static str,
    /// Accepted clock skew for signed timestamps.
    pub tolerance: Duration,
}

/// Where a miss fetches a platform's call from (`[resolver] platform = …`).
#[derive(Debug, Clone, Copy)]
pub struct ResolverPreset {
    /// URL template.
    pub url: &'static str,
    /// Request header templates.
    pub headers: &'static [(&'static str, &'static str)],
}

const GENERIC_KEYS: &[&str] = &[
    "header:x-call-id",
    "header:x-chat-id",
    "header:x-session-id",
];

impl Platform {
    /// Every platform, in the order error messages list them.
    pub const ALL: [Platform; 5] = [
        Platform::Vapi,
        Platform::ElevenLabs,
        Platform::Retell,
        Platform::LiveKit,
        Platform::Generic,
    ];

    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Vapi => "vapi",
            Platform::ElevenLabs => "elevenlabs",
            Platform::Retell => "retell",
            Platform::LiveKit => "livekit",
            Platform::Generic => "generic",
        }
    }

    /// The inverse of [`Platform::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The names, for error messages: `vapi, elevenlabs, …`.
    pub fn names() -> String {
        Self::ALL.map(Platform::name).join(", ")
    }

    /// Where a route finds the call id when it sets no `session_keys`.
    pub fn session_keys(self) -> &'static [&'static str] {
        match self {
            Platform::ElevenLabs => &["header:x-conversation-id", "header:x-session-id"],
            Platform::Retell => &["body:/call/call_id", "header:x-call-id"],
            Platform::LiveKit => &["header:x-session-id"],
            Platform::Vapi | Platform::Generic => GENERIC_KEYS,
        }
    }

    /// How the platform signs webhooks. LiveKit and generic webhooks use
    /// Vapi's server-message scheme, whose HMAC plan is configurable.
    pub fn signature(self) -> SignaturePreset {
        match self {
            Platform::ElevenLabs => SignaturePreset {
                header: "elevenlabs-signature",
                timestamp_header: "",
                payload: "{timestamp}.{body}",
                tolerance: Duration::from_secs(1800),
            },
            Platform::Retell => SignaturePreset {
                header: signature::RETELL_SIGNATURE,
                timestamp_header: "",
                payload: "{body}{timestamp}",
                tolerance: Duration::from_secs(300),
            },
            Platform::Vapi | Platform::LiveKit | Platform::Generic => SignaturePreset {
                header: "x-signature",
                timestamp_header: "x-timestamp",
                payload: "{timestamp}.{body}",
                tolerance: Duration::from_secs(1800),
            },
        }
    }

    /// The header carrying a signature over each tool-call request body, for
    /// platforms that sign their requests (Retell custom functions); such a
    /// route may use `inbound_auth = { platform = … }`.
    pub fn request_signature(self) -> Option<&'static str> {
        match self {
            Platform::Retell => Some(signature::RETELL_SIGNATURE),
            _ => None,
        }
    }

    /// The platform's "get call" API, if it has one.
    pub fn resolver(self) -> Option<ResolverPreset> {
        match self {
            Platform::Vapi => Some(ResolverPreset {
                url: "https://api.vapi.ai/call/<< session.id | url_encode >>",
                headers: &[("authorization", "Bearer << env.VAPI_API_KEY >>")],
            }),
            Platform::Retell => Some(ResolverPreset {
                url: "https://api.retellai.com/v2/get-call/<< session.id | url_encode >>",
                headers: &[("authorization", "Bearer << env.RETELL_API_KEY >>")],
            }),
            Platform::ElevenLabs => Some(ResolverPreset {
                url: "https://api.elevenlabs.io/v1/convai/conversations/<< session.id | url_encode >>",
                headers: &[("xi-api-key", "<< env.ELEVENLABS_API_KEY >>")],
            }),
            Platform::LiveKit | Platform::Generic => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::from_name(p.name()), Some(p));
        }
        assert_eq!(Platform::from_name("Vapi"), None);
        assert_eq!(
            Platform::names(),
            "vapi, elevenlabs, retell, livekit, generic"
        );
    }
}
