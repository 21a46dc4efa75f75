//! Credentials that live exactly as long as the call (docs/credentials.md "Credentials
//! that live as long as the call"),
//! against the real `oidc-provider` with opaque access tokens (the kind
//! RFC 7009 revocation and RFC 7662 introspection apply to) and a token
//! endpoint that answers after 150 ms, as a real identity provider does:
//!
//! - `prefetch`: the token request happens when the session is stored,
//!   before the first tool call, which then finds the token cached; a
//!   prefetch and the requests racing it make one token request;
//! - `revoke_on_end`: deleting the session, or letting it expire, revokes
//!   the access token obtained for it at the authorization server (found
//!   through its metadata); the revocation names the access token, never
//!   the caller's refresh token. (oidc-provider then revokes the whole
//!   grant, refresh token included, as RFC 7009 §2.1 lets a server do:
//!   docs/credentials.md "Credentials that live as long as the call" says so.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::credentials::AuthServer;
use crate::support::*;

const RESOURCE: &str = "http://crm.test/mcp";
const CLIENT_SECRET: &str = "hg-client-secret";

impl AuthServer {
    /// RFC 7662: whether the server still takes `token`.
    async fn active(&self, token: &str) -> bool {
        let v: Value = client()
            .post(self.url("/token/introspection"))
            .basic_auth("headgate", Some(CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["active"] == true
    }
}

/// Polls `check` every 50 ms for up to `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

struct Life {
    _dir: tempfile::TempDir,
    auth: AuthServer,
    up: Upstream,
    hg: Served,
    /// The spans an OTLP receiver decoded, one JSON object per line.
    spans: tempfile::NamedTempFile,
    _receiver: tokio::process::Child,
}

/// headgate with one `refresh_token` credential that prefetches and is
/// revoked on end (no `revocation_url`: the server's metadata names it).
async fn life() -> Life {
    let auth = AuthServer::start_with(600, "opaque", 150).await;
    let up = upstream().await;
    let spans = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let receiver = python_server("otlp_receiver.py", port, &[spans.path().as_os_str()]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_url = auth.url("/token");
    let main = format!(
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n\
         [tracing]\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\n\
         [credentials.crm_user]\nkind = \"refresh_token\"\ntoken_url = \"{token_url}\"\nclient_id = \"headgate\"\n\
         client_secret_env = \"HG_TEST_CLIENT_SECRET\"\nrefresh_token_from = \"call.metadata.refresh_token\"\n\
         resource = \"{RESOURCE}\"\nprefetch = true\nrevoke_on_end = true\n"
    );
    let r = route(
        &up.url(),
        "[headers]\nauthorization = \"Bearer << credentials.crm_user.access_token >>\"\n",
    );
    write_config(dir.path(), &main, &[("crm", &r)]);
    let hg = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[],
    );
    Life {
        _dir: dir,
        auth,
        up,
        hg,
        spans,
        _receiver: receiver,
    }
}

impl Life {
    async fn store(&self, id: &str, refresh_token: &str, ttl: Option<u64>) {
        let path = match ttl {
            Some(t) => format!("{id}?ttl={t}"),
            None => id.to_string(),
        };
        let body = json!({"call": {"metadata": {"refresh_token": refresh_token}}});
        let status = admin_call(&self.hg, reqwest::Method::PUT, &path, Some(&body)).await;
        assert_eq!(status, 204);
    }

    /// A tool call through the proxy as `id`: the bearer token the
    /// upstream received.
    async fn call(&self, id: &str) -> String {
        let r = client()
            .post(format!("http://{}/crm/mcp", self.hg.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", id)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let auth = self.up.last().headers["authorization"]
            .to_str()
            .unwrap()
            .to_string();
        auth.strip_prefix("Bearer ").unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_token_is_obtained_when_it_starts_and_revoked_when_it_ends() {
    let l = life().await;
    let (refresh, _) = l.auth.mint("alice").await;
    l.store("call-1", &refresh, None).await;
    // Prefetched: the grant happens with no tool call made.
    let granted = eventually(Duration::from_secs(5), || async {
        l.auth.granted("refresh_token").await == 1
    })
    .await;
    assert!(granted, "no token request after the session was stored");
    let token = l.call("call-1").await;
    assert_eq!(
        l.auth.granted("refresh_token").await,
        1,
        "the first call asked again"
    );
    assert!(l.auth.active(&token).await);

    // The call ends: the access token is revoked at the server; headgate
    // named the access token only, never the caller's refresh token.
    assert_eq!(
        admin_call(&l.hg, reqwest::Method::DELETE, "call-1", None).await,
        204
    );
    let revoked = eventually(Duration::from_secs(5), || async {
        !l.auth.active(&token).await
    })
    .await;
    assert!(revoked, "the access token outlived its call");
    assert_eq!(l.auth.stats().await["revoked"], json!({"AccessToken": 1}));

    let m = metrics_text(&l.hg.admin).await;
    let line = "headgate_credential_requests_total{credential=\"crm_user\",outcome=\"revoked\"} 1";
    assert!(m.contains(line), "{line} missing:\n{m}");
    assert!(!m.contains(&token) && !l.hg.log.lock().unwrap().contains(&token));

    // The prefetch is a span of its own: the credential's name and
    // outcome, never its token.
    let path = l.spans.path().to_path_buf();
    let exported = eventually(Duration::from_secs(5), || {
        let p = path.clone();
        async move { std::fs::read_to_string(&p).is_ok_and(|t| t.contains("prefetch")) }
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(exported, "no prefetch span: {text}");
    let span: Value = (text.lines())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s["attributes"]["headgate.credential.trigger"] == "prefetch")
        .unwrap();
    assert_eq!(span["name"], "credential fetch");
    assert_eq!(span["attributes"]["headgate.credential.names"], "crm_user");
    assert_eq!(span["attributes"]["headgate.credential.outcome"], "ok");
    assert!(!text.contains(&token) && !text.contains(&refresh));
}

/// A prefetch and the tool calls racing it: one token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_and_the_calls_racing_it_make_one_token_request() {
    let l = life().await;
    let (refresh, _) = l.auth.mint("bob").await;
    l.store("call-2", &refresh, None).await;
    let calls: Vec<_> = (0..5).map(|_| l.call("call-2")).collect();
    let tokens = futures_util::future::join_all(calls).await;
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "{tokens:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(l.auth.granted("refresh_token").await, 1);
}

/// A session that expires ends its call too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_calls_token_is_revoked() {
    let l = life().await;
    let (refresh, _) = l.auth.mint("carol").await;
    l.store("call-3", &refresh, Some(2)).await;
    let token = l.call("call-3").await;
    assert!(l.auth.active(&token).await);
    let revoked = eventually(Duration::from_secs(6), || async {
        !l.auth.active(&token).await
    })
    .await;
    assert!(revoked, "the access token outlived its expired call");
}
