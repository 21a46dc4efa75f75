//! Resident memory of the in-memory session store holding N sessions of a
//! realistic ~300-byte Vapi call object. Run through `bench/memory.sh`.
//!
//! `cargo run --release --example session_memory -- 1000000`

use std::time::Duration;

use headgate::Vars;
use headgate::internals::session::{MemoryStore, Session, SessionStore, Source};
use serde_json::json;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn call(i: u64) -> serde_json::Value {
    json!({
        "call": {
            "id": format!("call_{i:012x}-4f7a-9c1e"),
            "orgId": "org_7d2c1b9a",
            "type": "inboundPhoneCall",
            "status": "in-progress",
            "customer": {"number": format!("+1555{:07}", i % 10_000_000)},
            "metadata": {"token": format!("tok-{i:016x}abcdef012345"), "tenant": "acme", "plan": "pro"}
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let sample = serde_json::to_vec(&call(1)).map(|v| v.len()).unwrap_or(0);
    let before = rss_kib();
    let store = MemoryStore::new(n + 1, 64 << 30);
    for i in 0..n {
        let vars = Vars::from_json(call(i)).unwrap_or_default();
        let _ = store
            .put(
                &format!("call_{i:012x}-4f7a-9c1e"),
                Session::new(vars, Source::Admin, Duration::from_secs(7200)),
            )
            .await;
    }
    store.run_pending_tasks().await;
    let after = rss_kib();
    let per = (after.saturating_sub(before) * 1024) / n.max(1);
    println!(
        "sessions={n} json_bytes_each={sample} rss_before_kib={before} rss_after_kib={after} rss_mib={:.0} bytes_per_session={per}",
        after as f64 / 1024.0
    );
}
