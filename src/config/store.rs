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
    Redis(RedisSettings),
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
        Some(u) => {
            if !u.get_ref().starts_with("redis://") && !u.get_ref().starts_with("rediss://") {
                ctx.err(
                    u.span().start,
                    "config.invalid_value",
                    "store url must be `redis://[user:password@]host:port/db`, or `rediss://…` for TLS (unix sockets are not supported)",
                );
            }
            u.get_ref().clone()
        }
    };
    let tls = redis_tls(ctx, s, url.starts_with("rediss://"), ca_roots);
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
    StoreKind::Redis(RedisSettings {
        encryption_keys,
        tls,
        url,
        prefix: s.prefix.clone().unwrap_or_else(|| "headgate:".into()),
        cache_ttl: ctx.duration(&s.cache_ttl, Duration::from_secs(5)),
        stale_ttl: ctx.duration(&s.stale_ttl, Duration::from_secs(900)),
        timeout: ctx.duration(&s.timeout, Duration::from_secs(1)),
    })
}
