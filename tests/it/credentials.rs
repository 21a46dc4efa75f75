//! Credentials headgate obtains itself, against real parts: the
//! `oidc-provider` authorization server (client credentials, rotated
//! refresh tokens with reuse detection, token exchange), fastmcp servers
//! that verify JWTs with their own `JWTVerifier` (against the authorization
//! server's JWKS, and against headgate's), the MCP Python SDK as the
//! voice platform, and two replicas over a real Redis.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// Access tokens live this long at the authorization server, so tests
/// cross an expiry.
const TOKEN_TTL_SECS: u64 = 3;
const RESOURCE: &str = "http://crm.test/mcp";
const CLIENT_SECRET: &str = "hg-client-secret";

/// `oidc-provider` on loopback, killed when dropped.
pub(crate) struct AuthServer {
    port: u16,
    child: tokio::process::Child,
}

impl AuthServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(TOKEN_TTL_SECS, "jwt", 0).await
    }

    /// Access tokens living `ttl` seconds, as JWTs or `opaque` ones, from
    /// a token endpoint that answers after `delay_ms`.
    pub(crate) async fn start_with(ttl: u64, format: &str, delay_ms: u64) -> Self {
        let port = free_port();
        let script = interop("node/auth_server.mjs");
        let child = tokio::process::Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .arg(ttl.to_string())
            .arg(format)
            .arg(delay_ms.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("node did not start {}: {e}", script.display()));
        let what = "oidc-provider (run scripts/test.sh)";
        until_listening(port, Duration::from_secs(20), what).await;
        Self { port, child }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A refresh token and an identity provider's subject token for `user`.
    pub(crate) async fn mint(&self, user: &str) -> (String, String) {
        let v: Value = client()
            .post(self.url(&format!("/test/mint?user={user}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = |k: &str| v[k].as_str().unwrap().to_string();
        (text("refresh_token"), text("subject_token"))
    }

    /// Grants the server made by type, and the errors it answered.
    pub(crate) async fn stats(&self) -> Value {
        client()
            .get(self.url("/test/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub(crate) async fn granted(&self, grant_type: &str) -> u64 {
        self.stats().await["success"][grant_type]
            .as_u64()
            .unwrap_or(0)
    }
}

/// headgate.toml declaring one credential of each kind against `auth`.
pub(crate) fn credentials_toml(auth: &AuthServer, extra: &str) -> String {
    let token_url = auth.url("/token");
    format!(
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n{extra}\n\
         [credentials.crm_user]\nkind = \"refresh_token\"\ntoken_url = \"{token_url}\"\nclient_id = \"headgate\"\n\
         client_secret_env = \"HG_TEST_CLIENT_SECRET\"\nrefresh_token_from = \"call.metadata.refresh_token\"\nresource = \"{RESOURCE}\"\n\
         [credentials.crm]\nkind = \"client_credentials\"\ntoken_url = \"{token_url}\"\nclient_id = \"headgate-post\"\n\
         client_secret_env = \"HG_TEST_CLIENT_SECRET\"\nclient_auth = \"post\"\nscope = \"crm.read\"\nresource = \"{RESOURCE}\"\n\
         [credentials.crm_obo]\nkind = \"token_exchange\"\ntoken_url = \"{token_url}\"\nclient_id = \"headgate\"\n\
         client_secret_env = \"HG_TEST_CLIENT_SECRET\"\nsubject_token = \"<< call.metadata.id_token >>\"\n\
         subject_token_type = \"urn:ietf:params:oauth:token-type:jwt\"\nresource = \"{RESOURCE}\"\n\
         [credentials.crm_jwt]\nkind = \"jwt\"\nissuer = \"https://headgate.test\"\naudience = \"{RESOURCE}\"\n\
         signing_key_file = \"keys/crm.pem\"\nttl = \"5m\"\n\
         [credentials.crm_jwt.claims]\nsub = \"<< call.metadata.user_id >>\"\ntenant = \"<< call.metadata.tenant | default: 'public' >>\"\n\
         [credentials.down]\nkind = \"client_credentials\"\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"x\"\n\
         client_secret_env = \"HG_TEST_CLIENT_SECRET\"\ntimeout = \"500ms\"\n"
    )
}

/// A route to `upstream` injecting `Authorization: Bearer` from `credential`.
pub(crate) fn bearer_route(upstream: &str, credential: &str) -> String {
    route(
        upstream,
        &format!(
            "error_style = \"jsonrpc\"\n[headers]\nauthorization = \"Bearer << credentials.{credential}.access_token >>\"\n"
        ),
    )
}

/// Writes a P-256 PKCS#8 key to `dir/keys/crm.pem`; its PEM text.
pub(crate) fn signing_key(dir: &Path) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = key.serialize_pem();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/crm.pem"), &pem).unwrap();
    pem
}

/// The fastmcp server verifying JWTs against `jwks`.
pub(crate) async fn jwt_server(
    jwks: &str,
    issuer: &str,
    alg: &str,
) -> (u16, tokio::process::Child) {
    let port = free_port();
    let args = [jwks, issuer, RESOURCE, alg].map(std::ffi::OsStr::new);
    (port, python_server("mcp_jwt_server.py", port, &args).await)
}

/// `whoami` through headgate with the MCP Python SDK, as `call_id`.
pub(crate) async fn whoami(hg: &Served, route: &str, call_id: &str) -> Value {
    let url = format!("http://{}/{route}/mcp", hg.listen);
    let out = tokio::process::Command::new(python())
        .arg(interop("mcp_whoami_client.py"))
        .args([&url, call_id, ROUTE_KEY])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text }))
}

/// A JSON-RPC `tools/call` through headgate, as a plain HTTP client.
pub(crate) async fn rpc(hg: &Served, route: &str, call_id: &str) -> (u16, Value) {
    let r = client()
        .post(format!("http://{}/{route}/mcp", hg.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", call_id)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn put(hg: &Served, id: &str, metadata: Value) {
    let body = json!({"call": {"metadata": metadata}});
    assert_eq!(
        admin_call(hg, reqwest::Method::PUT, id, Some(&body)).await,
        204
    );
}

pub(crate) fn env() -> Vec<(&'static str, &'static str)> {
    vec![("RUST_LOG", "debug"), ("HEADGATE_LOG_FORMAT", "json")]
}

struct Setup {
    _dir: tempfile::TempDir,
    auth: AuthServer,
    hg: Served,
    key_pem: String,
    _servers: Vec<tokio::process::Child>,
}

/// The authorization server, a fastmcp server trusting it, and headgate
/// with a route per credential kind (plus `flaky`, to `flaky_upstream`).
async fn setup(flaky_upstream: &str) -> Setup {
    let auth = AuthServer::start().await;
    let jwks = auth.url("/jwks");
    let issuer = auth.url("");
    let (as_port, as_server) = jwt_server(&jwks, &issuer, "RS256").await;
    let dir = tempfile::tempdir().unwrap();
    let key_pem = signing_key(dir.path());
    // The fastmcp server trusting headgate's JWKS needs headgate's port:
    // fix it before headgate starts.
    let listen = format!("127.0.0.1:{}", free_port());
    let hg_jwks = format!("http://{listen}/.well-known/jwks.json");
    let (minted_port, minted_server) = jwt_server(&hg_jwks, "https://headgate.test", "ES256").await;
    let crm = format!("http://127.0.0.1:{as_port}");
    let minted = format!("http://127.0.0.1:{minted_port}");
    let routes = [
        ("user", bearer_route(&crm, "crm_user")),
        ("svc", bearer_route(&crm, "crm")),
        ("obo", bearer_route(&crm, "crm_obo")),
        ("minted", bearer_route(&minted, "crm_jwt")),
        ("down", bearer_route(&crm, "down")),
        ("flaky", bearer_route(flaky_upstream, "crm")),
    ];
    let routes: Vec<(&str, &str)> = routes.iter().map(|(n, r)| (*n, r.as_str())).collect();
    write_config(dir.path(), &credentials_toml(&auth, ""), &routes);
    let hg = serve(
        dir.path(),
        &["--listen", &listen, "--admin-listen", "127.0.0.1:0"],
        &env(),
    );
    Setup {
        _dir: dir,
        auth,
        hg,
        key_pem,
        _servers: vec![as_server, minted_server],
    }
}

/// An upstream that answers 401 to the first bearer token it ever sees
/// (as a server that revoked it would) and 200 to any other: what it saw.
async fn refusing_first_token() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>>,
) {
    use http_body_util::BodyExt;
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>> = Default::default();
    let log = seen.clone();
    let addr = http_server(move |req: http::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            let status = {
                let mut l = log.lock().unwrap();
                l.push((auth.clone(), body));
                if l[0].0 == auth { 401 } else { 200 }
            };
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}",
                )))
                .unwrap()
        }
    })
    .await;
    (format!("http://{addr}"), seen)
}

