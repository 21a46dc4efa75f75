//! The admin listener against DNS rebinding (issue 39, hole 2): a request
//! whose `Host` is a name the operator did not list is refused, whatever
//! its `Origin` and `Sec-Fetch-Site` say; probes still answer. Raw
//! sockets against the real binary, and the attack itself in headless
//! Chromium with a name that resolves to 127.0.0.1.

use crate::support::*;

/// headgate with no admin token (the quick start's setup), `extra` added
/// to `headgate.toml`.
fn open_admin(extra: &str) -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let main = format!("admin_token_env = \"HG_TEST_NO_SUCH_TOKEN\"\n{extra}");
    write_config(
        dir.path(),
        &main,
        &[("crm", &route("http://127.0.0.1:9", ""))],
    );
    let s = serve(dir.path(), &FREE_PORTS, &[]);
    (dir, s)
}

/// `method path` to the admin listener with `Host: host` and a browser's
/// headers for a page on that host.
async fn as_browser_on(s: &Served, host: &str, method: &str, path: &str, body: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nSec-Fetch-Site: same-origin\r\n\
Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_request(s.admin.parse().unwrap(), &req).await
}

#[tokio::test]
async fn a_rebound_name_gets_nothing_from_the_admin_listener() {
    let (_dir, s) = open_admin("");
    let port = s.admin.rsplit(':').next().unwrap().to_string();
    let evil = format!("rebind.evil.test:{port}");
    let vars = r#"{"call":{"metadata":{"token":"attacker-chosen"}}}"#;
    for (method, path, body) in [
        ("PUT", "/sessions/call-victim", vars),
        ("GET", "/sessions/call-victim", ""),
        ("DELETE", "/sessions/call-victim", ""),
        ("GET", "/metrics", ""),
        ("GET", "/ui", ""),
        ("POST", "/ui/login", "token=x"),
    ] {
        let raw = as_browser_on(&s, &evil, method, path, body).await;
        assert!(raw.starts_with("HTTP/1.1 403"), "{method} {path}: {raw}");
        assert!(
            raw.contains("admin.host_not_allowed"),
            "{method} {path}: {raw}"
        );
        assert!(!raw.to_ascii_lowercase().contains("set-cookie"), "{raw}");
    }
    // Nothing was stored; probes answer any Host (a kubelet names the
    // pod's IP, and they show nothing).
    let local = format!("127.0.0.1:{port}");
    assert!(
        as_browser_on(&s, &local, "GET", "/sessions/call-victim", "")
            .await
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        as_browser_on(&s, &evil, "GET", "/healthz", "")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Loopback names and IPs are served as before.
    for host in [
        local.clone(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let raw = as_browser_on(&s, &host, "PUT", "/sessions/call-ok", vars).await;
        assert!(raw.starts_with("HTTP/1.1 204"), "{host}: {raw}");
    }
}

#[tokio::test]
async fn a_name_in_admin_hosts_is_served() {
    let (_dir, s) = open_admin("admin_hosts = [\"headgate-admin\", \".ops.example\"]\n");
    let vars = r#"{"call":{"metadata":{"token":"t"}}}"#;
    for host in ["headgate-admin:9090", "eu.ops.example", "ops.example:1"] {
        let raw = as_browser_on(&s, host, "PUT", "/sessions/call-1", vars).await;
        assert!(raw.starts_with("HTTP/1.1 204"), "{host}: {raw}");
    }
    for host in ["headgate-admin.evil.test", "evilops.example"] {
        let raw = as_browser_on(&s, host, "PUT", "/sessions/call-1", vars).await;
        assert!(raw.starts_with("HTTP/1.1 403"), "{host}: {raw}");
    }
}

#[test]
fn a_bad_admin_hosts_entry_is_a_config_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "admin_hosts = [\"ok\", \"bad name\"]\n", &[]);
    let (code, _, err) = check_with(dir.path(), &[], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("headgate.toml:1:") && err.contains("`bad name` is not a host name"),
        "{err}"
    );
}

/// The attack as a browser runs it: a page on a name that resolves to
/// 127.0.0.1 tries to plant a session and log in to the console.
#[tokio::test]
async fn dns_rebinding_in_a_real_browser_is_refused() {
    let (_dir, s) = open_admin("");
    let port = s.admin.rsplit(':').next().unwrap().to_string();
    let report = browser_report("rebind_browser.py", &[&port], &[]).await;
    assert!(
        report["page"]
            .as_str()
            .unwrap()
            .contains("admin.host_not_allowed"),
        "{report}"
    );
    for step in ["put", "get", "login"] {
        assert_eq!(report[step], 403, "{step}: {report}");
    }
    assert_eq!(report["cookie"], "", "{report}");
    let local = format!("127.0.0.1:{port}");
    assert!(
        as_browser_on(&s, &local, "GET", "/sessions/call-victim", "")
            .await
            .starts_with("HTTP/1.1 404")
    );
}

/// Wrong tokens from one address: 401 up to the limit, then 429 with
/// `Retry-After` for every request from it, console logins included.
#[tokio::test]
async fn token_guesses_are_throttled_per_address() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n",
        &[("crm", &route("http://127.0.0.1:9", ""))],
    );
    let s = serve(dir.path(), &FREE_PORTS, &[]);
    let c = client();
    let mut statuses = Vec::new();
    for i in 0..25 {
        let r = c
            .get(format!("http://{}/sessions/x", s.admin))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
        }
    }
    assert_eq!(statuses[..20], [401; 20]);
    assert_eq!(statuses[20..], [429; 5]);
    let login = c
        .post(format!("http://{}/ui/login", s.admin))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    assert!(login.headers().get("set-cookie").is_none());
    // Probes still answer.
    let r = c
        .get(format!("http://{}/healthz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
