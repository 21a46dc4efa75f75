//! The config files as written: TOML tables deserialized with their spans,
//! so every later error can point at `path:line:column`. Unknown keys are
//! refused here (`deny_unknown_fields`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) admin_listen: Option<Spanned<String>>,
    pub(super) admin_token_env: Option<String>,
    #[serde(default)]
    pub(super) admin_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) env_allow: Vec<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) max_sessions: Option<u64>,
    pub(super) max_store_bytes: Option<Spanned<String>>,
    pub(super) max_session_bytes: Option<Spanned<String>>,
    pub(super) body_limit: Option<Spanned<String>>,
    pub(super) builtin_echo: Option<bool>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Spanned<String>>,
    pub(super) max_connections: Option<u64>,
    pub(super) workers: Option<u64>,
    pub(super) core: Option<Spanned<String>>,
    pub(super) metrics_token_env: Option<Spanned<String>>,
    pub(super) timeouts: Option<RawTimeouts>,
    pub(super) store: Option<RawStore>,
    pub(super) tls: Option<RawTls>,
    pub(super) resolver: Option<RawResolver>,
    #[serde(default)]
    pub(super) webhooks: BTreeMap<String, RawWebhook>,
    pub(super) audit: Option<RawAudit>,
    pub(super) tracing: Option<RawTracing>,
    #[serde(default)]
    pub(super) credentials: BTreeMap<String, Spanned<RawCredential>>,
}

/// `[credentials.NAME]`: every field of every kind; which apply to which
/// kind is checked in `credentials.rs`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) token_url: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) client_secret_env: Option<Spanned<String>>,
    pub(super) client_auth: Option<Spanned<String>>,
    pub(super) scope: Option<Spanned<String>>,
    pub(super) resource: Option<Spanned<String>>,
    pub(super) audience: Option<Spanned<String>>,
    pub(super) refresh_before: Option<Spanned<String>>,
    pub(super) default_lifetime: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) refresh_token_from: Option<Spanned<String>>,
    pub(super) subject_token: Option<Spanned<String>>,
    pub(super) subject_token_type: Option<Spanned<String>>,
    pub(super) requested_token_type: Option<Spanned<String>>,
    pub(super) issuer: Option<Spanned<String>>,
    pub(super) signing_key_file: Option<Spanned<String>>,
    pub(super) signing_key_env: Option<Spanned<String>>,
    pub(super) key_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) previous_keys: Vec<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) claims: BTreeMap<String, Spanned<String>>,
    pub(super) prefetch: Option<Spanned<bool>>,
    pub(super) revoke_on_end: Option<Spanned<bool>>,
    pub(super) revocation_url: Option<Spanned<String>>,
    pub(super) idp_token_url: Option<Spanned<String>>,
    pub(super) idp_client_id: Option<Spanned<String>>,
    pub(super) idp_client_secret_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracing {
    pub(super) propagate: Option<bool>,
    pub(super) otlp_endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) path: Spanned<String>,
    pub(super) session_key_env: Option<Spanned<String>>,
}

/// The keys `headgate.toml` takes before any `[table]`: a file appended to
/// another can put one of them inside the last table, and the error then
/// says where it belongs.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "admin_token_env",
    "admin_hosts",
    "env_allow",
    "ttl",
    "max_sessions",
    "max_store_bytes",
    "max_session_bytes",
    "body_limit",
    "builtin_echo",
    "trusted_proxies",
    "max_connections",
    "workers",
    "core",
    "metrics_token_env",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) connect: Option<Spanned<String>>,
    pub(super) response_headers: Option<Spanned<String>>,
    pub(super) idle: Option<Spanned<String>>,
    pub(super) header_read: Option<Spanned<String>>,
    pub(super) shutdown: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) cert_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) admin: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) kind: Spanned<String>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) prefix: Option<String>,
    pub(super) cache_ttl: Option<Spanned<String>>,
    pub(super) stale_ttl: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) encryption_keys_env: Option<Spanned<String>>,
    pub(super) tls_cert_file: Option<Spanned<String>>,
    pub(super) tls_key_file: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) nodes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) sentinels: Vec<Spanned<String>>,
    pub(super) master_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolver {
    pub(super) platform: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) method: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    pub(super) bind: Option<String>,
    pub(super) pointer: Option<String>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) negative_ttl: Option<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) refresh_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) platform: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) hmac: Option<RawHmac>,
    pub(super) tolerance: Option<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHmac {
    pub(super) algorithm: Option<Spanned<String>>,
    pub(super) signature_header: Option<String>,
    pub(super) timestamp_header: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) encoding: Option<Spanned<String>>,
    pub(super) prefix: Option<String>,
    pub(super) required: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) upstream: Spanned<String>,
    pub(super) platform: Option<Spanned<String>>,
    pub(super) session_keys: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) session_key_pattern: Option<Spanned<String>>,
    pub(super) inbound_auth: Option<Spanned<toml::Value>>,
    pub(super) on_unknown_session: Option<Spanned<String>>,
    pub(super) wait_for_session: Option<Spanned<String>>,
    pub(super) error_style: Option<Spanned<String>>,
    pub(super) body_limit: Option<Spanned<String>>,
    pub(super) vars_from_body: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<toml::Value>>,
    pub(super) strip: Option<RawStrip>,
    pub(super) mcp: Option<RawMcp>,
    pub(super) access_log: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    #[serde(default)]
    pub(super) allow_tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) deny_tools: Vec<Spanned<String>>,
    pub(super) budgets: Option<Spanned<super::mcp::Ordered>>,
    pub(super) max_result_bytes: Option<Spanned<String>>,
    pub(super) pin_tools: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStrip {
    #[serde(default)]
    pub(super) headers: Vec<Spanned<String>>,
}
