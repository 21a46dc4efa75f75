//! The console at `/ui` (docs/operations.md "The console") against the real binary: the login
//! and its cookie, CSRF and Origin checks, the overview, the call
//! inspector after real proxied requests, the playground, a rejected
//! reload, the read-only login; then the same in headless Chromium driven
//! by Selenium. No page ever holds a token or a session value.

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use serde_json::json;

/// A session value that must never reach a console page.
const SESSION_SECRET: &str = "tok-console-SECRET-9f2c";
/// The read-only token (`metrics_token_env`).
const METRICS_TOKEN: &str = API_KEY;

/// A config with a plain route and an MCP route that denies one tool, both
/// to `upstream`, and the admin and metrics tokens set.
fn console_config(dir: &Path, upstream: &str) {
    let headers = "[headers]\nAuthorization = \"Bearer << call.metadata.token >>\"\n";
    write_config(
        dir,
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\nmetrics_token_env = \"HG_TEST_API_KEY\"\n",
        &[
            ("crm", &route(upstream, headers)),
            (
                "tools",
                &route(
                    upstream,
                    &format!("{headers}[mcp]\ndeny_tools = [\"delete_*\"]\n"),
                ),
            ),
        ],
    );
}

/// A client that shows redirects instead of following them.
fn browserish() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in with `token`: the cookie pair to send back (`name=value`).
pub(crate) async fn log_in(admin: &str, token: &str) -> String {
    let r = browserish()
        .post(format!("http://{admin}/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(token), "the cookie holds the token: {set}");
    set.split(';').next().unwrap().to_string()
}

/// `GET path` with the cookie: (status, body).
pub(crate) async fn page(admin: &str, cookie: &str, path: &str) -> (u16, String) {
    let r = browserish()
        .get(format!("http://{admin}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `POST path` with the cookie and a form: (status, body).
async fn post(admin: &str, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = browserish()
        .post(format!("http://{admin}{path}"))
        .header("cookie", cookie)
        .header("origin", format!("http://{admin}"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("no csrf field") + 19;
    body[at..].split('"').next().unwrap().to_string()
}

/// Real traffic for `call`: two plain requests, an allowed and a denied
/// tool call; and one request for a call nobody registered.
async fn traffic(s: &Served, call: &str) {
    let vars = json!({"call": {"metadata": {"token": SESSION_SECRET}}});
    assert_eq!(
        admin_call(s, reqwest::Method::PUT, call, Some(&vars)).await,
        204
    );
    for _ in 0..2 {
        assert_eq!(tool_call(s, "crm", "x-call-id", call).await.0, 200);
    }
    for (tool, id) in [("search", 1), ("delete_contact", 2)] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}});
        let r = client()
            .post(format!("http://{}/tools/mcp", s.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", call)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(tool_call(s, "crm", "x-call-id", "call-nobody").await.0, 403);
}

#[tokio::test]
async fn console_login_pages_csrf_and_no_secret_on_any_page() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    console_config(dir.path(), &up.url());
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[]);
    let admin = s.admin.clone();
    traffic(&s, "call-console-1").await;
    let mut seen_pages = Vec::new();

    // Without a cookie: the login form; a wrong token: the form again,
    // an error and no cookie.
    let (status, form) = page(&admin, "", "/ui").await;
    assert_eq!(status, 200);
    assert!(
        form.contains(r#"action="/ui/login""#) && form.contains(r#"type="password" name="token""#),
        "{form}"
    );
    let wrong = browserish()
        .post(format!("http://{admin}/ui/login"))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));
    assert_eq!(
        page(&admin, "headgate_console=forged", "/ui/calls/x")
            .await
            .0,
        303
    );

    let cookie = log_in(&admin, ADMIN_TOKEN).await;
    let (status, overview) = page(&admin, &cookie, "/ui").await;
    assert_eq!(status, 200);
    for want in [
        r#"data-route="crm""#,
        r#"data-route="tools""#,
        &up.url(),
        "session.not_found",
        r#"id="generation">1<"#,
    ] {
        assert!(overview.contains(want), "{want} not in {overview}");
    }
    assert!(overview.contains(r#"name="call""#));
    seen_pages.push(overview.clone());

    // The call inspector: names, source, TTL and every request.
    let r = browserish()
        .get(format!("http://{admin}/ui/calls?call=call-console-1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/calls/call-console-1");
    let (status, call) = page(&admin, &cookie, "/ui/calls/call-console-1").await;
    assert_eq!(status, 200);
    for want in [
        "call.metadata.token",
        r#"id="source">admin<"#,
        "tools/call",
        "delete_contact",
        "mcp.tool_denied",
        "<td>crm</td>",
    ] {
        assert!(call.contains(want), "{want} not in {call}");
    }
    assert_eq!(call.matches("<td>crm</td>").count(), 2, "{call}");
    seen_pages.push(call.clone());
    let (_, nobody) = page(&admin, &cookie, "/ui/calls/call-nobody").await;
    assert!(
        nobody.contains("no-session") && nobody.contains("session.not_found"),
        "{nobody}"
    );
    seen_pages.push(nobody);
    // GET /calls/{id} still lists only the MCP requests (§7).
    let api: serde_json::Value = client()
        .get(format!("http://{admin}/calls/call-console-1"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["requests"].as_array().unwrap().len(), 2, "{api}");

    // The playground: CSRF required; redacted by default; errors point.
    let token = csrf(&call);
    let template = "Bearer << call.metadata.token >>";
    let vars = format!(r#"{{"call": {{"metadata": {{"token": "{SESSION_SECRET}"}}}}}}"#);
    let form = [("template", template), ("vars", vars.as_str())];
    assert_eq!(post(&admin, &cookie, "/ui/playground", &form).await.0, 403);
    let with = |extra: &'static [(&'static str, &'static str)]| {
        let mut f: Vec<(&str, &str)> =
            vec![("template", template), ("vars", &vars), ("csrf", &token)];
        f.extend_from_slice(extra);
        f
    };
    let (status, rendered) = post(&admin, &cookie, "/ui/playground", &with(&[])).await;
    assert_eq!(status, 200);
    assert!(rendered.contains("Bear… (30 bytes)"), "{rendered}");
    let shown = rendered.replace(&vars.replace('"', "&quot;"), "");
    seen_pages.push(shown);
    let bad = [
        ("template", "<< call | nope >>"),
        ("vars", "{}"),
        ("csrf", token.as_str()),
    ];
    let (_, error) = post(&admin, &cookie, "/ui/playground", &bad).await;
    assert!(
        error.contains("template.unknown_filter") && error.contains("\n  ") && error.contains('^'),
        "{error}"
    );
    // A form posted from another site is refused, even with the cookie.
    let r = browserish()
        .post(format!("http://{admin}/ui/playground"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&with(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A rejected reload shows with its file:line on the overview.
    std::fs::write(
        dir.path().join("routes/broken.toml"),
        "upstream = \"http://127.0.0.1:1\"\nnot_a_key = 1\n",
    )
    .unwrap();
    s.hangup();
    let mut rejected = String::new();
    for _ in 0..100 {
        rejected = page(&admin, &cookie, "/ui").await.1;
        if rejected.contains("rejected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rejected.contains("rejected") && rejected.contains("broken.toml:2:"),
        "{rejected}"
    );
    assert!(rejected.contains(r#"id="generation">1<"#));
    seen_pages.push(rejected);

    // Read-only: what /metrics shows (the overview), nothing of a call
    // (`GET /calls/{id}` refuses the metrics token too), no playground;
    // and it cannot end a call.
    let ro = log_in(&admin, METRICS_TOKEN).await;
    let (status, ro_overview) = page(&admin, &ro, "/ui").await;
    assert_eq!(status, 200);
    assert!(
        ro_overview.contains(r#"data-route="crm""#) && !ro_overview.contains(r#"name="call""#),
        "{ro_overview}"
    );
    for path in ["/ui/calls/call-console-1", "/ui/playground"] {
        let (status, ro_call) = page(&admin, &ro, path).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            ro_call.contains("read-only") && !ro_call.contains("call.metadata"),
            "{ro_call}"
        );
    }
    let api = client()
        .get(format!("http://{admin}/calls/call-console-1"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let ro_call = ro_overview;
    let ro_csrf = csrf(&ro_call);
    let (status, _) = post(
        &admin,
        &ro,
        "/ui/calls/call-console-1/end",
        &[("csrf", &ro_csrf)],
    )
    .await;
    assert_eq!(status, 403);
    seen_pages.push(ro_call);

    // The admin login ends the session; logging out ends the login.
    let (status, _) = post(
        &admin,
        &cookie,
        "/ui/calls/call-console-1/end",
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        admin_call(&s, reqwest::Method::GET, "call-console-1", None).await,
        404
    );
    assert_eq!(
        post(&admin, &cookie, "/ui/logout", &[("csrf", &token)])
            .await
            .0,
        303
    );
    assert_eq!(page(&admin, &cookie, "/ui/playground").await.0, 303);

    for p in &seen_pages {
        for secret in [ADMIN_TOKEN, METRICS_TOKEN, SESSION_SECRET, ROUTE_KEY] {
            assert!(!p.contains(secret), "a console page holds a secret:\n{p}");
        }
    }
}

/// Logs in, sees the routes, looks up a call after real proxied requests
/// and renders in the playground, in headless Chromium driven by Selenium
/// (tests/interop/console_browser.py); screenshots go to
/// `target/artifacts/console/`.
#[tokio::test]
async fn console_in_a_real_browser() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    console_config(dir.path(), &up.url());
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[]);
    traffic(&s, "call-browser-7").await;
    let shots = screenshots();
    let secrets = [ADMIN_TOKEN, METRICS_TOKEN, SESSION_SECRET, ROUTE_KEY].join(",");
    let admin = format!("http://{}", s.admin);
    let dir = shots.to_string_lossy();
    let env = [
        ("CONSOLE_TOKEN", ADMIN_TOKEN),
        ("CONSOLE_SECRETS", secrets.as_str()),
    ];
    let report = browser_report(
        "console_browser.py",
        &[&admin, "call-browser-7", &dir],
        &env,
    )
    .await;
    assert_eq!(report["routes"], json!(["crm", "tools"]), "{report}");
    assert_eq!(
        report["document_cookie"], "",
        "the page's script can read the cookie: {report}"
    );
    assert_eq!(report["cookie"]["httpOnly"], true, "{report}");
    assert_eq!(report["cookie"]["sameSite"], "Strict", "{report}");
    assert!(report["call_rows"].as_u64().unwrap() >= 4, "{report}");
    assert!(
        report["rendered"].as_str().unwrap().starts_with("Bear… ("),
        "{report}"
    );
    assert_screenshots(&shots, &["overview.png", "call.png", "playground.png"]);
}

/// A hostile playground template (each step within every cap, the whole
/// seconds of work) from six logins at once: the admin listener keeps
/// answering its probes, every render ends within its budget, and those
/// past the concurrency bound are told the playground is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_playground_renders_never_stall_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    console_config(dir.path(), "http://127.0.0.1:9");
    let s = serve(dir.path(), &FREE_PORTS, &[]);
    let admin = s.admin.clone();
    let cookie = log_in(&admin, ADMIN_TOKEN).await;
    let token = csrf(&page(&admin, &cookie, "/ui/playground").await.1);
    let template = "<% assign b = s | append: 'a' %><% for i in (1..17) %><% assign b = b | append: b %><% endfor %>\
<% for i in (1..3000) %><% assign c = b | replace: 'a', 'b' %><% endfor %>";
    let started = std::time::Instant::now();
    let renders: Vec<_> = (0..6)
        .map(|_| {
            let (admin, cookie, token) = (admin.clone(), cookie.clone(), token.clone());
            tokio::spawn(async move {
                let form = [
                    ("template", template),
                    ("vars", r#"{"s": "x"}"#),
                    ("csrf", &token),
                ];
                post(&admin, &cookie, "/ui/playground", &form).await
            })
        })
        .collect();
    // Probes every 50 ms while the renders run: each answered promptly.
    let mut slowest = Duration::ZERO;
    while !renders.iter().all(|r| r.is_finished()) && started.elapsed() < Duration::from_secs(20) {
        let t = std::time::Instant::now();
        let r = client()
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a probe took {slowest:?}"
    );
    let mut by_status = std::collections::BTreeMap::new();
    for r in renders {
        let (status, body) = r.await.unwrap();
        let shown = if status == 200 {
            "template.render_failed"
        } else {
            "console.busy"
        };
        assert!(body.contains(shown), "{status}: {body}");
        *by_status.entry(status).or_insert(0) += 1;
    }
    assert!(
        by_status.get(&200).is_some_and(|n| *n >= 1),
        "{by_status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
