//! Config reload under concurrent traffic: good, bad, bad-then-fixed, with
//! no failed request and no lost session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

fn route_with(up: &str, value: &str) -> String {
    route(
        up,
        &format!(
            "[headers]\nx-version = \"{value}\"\nauthorization = \"Bearer << call.metadata.token >>\"\n"
        ),
    )
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_traffic_never_fails_a_request() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &[("crm", &route_with(&up.url(), "v1"))]);
    let h = headgate::internals::proxy::start(headgate::internals::proxy::ServeOptions {
        templates: dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        watch: true,
    })
    .await
    .unwrap();
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        let url = format!("http://{}/crm", h.listen);
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .get(&url)
                    .header("x-headgate-key", ROUTE_KEY)
                    .header("x-call-id", "c1")
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !matches!(r, Ok(ref r) if r.status() == 200) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let version = |up: &Upstream| {
        up.last()
            .headers
            .get("x-version")
            .map(|v| v.to_str().unwrap().to_string())
    };
    wait_for("traffic", || sent.load(Ordering::Relaxed) > 20).await;

    // Good change: applied.
    std::fs::write(
        dir.path().join("routes/crm.toml"),
        route_with(&up.url(), "v2"),
    )
    .unwrap();
    wait_for("v2 to serve", || version(&up).as_deref() == Some("v2")).await;

    // Bad change: rejected, v2 keeps serving.
    std::fs::write(
        dir.path().join("routes/crm.toml"),
        "upstream = \"not a url\"\n[headers]\nx = \"<< a | nope >>\"\n",
    )
    .unwrap();
    let metrics_url = format!("http://{}/metrics", h.admin);
    let c = client();
    let started = Instant::now();
    loop {
        let m = get_text(&c, &metrics_url).await;
        if m.contains("headgate_config_reloads_total{outcome=\"rejected\"}") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the bad config was never rejected:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = sent.load(Ordering::Relaxed);
    wait_for("traffic after the bad reload", || {
        sent.load(Ordering::Relaxed) > before + 20
    })
    .await;
    assert_eq!(
        version(&up).as_deref(),
        Some("v2"),
        "the previous config keeps serving"
    );

    // Fixed: applied again.
    std::fs::write(
        dir.path().join("routes/crm.toml"),
        route_with(&up.url(), "v3"),
    )
    .unwrap();
    wait_for("v3 to serve", || version(&up).as_deref() == Some("v3")).await;

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "{} requests sent",
        sent.load(Ordering::Relaxed)
    );
    // Sessions survive reloads.
    assert_eq!(up.last().headers["authorization"], "Bearer t");
    let m = get_text(&c, &metrics_url).await;
    assert!(
        m.contains("headgate_config_reloads_total{outcome=\"applied\"}"),
        "{m}"
    );
    assert!(
        m.contains("headgate_requests_total{route=\"crm\",status=\"200\"}"),
        "{m}"
    );
    h.shutdown().await;
}

/// A file the config does not read, written in the config folder (a log,
/// an audit file), reloads nothing; a route file changed in several quick
/// writes reloads once, after they settle.
#[tokio::test]
async fn only_the_configs_own_files_reload_it_once_they_settle() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &[("crm", &route_with(&up.url(), "v1"))]);
    let s = serve(dir.path(), &FREE_PORTS, &[("RUST_LOG", "info")]);
    let reloads = || s.log.lock().unwrap().matches("config reloaded").count();
    let log = dir.path().join("headgate.log");
    for i in 0..30 {
        std::fs::write(&log, format!("line {i}\n").repeat(i + 1)).unwrap();
        std::fs::write(dir.path().join("audit.jsonl"), "{}\n").unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reloads(), 0, "{}", s.log.lock().unwrap());
    for v in ["v2", "v3", "v4"] {
        std::fs::write(dir.path().join("routes/crm.toml"), route_with(&up.url(), v)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for("the reload", || reloads() >= 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reloads(), 1, "{}", s.log.lock().unwrap());
}
