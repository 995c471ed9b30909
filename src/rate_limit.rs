//! Fixed-window rate limits per key (IP or email), in memory on each node (DESIGN.md "Cross-cutting"); the
//! per-email sign-in failures are also counted in the database, across nodes ([`crate::accounts::failures`]).
//!
//! Two uses: `hit` counts every attempt and refuses past the limit (per-IP limits); `check` + `record`
//! refuse once enough *failures* were recorded (per-email sign-in failures). A refusal carries the
//! seconds until the window ends, for `Retry-After`.

use std::{borrow::Borrow, collections::HashMap, hash::Hash, net::IpAddr, sync::Mutex};

use crate::{clock::Millis, config::RateLimitSettings};

/// One limit: at most `max` events per `window` ms per key (`K`: an email, or an IP with `None` for
/// clients whose address is unknown).
#[derive(Debug)]
pub struct Limiter<K = String> {
    max: u32,
    window: Millis,
    windows: Mutex<HashMap<K, (Millis, u32)>>,
}

/// Key of the per-IP limiters: `None` puts every client whose address is unknown in one shared window.
pub type IpKey = Option<IpAddr>;

impl<K: Hash + Eq> Limiter<K> {
    /// A limiter allowing `max` events per `window_secs`.
    pub fn new(max: u32, window_secs: u64) -> Limiter<K> {
        let window = i64::try_from(window_secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000).max(1);
        Limiter { max, window, windows: Mutex::new(HashMap::new()) }
    }

    fn retry_after(&self, start: Millis, now: Millis) -> u64 {
        u64::try_from((start + self.window - now + 999) / 1000).unwrap_or(1).max(1)
    }

    /// Counts one event for `key`; `Err(retry_after_secs)` if that exceeds the limit.
    pub fn hit<Q>(&self, key: &Q, now: Millis) -> Result<(), u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let Ok(mut windows) = self.windows.lock() else { return Ok(()) };
        // Look up by reference first: the key is only copied the first time it is seen in a window.
        if !windows.contains_key(key) {
            windows.insert(key.to_owned(), (now, 0));
        }
        let Some(entry) = windows.get_mut(key) else { return Ok(()) };
        if now - entry.0 >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.max {
            return Err(self.retry_after(entry.0, now));
        }
        entry.1 += 1;
        Ok(())
    }

    /// `Err(retry_after_secs)` if `key` already reached the limit in its window; counts nothing.
    pub fn check<Q>(&self, key: &Q, now: Millis) -> Result<(), u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Ok(windows) = self.windows.lock() else { return Ok(()) };
        match windows.get(key) {
            Some(&(start, count)) if now - start < self.window && count >= self.max => {
                Err(self.retry_after(start, now))
            }
            _ => Ok(()),
        }
    }

    /// The window's length, ms.
    pub fn window(&self) -> Millis {
        self.window
    }

    /// `Err(retry_after_secs)` if a window kept elsewhere (another node's count, from the database) that
    /// started at `start` holds `count` events, reaching the limit.
    pub fn refuse_shared(&self, start: Millis, count: i64, now: Millis) -> Result<(), u64> {
        if now - start < self.window && count >= i64::from(self.max) {
            return Err(self.retry_after(start, now));
        }
        Ok(())
    }

    /// Counts one event for `key` (a failure), without refusing.
    pub fn record<Q>(&self, key: &Q, now: Millis)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let _ = self.hit(key, now);
    }

    /// Number of keys with a window (metrics).
    pub fn len(&self) -> usize {
        self.windows.lock().map_or(0, |windows| windows.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets windows that have ended.
    pub fn prune(&self, now: Millis) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.retain(|_, (start, _)| now - *start < self.window);
        }
    }
}

/// The limits of the sign-in, sign-up, verify and token endpoints.
#[derive(Debug)]
pub struct RateLimits {
    /// Sign-in attempts per IP.
    pub sign_in_ip: Limiter<IpKey>,
    /// Sign-in failures per email.
    pub sign_in_email: Limiter,
    /// Sign-ups per IP.
    pub sign_up_ip: Limiter<IpKey>,
    /// Verify and token endpoints per IP.
    pub verify_ip: Limiter<IpKey>,
    /// Failed client authentications at `/oauth/token` per IP (the sign-in limit per IP).
    pub client_auth_ip: Limiter<IpKey>,
    /// Failed client authentications per client id (ten times the sign-in failures per email, so that a
    /// stranger who knows a client id needs many tries to lock it out for a window).
    pub client_auth_client: Limiter,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> RateLimits {
        RateLimits {
            sign_in_ip: Limiter::new(settings.sign_in_per_ip, settings.sign_in_ip_window),
            sign_in_email: Limiter::new(settings.sign_in_failures_per_email, settings.sign_in_email_window),
            sign_up_ip: Limiter::new(settings.sign_up_per_ip, settings.sign_up_ip_window),
            verify_ip: Limiter::new(settings.verify_per_ip, settings.verify_ip_window),
            client_auth_ip: Limiter::new(settings.sign_in_per_ip, settings.sign_in_ip_window),
            client_auth_client: Limiter::new(
                settings.sign_in_failures_per_email.saturating_mul(10),
                settings.sign_in_email_window,
            ),
        }
    }

    /// Keys with a window, over all the limiters (metrics).
    pub fn windows(&self) -> usize {
        [&self.sign_in_ip, &self.sign_up_ip, &self.verify_ip, &self.client_auth_ip]
            .iter()
            .map(|l| l.len())
            .sum::<usize>()
            + self.sign_in_email.len()
            + self.client_auth_client.len()
    }

    /// Forgets ended windows (maintenance task).
    pub fn prune(&self, now: Millis) {
        self.sign_in_ip.prune(now);
        self.sign_in_email.prune(now);
        self.sign_up_ip.prune(now);
        self.verify_ip.prune(now);
        self.client_auth_ip.prune(now);
        self.client_auth_client.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_refuses_past_the_limit_until_the_window_ends() {
        let limiter = Limiter::<IpKey>::new(2, 60);
        let ip: IpKey = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(limiter.hit(&ip, 0).is_ok());
        assert!(limiter.hit(&ip, 1).is_ok());
        assert_eq!(limiter.hit(&ip, 1_000), Err(59));
        assert!(limiter.hit(&Some(IpAddr::from([192, 0, 2, 2])), 1_000).is_ok());
        assert!(limiter.hit(&None, 1_000).is_ok());
        assert!(limiter.hit(&ip, 60_000).is_ok());
    }

    #[test]
    fn check_refuses_only_after_recorded_failures() {
        let limiter = Limiter::<String>::new(2, 900);
        assert!(limiter.check("a@example.com", 0).is_ok());
        limiter.record("a@example.com", 0);
        limiter.record("a@example.com", 0);
        assert_eq!(limiter.check("a@example.com", 0), Err(900));
        assert!(limiter.check("a@example.com", 900_000).is_ok());
    }
}
