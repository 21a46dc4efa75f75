//! `[store]`: the memory store (default) or Redis for several replicas.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::Ctx;
use super::schema::RawStore;

/// Where sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process (default).
    Memory,
    /// Shared through Redis.
    Redis(Box<RedisSettings>),
}

/// `[store] kind = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key and of the invalidation channel.
    pub prefix: String,
    /// How long a replica serves a session from its own cache before asking
    /// Redis again; bounds how stale a replica can be if an invalidation
    /// message is lost.
    pub cache_ttl: Duration,
    /// How long past `cache_ttl` a cached session is still served while
    /// Redis cannot be reached.
    pub stale_ttl: Duration,
    /// Connect and per-command deadline; a miss while Redis is down fails
    /// after this with `store.unavailable`.
    pub timeout: Duration,
    /// `encryption_keys_env`: session values are sealed with the first
    /// and opened with any (empty: stored in clear).
    pub encryption_keys: Vec<EncryptionKey>,
    /// For a `rediss://` URL: what the connection trusts and presents.
    pub tls: RedisTls,
    /// One endpoint (`url`), a cluster or a master behind sentinels.
    pub topology: RedisTopology,
}

/// `[store] mode`: how the Redis store reaches its data.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum RedisTopology {
    /// `url`, one endpoint (the default).
    #[default]
    Single,
    /// `mode = "cluster"`: the seed `nodes` (`redis://host:port`); the
    /// client learns the rest, follows MOVED/ASK and failovers.
    Cluster(Vec<String>),
    /// `mode = "sentinel"`: the master named `master_name`, found by
    /// asking `sentinels` (`redis://host:port`), and found again after a
    /// failover. `url` names the database and credentials used on it.
    Sentinel {
        /// The sentinels' addresses.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master_name: String,
    },
}

/// TLS to Redis (`rediss://`). The server's certificate is always
/// verified: against the webpki roots, or, when `[tls] ca_file` is set,
/// against that file's certificates (the Redis client takes one root
/// store, so a private CA replaces the public roots there).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RedisTls {
    /// `[tls] ca_file`'s certificates, as PEM.
    pub roots_pem: Option<Vec<u8>>,
    /// `tls_cert_file` and `tls_key_file` (PEM), for mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

/// An AES-256 key for sessions at rest, with the id stored beside each
/// value it seals.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey {
    /// Short id (`2026-11`), in every value this key sealed.
    pub id: String,
    key: Vec<u8>,
}

impl EncryptionKey {
    /// A key of 32 bytes.
    pub fn new(id: &str, key: Vec<u8>) -> Self {
        Self {
            id: id.to_string(),
            key,
        }
    }

    /// The key material, for the cipher only.
    pub fn bytes(&self) -> &[u8] {
        &self.key
    }
}

/// `ID:BASE64,ID:BASE64` (newest first), each key 32 bytes.
fn encryption_keys(text: &str) -> Result<Vec<EncryptionKey>, String> {
    use base64::Engine;
    let mut keys = Vec::new();
    for entry in text
        .split([',', ' ', '\n'])
        .filter(|e| !e.trim().is_empty())
    {
        let (id, b64) = entry
            .trim()
            .split_once(':')
            .ok_or("each key is `ID:BASE64` (e.g. `2026-11:` and 32 random bytes in Base64), newest first, comma-separated")?;
        let valid_id = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_id {
            return Err("a key id is letters, digits, `-`, `_` or `.`".into());
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                format!(
                    "key `{id}` is not 32 bytes in Base64 (make one with `openssl rand -base64 32`)"
                )
            })?;
        keys.push(EncryptionKey::new(id, key));
    }
    if keys.is_empty() {
        return Err("no key: set `ID:BASE64` (openssl rand -base64 32)".into());
    }
    Ok(keys)
}

impl RedisSettings {
    /// The topology with any user:password taken out of its addresses.
    fn topology_shown(&self) -> RedisTopology {
        let shown = |v: &[String]| v.iter().map(|u| redact_userinfo(u)).collect();
        match &self.topology {
            RedisTopology::Single => RedisTopology::Single,
            RedisTopology::Cluster(n) => RedisTopology::Cluster(shown(n)),
            RedisTopology::Sentinel {
                sentinels,
                master_name,
            } => RedisTopology::Sentinel {
                sentinels: shown(sentinels),
                master_name: master_name.clone(),
            },
        }
    }

