//! TLS in front of a loopback test server: a terminator with a fresh
//! self-signed certificate for `localhost` and 127.0.0.1, so any
//! cleartext upstream of the suite becomes an `https://` one; and a
//! client config trusting such a certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS terminator in front of a cleartext server.
pub struct TlsFront {
    pub addr: SocketAddr,
    /// Its certificate, PEM (to write as `[tls] ca_file`).
    pub ca_pem: String,
    /// Handshakes completed: connections opened to it.
    pub handshakes: Arc<AtomicUsize>,
}

impl TlsFront {
    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1: the DER, the
/// certificate's PEM and the key's PEM.
pub fn self_signed() -> (CertificateDer<'static>, String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    (
        ck.cert.der().clone(),
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
    )
}

/// A self-signed certificate for the public listener, written to
/// `dir/tls/cert.pem` and `dir/tls/key.pem` (what [`LISTENER_TLS`] names):
/// its DER, for a client to trust.
pub fn listener_cert(dir: &std::path::Path) -> CertificateDer<'static> {
    let (der, cert, key) = self_signed();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::write(dir.join("tls/cert.pem"), cert).unwrap();
    std::fs::write(dir.join("tls/key.pem"), key).unwrap();
    der
}

/// `[tls]` serving the public listener with [`listener_cert`]'s files.
pub const LISTENER_TLS: &str = "[tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n";

/// Serves TLS on a free loopback port, offering `alpn`, and relays each
/// connection's plaintext to `inner` (a hyper server there reads h2 or
/// HTTP/1.1 as ALPN chose).
pub async fn tls_front(inner: SocketAddr, alpn: &[&[u8]]) -> TlsFront {
    let (der, ca_pem, key_pem) = self_signed();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(inner).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront {
        addr,
        ca_pem,
        handshakes,
    }
}

/// A client config trusting `root` only, offering `alpn`.
pub fn client_config(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` for `localhost`, as `config` says.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap()
}
