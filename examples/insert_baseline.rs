//! Baseline for the token-issuance benchmark (`bench/run.sh`): an axum server whose every request is one
//! plain INSERT (its own transaction and commit) of a row shaped like an issued-token record, on the same
//! database settings Latchkey uses (`Db::connect`: SQLite WAL with `synchronous=FULL`, or PostgreSQL).
//! `POST /v1/token` writes such a record per token, so its throughput is reported as a ratio to this.
//!
//! Run: `INSERT_LISTEN=127.0.0.1:8091 INSERT_DATABASE_URL=sqlite:///tmp/x.db cargo run --release --example insert_baseline`.

use anyhow::Context;
use axum::{extract::State, http::StatusCode, routing::post, Router};
use latchkey::{crypto, storage::Db};

const DEFAULT_LISTEN: &str = "127.0.0.1:8091";

async fn insert(State(db): State<Db>) -> StatusCode {
    let jti = crypto::new_id("jti");
    let now = latchkey::clock::system_now();
    let result = latchkey::db_run!(&db, |pool| {
        sqlx::query(
            "INSERT INTO bench_inserts (jti, subject, client_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&jti)
        .bind("svu_bench")
        .bind("cli_bench")
        .bind(now + 2_592_000_000)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
    });
    match result {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("INSERT_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let url = std::env::var("INSERT_DATABASE_URL").context("INSERT_DATABASE_URL is required")?;
    let db = Db::connect(&url, 16).await?;
    latchkey::db_run!(&db, |pool| {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_inserts (jti TEXT PRIMARY KEY NOT NULL, subject TEXT NOT NULL, \
             client_id TEXT NOT NULL, expires_at BIGINT NOT NULL, revoked BOOLEAN NOT NULL DEFAULT FALSE, \
             created_at BIGINT NOT NULL)",
        )
        .execute(pool)
        .await
        .map(|_| ())
    })?;
    // Any path and method inserts, so the bench can send it exactly the request it sends /v1/token.
    let app = Router::new().route("/", post(insert)).fallback(insert).with_state(db);
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    println!("insert baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
