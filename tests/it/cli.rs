//! The real `headgate` binary: `check`, `render`, `serve`, the README's
//! quick start, and the secret-leak harness.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn render_template_prints_the_value_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.json");
    std::fs::write(&vars, r#"{"call":{"metadata":{"token":"tok-1"}}}"#).unwrap();
    let (code, out, err) = run(&[
        "render",
        "--template",
        "Bearer << call.metadata.token >>",
        "--vars",
        vars.to_str().unwrap(),
    ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "Bearer tok-1\n", "")
    );

    let (code, out, err) = run(&[
        "render",
        "--template",
        "Bearer << call.metadata.nope >>",
        "--vars",
        vars.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.starts_with("1:11: template.undefined_variable:"),
        "{err}"
    );
    assert!(
        err.ends_with("  Bearer << call.metadata.nope >>\n            ^\n"),
        "caret under the column:\n{err}"
    );

    let (code, _, err) = run(&[
        "render",
        "--template",
        "<< call | bogus >>",
        "--vars",
        vars.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("template.unknown_filter") && err.contains('^'),
        "{err}"
    );
    let (code, _, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:"));
}

#[test]
fn check_reports_every_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "listen = \"not-an-address\"\nttl = \"5 parsecs\"\n",
        &[
            (
                "bad_template",
                "upstream = \"http://127.0.0.1:1/\"\ninbound_auth = \"none\"\n[headers]\nauthorization = \"Bearer << call.token | nope >>\"\n",
            ),
            ("bad_toml", "upstream = \"http://x/\"\nthis is not toml\n"),
            (
                "forbidden",
                "upstream = \"http://127.0.0.1:1/\"\ninbound_auth = \"none\"\n[headers]\nhost = \"x\"\n",
            ),
            ("no_auth", "upstream = \"http://127.0.0.1:1/\"\n"),
            (
                "bad_upstream",
                "upstream = \"ftp://x\"\ninbound_auth = \"none\"\n",
            ),
            (
                "typo",
                "upstream = \"http://127.0.0.1:1/\"\ninbound_auth = \"none\"\nsesion_keys = []\n",
            ),
            (
                "bad_key",
                "upstream = \"http://127.0.0.1:1/\"\ninbound_auth = \"none\"\nsession_keys = [\"cookie:x\"]\n",
            ),
        ],
    );
    let (code, _, err) = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let d = dir.path().display().to_string();
    for expected in [
        format!("{d}/headgate.toml:1:10: config.invalid_address"),
        format!("{d}/headgate.toml:2:7: config.invalid_duration"),
        format!("{d}/routes/bad_template.toml:4:41: template.unknown_filter"),
        format!("{d}/routes/bad_toml.toml:2:6: config.toml"),
        format!("{d}/routes/forbidden.toml:4:8: config.forbidden_header"),
        format!("{d}/routes/no_auth.toml:1:1: config.inbound_auth_required"),
        format!("{d}/routes/bad_upstream.toml:1:12: config.invalid_upstream"),
        format!("{d}/routes/typo.toml:3:1: config.toml"),
        format!("{d}/routes/bad_key.toml:3:17: config.invalid_session_key"),
    ] {
        assert!(err.contains(&expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("^"), "carets under the columns");
}

#[test]
fn check_warns_but_passes_and_explains_a_route() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "",
        &[(
            "pub",
            "platform = \"vapi\"\nupstream = \"http://203.0.113.7/mcp\"\ninbound_auth = \"none\"\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
        )],
    );
    let (code, out, err) = run(&["check", dir.path().to_str().unwrap(), "--explain", "pub"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config.inbound_auth_off"), "{out}");
    assert!(out.contains("config.plain_http_upstream"), "{out}");
    assert!(
        out.contains(
            "session_keys:        header:x-call-id, header:x-chat-id, header:x-session-id"
        ),
        "{out}"
    );
    assert!(
        out.contains("sessions from:       memory store of this process (max_sessions "),
        "{out}"
    );
    // In operators' words (not Rust `Debug` names), and true to the route:
    // it rejects an unknown call, it fetches nothing.
    assert!(
        out.contains("on a miss:           403 session.not_found (no fetch)"),
        "{out}"
    );
    assert!(
        out.contains("on_unknown_session:  reject (403 session.not_found)"),
        "{out}"
    );
    assert!(out.contains("wait_for_session:    no wait"), "{out}");
    for debug_name in ["Reject", "0ns", "JsonRpc", "Json ", "Omit", "Some("] {
        assert!(!out.contains(debug_name), "`{debug_name}` in:\n{out}");
    }
}

#[test]
fn explain_shows_the_store_and_resolver_without_the_redis_password() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "env_allow = [\"VAPI_API_KEY\"]\n[resolver]\nplatform = \"vapi\"\n\
         [store]\nkind = \"redis\"\nurl = \"redis://app:hunter2-redis-pw@10.0.0.5:6379/2\"\n\
         prefix = \"hg:\"\ncache_ttl = \"3s\"\n",
        &[(
            "pub",
            "platform = \"vapi\"\nupstream = \"http://203.0.113.7/mcp\"\ninbound_auth = \"none\"\non_unknown_session = \"resolve\"\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
        )],
    );
    let (code, out, err) = run(&["check", dir.path().to_str().unwrap(), "--explain", "pub"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sessions from:       redis store redis://***@10.0.0.5:6379/2 prefix `hg:` (replica cache 3s"),
        "{out}"
    );
    assert!(
        out.contains("on a miss:           GET https://api.vapi.ai/call/"),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
}

#[test]
fn render_route_prints_each_header_and_redacts() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "",
        &[(
            "crm",
            "upstream = \"http://127.0.0.1:1/\"\ninbound_auth = \"none\"\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\nx-session = \"<< session.id >>\"\n",
        )],
    );
    let vars = dir.path().join("v.json");
    std::fs::write(&vars, r#"{"call":{"metadata":{"token":"tok-secret-1"}}}"#).unwrap();
    let t = dir.path().to_str().unwrap();
    let (code, out, _) = run(&[
        "render",
        "--route",
        "crm",
        "--vars",
        vars.to_str().unwrap(),
        "--templates",
        t,
        "--session-id",
        "s-9",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, "authorization: Bearer tok-secret-1\nx-session: s-9\n");
    let (code, out, _) = run(&[
        "render",
        "--route",
        "crm",
        "--vars",
        vars.to_str().unwrap(),
        "--templates",
        t,
        "--redact",
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("tok-secret-1"), "{out}");
    assert!(out.starts_with("authorization: Bear… (19 bytes)"), "{out}");
}

#[tokio::test]
async fn secrets_never_reach_logs_bodies_or_metrics() {
    const TOKEN: &str = "SECRET-session-token-7f3a";
    const TENANT: &str = "SECRET-tenant-value-91";
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n[webhooks.vapi]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n[resolver]\nurl = \"http://127.0.0.1:9/call/<< session.id >>\"\ntimeout = \"200ms\"\n";
    let headers = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\nx-tenant = \"<< call.metadata.tenant >>\"\nx-decoded = { template = \"<< call.metadata.blob | base64_decode >>\", on_error = \"omit\" }\nx-crlf = { template = \"<< call.metadata.crlf >>\", on_error = \"omit\" }\n";
    write_config(
        dir.path(),
        main,
        &[
            (
                "crm",
                &route(&up.url(), &format!("error_style = \"jsonrpc\"\n{headers}")),
            ),
            (
                "res",
                &route(
                    &up.url(),
                    &format!("on_unknown_session = \"resolve\"\n{headers}"),
                ),
            ),
            (
                "strict",
                &route(
                    &up.url(),
                    "[headers]\nx-missing = \"<< call.metadata.nope >> << call.metadata.token >>\"\n",
                ),
            ),
        ],
    );
    let s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[("RUST_LOG", "trace"), ("HEADGATE_LOG_FORMAT", "json")],
    );
    let c = client();
    let admin = |p: &str| format!("http://{}{p}", s.admin);
    let public = |p: &str| format!("http://{}{p}", s.listen);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut bodies = String::new();
    let vars = json!({"call": {"metadata": {"token": TOKEN, "tenant": TENANT, "blob": format!("{TOKEN}!!notb64"), "crlf": format!("{TOKEN}\r\nX-Evil: 1")}}});

    let r = c
        .put(admin("/sessions/call-1"))
        .header("authorization", &auth)
        .json(&vars)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for req in [
        c.get(admin("/sessions/call-1")).header("authorization", &auth),
        c.get(admin("/sessions/call-1")).header("authorization", format!("Bearer {ADMIN_TOKEN}x")),
        c.patch(admin("/sessions/call-1")).header("authorization", &auth).json(&json!({"call": {"extra": TOKEN}})),
        c.put(admin("/sessions/bad")).header("authorization", &auth).body(format!("{{\"x\": \"{TOKEN}\"")),
        c.get(admin("/metrics")).header("authorization", &auth),
        c.post(public("/crm")).header("x-headgate-key", ROUTE_KEY).header("x-call-id", "call-1").body(r#"{"id":1}"#),
        c.post(public("/crm")).header("x-headgate-key", format!("{ROUTE_KEY}-wrong")).header("x-call-id", "call-1").body(r#"{"id":2}"#),
        c.post(public("/crm")).header("x-headgate-key", ROUTE_KEY).header("x-call-id", "unknown").body(r#"{"id":3}"#),
        c.get(public("/strict")).header("x-headgate-key", ROUTE_KEY).header("x-call-id", "call-1"),
        c.get(public("/res")).header("x-headgate-key", ROUTE_KEY).header("x-call-id", "needs-fetch"),
        c.post(public("/_hooks/vapi")).header("x-vapi-secret", format!("{WEBHOOK_SECRET}-wrong")).body(format!("{{\"message\":{{\"type\":\"status-update\",\"call\":{{\"id\":\"c\",\"metadata\":{{\"token\":\"{TOKEN}\"}}}}}}}}")),
        c.post(public("/_hooks/vapi")).header("x-vapi-secret", WEBHOOK_SECRET).body(format!("{{\"message\":{{\"type\":\"status-update\",\"call\":{{\"id\":\"hooked\",\"metadata\":{{\"token\":\"{TOKEN}\"}}}}}}}}")),
        c.post(public("/_hooks/vapi")).header("x-vapi-secret", WEBHOOK_SECRET).body("not json"),
    ] {
        let r = req.send().await.unwrap();
        bodies.push_str(&format!("{:?}\n", r.headers()));
        bodies.push_str(&r.text().await.unwrap());
        bodies.push('\n');
    }
    // The upstream really got the secrets (so the harness would see a leak).
    let got = up.seen();
    assert!(got.iter().any(|s| {
        s.headers
            .get("authorization")
            .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str())
    }));
    assert!(
        got.iter().all(|s| s.headers.get("x-crlf").is_none()),
        "a CR/LF value is never sent"
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = s.log.lock().unwrap().clone();
    assert!(
        log.contains("\"request\""),
        "JSON request logs expected:\n{log}"
    );
    for secret in [TOKEN, TENANT, ADMIN_TOKEN, ROUTE_KEY, WEBHOOK_SECRET] {
        assert!(
            !log.contains(secret),
            "`{secret}` leaked into the logs:\n{log}"
        );
        assert!(
            !bodies.contains(secret),
            "`{secret}` leaked into a response:\n{bodies}"
        );
    }
}

#[test]
fn readme_quick_start_works_verbatim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("<!-- quickstart-curl -->")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a quickstart-curl block");
    let s = serve(&root.join("templates"), &[], &[("RUST_LOG", "info")]);
    assert_eq!(
        s.listen, "127.0.0.1:8080",
        "the quick start uses the built-in defaults"
    );
    let out = Command::new("sh").arg("-c").arg(block).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"authorization\":\"Bearer tok-abc\""),
        "the injected header comes back:\n{stdout}"
    );
    assert!(stdout.contains("\"x-tenant\":\"acme\""), "{stdout}");
}

#[test]
fn shipped_examples_pass_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let n = shipped_examples(dir.path()).len();
    assert!(n >= 5);
    // `check` needs the secrets `serve` needs (dummies here).
    let secrets = [
        "VAPI_WEBHOOK_SECRET",
        "RETELL_API_KEY",
        "ELEVENLABS_WEBHOOK_SECRET",
        "VAPI_SERVER_SECRET",
        "HEADGATE_ROUTE_KEY",
    ];
    let check = |dir: &Path, with: &[&str]| check_with(dir, &[], with);
    // Without them, `check` fails as `serve` would, naming each variable.
    let (code, _, err) = check(dir.path(), &[]);
    assert_ne!(code, 0);
    for name in secrets {
        assert!(err.contains(name), "{name} missing from:\n{err}");
    }
    assert!(err.contains("config.missing_secret"), "{err}");
    let (code, out, err) = check(dir.path(), &secrets);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("ok: {n} route(s), 3 webhook(s)")),
        "{out}"
    );
    // The shipped default config passes too.
    let (code, out, err) = check(&root.join("templates"), &secrets);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn sighup_reloads_the_config() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let r = |v: &str| route(&up.url(), &format!("[headers]\nx-version = \"{v}\"\n"));
    write_config(dir.path(), "", &[("crm", &r("before"))]);
    let s = serve(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--no-watch",
        ],
        &[("RUST_LOG", "info")],
    );
    let admin = format!("http://{}/sessions/c1", s.admin);
    client()
        .put(&admin)
        .json(&json!({"call": {}}))
        .send()
        .await
        .unwrap();
    let call = || {
        client()
            .get(format!("http://{}/crm", s.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "c1")
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(up.last().headers["x-version"], "before");

    std::fs::write(dir.path().join("routes/crm.toml"), r("after")).unwrap();
    s.hangup();
    let started = Instant::now();
    loop {
        assert_eq!(call().await.unwrap().status(), 200);
        if up.last().headers["x-version"] == "after" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGHUP did not reload:\n{}",
            s.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.log.lock().unwrap().contains("config reloaded"));
}

/// `headgate probe` (the image's HEALTHCHECK): 0 against a running
/// headgate's admin listener, 1 once nothing answers there.
#[tokio::test]
async fn probe_says_whether_headgate_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &[]);
    let mut s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[],
    );
    let probe = |path: &str| {
        let out = bin()
            .args(["probe", "--admin", &s.admin, "--path", path])
            .output()
            .unwrap();
        out.status.code()
    };
    assert_eq!(probe("/healthz"), Some(0));
    assert_eq!(probe("/readyz"), Some(0));
    assert_eq!(probe("/nowhere"), Some(1));
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    assert_eq!(probe("/healthz"), Some(1));
}
