//! The accept loop, over hyper. `axum::serve` has no header-read or idle timeout and no cap on open
//! connections: half-sent headers, silent connections and idle keep-alives stayed open for ever, and a few
//! hundred of them exhausted a low open-files limit until `/healthz` timed out. This loop adds:
//!
//! - a **header-read timeout**: a new connection must deliver a complete request head within it of being
//!   accepted, and a keep-alive connection within it of the first byte of its next request;
//! - a **keep-alive timeout**: a connection with no request in flight and no byte received since its last
//!   answer is closed after it (longer than common load balancers' 60 s idle timeout, so a balancer
//!   never reuses a connection Latchkey is closing);
//! - a **connection cap**: beyond it a connection is answered a `503` and closed at once, so the process
//!   never runs out of file descriptors (the cap is kept below the open-files limit, which
//!   [`raise_open_files_limit`] lifts to the hard limit at start-up).
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs while a keep-alive connection is
//! idle, which would make the two timeouts one. Instead each connection keeps a few counters (bytes
//! received, requests in flight and answered) and one watchdog task for the whole server reads them
//! every tick and shuts an overdue socket down, which ends its connection. A request pays for a few
//! atomic increments, not for a timer of its own (measured: a per-connection timer in the connection's
//! `select!` cost ~200 instructions per request, BENCHMARKS.md "Issue 10"). Timeouts are enforced to
//! within one tick (a quarter of the shorter timeout, at most a second). Request handling itself is
//! bounded by the timeout layer.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
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
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
};
use tower::{util::Oneshot, ServiceExt};

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
    let registry = Arc::new(Registry::default());
    let watchdog = tokio::spawn(watch_connections(Arc::clone(&registry), limits));
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
        let io = registry.register(stream);
        tokio::spawn(serve_connection(io, peer, app.clone(), stopped.clone(), permit));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(());
    // Each connection holds a permit until it is closed: holding them all means every one has finished.
    let _ = permits.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)).await;
    watchdog.abort();
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
    io: Counted,
    peer: SocketAddr,
    app: S,
    mut stopped: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let service = PerConnection { app, peer, activity: Arc::clone(&io.entry) };
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped.changed() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// The service of one connection: adds the peer address (`ConnectInfo`) and keeps the connection's
/// request counters; one clone of the app per request, as `axum::serve`.
struct PerConnection<S> {
    app: S,
    peer: SocketAddr,
    activity: Arc<Entry>,
}

impl<S> hyper::service::Service<hyper::Request<hyper::body::Incoming>> for PerConnection<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer<S>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Answer<S> {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Answer { call: self.app.clone().oneshot(request), activity: Some(Arc::clone(&self.activity)) }
    }
}

pin_project_lite::pin_project! {
    /// The app's answer; when it is ready, the connection counts one request fewer in flight.
    struct Answer<S: tower::Service<Request>> {
        #[pin]
        call: Oneshot<S, Request>,
        activity: Option<Arc<Entry>>,
    }

    impl<S: tower::Service<Request>> PinnedDrop for Answer<S> {
        fn drop(this: Pin<&mut Self>) {
            // An answer dropped before it was ready (the client went away) is no longer in flight either.
            if let Some(activity) = this.project().activity.take() {
                activity.answered();
            }
        }
    }
}

impl<S> Future for Answer<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.call.poll(cx));
        if let Some(activity) = this.activity.take() {
            activity.answered();
        }
        Poll::Ready(answer)
    }
}

/// What is known of one open connection. The counters are written by its socket and its service; the
/// watchdog's own bookkeeping sits behind a lock only the watchdog takes.
#[derive(Debug)]
struct Entry {
    /// Bytes received so far.
    received: AtomicU64,
    /// Requests being handled.
    in_flight: AtomicU32,
    answered: AtomicU64,
    /// `received` when the last answer was ready: more than this means the next request has begun.
    received_when_idle: AtomicU64,
    /// The socket, to shut down when overdue (only while registered: see [`Counted`]'s `Drop`).
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
    watch: Mutex<Watch>,
}

