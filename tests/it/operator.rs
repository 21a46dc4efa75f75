//! What an operator used to nginx or Envoy expects on day one (issue 20,
//! the parts built so far): the quick start on any port, `check --explain`
//! in operators' words for every shipped example, a config merge error that
//! says where the key belongs, plain logs when nobody is at a terminal.

use std::path::Path;

use crate::support::*;
use serde_json::{Value, json};

/// Dummy values for the secrets the shipped examples name.
const SECRETS: &[&str] = &[
    "VAPI_WEBHOOK_SECRET",
    "RETELL_API_KEY",
    "ELEVENLABS_WEBHOOK_SECRET",
    "VAPI_SERVER_SECRET",
    "HEADGATE_ROUTE_KEY",
    "VAPI_API_KEY",
];

fn check(dir: &Path, args: &[&str]) -> (i32, String, String) {
    check_with(dir, args, SECRETS)
}

#[tokio::test]
async fn the_quick_start_echo_follows_the_listener_and_logs_stay_plain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    // Another port than the shipped 8080: the echo route still answers.
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(&root, &args, &[("RUST_LOG", "info")]);
    let vars = json!({"call": {"metadata": {"token": "tok-abc", "tenant": "acme"}}});
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "call-123", Some(&vars)).await,
        204
    );
    let r = client()
        .get(format!("http://{}/echo/mcp", s.listen))
        .header("x-call-id", "call-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["authorization"], "Bearer tok-abc", "{v}");
    assert_eq!(v["headers"]["x-tenant"], "acme");
    // stdout is a pipe here: no colour codes in the log.
    let log = s.log.lock().unwrap().clone();
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log:\n{log:?}"
    );
}

#[test]
fn explain_speaks_plainly_and_truly_for_every_shipped_example() {
    let dir = tempfile::tempdir().unwrap();
    let names = shipped_examples(dir.path());
    let mut explained = std::collections::BTreeMap::new();
    for name in &names {
        let (code, out, err) = check(dir.path(), &["--explain", name]);
        assert_eq!(code, 0, "{name}: {err}");
        for debug_name in [
            "Reject", "Resolve", "Pass", "0ns", "JsonRpc", "Omit", "Some(", "ms)",
        ] {
            assert!(
                !out.contains(debug_name),
                "{name}: `{debug_name}` in\n{out}"
            );
        }
        let line = |label: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        explained.insert(name.clone(), (line("on a miss:"), line("sessions from:")));
    }
    let miss = |n: &str| explained[n].0.clone();
    let from = |n: &str| explained[n].1.clone();
    // Only the route that resolves claims the resolver.
    assert!(
        miss("vapi-mcp").contains("GET https://api.vapi.ai/call/"),
        "{}",
        miss("vapi-mcp")
    );
    for rejects in ["elevenlabs-mcp", "livekit-mcp", "vapi-function-tool"] {
        assert_eq!(
            miss(rejects),
            "on a miss:           403 session.not_found (no fetch)",
            "{rejects}"
        );
    }
    // A route that renders from its signed body stores nothing.
    assert!(
        from("retell-function").contains("the signed request body"),
        "{}",
        from("retell-function")
    );
    assert_eq!(
        miss("retell-function"),
        "on a miss:           never: every request carries its own call"
    );
    assert!(from("vapi-mcp").contains("memory store of this process"));
}

