//! The HTTP client headgate uses to reach upstreams and resolver APIs:
//! pooled, HTTP/1.1 and HTTP/2 (ALPN), TLS through rustls with the webpki
//! roots and one explicit crypto provider (ring), TCP_NODELAY, connect
//! timeout, idle pool timer.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::response::Body;

/// TCP keepalive probes start after this much silence on a connection to
/// an upstream or API: a host that vanished without closing is noticed.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The shared client type.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// How every TLS connection to an upstream or API is verified: the webpki
/// roots plus `extra_roots` (`[tls] ca_file`), ring as the one crypto
/// provider, rustls's default session resumption (tickets and IDs, kept
/// in memory).
pub fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// The forwarding core's connector for `https://` upstreams: verified as
/// [`tls_config`] says, offering only `http/1.1` (the core speaks
/// HTTP/1.1 to upstreams, as nginx does).
pub fn core_tls(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let mut config = tls_config(extra_roots)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// Builds a client with `connect_timeout`, trusting the webpki roots plus
/// `extra_roots` (an internal CA, `[tls] ca_file`).
pub fn build(
    connect_timeout: Duration,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(TCP_KEEPALIVE));
    let tls = tls_config(extra_roots)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(super::POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(super::POOL_MAX_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}
