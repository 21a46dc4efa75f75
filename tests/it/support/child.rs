//! The real `headgate` binary as a child process, its output captured, and
//! requests to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{ADMIN_TOKEN, ROUTE_KEY};
use super::inproc::client;

/// The real `headgate` binary.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_headgate"))
}

/// An admin API request with the admin token to `/sessions/{id}` of a
/// `headgate serve` child: its status.
pub async fn admin_call(
    s: &Served,
    method: reqwest::Method,
    id: &str,
    body: Option<&serde_json::Value>,
) -> u16 {
    let mut r = client()
        .request(method, format!("http://{}/sessions/{id}", s.admin))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.unwrap().status().as_u16()
}

/// `GET /metrics` on the admin listener `admin`, with the admin token:
/// the exposition text.
pub async fn metrics_text(admin: impl std::fmt::Display) -> String {
    client()
        .get(format!("http://{admin}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A tool call (POST `/{route}/tools`) through a `headgate serve` child,
/// keyed by `key_header: id`: (status, JSON body).
pub async fn tool_call(
    s: &Served,
    route: &str,
    key_header: &str,
    id: &str,
) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("http://{}/{route}/tools", s.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header(key_header, id)
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A `headgate serve` child whose every output line is captured.
pub struct Served {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub listen: String,
    pub admin: String,
}

impl Served {
    /// Sends SIGHUP (reload the config; reopen the audit file).
    pub fn hangup(&self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -HUP {pid} failed");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` arguments for both listeners on free loopback ports.
pub const FREE_PORTS: [&str; 4] = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];

pub fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = bin();
    cmd.arg("serve").arg("--templates").arg(dir).args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut served = Served {
        child: cmd.spawn().unwrap(),
        log: Arc::new(Mutex::new(String::new())),
        listen: String::new(),
        admin: String::new(),
    };
    let pipes = [
        served
            .child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        served
            .child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let log = served.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let started = Instant::now();
    loop {
        let text = served.log.lock().unwrap().clone();
        if let Some(i) = text.find("listening on ") {
            let rest = &text[i + "listening on ".len()..];
            served.listen = rest.split_whitespace().next().unwrap().to_string();
            served.admin = rest
                .split("admin on ")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap()
                .to_string();
            return served;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "headgate did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The test venv's Python (`bash scripts/test.sh` creates it).
pub fn python() -> std::path::PathBuf {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/test.sh` (it creates the venv with the MCP SDK and fastmcp)",
        p.display()
    );
    p
}

/// A file of `tests/interop/`.
pub fn interop(file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(file)
}

/// Starts `tests/interop/<script> <port> <args…>` with the venv's Python
/// and waits until it listens on `port`; killed when dropped.
pub async fn python_server(
    script: &str,
    port: u16,
    args: &[&std::ffi::OsStr],
) -> tokio::process::Child {
    let child = tokio::process::Command::new(python())
        .arg(interop(script))
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    super::wait::until_listening(port, Duration::from_secs(30), script).await;
    child
}

/// `headgate ARGS` run to completion with `env`: (exit code, stdout, stderr).
pub fn run_bin(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = bin();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `headgate check DIR ARGS…` with each of `secrets` set to a dummy value.
pub fn check_with(dir: &Path, args: &[&str], secrets: &[&str]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = secrets
        .iter()
        .map(|n| (*n, "dummy-secret-for-check-0123456789"))
        .collect();
    let mut all = vec!["check".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    run_bin(&all, &env)
}

/// `promtool check metrics` on `text` (Debian's prometheus package,
/// installed by scripts/test.sh): its verdict and what it said.
pub fn promtool(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be on PATH: scripts/test.sh installs Debian's prometheus package");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Held while a headless Chromium runs: Selenium picks chromedriver's
/// port by binding a free one and letting it go, so two drivers started
/// at once can pick the same port and one exits at start (seen in CI once
/// a third browser test joined). One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the Selenium script `script` (in tests/interop) with `args` and
/// `env`, one browser at a time; asserts it succeeded and returns the
/// JSON report it prints last.
pub async fn browser_report(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let browser = BROWSER.lock().await;
    let out = tokio::process::Command::new(python())
        .arg(interop(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    drop(browser);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

/// Where the browser tests put their screenshots (CI keeps them).
pub fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts each of `shots` was saved in `dir` and is not empty.
pub fn assert_screenshots(dir: &Path, shots: &[&str]) {
    for shot in shots {
        let len = std::fs::metadata(dir.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{shot} missing or empty");
    }
}