#[test]
fn a_top_level_key_appended_inside_a_table_says_where_it_belongs() {
    let dir = tempfile::tempdir().unwrap();
    // What appending headgate.platforms.toml to the shipped headgate.toml
    // gives: its first key lands in the last table, [timeouts].
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/headgate.toml"),
    )
    .unwrap();
    let appended = format!("{shipped}\nenv_allow = [\"VAPI_API_KEY\"]\n");
    write_config(dir.path(), &appended, &[]);
    let (code, _, err) = check(dir.path(), &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("`env_allow` is inside a [table] here, but it belongs at the top level"),
        "{err}"
    );
    let line = appended
        .lines()
        .position(|l| l.starts_with("env_allow"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("headgate.toml:{line}:")), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("config.toml")).count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn x_forwarded_for_is_appended_only_for_trusted_proxies() {
    let up = upstream().await;
    for (main, want) in [
        ("", "127.0.0.1"),
        (
            "trusted_proxies = [\"127.0.0.0/8\"]\n",
            "203.0.113.9, 127.0.0.1",
        ),
        ("trusted_proxies = [\"10.0.0.0/8\"]\n", "127.0.0.1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_config(
            dir.path(),
            main,
            &[("r", &route(&up.url(), "[headers]\nx-a = \"1\"\n"))],
        );
        let h = start(dir.path()).await;
        put_session(&h, "c1", json!({"call": {}})).await;
        let r = client()
            .get(format!("http://{}/r/x", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "c1")
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(up.last().headers["x-forwarded-for"], want, "with `{main}`");
        h.shutdown().await;
    }
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "max_connections = 2\n",
        &[("r", &route(&up.url(), "[headers]\nx-a = \"1\"\n"))],
    );
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let addr: std::net::SocketAddr = s.listen.parse().unwrap();
    let open = || tokio::net::TcpStream::connect(addr);
    let (mut a, mut b) = (open().await.unwrap(), open().await.unwrap());
    // Both held: the third is closed before it can say anything.
    let _ = a
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let _ = b
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut c = open().await.unwrap();
    let _ = c.write_all(b"GET /r/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(3), c.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the third connection was not closed");
    assert!(
        buf.is_empty(),
        "it was answered: {}",
        String::from_utf8_lossy(&buf)
    );
    let m = get_text(&client(), format!("http://{}/metrics", s.admin)).await;
    assert!(m.contains("headgate_connections_refused_total 1"), "{m}");
    // A freed slot takes the next connection.
    drop((a, b));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = client()
        .get(format!("http://{}/r/x", s.listen))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "served again (and refused for its missing key)"
    );
}

/// `headgate_worker_connections{worker="N"}` from a scrape.
fn worker_connections(metrics: &str) -> Vec<i64> {
    let mut open: Vec<(usize, i64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("headgate_worker_connections{worker=\""))
        .filter_map(|l| {
            let (worker, n) = l.split_once("\"} ")?;
            Some((worker.parse().ok()?, n.trim().parse().ok()?))
        })
        .collect();
    open.sort();
    open.into_iter().map(|(_, n)| n).collect()
}

/// The kernel's `SO_REUSEPORT` hash splits 100 connections over two
/// workers unevenly as a rule; the workers hand new ones over so that
/// each serves half, and every handed connection is served.
#[tokio::test]
async fn connections_are_spread_evenly_over_the_workers() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "workers = 2\n",
        &[(
            "r",
            &route("http://127.0.0.1:9", "[headers]\nx-a = \"1\"\n"),
        )],
    );
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let addr: std::net::SocketAddr = s.listen.parse().unwrap();
    let mut held = Vec::new();
    for i in 0..100 {
        let mut conn = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        // Answered by the route (refused for its missing key).
        let get = b"GET /r/x HTTP/1.1\r\nHost: x\r\n\r\n";
        conn.get_mut().write_all(get).await.unwrap();
        let mut status = String::new();
        conn.read_line(&mut status).await.unwrap();
        assert!(
            status.starts_with("HTTP/1.1 401"),
            "connection {i}: {status}"
        );
        held.push(conn);
    }
    let m = metrics_text(&s.admin).await;
    assert_eq!(worker_connections(&m), [50, 50], "{m}");
    // Closed connections leave their worker's count.
    drop(held);
    let closed = eventually(std::time::Duration::from_secs(1), || async {
        worker_connections(&metrics_text(&s.admin).await) == [0, 0]
    })
    .await;
    assert!(closed, "{}", metrics_text(&s.admin).await);
}

#[tokio::test]
async fn prometheus_scrapes_with_a_read_only_token() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\nmetrics_token_env = \"HG_TEST_API_KEY\"\n",
        &[(
            "r",
            &route("http://127.0.0.1:9", "[headers]\nx-a = \"1\"\n"),
        )],
    );
    let h = start(dir.path()).await;
    let c = client();
    let get = |path: &str, token: &str| {
        c.get(format!("http://{}{path}", h.admin))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    // Prometheus asks for OpenMetrics and gets it, with its content type.
    let r = c
        .get(format!("http://{}/metrics", h.admin))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let open = r.text().await.unwrap();
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    // Anyone else gets the Prometheus text format, labelled as such.
    let r = get("/metrics", API_KEY).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(!text.contains("# EOF"), "{text}");
    // The metrics token opens nothing else.
    assert_eq!(get("/sessions/c1", API_KEY).await.unwrap().status(), 401);
    assert_eq!(get("/metrics", "wrong").await.unwrap().status(), 401);
    assert_eq!(get("/metrics", ADMIN_TOKEN).await.unwrap().status(), 200);
    // promtool accepts the exposition as it is served.
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool: {said}");
    h.shutdown().await;
}

