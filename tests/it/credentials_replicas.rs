//! Credentials across replicas over one real Redis with sessions sealed
//! at rest: one refresh and one client-credentials request between them,
//! the shared token sealed, no token in clear.

use serde_json::{Value, json};

use crate::credentials::{
    AuthServer, bearer_route, credentials_toml, env, jwt_server, put, rpc, signing_key, whoami,
};
use crate::support::*;

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
/// calls each) make one token request between them.
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
