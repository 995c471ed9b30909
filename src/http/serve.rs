//! The accept loop, over hyper. `axum::serve` has no header-read or idle timeout and no cap on open
//! connections: half-sent headers, silent connections and idle keep-alives stayed open for ever, and a few
//! hundred of them exhausted a low open-files limit until `/healthz` timed out. This loop adds:
//!
//! - a **header-read timeout**: a new connection must deliver a complete request head within it of being
//!   accepted, and a keep-alive connection within it of the first byte of its next request;
//! - a **keep-alive timeout**: a connection with no request in flight and no byte received since its last
//!   response is closed after it (longer than common load balancers' 60 s idle timeout, so a balancer
//!   never reuses a connection Latchkey is closing);
//! - a **connection cap**: beyond it a connection is answered a `503` and closed at once, so the process
//!   never runs out of file descriptors (the cap is kept below the open-files limit, which
//!   [`raise_open_files_limit`] lifts to the hard limit at start-up).
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs while a keep-alive connection is
//! idle, which would make the two timeouts one. Request handling itself is bounded by the timeout layer.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::Response,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
};
use tower::ServiceExt;

/// The limits the accept loop enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head (see the module doc).
    pub header_read_timeout: Duration,
    /// Longest a connection may sit idle between requests.
    pub keep_alive_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets each connection
/// finish its request in flight (idle ones close at once) and returns when every connection is closed.
pub async fn serve<S>(listener: TcpListener, app: S, limits: ConnectionLimits, shutdown: impl Future<Output = ()>)
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE, ENFILE, ECONNABORTED…: the listener is fine; back off rather than spin.
                    rate_limited_warn(|| tracing::warn!(error = %error, "accepting a connection failed"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(&stream, max);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, peer, app.clone(), limits, stopped.clone(), permit));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(());
    // Each connection holds a permit until it is closed: holding them all means every one has finished.
    let _ = permits.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)).await;
}

/// Over the cap: a best-effort `503` (written without waiting, the socket buffer is empty) and close.
fn refuse(stream: &TcpStream, max: usize) {
    const RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
        cache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 84\r\n\r\n\
        {\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"Too many open connections, try again later\"}";
    metrics::counter!("latchkey_connections_refused_total").increment(1);
    rate_limited_warn(|| tracing::warn!(max_connections = max, "connection cap reached: refusing new connections"));
    let _ = stream.try_write(RESPONSE);
}

/// Runs `warn` at most once every ten seconds (a flood of refused connections must not flood the log).
fn rate_limited_warn(warn: impl FnOnce()) {
    static BASE: OnceLock<Instant> = OnceLock::new();
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = BASE.get_or_init(Instant::now).elapsed().as_secs() + 10;
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10 && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        warn();
    }
}

async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    app: S,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let started = Instant::now();
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Counted { inner: stream, activity: Arc::clone(&activity) });
    let service = {
        let activity = Arc::clone(&activity);
        tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::begin(&activity, started);
            let call = app.clone().oneshot(request);
            async move {
                let response = call.await;
                drop(busy);
                response
            }
        })
    };
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut watchdog = Watchdog { limits, started, partial_since: None };
    let tick = (limits.header_read_timeout.min(limits.keep_alive_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = stopped.changed(), if !stopping => {
                let _ = changed;
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticks.tick() => {
                if watchdog.expired(&activity, Instant::now()) {
                    // Dropping the connection closes the socket; no request is in flight.
                    return;
                }
            }
        }
    }
}

/// What the watchdog reads about one connection, written by the I/O wrapper and the service.
#[derive(Debug, Default)]
struct Activity {
    /// Bytes received so far.
    received: AtomicU64,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// Requests answered.
    answered: AtomicU64,
    /// When the last answer was produced, in ns since the connection was accepted.
    idle_since: AtomicU64,
    /// `received` at that moment: more than this means the next request has begun to arrive.
    received_when_idle: AtomicU64,
}

/// Marks a request in flight; dropping it marks the connection idle from now.
struct Busy {
    activity: Arc<Activity>,
    started: Instant,
}

