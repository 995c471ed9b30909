//! Baseline for `bench/run.sh`: the smallest axum 0.8 server on the same tokio multi-thread runtime
//! Latchkey uses, answering `GET /` with `hello`. Its throughput is the ceiling Latchkey's numbers are
//! compared against (`req/s ratio to baseline`).
//!
//! Run: `HELLO_LISTEN=127.0.0.1:8090 cargo run --release --example hello`.

use anyhow::Context;
use axum::{routing::get, Router};

/// Address used when `HELLO_LISTEN` is not set.
const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("HELLO_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    // Every path and method answers `hello`, so the bench can send the baseline exactly the request a
    // scenario sends (same headers, same body) and the load generator's own work is the same on both.
    let app = Router::new().route("/", get(|| async { "hello" })).fallback(|| async { "hello" });
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