impl Entry {
    fn answered(&self) {
        self.received_when_idle.store(self.received.load(Ordering::Acquire), Ordering::Release);
        self.answered.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The watchdog's view of one connection, at tick granularity.
#[derive(Debug)]
struct Watch {
    accepted: Instant,
    /// `answered` when last looked at, and since when it has had that value.
    seen_answered: u64,
    idle_since: Instant,
    /// When the current request head was first seen arriving.
    head_since: Option<Instant>,
    /// Already shut down (the connection is ending).
    closed: bool,
}

impl Watch {
    fn new(now: Instant) -> Watch {
        Watch { accepted: now, seen_answered: 0, idle_since: now, head_since: None, closed: false }
    }

    /// True if the connection has overstayed at `now`.
    fn overdue(&mut self, entry: &Entry, limits: &ConnectionLimits, now: Instant) -> bool {
        let answered = entry.answered.load(Ordering::Acquire);
        if entry.in_flight.load(Ordering::Acquire) > 0 {
            self.head_since = None;
            return false;
        }
        if answered != self.seen_answered {
            self.seen_answered = answered;
            self.idle_since = now;
            self.head_since = None;
        }
        if answered == 0 {
            // A new connection: its first request head is due within the header-read timeout.
            return now.duration_since(self.accepted) >= limits.header_read_timeout;
        }
        if entry.received.load(Ordering::Acquire) > entry.received_when_idle.load(Ordering::Acquire) {
            // The next request has begun: its head is due within the header-read timeout.
            let since = *self.head_since.get_or_insert(now);
            return now.duration_since(since) >= limits.header_read_timeout;
        }
        now.duration_since(self.idle_since) >= limits.keep_alive_timeout
    }
}

/// The open connections, by id.
#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Entry>>>,
}

impl Registry {
    fn register(self: &Arc<Self>, stream: TcpStream) -> Counted {
        let entry = Arc::new(Entry {
            received: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            answered: AtomicU64::new(0),
            received_when_idle: AtomicU64::new(0),
            #[cfg(unix)]
            fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
            watch: Mutex::new(Watch::new(Instant::now())),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut connections) = self.connections.lock() {
            connections.insert(id, Arc::clone(&entry));
        }
        Counted { inner: stream, entry, id, registry: Arc::clone(self) }
    }
}

/// Every tick, shuts down the sockets of connections that overstayed. The registry's lock is held while
/// a socket is shut down, and a connection leaves the registry (under the same lock) before its socket
/// is closed, so a descriptor number is never touched after it could have been reused.
async fn watch_connections(registry: Arc<Registry>, limits: ConnectionLimits) {
    let tick = (limits.header_read_timeout.min(limits.keep_alive_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let Ok(connections) = registry.connections.lock() else { return };
        for entry in connections.values() {
            let Ok(mut watch) = entry.watch.lock() else { continue };
            if !watch.closed && watch.overdue(entry, &limits, now) {
                watch.closed = true;
                #[cfg(unix)]
                // SAFETY: the descriptor is open: its connection is still registered (see above). Shutting
                // it down ends the connection's reads and writes; hyper then closes it.
                unsafe {
                    libc::shutdown(entry.fd, libc::SHUT_RDWR);
                }
            }
        }
    }
}

/// A socket that counts the bytes it receives, and leaves the registry when dropped.
struct Counted {
    inner: TcpStream,
    entry: Arc<Entry>,
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Runs before `inner` is dropped (and its descriptor closed).
        if let Ok(mut connections) = self.registry.connections.lock() {
            connections.remove(&self.id);
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.entry.received.fetch_add(read as u64, Ordering::AcqRel);
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

    fn entry() -> Entry {
        Entry {
            received: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            answered: AtomicU64::new(0),
            received_when_idle: AtomicU64::new(0),
            #[cfg(unix)]
            fd: -1,
            watch: Mutex::new(Watch::new(Instant::now())),
        }
    }

    fn request(entry: &Entry, bytes: u64) {
        entry.received.fetch_add(bytes, Ordering::AcqRel);
        entry.in_flight.fetch_add(1, Ordering::AcqRel);
        entry.answered();
    }

    #[test]
    fn a_new_connection_must_send_its_first_head_within_the_header_timeout() {
        let start = Instant::now();
        let (entry, limits) = (entry(), limits());
        let mut watch = Watch::new(start);
        assert!(!watch.overdue(&entry, &limits, start + Duration::from_secs(9)));
        assert!(watch.overdue(&entry, &limits, start + Duration::from_secs(10)), "silent new connection");
        entry.received.store(20, Ordering::Release);
        assert!(watch.overdue(&entry, &limits, start + Duration::from_secs(10)), "half-sent first head");
    }

    #[test]
    fn an_idle_keep_alive_lasts_the_keep_alive_timeout_and_a_next_head_the_header_timeout() {
        let start = Instant::now();
        let (entry, limits) = (entry(), limits());
        let mut watch = Watch::new(start);
        request(&entry, 100);
        // The watchdog sees the answer at its next tick: idle from then.
        let idle = start + Duration::from_secs(1);
        assert!(!watch.overdue(&entry, &limits, idle));
        assert!(!watch.overdue(&entry, &limits, idle + Duration::from_secs(74)), "idle keep-alive within its time");
        assert!(watch.overdue(&entry, &limits, idle + Duration::from_secs(75)), "idle keep-alive past its time");

        let mut watch = Watch::new(start);
        assert!(!watch.overdue(&entry, &limits, idle));
        // The next request's first bytes arrive at 50 s: it has the header timeout from then.
        entry.received.fetch_add(10, Ordering::AcqRel);
        let first_bytes = idle + Duration::from_secs(50);
        assert!(!watch.overdue(&entry, &limits, first_bytes));
        assert!(!watch.overdue(&entry, &limits, first_bytes + Duration::from_secs(9)));
        assert!(watch.overdue(&entry, &limits, first_bytes + Duration::from_secs(10)), "half-sent next head");
    }

    #[test]
    fn a_request_in_flight_is_never_cut_and_idleness_counts_from_its_answer() {
        let start = Instant::now();
        let (entry, limits) = (entry(), limits());
        let mut watch = Watch::new(start);
        entry.received.store(100, Ordering::Release);
        entry.in_flight.store(1, Ordering::Release);
        assert!(!watch.overdue(&entry, &limits, start + Duration::from_secs(600)));
        entry.answered();
        let answered_seen = start + Duration::from_secs(601);
        assert!(!watch.overdue(&entry, &limits, answered_seen));
        assert!(!watch.overdue(&entry, &limits, answered_seen + Duration::from_secs(74)));
        assert!(watch.overdue(&entry, &limits, answered_seen + Duration::from_secs(75)));
    }

    #[test]
    fn the_cap_stays_below_the_open_files_limit() {
        assert_eq!(effective_max_connections(10_000, Some(1024), 80), 944);
        assert_eq!(effective_max_connections(500, Some(1024), 80), 500);
        assert_eq!(effective_max_connections(500, None, 80), 500);
        assert_eq!(effective_max_connections(500, Some(50), 80), 1);
    }
}
