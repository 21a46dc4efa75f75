//! Credentials headgate obtains itself, against real parts: the
//! `oidc-provider` authorization server (client credentials, rotated
//! refresh tokens with reuse detection, token exchange), fastmcp servers
//! that verify JWTs with their own `JWTVerifier` (against the authorization
//! server's JWKS, and against headgate's), the MCP Python SDK as the
//! voice platform, and two replicas over a real Redis.

use std::path::{Path, PathBuf};
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
    async fn start() -> Self {
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
fn credentials_toml(auth: &AuthServer, extra: &str) -> String {
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
fn bearer_route(upstream: &str, credential: &str) -> String {
    route(
        upstream,
        &format!(
            "error_style = \"jsonrpc\"\n[headers]\nauthorization = \"Bearer << credentials.{credential}.access_token >>\"\n"
        ),
    )
}

/// Writes a P-256 PKCS#8 key to `dir/keys/crm.pem`; its PEM text.
fn signing_key(dir: &Path) -> String {
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
async fn rpc(hg: &Served, route: &str, call_id: &str) -> (u16, Value) {
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

async fn put(hg: &Served, id: &str, metadata: Value) {
    let body = json!({"call": {"metadata": metadata}});
    assert_eq!(
        admin_call(hg, reqwest::Method::PUT, id, Some(&body)).await,
        204
    );
}

fn env() -> Vec<(&'static str, &'static str)> {
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

/// Two replicas over one Redis, sessions encrypted at rest: the refresh
/// token is spent once between them (the other replica reads the access
/// token the first shared, sealed; the server sees one refresh and no
/// reuse) and Redis holds no token in clear.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_one_refresh_and_redis_holds_no_token() {
    let redis = RedisServer::start();
    let auth = AuthServer::start().await;
    let (as_port, _as_server) = jwt_server(&auth.url("/jwks"), &auth.url(""), "RS256").await;
    let (replicas, _dirs) = sealed_replicas(2, &redis, &auth, as_port, "crm_user");
    let (rt, _) = auth.mint("alice").await;
    put(
        &replicas[0],
        "call-r",
        json!({"refresh_token": rt, "note": "plain-marker"}),
    )
    .await;

    let calls = (0..16).map(|i| rpc(&replicas[i % 2], "user", "call-r"));
    let answers = futures_util::future::join_all(calls).await;
    let obtained =
        |(st, b): &(u16, Value)| ![403, 503].contains(st) && b["error"]["data"]["code"].is_null();
    assert!(answers.iter().all(obtained), "{answers:?}");
    let stats = auth.stats().await;
    assert_eq!(
        stats["success"]["refresh_token"], 1,
        "one refresh between the replicas (the token is shared, sealed): {stats}"
    );
    assert_eq!(
        stats["error"],
        json!({}),
        "no replica sent a spent refresh token: {stats}"
    );
    assert_eq!(whoami(&replicas[1], "user", "call-r").await["sub"], "alice");

    let raw = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--no-raw",
            "GET",
            "headgate:session:call-r",
        ])
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&raw.stdout);
    assert!(raw.starts_with("\"hgs1:k1:"), "sealed with key k1: {raw}");
    assert!(
        !raw.contains(&rt) && !raw.contains("plain-marker") && !raw.contains("refresh_token"),
        "{raw}"
    );
    // The shared access token is sealed the same way.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "--no-raw"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let keys = cli(&["KEYS", "headgate:token:*"]);
    let key = keys
        .lines()
        .next()
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_default();
    assert!(!key.is_empty(), "a token is shared: {keys}");
    let shared = cli(&["GET", key]);
    assert!(
        shared.starts_with("\"hgs1:k1:"),
        "sealed with key k1: {shared}"
    );
    assert!(
        !shared.contains("access_token") && !shared.contains("Bearer"),
        "{shared}"
    );
}

/// `n` replicas over `redis` with sessions sealed at rest, each routing
/// `user` to the whoami server on `as_port` with `credential`.
fn sealed_replicas(
    n: usize,
    redis: &RedisServer,
    auth: &AuthServer,
    as_port: u16,
    credential: &str,
) -> (Vec<Served>, Vec<tempfile::TempDir>) {
    let store = format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nencryption_keys_env = \"HG_TEST_SESSION_KEYS\"\n",
        redis.url()
    );
    let crm = format!("http://127.0.0.1:{as_port}");
    let (mut replicas, mut dirs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        signing_key(dir.path());
        let user = bearer_route(&crm, credential);
        write_config(
            dir.path(),
            &credentials_toml(auth, &store),
            &[("user", &user)],
        );
        replicas.push(serve(dir.path(), &FREE_PORTS, &env()));
        dirs.push(dir);
    }
    (replicas, dirs)
}