/// Each session reaches the MCP server as its own user; tokens are
/// renewed across their expiry with the rotated refresh token (a reuse
/// would be `invalid_grant` at the server); token exchange and minted JWTs
/// pass fastmcp's own verifier; a refused grant and a server that is down
/// are the errors the agent can speak; a 401 is one refresh and one retry;
/// and no secret reaches a log line or the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_obtained_rotated_verified_and_never_logged() {
    let (flaky, flaky_seen) = refusing_first_token().await;
    let s = setup(&flaky).await;
    let (alice_rt, _) = s.auth.mint("alice").await;
    let (bob_rt, _) = s.auth.mint("bob").await;
    let (_, carol_subject) = s.auth.mint("carol").await;
    put(&s.hg, "call-alice", json!({"refresh_token": alice_rt})).await;
    put(&s.hg, "call-bob", json!({"refresh_token": bob_rt})).await;

    // Each call reaches the server as its own user.
    assert_eq!(whoami(&s.hg, "user", "call-alice").await["sub"], "alice");
    assert_eq!(whoami(&s.hg, "user", "call-bob").await["sub"], "bob");
    // (A call of the SDK is several requests over a second or more; a
    // token may be renewed within one when it is due: at most half its
    // short lifetime early.)
    let first = s.auth.granted("refresh_token").await;
    assert!((2..=4).contains(&first), "{first} refreshes");

    // Past the access token's expiry: renewed with the rotated refresh
    // token written back to the session (the first one is spent).
    tokio::time::sleep(Duration::from_secs(TOKEN_TTL_SECS + 1)).await;
    assert_eq!(whoami(&s.hg, "user", "call-alice").await["sub"], "alice");
    assert_eq!(whoami(&s.hg, "user", "call-bob").await["sub"], "bob");
    let stats = s.auth.stats().await;
    assert!(
        stats["success"]["refresh_token"].as_u64() >= Some(first + 2),
        "{stats}"
    );
    assert_eq!(
        stats["error"],
        json!({}),
        "no refresh token was ever sent twice: {stats}"
    );

    // 16 concurrent first calls of one session: exactly one refresh.
    let (dave_rt, _) = s.auth.mint("dave").await;
    put(&s.hg, "call-dave", json!({"refresh_token": dave_rt})).await;
    let before = s.auth.granted("refresh_token").await;
    let calls = (0..16).map(|_| rpc(&s.hg, "user", "call-dave"));
    let answers = futures_util::future::join_all(calls).await;
    assert!(
        answers.iter().all(|(st, _)| *st != 503 && *st != 403),
        "{answers:?}"
    );
    assert_eq!(
        s.auth.granted("refresh_token").await,
        before + 1,
        "16 concurrent calls made one refresh"
    );
    let refreshed = before + 1;

    // Client credentials (client_secret_post) and token exchange.
    assert_eq!(
        whoami(&s.hg, "svc", "call-alice").await["client_id"],
        "headgate-post"
    );
    put(&s.hg, "call-carol", json!({"id_token": carol_subject})).await;
    assert_eq!(whoami(&s.hg, "obo", "call-carol").await["sub"], "carol");

    // Minted JWTs pass fastmcp's JWTVerifier against headgate's JWKS.
    put(
        &s.hg,
        "call-erin",
        json!({"user_id": "erin", "tenant": "acme"}),
    )
    .await;
    let me = whoami(&s.hg, "minted", "call-erin").await;
    assert_eq!(
        (me["sub"].as_str(), me["tenant"].as_str()),
        (Some("erin"), Some("acme")),
        "{me}"
    );
    let jwks: Value = client()
        .get(format!("http://{}/.well-known/jwks.json", s.hg.listen))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("EC"), Some("ES256"), Some("sig"))
    );
    assert!(
        key.get("d").is_none() && key["kid"].as_str().is_some_and(|k| k.len() == 43),
        "{key}"
    );

    // A refused grant: the caller must link again (JSON-RPC, with the id).
    put(
        &s.hg,
        "call-mallory",
        json!({"refresh_token": "not-a-real-refresh-token"}),
    )
    .await;
    let (status, body) = rpc(&s.hg, "user", "call-mallory").await;
    assert_eq!((status, body["id"].clone()), (200, json!(7)), "{body}");
    assert_eq!(
        body["error"]["data"]["code"], "credentials.rejected",
        "{body}"
    );
    assert_eq!(body["error"]["data"]["status"], 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("link their account again")
    );
    // The authorization server unreachable, nothing cached.
    let (_, body) = rpc(&s.hg, "down", "call-alice").await;
    assert_eq!(
        body["error"]["data"]["code"], "credentials.unavailable",
        "{body}"
    );
    assert_eq!(body["error"]["data"]["status"], 503);

    // The upstream refuses the token: dropped, one new token, one retry
    // with the same body; the client sees the retry's answer.
    let before = s.auth.granted("client_credentials").await;
    let (status, _) = rpc(&s.hg, "flaky", "call-alice").await;
    assert_eq!(status, 200);
    let seen = flaky_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one request and one retry: {seen:?}");
    assert_ne!(seen[0].0, seen[1].0, "the retry carried a new token");
    assert_eq!(seen[0].1, seen[1].1, "the retry carried the same body");
    // One new token for the retry (plus one for the first attempt if the
    // cached one had come due meanwhile).
    let after = s.auth.granted("client_credentials").await;
    assert!(
        (before + 1..=before + 2).contains(&after),
        "{before} → {after}"
    );

    // Requests and cache hits are counted; nothing secret anywhere.
    let metrics = metrics_text(&s.hg.admin).await;
    let ok = format!(
        "headgate_credential_requests_total{{credential=\"crm_user\",outcome=\"ok\"}} {refreshed}"
    );
    assert!(metrics.contains(&ok), "{ok} in:\n{metrics}");
    assert!(metrics.contains(
        "headgate_credential_requests_total{credential=\"crm_user\",outcome=\"rejected\"} 1"
    ));
    assert!(metrics.contains("headgate_credential_cache_hits_total{credential=\"crm_user\"}"));
    let log = s.hg.log.lock().unwrap().clone();
    let key_body: String = s
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut secrets = vec![
        CLIENT_SECRET.to_string(),
        alice_rt,
        bob_rt,
        dave_rt,
        carol_subject,
        key_body,
    ];
    secrets.extend(
        seen.iter()
            .map(|(a, _)| a.trim_start_matches("Bearer ").to_string()),
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret in the log:\n{log}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "a secret in the metrics"
        );
    }
    assert!(
        log.lines().count() > 20,
        "the log was captured at debug level"
    );
}

