//! Request count and latency per matched route, with the metric handles cached.
//!
//! `metrics::counter!(…, "route" => …)` builds a labelled key and looks it up in the recorder's registry
//! on every call; measured on a trivial route that cost ~25% of its throughput. Routes, methods and
//! status codes are few, so the handles are resolved once per (route, method, status) and kept here; the
//! per-request work is a read-locked lookup by `&str` and two atomic updates.

use std::{
    collections::HashMap,
    sync::{OnceLock, RwLock},
    time::Duration,
};

use metrics::{Counter, Histogram};

/// One route's handles.
struct RouteHandles {
    duration: Histogram,
    /// (method, status) → request counter.
    requests: RwLock<HashMap<(&'static str, u16), Counter>>,
}

fn routes() -> &'static RwLock<HashMap<String, RouteHandles>> {
    static ROUTES: OnceLock<RwLock<HashMap<String, RouteHandles>>> = OnceLock::new();
    ROUTES.get_or_init(|| RwLock::new(HashMap::new()))
}

fn counter_for(handles: &RouteHandles, route: &str, method: &'static str, status: u16) -> Counter {
    if let Some(counter) = handles.requests.read().ok().and_then(|map| map.get(&(method, status)).cloned()) {
        return counter;
    }
    let counter = metrics::counter!(
        "latchkey_http_requests_total",
        "method" => method,
        "route" => route.to_owned(),
        "status" => status.to_string()
    );
    if let Ok(mut map) = handles.requests.write() {
        map.insert((method, status), counter.clone());
    }
    counter
}

/// Records one request of the matched `route` (an axum route pattern, from a finite set).
pub fn record(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    if let Ok(map) = routes().read() {
        if let Some(handles) = map.get(route) {
            counter_for(handles, route, method, status).increment(1);
            handles.duration.record(elapsed.as_secs_f64());
            return;
        }
    }
    let handles = RouteHandles {
        duration: metrics::histogram!("latchkey_http_request_duration_seconds", "route" => route.to_owned()),
        requests: RwLock::new(HashMap::new()),
    };
    counter_for(&handles, route, method, status).increment(1);
    handles.duration.record(elapsed.as_secs_f64());
    if let Ok(mut map) = routes().write() {
        map.entry(route.to_owned()).or_insert(handles);
    }
}