/// Three replicas missing one client-credentials token at once (ten
/// calls each) make one token request between them (CONTRACT section 11).
#[tokio::test(flavor = "multi_thread")]
async fn replicas_make_one_token_request_between_them() {
    let redis = RedisServer::start();
    let auth = AuthServer::start().await;
    let (as_port, _as_server) = jwt_server(&auth.url("/jwks"), &auth.url(""), "RS256").await;
    let (replicas, _dirs) = sealed_replicas(3, &redis, &auth, as_port, "crm");
    for r in &replicas {
        put(r, "call-cc", json!({"note": "x"})).await;
    }
    let calls = (0..30).map(|i| rpc(&replicas[i % 3], "user", "call-cc"));
    let answers = futures_util::future::join_all(calls).await;
    // Forwarded with a token (the whoami server's own answer), never
    // headgate's refusal.
    let forwarded =
        |(st, b): &(u16, Value)| ![403, 503].contains(st) && b["error"]["data"]["code"].is_null();
    assert!(answers.iter().all(forwarded), "{answers:?}");
    let stats = auth.stats().await;
    assert_eq!(stats["success"]["client_credentials"], 1, "{stats}");
}

/// `check` finds a credential that is not declared at its line and
/// column, a plain-HTTP token URL to another host, and a bad key; `render`
/// shows `<credentials.NAME>` and `--explain` names the token URL's host,
/// never a secret.
#[test]
fn check_render_and_explain_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let main = "[credentials.crm]\nkind = \"client_credentials\"\ntoken_url = \"http://auth.example.com/token\"\nclient_id = \"c\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\n\
                [credentials.signer]\nkind = \"jwt\"\nissuer = \"i\"\naudience = \"a\"\nsigning_key_env = \"HG_TEST_CLIENT_SECRET\"\n";
    let r = route(
        "http://127.0.0.1:9",
        "[headers]\nauthorization = \"Bearer << credentials.crmx.access_token >>\"\n",
    );
    write_config(dir.path(), main, &[("r", &r)]);
    let (code, out, err) = check_with(
        dir.path(),
        &[],
        &["HG_TEST_CLIENT_SECRET", "HG_TEST_ROUTE_KEY"],
    );
    let text = format!("{out}{err}");
    assert_ne!(code, 0);
    assert!(
        text.contains("headgate.toml:3:13") && text.contains("config.insecure_token_url"),
        "{text}"
    );
    assert!(text.contains("config.invalid_signing_key"), "{text}");
    assert!(
        text.contains("r.toml:4:")
            && text.contains("config.unknown_credential")
            && text.contains("`crmx`"),
        "{text}"
    );

    let good = "[credentials.crm]\nkind = \"client_credentials\"\ntoken_url = \"https://auth.example.com/token\"\nclient_id = \"c\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\nscope = \"crm.read\"\n";
    let r = route(
        "http://127.0.0.1:9",
        "[headers]\nauthorization = \"<< credentials.crm.token_type >> << credentials.crm.access_token >>\"\n",
    );
    write_config(dir.path(), good, &[("r", &r)]);
    let dirp: PathBuf = dir.path().to_path_buf();
    let (code, out, _) = check_with(
        &dirp,
        &["--explain", "r"],
        &["HG_TEST_CLIENT_SECRET", "HG_TEST_ROUTE_KEY"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("credential crm") && out.contains("client_credentials from auth.example.com"),
        "{out}"
    );
    assert!(!out.contains("dummy-secret"), "{out}");
    let vars = dir.path().join("vars.json");
    std::fs::write(&vars, "{}").unwrap();
    let args = [
        "render",
        "--route",
        "r",
        "--templates",
        dir.path().to_str().unwrap(),
        "--vars",
        vars.to_str().unwrap(),
    ];
    let (code, out, err) = run_bin(&args.map(std::ffi::OsStr::new), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "authorization: <credentials.crm.token_type> <credentials.crm>"
    );
}

