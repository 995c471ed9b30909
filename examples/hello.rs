//! Baseline for `bench/run.sh`: the smallest axum 0.8 server on the same tokio multi-thread runtime
//! Latchkey uses, answering `GET /` with `hello`. Its throughput is the ceiling Latchkey's numbers are
//! compared against (`req/s ratio to baseline`).
//!
//! A path ending in `/work` first spends `HELLO_WORK_MICROS` (default 200) µs of CPU: an upstream that
//! does something per request, for the token handler's proxy (`bench/run.sh`, group `bff`).
//!
//! Run: `HELLO_LISTEN=127.0.0.1:8090 cargo run --release --example hello`.

use anyhow::Context;
use axum::{routing::get, Router};

/// Address used when `HELLO_LISTEN` is not set.
const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// Spins for `spend` (a stand-in for an API's own work: parsing, a query, serialising).
fn busy(spend: std::time::Duration) {
    let started = std::time::Instant::now();
    let mut x = 0u64;
    while started.elapsed() < spend {
        for i in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    std::hint::black_box(x);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("HELLO_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    // Every path and method answers `hello`, so the bench can send the baseline exactly the request a
    // scenario sends (same headers, same body) and the load generator's own work is the same on both.
    let work = std::env::var("HELLO_WORK_MICROS").ok().and_then(|v| v.parse().ok()).unwrap_or(200u64);
    let app = Router::new().route("/", get(|| async { "hello" })).fallback(move |uri: axum::http::Uri| async move {
        if uri.path().ends_with("/work") {
            busy(std::time::Duration::from_micros(work));
        }
        "hello"
    });
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    println!("hello baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // Stop cleanly on Ctrl-C; the bench script stops it with SIGTERM, which ends it at once.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