    /// Where the store is, for a log line (no user:password).
    pub fn shown(&self) -> String {
        match self.topology_shown() {
            RedisTopology::Single => redact_userinfo(&self.url),
            RedisTopology::Cluster(nodes) => format!("cluster of {}", nodes.join(", ")),
            RedisTopology::Sentinel {
                sentinels,
                master_name,
            } => format!(
                "master `{master_name}` behind sentinels {}",
                sentinels.join(", ")
            ),
        }
    }

    /// Whether any address is `rediss://` (TLS).
    pub fn tls_anywhere(&self) -> bool {
        let nodes = match &self.topology {
            RedisTopology::Single => &[][..],
            RedisTopology::Cluster(n) => n,
            RedisTopology::Sentinel { sentinels, .. } => sentinels,
        };
        std::iter::once(&self.url)
            .chain(nodes)
            .any(|u| u.starts_with("rediss://"))
    }
}

impl fmt::Debug for RedisSettings {
    /// The URL may carry a password: only its host part is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_userinfo(&self.url))
            .field("prefix", &self.prefix)
            .field("cache_ttl", &self.cache_ttl)
            .field("stale_ttl", &self.stale_ttl)
            .field("timeout", &self.timeout)
            .field("tls_roots", &self.tls.roots_pem.is_some())
            .field("tls_client_cert", &self.tls.client.is_some())
            .field("topology", &self.topology_shown())
            .field(
                "encryption_keys",
                &self
                    .encryption_keys
                    .iter()
                    .map(|k| &k.id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `redis://user:pw@host/0` → `redis://***@host/0`.
pub fn redact_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() => {
            format!("{scheme}://***{}", &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `[tls] ca_file` and `tls_cert_file`/`tls_key_file` for a `rediss://`
/// store; the client certificate files are an error on a `redis://` one
/// (they would silently not be used).
fn redis_tls(
    ctx: &mut Ctx<'_>,
    s: &RawStore,
    on: bool,
    ca_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> RedisTls {
    let files = [&s.tls_cert_file, &s.tls_key_file];
    if !on {
        if let Some(f) = files.iter().find_map(|f| f.as_ref()) {
            let msg = "tls_cert_file and tls_key_file are for a `rediss://` store url";
            ctx.err(f.span().start, "config.invalid_value", msg);
        }
        return RedisTls::default();
    }
    let roots_pem = (!ca_roots.is_empty()).then(|| pem_certificates(ca_roots));
    let read = |ctx: &mut Ctx<'_>, f: &Spanned<String>| {
        let path = ctx
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(f.get_ref());
        std::fs::read(&path).map_err(|e| {
            let msg = format!("cannot read `{}`: {e}", path.display());
            ctx.err(f.span().start, "config.invalid_tls", msg);
        })
    };
    let client = match (&s.tls_cert_file, &s.tls_key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => match (read(ctx, c), read(ctx, k)) {
            (Ok(c), Ok(k)) => Some((c, k)),
            _ => None,
        },
        (Some(f), None) | (None, Some(f)) => {
            let msg = "mutual TLS needs both tls_cert_file and tls_key_file";
            ctx.err(f.span().start, "config.invalid_tls", msg);
            None
        }
    };
    RedisTls { roots_pem, client }
}

/// Certificates as one PEM text.
fn pem_certificates(certs: &[rustls::pki_types::CertificateDer<'static>]) -> Vec<u8> {
    use base64::Engine;
    let mut out = String::new();
    for c in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// `[store]`: where sessions live. `ca_roots`: `[tls] ca_file`'s
/// certificates, trusted by a `rediss://` connection.
pub(super) fn store(
    ctx: &mut Ctx<'_>,
    raw: Option<&RawStore>,
    ca_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> StoreKind {
    let Some(s) = raw else {
        return StoreKind::Memory;
    };
    let kinds = [("memory", false), ("redis", true)];
    if !ctx.choice(Some(&s.kind), "store kind", &kinds, false) {
        return StoreKind::Memory;
    }
    let url = match &s.url {
        None => "redis://127.0.0.1:6379/0".to_string(),
        Some(u) => redis_url(ctx, u),
    };
    let prefix = s.prefix.clone().unwrap_or_else(|| "headgate:".into());
    let topology = topology(ctx, s, &prefix);
    let any_tls = std::iter::once(&url)
        .chain(s.nodes.iter().chain(&s.sentinels).map(|n| n.get_ref()))
        .any(|u| u.starts_with("rediss://"));
    let tls = redis_tls(ctx, s, any_tls, ca_roots);
    let encryption_keys = match &s.encryption_keys_env {
        None => Vec::new(),
        Some(env) => match ctx.secret(env).map(|t| encryption_keys(t.expose())) {
            Some(Ok(k)) => k,
            Some(Err(why)) => {
                let msg = format!("{}: {why}", env.get_ref());
                ctx.err(env.span().start, "config.invalid_value", msg);
                Vec::new()
            }
            None => Vec::new(),
        },
    };
    StoreKind::Redis(Box::new(RedisSettings {
        encryption_keys,
        tls,
        url,
        topology,
        prefix,
        cache_ttl: ctx.duration(&s.cache_ttl, Duration::from_secs(5)),
        stale_ttl: ctx.duration(&s.stale_ttl, Duration::from_secs(900)),
        timeout: ctx.duration(&s.timeout, Duration::from_secs(1)),
    }))
}

/// A Redis address as written, checked for its scheme.
fn redis_url(ctx: &mut Ctx<'_>, u: &Spanned<String>) -> String {
    if !u.get_ref().starts_with("redis://") && !u.get_ref().starts_with("rediss://") {
        ctx.err(
            u.span().start,
            "config.invalid_value",
            "a Redis address is `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (unix sockets are not supported)",
        );
    }
    u.get_ref().clone()
}

/// `mode` with what it needs: `nodes` for a cluster, `sentinels` and
/// `master_name` behind sentinels.
fn topology(ctx: &mut Ctx<'_>, s: &RawStore, prefix: &str) -> RedisTopology {
    #[derive(Clone, Copy)]
    enum Mode {
        Single,
        Cluster,
        Sentinel,
    }
    let modes = [
        ("single", Mode::Single),
        ("cluster", Mode::Cluster),
        ("sentinel", Mode::Sentinel),
    ];
    let at = s
        .mode
        .as_ref()
        .map_or(s.kind.span().start, |m| m.span().start);
    match ctx.choice(s.mode.as_ref(), "store mode", &modes, Mode::Single) {
        Mode::Single => RedisTopology::Single,
        Mode::Cluster => {
            let nodes = addresses(ctx, &s.nodes, "nodes", at);
            if prefix.contains(['{', '}']) {
                let msg = "on a cluster the prefix must not hold `{` or `}`: headgate puts each session's id in braces so its keys share a slot";
                ctx.err(at, "config.invalid_value", msg);
            }
            RedisTopology::Cluster(nodes)
        }
        Mode::Sentinel => {
            let sentinels = addresses(ctx, &s.sentinels, "sentinels", at);
            let master_name = s.master_name.as_ref().map(|m| m.get_ref().clone());
            if master_name.is_none() {
                let msg = "mode = \"sentinel\" needs `master_name`, the name the sentinels monitor (e.g. \"mymaster\")";
                ctx.err(at, "config.invalid_value", msg);
            }
            RedisTopology::Sentinel {
                sentinels,
                master_name: master_name.unwrap_or_default(),
            }
        }
    }
}

/// A mode's list of addresses (`nodes`, `sentinels`), which must not be
/// empty.
fn addresses(ctx: &mut Ctx<'_>, list: &[Spanned<String>], what: &str, at: usize) -> Vec<String> {
    if list.is_empty() {
        let msg = format!(
            "this mode needs `{what}`, e.g. {what} = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]"
        );
        ctx.err(at, "config.invalid_value", msg);
    }
    list.iter().map(|u| redis_url(ctx, u)).collect()
}
