//! The link to Redis: the client (over TLS for `rediss://`) and the
//! invalidation subscription every replica follows.

use std::sync::Weak;
use std::time::Duration;

use super::*;

/// The client of `url` (an address of `settings`): over TLS for
/// `rediss://`, verifying the server against the webpki roots or
/// `[tls] ca_file`, presenting the client certificate when one is
/// configured.
pub(super) fn client(url: &str, settings: &RedisSettings) -> Result<redis::Client, SessionError> {
    let bad_url = |e: redis::RedisError| {
        SessionError::Unavailable(format!(
            "store address `{}` is not a Redis URL: {e}",
            redact_userinfo(url)
        ))
    };
    if !url.starts_with("rediss://") {
        return redis::Client::open(url).map_err(bad_url);
    }
    redis::Client::build_with_tls(url, certificates(settings)).map_err(|e| {
        SessionError::Unavailable(format!(
            "TLS to `{}` could not be set up ({e}); check [tls] ca_file, tls_cert_file and tls_key_file",
            redact_userinfo(url)
        ))
    })
}

/// What a TLS connection to Redis trusts and presents.
pub(super) fn certificates(settings: &RedisSettings) -> redis::TlsCertificates {
    let tls = &settings.tls;
    redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: tls.roots_pem.clone(),
    }
}

/// The sentinels of `mode = "sentinel"`, asked for the master with the
/// database and credentials of `url` (and TLS where an address says
/// `rediss://`).
pub(super) fn sentinel_client(
    settings: &RedisSettings,
) -> Result<redis::sentinel::SentinelClient, SessionError> {
    use redis::IntoConnectionInfo as _;
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    let RedisTopology::Sentinel {
        sentinels,
        master_name,
    } = &settings.topology
    else {
        return Err(unavailable("not a sentinel store"));
    };
    let bad = |e: redis::RedisError| {
        SessionError::Unavailable(format!("the sentinel settings are not usable: {e}"))
    };
    let addrs = (sentinels.iter())
        .map(|u| u.as_str().into_connection_info().map(|i| i.addr().clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let info = settings.url.as_str().into_connection_info().map_err(bad)?;
    let redis_info = info.redis_settings();
    let mut b = SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
        .map_err(bad)?
        .set_client_to_redis_db(redis_info.db());
    if let Some(u) = redis_info.username() {
        b = b.set_client_to_redis_username(u);
    }
    if let Some(p) = redis_info.password() {
        b = b.set_client_to_redis_password(p);
    }
    if settings.url.starts_with("rediss://") {
        b = b
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_certificates(certificates(settings));
    }
    if sentinels.iter().any(|s| s.starts_with("rediss://")) {
        b = b
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_certificates(certificates(settings));
    }
    b.build().map_err(bad)
}

/// Follows `<prefix>invalidate` for as long as the store lives,
/// resubscribing after any disconnection.
pub(super) async fn listen(store: Weak<Inner>, timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    let mut was_down = false;
    for attempt in 0.. {
        let Some((channel, client)) = store
            .upgrade()
            .map(|s| (s.channel.clone(), s.link.subscriber.client(attempt)))
        else {
            return;
        };
        let subscribed = tokio::time::timeout(timeout, async {
            let client = client.ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Io, "no master known yet"))
            })?;
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        let mut ps = match subscribed {
            Ok(Ok(ps)) => ps,
            Ok(Err(e)) => {
                if !was_down {
                    tracing::warn!(
                        code = "store.unavailable",
                        "redis subscription failed: {e}; cached sessions are served while retrying"
                    );
                }
                was_down = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                was_down = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if let Some(s) = store.upgrade() {
            // Entries from before are no longer fresh (they may have missed
            // a message) but stay as the outage fallback.
            s.subscription.fetch_add(1, Ordering::AcqRel);
        }
        if was_down {
            tracing::info!("redis subscription restored");
        }
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            let Some(s) = store.upgrade() else { return };
            let payload = msg.get_payload_bytes();
            let Some((origin, id)) = std::str::from_utf8(payload)
                .ok()
                .and_then(|p| p.split_once(':'))
            else {
                continue;
            };
            if origin == s.origin {
                continue;
            }
            s.generation.fetch_add(1, Ordering::AcqRel);
            s.cache.invalidate(id).await;
            s.written.announce(id);
        }
        if let Some(s) = store.upgrade() {
            s.subscription.fetch_add(1, Ordering::AcqRel);
        }
        tracing::warn!(
            code = "store.unavailable",
            "redis subscription lost; reconnecting"
        );
        was_down = true;
    }
}