/// `openssl ARGS` (RSA keys: rcgen cannot make them with ring).
fn openssl(args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

/// Every key type signs and is published: RSA → RS256, Ed25519 → EdDSA,
/// P-256 → ES256, `kid` as configured or the RFC 7638 thumbprint, a
/// previous key with the `kid` it had, never private material; the
/// tokens verify against the published keys, are signed once per session
/// and claims (a counter proves it), and differ between sessions.
#[tokio::test]
async fn jwks_publishes_every_key_type_and_tokens_verify_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let path = |f: &str| keys.join(f).to_string_lossy().into_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path("rsa.pem"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path("old.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &path("old.pem"),
        "-pubout",
        "-out",
        &path("old.pub.pem"),
    ]);
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(keys.join("ed.pem"), ed.serialize_pem()).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(keys.join("ec.pem"), ec.serialize_pem()).unwrap();
    let jwt = |name: &str, file: &str, extra: &str| {
        format!(
            "[credentials.{name}]\nkind = \"jwt\"\nissuer = \"https://hg.test\"\naudience = \"api\"\nsigning_key_file = \"keys/{file}\"\n{extra}\n[credentials.{name}.claims]\nsub = \"<< call.user >>\"\n"
        )
    };
    let main = format!(
        "builtin_echo = true\n{}{}{}",
        jwt(
            "rsa",
            "rsa.pem",
            "key_id = \"rsa-2026-11\"\nprevious_keys = [\"keys/old.pub.pem#rsa-2026-10\"]"
        ),
        jwt("ed", "ed.pem", ""),
        jwt("ec", "ec.pem", ""),
    );
    let headers = "[headers]\nx-rsa = \"<< credentials.rsa.access_token >>\"\nx-ed = \"<< credentials.ed.access_token >>\"\nx-ec = \"<< credentials.ec.access_token >>\"\n";
    write_config(
        dir.path(),
        &main,
        &[("echo", &route("builtin:echo", headers))],
    );
    let h = inproc::start(dir.path()).await;
    let c = client();
    let jwks: Value = c
        .get(format!("http://{}/.well-known/jwks.json", h.listen))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let kids: Vec<_> = set
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(set.keys.len(), 4, "{jwks}");
    assert!(
        kids.contains(&"rsa-2026-11".to_string()) && kids.contains(&"rsa-2026-10".to_string()),
        "{kids:?}"
    );
    for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"qi\""] {
        assert!(!jwks.to_string().contains(private), "{jwks}");
    }
    for k in &set.keys {
        assert_eq!(
            k.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Signature)
        );
    }

    let mut first = Vec::new();
    for user in ["ann", "ann", "ben"] {
        put_session(&h, &format!("call-{user}"), json!({"call": {"user": user}})).await;
        let echo: Value = get_call(
            &c,
            format!("http://{}/echo/x", h.listen),
            &format!("call-{user}"),
        )
        .await
        .json()
        .await
        .unwrap();
        let mut tokens = Vec::new();
        for (header, alg) in [
            ("x-rsa", jsonwebtoken::Algorithm::RS256),
            ("x-ed", jsonwebtoken::Algorithm::EdDSA),
            ("x-ec", jsonwebtoken::Algorithm::ES256),
        ] {
            let token = echo["headers"][header].as_str().unwrap().to_string();
            let head = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(head.alg, alg);
            let jwk = set.find(head.kid.as_deref().unwrap()).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.set_audience(&["api"]);
            v.set_issuer(&["https://hg.test"]);
            let claims = jsonwebtoken::decode::<Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
                &v,
            )
            .unwrap_or_else(|e| panic!("{header}: {e}"))
            .claims;
            assert_eq!(claims["sub"], user);
            assert!(
                claims["jti"].as_str().is_some_and(|j| j.len() == 32) && claims["nbf"].is_u64()
            );
            tokens.push(token);
        }
        first.push(tokens);
    }
    assert_eq!(
        first[0], first[1],
        "one session's token is signed once and reused"
    );
    assert_ne!(first[0], first[2], "another session gets its own");
    let m =
        h.app
            .metrics
            .credential_requests
            .get_or_create(&headgate::metrics::CredentialOutcome {
                credential: "rsa".into(),
                outcome: "ok",
            });
    assert_eq!(m.get(), 2, "signed on a miss only");
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
