//! SSE relay latency client for `bench/load.sh`: reads an event stream whose
//! events carry the sender's clock (`data: <ns>`), prints the distribution
//! of arrival minus send in milliseconds.
//!
//! `cargo run --release --example sse_latency -- URL [HEADER:VALUE …]`

use futures_util::StreamExt;

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: sse_latency URL [HEADER:VALUE …]")?;
    let mut req = reqwest::Client::builder().no_proxy().build()?.get(&url);
    for h in args {
        if let Some((k, v)) = h.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let resp = req.send().await?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()).into());
    }
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut lags: Vec<f64> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let arrived = now_ns();
        buf.push_str(std::str::from_utf8(&chunk?)?);
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            if let Some(sent) = ev
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|s| s.trim().parse::<u128>().ok())
            {
                lags.push(arrived.saturating_sub(sent) as f64 / 1e6);
            }
        }
    }
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "RESULT events={} p50={:.3} p99={:.3} max={:.3}",
        lags.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