/// The text of a `key: |` block of a Kubernetes manifest, dedented.
fn yaml_block(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    lines.next();
    lines
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `deploy/`: every flag the unit and the manifests pass exists in
/// `serve --help`; the ConfigMap's config passes `check` with exactly the
/// Secret's variables; ports and probe paths match what headgate serves;
/// `systemd-analyze verify` accepts the unit where it is installed.
#[test]
fn the_deploy_files_only_use_what_the_binary_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let (_, help, _) = run_bin(&["serve".as_ref(), "--help".as_ref()], &[]);
    let unit = read("systemd/headgate.service");
    let deployment = read("kubernetes/deployment.yaml");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("args: "))
        .unwrap();
    for flag in exec
        .split_whitespace()
        .chain(args.split(['"', ',', '[', ']', ' ']))
        .filter(|w| w.starts_with("--"))
    {
        assert!(help.contains(flag), "{flag} is not a serve flag:\n{help}");
    }
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    for env in ["RUST_LOG", "HEADGATE_LOG_FORMAT"] {
        assert!(unit.contains(env) && deployment.contains(env), "{env}");
    }

    // The ConfigMap's files, checked with the Secret's variables set.
    let cm = read("kubernetes/configmap.yaml");
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &yaml_block(&cm, "headgate.toml"),
        &[("crm", &yaml_block(&cm, "crm.toml"))],
    );
    let secret = read("kubernetes/secret.yaml");
    let names: Vec<&str> = secret
        .lines()
        .skip_while(|l| !l.starts_with("stringData:"))
        .skip(1)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    let env: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, "dummy-secret-0123456789abcdef"))
        .collect();
    let (code, out, err) = run_bin(&["check".as_ref(), dir.path().as_os_str()], &env);
    assert_eq!(code, 0, "{out}{err}");
    // Every variable the config names is in the Secret, and no other.
    let config = format!(
        "{}\n{}",
        yaml_block(&cm, "headgate.toml"),
        yaml_block(&cm, "crm.toml")
    );
    for n in &names {
        assert!(
            config.contains(&format!("\"{n}\"")),
            "{n} is in the Secret but the config never reads it"
        );
    }
    // Ports and probes.
    assert!(
        config.contains("listen = \"0.0.0.0:8080\"") && deployment.contains("containerPort: 8080")
    );
    assert!(
        config.contains("admin_listen = \"0.0.0.0:9090\"")
            && deployment.contains("containerPort: 9090")
    );
    for probe in ["path: /readyz, port: admin", "path: /healthz, port: admin"] {
        assert!(deployment.contains(probe), "{probe}");
    }
    assert!(read("kubernetes/service.yaml").contains("targetPort: public"));
    assert!(read("kubernetes/pdb.yaml").contains("minAvailable: 2"));

    // systemd's own check, with ExecStart pointing at this build.
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let local = unit.replace("/usr/local/bin/headgate", env!("CARGO_BIN_EXE_headgate"));
        let path = dir.path().join("headgate.service");
        std::fs::write(&path, local).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify: {said}"
        );
    }
}

/// The tutorial's route and its `check` / `render` commands, as the README
/// writes them (with its secrets exported).
#[test]
fn the_tutorial_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = |marker: &str, fence: &str| -> String {
        let start = readme.find(marker).unwrap();
        let rest = &readme[start..];
        let open = rest.find(fence).unwrap() + fence.len();
        let close = rest[open..].find("```").unwrap();
        rest[open..open + close]
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let route_toml = after("1. **Write the route**", "```toml");
    let commands = after("<!-- tutorial-check -->", "```sh");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates/routes")).unwrap();
    std::fs::write(dir.path().join("templates/routes/crm.toml"), route_toml).unwrap();
    let script = commands.replace("…", "tutorial-secret-0123456789abcdef");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_headgate")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok: 1 route(s)"), "{stdout}");
    assert!(
        stdout.contains("authorization: Bear… (12 bytes)"),
        "{stdout}"
    );
}

