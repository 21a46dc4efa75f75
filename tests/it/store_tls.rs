//! The Redis store over TLS (`rediss://`), against a real `redis-server`
//! on its TLS port with a test CA (made per run) and client certificates
//! required: two replicas share sessions through it; the port speaks
//! nothing in clear; a server certificate that does not verify is an
//! error naming the reason, and nothing is stored.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;

use crate::support::*;

/// A test CA and, signed by it, a server and a client certificate, as
/// PEM files in `dir`: `ca.pem`, `server.pem`/`server.key`,
/// `client.pem`/`client.key`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "headgate test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans) in [
        ("server", vec!["127.0.0.1", "localhost"]),
        ("client", vec!["headgate"]),
    ] {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(sans.into_iter().map(String::from).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// `redis-server` on a TLS port only, requiring client certificates.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    fn start(certs: &Path) -> Self {
        let port = free_port();
        let file = |f: &str| certs.join(f).to_string_lossy().into_owned();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &file("server.pem"),
                "--tls-key-file",
                &file("server.key"),
            ])
            .args([
                "--tls-ca-cert-file",
                &file("ca.pem"),
                "--tls-auth-clients",
                "yes",
            ])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(port: u16, trusted: bool) -> String {
    let ca = if trusted {
        "[tls]\nca_file = \"certs/ca.pem\"\n"
    } else {
        ""
    };
    format!(
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n{ca}\
         [store]\nkind = \"redis\"\nurl = \"rediss://127.0.0.1:{port}/0\"\nprefix = \"hg-tls:\"\n\
         timeout = \"500ms\"\ntls_cert_file = \"certs/client.pem\"\ntls_key_file = \"certs/client.key\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sessions_over_tls_to_redis() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    let redis = TlsRedis::start(&certs);
    let up = upstream().await;
    let r = route(
        &up.url(),
        "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), &config(redis.port, true), &[("crm", &r)]);
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let a = serve(dir.path(), &args, &[]);
    let b = serve(dir.path(), &args, &[]);

    // Written through one replica, injected by the other.
    let body = json!({"call": {"metadata": {"token": "tok-over-tls"}}});
    assert_eq!(
        admin_call(&a, reqwest::Method::PUT, "call-1", Some(&body)).await,
        204
    );
    let (status, _) = tool_call(&b, "crm", "x-call-id", "call-1").await;
    assert_eq!(status, 200);
    assert_eq!(up.last().headers["authorization"], "Bearer tok-over-tls");

    // Deleted on one, refused by the other.
    assert_eq!(
        admin_call(&b, reqwest::Method::DELETE, "call-1", None).await,
        204
    );
    let refused = eventually(Duration::from_secs(3), || async {
        tool_call(&a, "crm", "x-call-id", "call-1").await.0 == 403
    })
    .await;
    assert!(refused, "the deleted session was still served");

    // The port speaks TLS only: a plain PING gets no PONG.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("PONG"), "{got:?}");
}

/// Without `[tls] ca_file` the test CA is unknown: the store is refused
/// with the reason, and the session is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_certificate_that_does_not_verify_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    let redis = TlsRedis::start(&certs);
    let up = upstream().await;
    let r = route(&up.url(), "[headers]\nx-a = \"1\"\n");
    write_config(dir.path(), &config(redis.port, false), &[("crm", &r)]);
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let body = json!({"call": {}});
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "call-1", Some(&body)).await,
        503
    );
    let said = eventually(Duration::from_secs(3), || async {
        let log = s.log.lock().unwrap().to_lowercase();
        log.contains("unknownissuer") || log.contains("unknown issuer")
    })
    .await;
    assert!(said, "no reason given: {}", s.log.lock().unwrap());
}
