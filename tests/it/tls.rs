//! HTTPS upstream through rustls trusting an internal CA from `[tls]
//! ca_file` (HTTP/1.1 from the forwarding core), and HTTPS on the public
//! and admin listeners.

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
async fn https_upstream_with_an_internal_ca() {
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
        assert_eq!(
            version,
            http::Version::HTTP_11,
            "the core speaks HTTP/1.1 upstream"
        );
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

/// GET `url` with headgate's own client trusting `roots`: the status, the
/// protocol, the body; or the error.
async fn https_get(
    roots: &[rustls::pki_types::CertificateDer<'static>],
    url: &str,
) -> Result<(u16, http::Version, String), String> {
    let client =
        headgate::internals::net::client::build(std::time::Duration::from_secs(2), roots).unwrap();
    let req = hyper::Request::get(url)
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-tls")
        .body(headgate::internals::net::response::empty())
        .unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (status, version) = (resp.status().as_u16(), resp.version());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, version, String::from_utf8_lossy(&body).into_owned()))
}

/// GET `url` with a client that offers only `http/1.1` by ALPN.
async fn http1_get(
    root: &rustls::pki_types::CertificateDer<'static>,
    url: &str,
) -> (u16, http::Version) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
    let req = hyper::Request::get(url)
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-tls")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    (resp.status().as_u16(), resp.version())
}

/// `[tls] cert_file`/`key_file`: the public listener serves HTTPS to a
/// client that checks the certificate (HTTP/2 by ALPN), tells the upstream
/// `X-Forwarded-Proto: https`, is refused by a client that does not trust
/// the certificate, and takes a renewed certificate from disk without a
/// restart.
#[tokio::test]
async fn the_public_listener_serves_https_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = listener_cert(dir.path());
    let main = LISTENER_TLS;
    write_config(dir.path(), main, &[("echo", &route("builtin:echo", ""))]);
    let h = inproc::start(dir.path()).await;
    put_session(&h, "call-tls", json!({"call": {"x": 1}})).await;
    let url = format!("https://localhost:{}/echo/x", h.listen.port());

    let (status, version, body) = https_get(std::slice::from_ref(&first), &url).await.unwrap();
    assert_eq!((status, version), (200, http::Version::HTTP_2), "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    let (status, version) = http1_get(&first, &url).await;
    assert_eq!(
        (status, version),
        (200, http::Version::HTTP_11),
        "ALPN http/1.1"
    );
    let refused = https_get(&[], &url).await;
    assert!(
        refused.is_err(),
        "a client that does not trust it is refused"
    );

    // A renewal (certbot writes new files): served within the poll.
    let second = listener_cert(dir.path());
    let renewed = eventually(std::time::Duration::from_secs(15), || {
        let (second, url) = (second.clone(), url.clone());
        async move { https_get(&[second], &url).await.is_ok() }
    })
    .await;
    assert!(renewed, "the renewed certificate was not picked up");
    assert!(
        https_get(&[first], &url).await.is_err(),
        "the old one is no longer served"
    );
    h.shutdown().await;
}

/// A key that is not the certificate's, or only one of the two files, is
/// a config error at the line of `[tls]` it concerns.
#[test]
fn check_refuses_a_certificate_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    listener_cert(dir.path());
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("tls/other.pem"), other.serialize_pem()).unwrap();
    let main = "[tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/other.pem\"\n";
    write_config(dir.path(), main, &[]);
    let (code, out, err) = check_with(dir.path(), &[], &[]);
    let text = format!("{out}{err}");
    assert_ne!(code, 0);
    assert!(
        text.contains("headgate.toml:2:13")
            && text.contains("config.invalid_tls")
            && text.contains("is not the key of"),
        "{text}"
    );
    write_config(dir.path(), "[tls]\ncert_file = \"tls/cert.pem\"\n", &[]);
    let (_, out, err) = check_with(dir.path(), &[], &[]);
    assert!(format!("{out}{err}").contains("needs both `cert_file` and `key_file`"));
}

/// `[tls] admin = true`: the admin listener serves HTTPS with the public
/// listener's certificate; the console's cookie is then `__Host-`
/// prefixed and `Secure`, and a form whose `Origin` is the `http://`
/// spelling of the console is refused.
#[tokio::test]
async fn the_admin_listener_serves_https_with_a_secure_console_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let root = listener_cert(dir.path());
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n[tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\nadmin = true\n",
        &[("crm", &route("http://127.0.0.1:9", ""))],
    );
    let h = start(dir.path()).await;
    let port = h.admin.port();
    let client =
        headgate::internals::net::client::build(std::time::Duration::from_secs(2), &[root])
            .unwrap();
    let login = |origin: &'static str| {
        let req = hyper::Request::post(format!("https://localhost:{port}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin.replace("PORT", &port.to_string()))
            .body(headgate::internals::net::response::full(Bytes::from(
                format!("token={ADMIN_TOKEN}"),
            )))
            .unwrap();
        client.request(req)
    };
    let r = login("https://localhost:PORT").await.unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-headgate_console="), "{set}");
    for attr in ["Path=/;", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attr), "{attr}: {set}");
    }
    let r = login("http://localhost:PORT").await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "an http:// Origin posted to the HTTPS console"
    );
    // Cleartext to the admin port is no longer served.
    let plain = raw_request(h.admin, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    h.shutdown().await;
}