/// A route's `access_log`: off writes no line, `json` one JSON object and
/// `text` one `key=value` line on standard output, and a route without it
/// logs through the log as before; none shows the session key.
#[tokio::test]
async fn access_log_per_route_is_off_json_or_text() {
    let dir = tempfile::tempdir().unwrap();
    let echo = |extra: &str| route("builtin:echo", extra);
    let routes = [
        ("quiet", echo("access_log = \"off\"")),
        ("j", echo("access_log = \"json\"")),
        ("t", echo("access_log = \"text\"")),
        ("d", echo("")),
    ];
    let routes: Vec<(&str, &str)> = routes.iter().map(|(n, r)| (*n, r.as_str())).collect();
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n",
        &routes,
    );
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let vars = json!({"call": {"x": 1}});
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "call-log-77", Some(&vars)).await,
        204
    );
    for name in ["quiet", "j", "t", "d"] {
        let r = get_call(
            &client(),
            format!("http://{}/{name}/x", s.listen),
            "call-log-77",
        )
        .await;
        assert_eq!(r.status(), 200, "{name}");
    }
    let done = eventually(std::time::Duration::from_secs(5), || {
        let log = s.log.lock().unwrap().clone();
        async move {
            log.contains("route=t ") && log.contains("\"route\":\"j\"") && log.contains("route=d")
        }
    })
    .await;
    let log = s.log.lock().unwrap().clone();
    assert!(done, "{log}");
    assert!(
        !log.contains("quiet"),
        "an access_log = \"off\" route wrote a line:\n{log}"
    );
    let json_line = log.lines().find(|l| l.contains("\"route\":\"j\"")).unwrap();
    let v: Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["sent"].as_u64()),
        (Some(200), Some(200)),
        "{v}"
    );
    assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')) && v["ms"].is_f64());
    let text_line = log.lines().find(|l| l.contains("route=t ")).unwrap();
    assert!(
        text_line.contains(" status=200 ") && text_line.contains(" session="),
        "{text_line}"
    );
    assert!(
        !log.contains("call-log-77"),
        "the session key itself is never logged:\n{log}"
    );
}

/// The `Dockerfile` builds what the manifests run, the way `.ci/run`
/// proves the build: the toolchain of `rust-version`, `cargo build
/// --release --locked`; it runs as the manifests' non-root user, its
/// HEALTHCHECK is a `probe` the binary has, and its default command
/// serves the shipped templates, which `check` accepts. (Building the
/// image needs a Docker daemon: `.ci/run` builds it where one answers.)
#[test]
fn the_dockerfile_builds_and_runs_what_the_manifests_expect() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let docker = read("Dockerfile");
    let cargo = read("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        docker.contains(&format!("FROM rust:{version}-")),
        "toolchain"
    );
    assert!(docker.contains("RUN cargo build --release --locked --bin headgate"));
    // The build stage holds every workspace member: one left out of the
    // context fails the image's `cargo build` at its manifest.
    let members = cargo
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .unwrap();
    let members = members.trim_matches(['[', ']']).split(',');
    for m in members
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| *m != ".")
    {
        let top = m.split('/').next().unwrap();
        assert!(
            docker.contains(&format!("COPY {top} {top}")),
            "the image's build stage lacks the workspace member {m}"
        );
    }
    assert!(docker.contains("USER 65532:65532"));
    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert!(
        deployment.contains("runAsUser: 65532") && deployment.contains("image: headgate:latest")
    );
    let health = docker
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("CMD [\"/usr/local/bin/headgate\", \"probe\"")
        })
        .unwrap();
    let (_, help, _) = run_bin(&["probe".as_ref(), "--help".as_ref()], &[]);
    for flag in health
        .split(['"', ',', ']', ' '])
        .filter(|w| w.starts_with("--"))
    {
        assert!(help.contains(flag), "{flag} is not a probe flag:\n{help}");
    }
    let (_, serve_help, _) = run_bin(&["serve".as_ref(), "--help".as_ref()], &[]);
    assert!(serve_help.contains("--listen") && serve_help.contains("--templates"));
    let (code, out, err) = run_bin(&["check".as_ref(), root.join("templates").as_os_str()], &[]);
    assert_eq!(code, 0, "{out}{err}");
}
