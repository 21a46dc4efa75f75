//! A connection the forwarding core reads and writes, on either side: TCP,
//! or TLS over TCP (rustls, after its handshake). The core's code is the
//! same for both; only the reads and writes here differ.
//!
//! - TCP reads and writes go straight to the socket ([`super::io`]).
//! - TLS ones go through tokio-rustls, and every write is flushed, so a
//!   written response or request has left for the peer as on TCP.
//! - Watching a client for its going away ([`Wire::poll_gone`]) peeks on
//!   TCP; on TLS it must decrypt (a `close_notify` is an encrypted record
//!   in TLS 1.3), so what it reads is kept and read first by the next read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// A TCP connection, or TLS over one.
pub enum Wire {
    /// Cleartext.
    Tcp(TcpStream),
    /// TLS, handshake done (boxed: the state rustls keeps is large).
    Tls(Box<Tls>),
}

/// A TLS connection and the plaintext a watch read ahead of the core.
pub struct Tls {
    stream: TlsStream<TcpStream>,
    early: Vec<u8>,
}

/// What a watched client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Closed or reset its connection.
    Gone,
    /// Sent more bytes (a pipelined request): it is still there.
    Sent,
}

impl From<TcpStream> for Wire {
    fn from(s: TcpStream) -> Self {
        Wire::Tcp(s)
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Wire {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        TlsStream::Client(s).into()
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Wire {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        TlsStream::Server(s).into()
    }
}

impl From<TlsStream<TcpStream>> for Wire {
    fn from(stream: TlsStream<TcpStream>) -> Self {
        Wire::Tls(Box::new(Tls {
            stream,
            early: Vec::new(),
        }))
    }
}

impl Wire {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Tcp(s) => s,
            Wire::Tls(t) => t.stream.get_ref().0,
        }
    }

