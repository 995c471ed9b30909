//! Logging: a `tracing` subscriber built with an injected writer (so tests can capture or silence it),
//! JSON lines in production and readable lines in development. Filter from `LATCHKEY_LOG`
//! (or `RUST_LOG`), default `info,sqlx=warn`. Request ids are made here, returned in the `x-request-id` response
//! header, and carried by the events of a request through a task-local ([`CurrentRequestId`]).

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

use crate::config::{LogFormat, Mode};

/// Installs the global subscriber (`ansi`: colour, for terminals). Errors if one is already installed.
pub fn init<W>(format: LogFormat, mode: Mode, ansi: bool, writer: W) -> anyhow::Result<()>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var("LATCHKEY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let filter = EnvFilter::try_new(filter)?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => mode == Mode::Production,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi && !json).with_writer(writer);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// Makes request ids: 16 random alphanumeric characters (from two random `u64`s, on the stack: request
/// ids correlate log lines, they are not secrets).
#[derive(Clone, Copy, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        // Two u64 words, eight characters from each (62^8 < 2^64): u128 division is a library call.
        let mut words: [u64; 2] = rand::random();
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            let word = &mut words[i / 8];
            *byte = ALPHABET[(*word % 62) as usize];
            *word /= 62;
        }
        HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

tokio::task_local! {
    /// The id of the request this task is serving (set by the route layer).
    static REQUEST_ID: HeaderValue;
}

/// Runs `future` with `id` as the current request id.
pub fn with_request_id<F: std::future::Future>(
    id: HeaderValue,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<HeaderValue, F> {
    REQUEST_ID.scope(id, future)
}

/// The current request's id as a log field (`request_id = %CurrentRequestId`); empty outside a request.
///
/// Events that matter per request (errors, audit events) carry it, instead of an info-level span around
/// every request: the fmt subscriber formats and book-keeps a span on every request and poll, measured at
/// 10–15% of a cached credential check (BENCHMARKS.md).
#[derive(Clone, Copy, Debug)]
pub struct CurrentRequestId;

impl std::fmt::Display for CurrentRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        REQUEST_ID.try_with(|id| f.write_str(id.to_str().unwrap_or_default())).unwrap_or(Ok(()))
    }
}

/// The span of one request, at debug level (`LATCHKEY_LOG=debug` shows it): method, path (never the
/// query, which may carry secrets) and request id.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or_default();
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}

/// The process-wide Prometheus recorder (metrics macros use one global recorder; installed once).
pub fn metrics_handle() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )?
        .build_recorder();
    let handle = recorder.handle();
    // Another thread may have won the race; then its recorder is the global one.
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get().cloned().ok_or_else(|| anyhow::anyhow!("a different metrics recorder is installed"));
    }
    Ok(HANDLE.get_or_init(|| handle).clone())
}