impl Busy {
    fn begin(activity: &Arc<Activity>, started: Instant) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy { activity: Arc::clone(activity), started }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.activity;
        let since = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        activity.received_when_idle.store(activity.received.load(Ordering::SeqCst), Ordering::SeqCst);
        activity.idle_since.store(since, Ordering::SeqCst);
        activity.answered.fetch_add(1, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decides, tick by tick, whether a connection has overstayed.
struct Watchdog {
    limits: ConnectionLimits,
    started: Instant,
    /// (idle period, when its first bytes were seen) while a request head is arriving.
    partial_since: Option<(u64, Instant)>,
}

impl Watchdog {
    fn expired(&mut self, activity: &Activity, now: Instant) -> bool {
        if activity.in_flight.load(Ordering::SeqCst) > 0 {
            self.partial_since = None;
            return false;
        }
        let idle_since = activity.idle_since.load(Ordering::SeqCst);
        let answered = activity.answered.load(Ordering::SeqCst) > 0;
        let receiving = activity.received.load(Ordering::SeqCst) > activity.received_when_idle.load(Ordering::SeqCst);
        if !answered {
            // A new connection: its first request head is due within the header-read timeout.
            return now.duration_since(self.started) >= self.limits.header_read_timeout;
        }
        if receiving {
            // The next request has begun: its head is due within the header-read timeout of the first
            // bytes seen (at most one tick late).
            let since = match self.partial_since {
                Some((period, seen)) if period == idle_since => seen,
                _ => {
                    self.partial_since = Some((idle_since, now));
                    now
                }
            };
            return now.duration_since(since) >= self.limits.header_read_timeout;
        }
        now.duration_since(self.started + Duration::from_nanos(idle_since)) >= self.limits.keep_alive_timeout
    }
}

/// A socket that counts the bytes it receives.
struct Counted {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.activity.received.fetch_add(read as u64, Ordering::SeqCst);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft open-files limit to the hard limit: every connection is a file descriptor, and the
/// usual soft default (1024) is far below what the hard limit allows. Returns the soft limit in force
/// afterwards (`None` where it cannot be read).
// `rlim_t` is u64 on Linux but not on every Unix: the conversions are useless only here.
#[allow(clippy::useless_conversion)]
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            // SAFETY: setrlimit only reads the struct. It may refuse (macOS caps at OPEN_MAX); then the
            // current soft limit stays in force and is what we report.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return Some(u64::try_from(raised.rlim_cur).unwrap_or(u64::MAX));
            }
        }
        Some(u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX))
    }
    #[cfg(not(unix))]
    None
}

/// The connection cap in force: the configured one, kept below the open-files limit with room for the
/// database pool, the listener, logs and the SQLite files (`reserved`).
pub fn effective_max_connections(configured: usize, open_files: Option<u64>, reserved: usize) -> usize {
    match open_files {
        Some(limit) => {
            let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(reserved).max(1);
            configured.min(room)
        }
        None => configured,
    }
    .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 100,
        }
    }

    #[test]
    fn a_new_connection_must_send_its_first_head_within_the_header_timeout() {
        let started = Instant::now();
        let mut watchdog = Watchdog { limits: limits(), started, partial_since: None };
        let activity = Activity::default();
        assert!(!watchdog.expired(&activity, started + Duration::from_secs(9)));
        assert!(watchdog.expired(&activity, started + Duration::from_secs(10)), "silent new connection");
        activity.received.store(20, Ordering::SeqCst);
        assert!(watchdog.expired(&activity, started + Duration::from_secs(10)), "half-sent first head");
    }

    #[test]
    fn an_idle_keep_alive_lasts_the_keep_alive_timeout_and_a_next_head_the_header_timeout() {
        let started = Instant::now();
        let mut watchdog = Watchdog { limits: limits(), started, partial_since: None };
        let activity = Arc::new(Activity::default());
        activity.received.store(100, Ordering::SeqCst);
        drop(Busy::begin(&activity, started));
        let idle = started + Duration::from_nanos(activity.idle_since.load(Ordering::SeqCst));
        assert!(!watchdog.expired(&activity, idle + Duration::from_secs(74)), "idle keep-alive within its time");
        assert!(watchdog.expired(&activity, idle + Duration::from_secs(75)), "idle keep-alive past its time");
        // The next request's first bytes arrive at 50 s: it has the header timeout from then.
        activity.received.store(110, Ordering::SeqCst);
        let first_bytes = idle + Duration::from_secs(50);
        assert!(!watchdog.expired(&activity, first_bytes));
        assert!(!watchdog.expired(&activity, first_bytes + Duration::from_secs(9)));
        assert!(watchdog.expired(&activity, first_bytes + Duration::from_secs(10)), "half-sent next head");
    }

    #[test]
    fn a_request_in_flight_is_never_cut() {
        let started = Instant::now();
        let mut watchdog = Watchdog { limits: limits(), started, partial_since: None };
        let activity = Arc::new(Activity::default());
        let busy = Busy::begin(&activity, started);
        assert!(!watchdog.expired(&activity, started + Duration::from_secs(600)));
        drop(busy);
    }

    #[test]
    fn the_cap_stays_below_the_open_files_limit() {
        assert_eq!(effective_max_connections(10_000, Some(1024), 80), 944);
        assert_eq!(effective_max_connections(500, Some(1024), 80), 500);
        assert_eq!(effective_max_connections(500, None, 80), 500);
        assert_eq!(effective_max_connections(500, Some(50), 80), 1);
    }
}
