//! The one place that reads the system time. Everything else receives `now` (unix milliseconds) from a
//! [`Clock`], so tests drive expiry with a manual clock instead of sleeping.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

/// Unix time in milliseconds.
pub type Millis = i64;

/// The source of "now": the system clock, or a manual one that tests move.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Real time.
    System,
    /// Test time, shared by every clone.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: Millis) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start)))
    }

    /// Now, in unix milliseconds.
    pub fn now(&self) -> Millis {
        match self {
            Clock::System => system_now(),
            Clock::Manual(at) => at.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: std::time::Duration) {
        if let Clock::Manual(at) = self {
            at.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
        }
    }
}

/// The real clock. Only `Clock::System` should call it.
pub fn system_now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// ISO 8601 UTC with millisecond precision, e.g. `2026-11-23T08:35:36.123Z` (DESIGN.md contract details).
pub fn iso8601(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `Expires=` value of a cookie (RFC 1123 / IMF-fixdate).
pub fn http_date(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at).unwrap_or_default().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_has_millisecond_precision_and_z() {
        assert_eq!(iso8601(1_795_422_936_123), "2026-11-23T08:35:36.123Z");
    }

    #[test]
    fn manual_clock_advances_only_when_told() {
        let clock = Clock::manual(1_000);
        clock.advance(std::time::Duration::from_secs(2));
        assert_eq!(clock.now(), 3_000);
    }
}