/// The authorization server goes away: a token that is due for renewal
/// but not expired is still served (and counted as an unavailable
/// request); once it has expired the call gets `credentials.unavailable`,
/// and nothing is retried in a loop.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_due_for_renewal_outlives_its_server_until_it_expires() {
    let mut auth = AuthServer::start().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    signing_key(dir.path());
    let svc = bearer_route(&up.url(), "crm");
    write_config(dir.path(), &credentials_toml(&auth, ""), &[("svc", &svc)]);
    let hg = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &env(),
    );
    put(&hg, "call-a", json!({})).await;
    let obtained = Instant::now();
    let (status, _) = rpc(&hg, "svc", "call-a").await;
    assert_eq!(status, 200);
    let first = up.last().headers["authorization"].clone();
    let _ = auth.child.kill().await;
    // Due (past half its 3 s life), not expired: the same token.
    tokio::time::sleep_until((obtained + Duration::from_millis(2_000)).into()).await;
    let (status, _) = rpc(&hg, "svc", "call-a").await;
    assert_eq!(status, 200);
    assert_eq!(up.last().headers["authorization"], first);
    // Expired: the caller hears why.
    tokio::time::sleep_until((obtained + Duration::from_millis(3_500)).into()).await;
    let (_, body) = rpc(&hg, "svc", "call-a").await;
    assert_eq!(
        body["error"]["data"]["code"], "credentials.unavailable",
        "{body}"
    );
    assert_eq!(
        up.seen().len(),
        2,
        "nothing reached the upstream without a token"
    );
    let metrics = metrics_text(&hg.admin).await;
    let failed = "headgate_credential_requests_total{credential=\"crm\",outcome=\"unavailable\"} 2";
    assert!(
        metrics.contains(failed),
        "one failed renewal at 2 s, one at 3.5 s:\n{metrics}"
    );
}