    /// Whether it is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Wire::Tls(_))
    }

    /// Whether TLS agreed on HTTP/2 (ALPN `h2`).
    pub fn speaks_h2(&self) -> bool {
        match self {
            Wire::Tcp(_) => false,
            Wire::Tls(t) => t.stream.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// Appends what the peer sent (at least one byte, waiting for it if
    /// need be) to `buf`; 0 at the end of the stream.
    pub async fn fill(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Wire::Tcp(s) => super::io::read_buf(s, buf).await,
            Wire::Tls(t) => {
                if !t.early.is_empty() {
                    let n = t.early.len();
                    buf.append(&mut t.early);
                    return Ok(n);
                }
                t.stream.read_buf(buf).await
            }
        }
    }

    /// Writes all of `bytes`, flushed.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Wire::Tcp(s) => super::io::write_all(s, bytes).await,
            Wire::Tls(t) => {
                t.stream.write_all(bytes).await?;
                t.stream.flush().await
            }
        }
    }

    /// Waits until a read would find bytes. On TLS it returns at once: the
    /// connection holds rustls's buffers whatever the core lends it, and
    /// plaintext rustls already decrypted would not wake the socket.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Wire::Tcp(s) => s.readable().await,
            Wire::Tls(_) => Ok(()),
        }
    }

    /// Whether the peer closed or reset the connection (or sent bytes)
    /// since it was last read: `Pending` while it is quiet. Consumes
    /// nothing the core would read later.
    pub fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<Watched> {
        match self {
            Wire::Tcp(s) => {
                let mut byte = [0u8; 1];
                let mut peeked = ReadBuf::new(&mut byte);
                match s.poll_peek(cx, &mut peeked) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Watched::Gone),
                    Poll::Ready(Ok(_)) => Poll::Ready(Watched::Sent),
                    Poll::Pending => Poll::Pending,
                }
            }
            Wire::Tls(t) => {
                if !t.early.is_empty() {
                    return Poll::Ready(Watched::Sent);
                }
                let mut room = [0u8; 512];
                let mut read = ReadBuf::new(&mut room);
                match Pin::new(&mut t.stream).poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                        t.early.extend_from_slice(read.filled());
                        Poll::Ready(Watched::Sent)
                    }
                    Poll::Ready(_) => Poll::Ready(Watched::Gone),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    /// Whether an idle pooled connection is still fit to send a request
    /// on: the peer has neither closed it nor sent anything (stray bytes,
    /// or on TLS a `close_notify`, would desync the next response).
    pub fn is_quiet(&self) -> bool {
        let mut byte = [0u8; 1];
        let mut peeked = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.tcp().poll_peek(&mut cx, &mut peeked).is_pending()
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Tls(t) => {
                if !t.early.is_empty() {
                    let n = buf.remaining().min(t.early.len());
                    buf.put_slice(&t.early[..n]);
                    t.early.drain(..n);
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut t.stream).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Wire::Tls(t) => Pin::new(&mut t.stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_flush(cx),
            Wire::Tls(t) => Pin::new(&mut t.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Tls(t) => Pin::new(&mut t.stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A TLS connection over loopback: the server's end as a [`Wire`],
    /// the client's as tokio-rustls gives it.
    async fn tls_pair() -> (Wire, tokio_rustls::client::TlsStream<TcpStream>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let c = tokio_rustls::TlsConnector::from(Arc::new(client));
            c.connect(name, tcp).await.unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let a = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            a.accept(tcp).await.unwrap()
        };
        let (client, server) = tokio::join!(connect, accept);
        (Wire::from(server), client)
    }

    async fn watch(wire: &mut Wire) -> Watched {
        let wait = std::time::Duration::from_secs(5);
        let watched = std::future::poll_fn(|cx| wire.poll_gone(cx));
        tokio::time::timeout(wait, watched).await.unwrap()
    }

    /// Bytes a TLS client sends while watched are kept, and read first;
    /// its `close_notify` (an encrypted record in TLS 1.3, invisible to a
    /// peek) reads as gone.
    #[tokio::test]
    async fn a_watched_tls_client_keeps_its_bytes_and_its_close_is_seen() {
        let (mut server, mut client) = tls_pair().await;
        let quiet = std::future::poll_fn(|cx| Poll::Ready(server.poll_gone(cx)));
        assert!(quiet.await.is_pending(), "a quiet client read as active");
        client.write_all(b"GET /next").await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(watch(&mut server).await, Watched::Sent);
        client.write_all(b" HTTP/1.1").await.unwrap();
        client.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 18 {
            assert!(server.fill(&mut got).await.unwrap() > 0);
        }
        assert_eq!(got, b"GET /next HTTP/1.1");
        client.shutdown().await.unwrap();
        assert_eq!(watch(&mut server).await, Watched::Gone);
    }

    /// A TLS client that closes without `close_notify` reads as gone too.
    #[tokio::test]
    async fn a_tls_client_closing_without_notify_is_gone() {
        let (mut server, client) = tls_pair().await;
        drop(client.into_inner().0);
        assert_eq!(watch(&mut server).await, Watched::Gone);
    }

    /// A pooled connection is fit only while the peer is quiet: a TLS
    /// server's `close_notify` makes it unfit.
    #[tokio::test]
    async fn a_pooled_tls_connection_closed_by_its_server_is_not_quiet() {
        // The client's end plays the pooled connection, after one
        // exchange (which reads the server's session tickets too).
        let (mut server, client) = tls_pair().await;
        let mut pooled = Wire::from(tokio_rustls::TlsStream::Client(client));
        pooled.send(b"request").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 7 {
            server.fill(&mut got).await.unwrap();
        }
        server.send(b"response").await.unwrap();
        let mut answer = Vec::new();
        while answer.len() < 8 {
            pooled.fill(&mut answer).await.unwrap();
        }
        assert!(pooled.is_quiet());
        server.shutdown().await.unwrap();
        let unfit = async {
            while pooled.is_quiet() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), unfit)
            .await
            .unwrap();
    }
}
