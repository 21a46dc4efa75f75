//! HTTPS upstream through rustls, HTTP/2 negotiated by ALPN, trusting an
//! internal CA from `[tls] ca_file`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// What the TLS upstream saw: protocol version and `Authorization`.
type Seen2 = (http::Version, Option<String>);

#[tokio::test]
async fn https_upstream_over_http2_with_an_internal_ca() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = ck.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key_der)
    .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Seen2>>> = Default::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        seen.lock().unwrap().push((req.version(), auth));
                        Ok::<_, Infallible>(hyper::Response::new(
                            Full::new(Bytes::from_static(b"{}"))
                                .map_err(|n: Infallible| match n {})
                                .boxed(),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ck.cert.pem()).unwrap();
    let r = route(
        &format!("https://localhost:{port}/mcp"),
        "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(
        dir.path(),
        "[tls]\nca_file = \"ca.pem\"\n",
        &[("secure", &r)],
    );
    let h = start(dir.path()).await;
    put_session(
        &h,
        "c1",
        json!({"call": {"metadata": {"token": "over-tls"}}}),
    )
    .await;
    for _ in 0..3 {
        let resp = client()
            .post(format!("http://{}/secure", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "c1")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (version, auth) in seen {
        assert_eq!(version, http::Version::HTTP_2, "ALPN should pick h2");
        assert_eq!(auth.as_deref(), Some("Bearer over-tls"));
    }
    h.shutdown().await;

    // Without the CA the certificate is refused: 502, nothing sent.
    let dir2 = tempfile::tempdir().unwrap();
    write_config(dir2.path(), "", &[("secure", &r)]);
    let h2 = start(dir2.path()).await;
    put_session(
        &h2,
        "c1",
        json!({"call": {"metadata": {"token": "over-tls"}}}),
    )
    .await;
    let resp = get_call(&client(), format!("http://{}/secure", h2.listen), "c1").await;
    assert_eq!(resp.status(), 502);
    h2.shutdown().await;
}