/// `render --route R --fetch-credentials` obtains the route's token as
/// `serve` would (masked with `--redact`), and leaves a refresh-token
/// credential as its placeholder with a note: spending the caller's
/// refresh token there would spend the live session's.
#[tokio::test(flavor = "multi_thread")]
async fn render_fetches_credentials_only_when_asked() {
    let auth = AuthServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    signing_key(dir.path());
    let svc = bearer_route("http://127.0.0.1:9", "crm");
    let user = bearer_route("http://127.0.0.1:9", "crm_user");
    write_config(
        dir.path(),
        &credentials_toml(&auth, ""),
        &[("svc", &svc), ("user", &user)],
    );
    let vars = dir.path().join("vars.json");
    std::fs::write(
        &vars,
        r#"{"call": {"metadata": {"refresh_token": "rt-never-spent"}}}"#,
    )
    .unwrap();
    let render = |route: &str, extra: &[&str]| {
        let mut args = vec![
            "render",
            "--route",
            route,
            "--templates",
            dir.path().to_str().unwrap(),
        ];
        args.extend(["--vars", vars.to_str().unwrap()]);
        args.extend(extra);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        run_bin(&args, &[])
    };
    let (code, out, err) = render("svc", &[]);
    assert_eq!(
        (code, out.trim()),
        (0, "authorization: Bearer <credentials.crm>"),
        "{err}"
    );
    let (code, out, err) = render("svc", &["--fetch-credentials"]);
    assert_eq!(code, 0, "{err}");
    let token = out
        .trim()
        .strip_prefix("authorization: Bearer ")
        .unwrap_or_default();
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT access token from the server: {out}"
    );
    let (_, redacted, _) = render("svc", &["--fetch-credentials", "--redact"]);
    assert!(
        redacted.contains("Bear… (") && !redacted.contains(token),
        "{redacted}"
    );
    assert_eq!(auth.granted("client_credentials").await, 2);
    let (code, out, err) = render("user", &["--fetch-credentials"]);
    assert_eq!(
        (code, out.trim()),
        (0, "authorization: Bearer <credentials.crm_user>"),
        "{err}"
    );
    assert!(err.contains("not obtained here"), "{err}");
    assert_eq!(
        auth.granted("refresh_token").await,
        0,
        "the refresh token was not spent"
    );
}
