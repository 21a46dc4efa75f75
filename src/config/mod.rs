//! Configuration: `templates/headgate.toml` and `templates/routes/*.toml`,
//! loaded and validated whole (docs/configuration.md "Configuration reference").
//!
//! One file per section: [`server`] settings, the session [`store`],
//! [`tls`], each [`route`], [`webhook`]s and the [`resolver`]; [`schema`]
//! is the files as written and `diagnostics` locates every problem.
//! A [`Config`] is immutable once loaded; reload builds a new one and swaps
//! it in only if it is valid (see [`reload`]).

pub mod audit;
pub mod credentials;
mod diagnostics;
mod error;
mod load;
mod mcp;
mod oauth_client;
pub mod reload;
pub mod resolver;
pub mod route;
mod schema;
pub mod server;
mod session_key;
mod signing_key;
pub mod store;
pub mod tls;
pub mod units;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use audit::AuditSettings;
pub use credentials::{Credential, CredentialKind, Credentials};
pub use error::{ConfigError, ConfigErrors};
pub use load::{LoadMode, check_texts, load_dir};
pub use resolver::Resolver;
pub use route::{
    AccessLog, ErrorStyle, HeaderRule, InboundAuth, KeySource, OnError, OnUnknown, Route,
};
pub use server::{Server, Timeouts};
pub use store::{EncryptionKey, RedisSettings, RedisTopology, StoreKind, redact_userinfo};
pub use webhook::Webhook;

pub use crate::secret::Secret;

/// Everything `serve` runs on.
#[derive(Debug)]
pub struct Config {
    /// The config directory.
    pub dir: PathBuf,
    /// Server-wide settings from `headgate.toml`.
    pub server: Server,
    /// Routes by name (`/<name>/…`), looked up on every request: hashed
    /// with foldhash, not SipHash (a keyed cryptographic hash per request
    /// buys nothing here). Only the config inserts, so a client's names cannot
    /// crowd the table.
    pub routes: HashMap<String, Arc<Route>, foldhash::fast::RandomState>,
    /// Webhook endpoints by name (`/_hooks/<name>`).
    pub webhooks: HashMap<String, Arc<Webhook>>,
    /// The fetch-on-miss resolver, if configured.
    pub resolver: Option<Arc<Resolver>>,
    /// `[credentials.NAME]`, by name.
    pub credentials: Credentials,
    /// `GET /.well-known/jwks.json`: the public keys of every `jwt`
    /// credential, serialized once.
    pub jwks: bytes::Bytes,
    /// `env.NAME` values, only those listed in `env_allow`.
    pub env: Arc<serde_json::Value>,
    /// Problems that do not stop the proxy (printed by `check`, logged by `serve`).
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Whether any credential is a JWT headgate signs (then the public
    /// listener serves its JWKS).
    pub fn has_jwt(&self) -> bool {
        (self.credentials.values()).any(|c| matches!(c.kind, CredentialKind::Jwt(_)))
    }

    /// A route by name.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }
}
