//! headgate started in this test process, and requests to it.

use std::path::Path;

use super::config::ROUTE_KEY;

/// Starts headgate in process on free ports.
pub async fn start(dir: &Path) -> headgate::internals::proxy::Running {
    headgate::internals::proxy::start(headgate::internals::proxy::ServeOptions {
        templates: dir.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        watch: false,
    })
    .await
    .unwrap_or_else(|e| panic!("headgate did not start: {e}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// GET through headgate as a platform would: the route key and `X-Call-Id`.
pub async fn get_call(
    c: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    call_id: &str,
) -> reqwest::Response {
    c.get(url)
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", call_id)
        .send()
        .await
        .unwrap()
}

/// GET `url`: its body as text (metrics pages, echo responses).
pub async fn get_text(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// PUT a session on the admin API.
pub async fn put_session(
    h: &headgate::internals::proxy::Running,
    id: &str,
    vars: serde_json::Value,
) {
    let r = client()
        .put(format!("http://{}/sessions/{id}", h.admin))
        .json(&vars)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "PUT /sessions/{id}");
}

/// A response's status and its error code (`""` when it has none).
pub async fn status_and_code(r: reqwest::Response) -> (u16, String) {
    let s = r.status().as_u16();
    let t = r.text().await.unwrap_or_default();
    let c = serde_json::from_str::<serde_json::Value>(&t)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(String::from))
        .unwrap_or_default();
    (s, c)
}

/// Sends `req` as written over a new connection; everything read back
/// within 5 s (HTTP clients would normalise what these tests send).
pub async fn raw_request(addr: std::net::SocketAddr, req: &str) -> String {
    raw_bytes(addr, req.as_bytes()).await
}

/// [`raw_request`] for bytes.
pub async fn raw_bytes(addr: std::net::SocketAddr, req: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let wait = std::time::Duration::from_secs(5);
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
