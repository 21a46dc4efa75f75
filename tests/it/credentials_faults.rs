//! Token requests against a hostile authorization server on loopback
//! (issue 39, defects 6, 7 and 14): a hanging or failing server is asked
//! once for a burst of requests, not once per request; an upstream that
//! answers 401 to everything cannot make headgate spend a grant per
//! request; an empty `access_token` is never sent as `Bearer `.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;

/// How the authorization server answers a token request.
#[derive(Clone, Copy)]
enum Answer {
    /// Never (it hangs).
    Hang,
    /// 500 at once.
    Fail,
    /// A token: `{"access_token": ...}` with this value.
    Token(&'static str),
}

/// The server on a free port, and how many token requests it got.
async fn auth_server(answer: Answer) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let addr = http_server(move |_req| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let (status, body) = match answer {
                Answer::Hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    (500, String::new())
                }
                Answer::Fail => (500, "{\"error\":\"server_error\"}".to_string()),
                Answer::Token(v) => (200, format!("{{\"access_token\":\"{v}{}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}", if v.is_empty() { String::new() } else { n.to_string() })),
            };
            let mut r = http::Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            r.headers_mut().insert("content-type", "application/json".parse().unwrap());
            r
        }
    })
    .await;
    (format!("http://{addr}/token"), count)
}

/// headgate with client-credentials credential `cc` at `token_url`, route
/// `r` to `upstream` injecting it.
async fn proxy(
    token_url: &str,
    upstream: &str,
) -> (tempfile::TempDir, headgate::internals::proxy::Running) {
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "[credentials.cc]\nkind = \"client_credentials\"\ntoken_url = \"{token_url}\"\nclient_id = \"hg\"\n\
client_secret_env = \"HG_TEST_CLIENT_SECRET\"\ntimeout = \"1s\"\n"
    );
    let r = route(
        upstream,
        "[headers]\nauthorization = \"Bearer << credentials.cc.access_token >>\"\n",
    );
    write_config(dir.path(), &main, &[("r", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", serde_json::json!({"call": {}})).await;
    (dir, h)
}

/// `n` requests to `path` of route `r` at once: their statuses and codes.
async fn burst(
    h: &headgate::internals::proxy::Running,
    path: &str,
    n: usize,
) -> Vec<(u16, String)> {
    let c = client();
    let all = (0..n).map(|_| {
        let c = c.clone();
        let url = format!("http://{}/r{path}", h.listen);
        async move { status_and_code(get_call(&c, url, "call-1").await).await }
    });
    futures_util::future::join_all(all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_server_is_asked_once_for_a_burst() {
    let up = upstream().await;
    for (answer, n) in [(Answer::Hang, 10), (Answer::Fail, 30)] {
        let (token_url, asked) = auth_server(answer).await;
        let (_dir, h) = proxy(&token_url, &up.url()).await;
        let started = Instant::now();
        let answers = burst(&h, "/x", n).await;
        let took = started.elapsed();
        for a in &answers {
            assert_eq!(*a, (503, "credentials.unavailable".to_string()));
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "token requests for {n} requests"
        );
        // The hanging server's one timeout (1 s), not ten in a row.
        assert!(took < Duration::from_secs(4), "{took:?}");
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_always_says_401_cannot_spend_a_grant_per_request() {
    let up = upstream().await;
    let (token_url, asked) = auth_server(Answer::Token("tok-")).await;
    let (_dir, h) = proxy(&token_url, &up.url()).await;
    let c = client();
    for _ in 0..20 {
        let r = get_call(&c, format!("http://{}/r/status/401", h.listen), "call-1").await;
        assert_eq!(r.status(), 401);
    }
    // The first token, and one renewal after the first 401.
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    // A request that succeeds still gets the (renewed) token.
    let r = get_call(&c, format!("http://{}/r/ok", h.listen), "call-1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["authorization"], "Bearer tok-1");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_access_token_is_refused_never_sent() {
    let up = upstream().await;
    let (token_url, _) = auth_server(Answer::Token("")).await;
    let (_dir, h) = proxy(&token_url, &up.url()).await;
    let r = get_call(&client(), format!("http://{}/r/x", h.listen), "call-1").await;
    assert_eq!(
        status_and_code(r).await,
        (503, "credentials.unavailable".to_string())
    );
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    h.shutdown().await;
}

/// An upstream that refuses the first token it sees (401) and takes any
/// other; what it was sent: each request's `Authorization` and body.
async fn refusing_the_first_token() -> (String, Arc<std::sync::Mutex<Vec<(String, Bytes)>>>) {
    use http_body_util::BodyExt;
    let seen: Arc<std::sync::Mutex<Vec<(String, Bytes)>>> = Default::default();
    let log = seen.clone();
    let addr = http_server(move |req: http::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let auth = (req.headers().get("authorization"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let mut l = log.lock().unwrap();
            l.push((auth.clone(), body.unwrap_or_default()));
            let status = if l[0].0 == auth { 401 } else { 200 };
            let mut r = http::Response::new(Full::new(Bytes::from_static(b"{}")));
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            r
        }
    })
    .await;
    (format!("http://{addr}"), seen)
}

/// The one retry after an upstream 401 is the exchange's, whichever
/// transport carries the request: over HTTP/1.1 (the forwarding core) and
/// HTTP/2 (hyper) alike the refused token is dropped, a new one obtained
/// and the same body sent once more, and the client sees only the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_renewed_and_sent_once_more_over_either_transport() {
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (c, version) in [
        (client(), http::Version::HTTP_11),
        (h2, http::Version::HTTP_2),
    ] {
        let (up, seen) = refusing_the_first_token().await;
        let (token_url, asked) = auth_server(Answer::Token("tok-")).await;
        let dir = tempfile::tempdir().unwrap();
        let main = format!(
            "[credentials.cc]\nkind = \"client_credentials\"\ntoken_url = \"{token_url}\"\n\
client_id = \"hg\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\n"
        );
        // A JSON-RPC route reads the body first: it can be sent again.
        let extra = "error_style = \"jsonrpc\"\n[headers]\n\
authorization = \"Bearer << credentials.cc.access_token >>\"\n";
        write_config(dir.path(), &main, &[("r", &route(&up, extra))]);
        let h = start(dir.path()).await;
        put_session(&h, "call-1", serde_json::json!({"call": {}})).await;
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t"}}"#;
        let r = (c.post(format!("http://{}/r/mcp", h.listen)))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "call-1")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 200, "{version:?}");
        let seen = seen.lock().unwrap().clone();
        let auths: Vec<_> = seen.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(auths, ["Bearer tok-0", "Bearer tok-1"], "{version:?}");
        assert!(
            seen.iter().all(|(_, b)| b == body.as_bytes()),
            "{version:?}"
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2, "{version:?}");
        h.shutdown().await;
    }
}
