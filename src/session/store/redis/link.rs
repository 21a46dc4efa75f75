//! The link to Redis: the client (over TLS for `rediss://`) and the
//! invalidation subscription every replica follows.

use std::sync::Weak;
use std::time::Duration;

use super::*;

/// The client of `settings.url`: over TLS for `rediss://`, verifying the
/// server against the webpki roots or `[tls] ca_file`, presenting the
/// client certificate when one is configured.
pub(super) fn client(settings: &RedisSettings) -> Result<redis::Client, SessionError> {
    let bad_url = |e: redis::RedisError| {
        SessionError::Unavailable(format!(
            "store url `{}` is not a Redis URL: {e}",
            redact_userinfo(&settings.url)
        ))
    };
    if !settings.url.starts_with("rediss://") {
        return redis::Client::open(settings.url.as_str()).map_err(bad_url);
    }
    let tls = &settings.tls;
    let certs = redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: tls.roots_pem.clone(),
    };
    redis::Client::build_with_tls(settings.url.as_str(), certs).map_err(|e| {
        SessionError::Unavailable(format!(
            "TLS to `{}` could not be set up ({e}); check [tls] ca_file, tls_cert_file and tls_key_file",
            redact_userinfo(&settings.url)
        ))
    })
}

/// Follows `<prefix>invalidate` for as long as the store lives,
/// resubscribing after any disconnection.
pub(super) async fn listen(client: redis::Client, store: Weak<Inner>, timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    let mut was_down = false;
    loop {
        let Some(channel) = store.upgrade().map(|s| s.channel.clone()) else {
            return;
        };
        let subscribed = tokio::time::timeout(timeout, async {
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
