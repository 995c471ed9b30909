//! Cross-node invalidation over PostgreSQL `LISTEN/NOTIFY` (DESIGN.md "Architecture").
//!
//! A node that revokes something publishes a short event; every node's listener forwards it to the
//! in-memory caches. NOTIFY is lost while a listener is disconnected, so a reconnect is reported as
//! [`BusMessage::Reconnected`] and the consumer re-reads what changed. A listener whose connection stays
//! open while it stops delivering is caught by pinging itself through NOTIFY several times a second and
//! treated as disconnected when an echo is missing; a periodic poll (elsewhere) bounds staleness whatever
//! else fails. On SQLite (one node) publishing is a no-op.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{
    postgres::{PgListener, PgPoolOptions},
    PgPool,
};
use tokio::sync::mpsc;

use super::{Db, StorageError};

/// The one channel Latchkey listens on; payloads are [`CacheEvent`]s in their wire form.
pub const CHANNEL: &str = "latchkey_events";

/// A cache invalidation, as published on the bus and recorded in `cache_events`. Each capability makes
/// its own and `AppState::apply` (state.rs) hands each to every capability, which applies the ones that
/// concern its caches. The wire form (`kind:…`) is
/// fixed: nodes of two versions share one bus and one table during a rolling upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// `session_revoked:{id}`: refuse the session's cached cookie at once.
    SessionRevoked {
        /// `ses_…`
        session_id: String,
    },
    /// `session_changed:{id}`: a session's row changed (its active organization): forget it where it is
    /// remembered by bearer token.
    SessionChanged {
        /// `ses_…`
        session_id: String,
    },
    /// `api_key:{id}`: the key changed or was deleted.
    ApiKeyChanged {
        /// `key_…`
        key_id: String,
    },
    /// `api_keys:all`: an organization went away, and with it the scope of some keys.
    AllApiKeysChanged,
    /// `members:{user id}`: the user's memberships changed.
    MembershipsChanged {
        /// `usr_…`
        user_id: String,
    },
    /// `signing_keys`: the key ring changed (rotation, retirement).
    SigningKeysChanged,
    /// `token_revoked:{expires_at}:{jti}`: one token of the core revoked.
    TokenRevoked {
        /// The token's `jti`.
        jti: String,
        /// Its `exp`, unix ms: the revocation is remembered until then.
        expires_at: i64,
    },
    /// `tokens_of:{until}:{owner}`: every token of a subject or client revoked.
    OwnerTokensRevoked {
        /// The subject or client id.
        owner: String,
        /// Unix ms until which the revocation is remembered.
        until: i64,
    },
    /// `subject_cut:{until}:{issued_before}:{subject}`: every token of a user issued at or before
    /// `issued_before` (unix ms) revoked, until `until` — a user blocked or deleted.
    SubjectCutOff {
        /// `usr_…`
        subject: String,
        /// Unix ms: tokens issued at or before it are refused.
        issued_before: i64,
        /// Unix ms until which the cut is remembered.
        until: i64,
    },
    /// `service_client:{id}`: a service client changed (key rotated, deleted).
    ServiceClientChanged {
        /// `cli_…`
        client_id: String,
    },
    /// `service_user:{id}`: a service user changed (deleted).
    ServiceUserChanged {
        /// `svu_…`: a service user, not an accounts user.
        user_id: String,
    },
    /// `oauth_config`: an OAuth client, API or client grant was created, changed or deleted.
    OAuthConfigChanged,
    /// `bff_vendor:{id}`: a token handler vendor was configured, changed, re-keyed or deleted.
    BffVendorChanged {
        /// The vendor id (`[a-z0-9-]{1,64}`).
        vendor_id: String,
    },
}

impl CacheEvent {
    /// The wire form.
    pub fn encode(&self) -> String {
        match self {
            CacheEvent::SessionRevoked { session_id } => format!("session_revoked:{session_id}"),
            CacheEvent::SessionChanged { session_id } => format!("session_changed:{session_id}"),
            CacheEvent::ApiKeyChanged { key_id } => format!("api_key:{key_id}"),
            CacheEvent::AllApiKeysChanged => "api_keys:all".into(),
            CacheEvent::MembershipsChanged { user_id } => format!("members:{user_id}"),
            CacheEvent::SigningKeysChanged => "signing_keys".into(),
            CacheEvent::TokenRevoked { jti, expires_at } => format!("token_revoked:{expires_at}:{jti}"),
            CacheEvent::OwnerTokensRevoked { owner, until } => format!("tokens_of:{until}:{owner}"),
            CacheEvent::SubjectCutOff { subject, issued_before, until } => {
                format!("subject_cut:{until}:{issued_before}:{subject}")
            }
            CacheEvent::ServiceClientChanged { client_id } => format!("service_client:{client_id}"),
            CacheEvent::ServiceUserChanged { user_id } => format!("service_user:{user_id}"),
            CacheEvent::OAuthConfigChanged => "oauth_config".into(),
            CacheEvent::BffVendorChanged { vendor_id } => format!("bff_vendor:{vendor_id}"),
        }
    }

    /// Reads the wire form; `None` for a payload this version does not know (a newer node's event).
    pub fn decode(payload: &str) -> Option<CacheEvent> {
        let timed = |rest: &str| -> Option<(i64, String)> {
            let (at, id) = rest.split_once(':')?;
            Some((at.parse().ok()?, id.to_owned()))
        };
        let (kind, rest) = payload.split_once(':').unwrap_or((payload, ""));
        Some(match kind {
            "session_revoked" => CacheEvent::SessionRevoked { session_id: rest.to_owned() },
            "session_changed" => CacheEvent::SessionChanged { session_id: rest.to_owned() },
            // `api_keys:all` before `api_key:`: distinct kinds.
            "api_keys" if rest == "all" => CacheEvent::AllApiKeysChanged,
            "api_key" => CacheEvent::ApiKeyChanged { key_id: rest.to_owned() },
            "members" => CacheEvent::MembershipsChanged { user_id: rest.to_owned() },
            "signing_keys" => CacheEvent::SigningKeysChanged,
            "token_revoked" => timed(rest).map(|(expires_at, jti)| CacheEvent::TokenRevoked { jti, expires_at })?,
            "tokens_of" => timed(rest).map(|(until, owner)| CacheEvent::OwnerTokensRevoked { owner, until })?,
            "subject_cut" => {
                let (until, rest) = timed(rest)?;
                let (issued_before, subject) = timed(&rest)?;
                CacheEvent::SubjectCutOff { subject, issued_before, until }
            }
            "service_client" => CacheEvent::ServiceClientChanged { client_id: rest.to_owned() },
            "service_user" => CacheEvent::ServiceUserChanged { user_id: rest.to_owned() },
            "oauth_config" => CacheEvent::OAuthConfigChanged,
            "bff_vendor" => CacheEvent::BffVendorChanged { vendor_id: rest.to_owned() },
            _ => return None,
        })
    }
}

/// What the listener hands to the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// A payload published by some node (possibly this one).
    Event(String),
    /// The listener (re)connected: notifications may have been missed, re-read state.
    Reconnected,
}

/// Publishes `event` to every node (no record: for events whose own table serves resyncs, such as
/// revoked sessions). Call after the change is committed.
pub async fn publish(db: &Db, event: &CacheEvent) -> Result<(), StorageError> {
    publish_payload(db, &event.encode()).await
}

async fn publish_payload(db: &Db, payload: &str) -> Result<(), StorageError> {
    match db {
        Db::Sqlite(..) => Ok(()),
        Db::Postgres(pool) => {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(pool).await?;
            Ok(())
        }
    }
}

/// Records a cache invalidation in `cache_events` and publishes it: NOTIFY reaches the other
/// nodes at once, the row lets a reconnecting listener and the periodic poll (and, on SQLite, a running
/// server after a `latchkey admin` change) catch up. Call after the change is committed.
pub async fn publish_event(db: &Db, event: &CacheEvent, now: i64) -> Result<(), StorageError> {
    let payload = event.encode();
    let id = crate::crypto::new_id("evt");
    crate::db_run!(db, |pool| {
        sqlx::query("INSERT INTO cache_events (id, payload, at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(&payload)
            .bind(now)
            .execute(pool)
            .await?;
    });
    publish_payload(db, &payload).await
}

/// Invalidations recorded at or after `since`, oldest first.
pub async fn events_since(db: &Db, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
    const SQL: &str = "SELECT payload, at FROM cache_events WHERE at >= $1 ORDER BY at";
    Ok(crate::db_run!(db, |pool| sqlx::query_as::<_, (String, i64)>(SQL).bind(since).fetch_all(pool).await)?)
}

/// Deletes invalidation records older than `before`, a batch at a time (through `cache_events_at`).
pub async fn cleanup_events(db: &Db, before: i64) -> Result<u64, StorageError> {
    const SQL: &str =
        "DELETE FROM cache_events WHERE id IN (SELECT id FROM cache_events WHERE at < $1 ORDER BY at LIMIT $2)";
    Ok(super::cleanup::delete_in_batches(db, "cache_events", SQL, before).await?.rows)
}

/// How often each node pings itself through NOTIFY on [`CHANNEL`].
const PING_EVERY: Duration = Duration::from_millis(200);
/// How long after a ping committed its echo may take before the listener counts as lost: a listener
/// whose connection stays open while its backend stops delivering (frozen, stuck) is otherwise silent,
/// and every invalidation would wait for the slow poll.
const ECHO_GRACE: Duration = Duration::from_millis(400);
/// How often the listener looks for an overdue echo while nothing arrives.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// `application_name` of the listener's connection (it shows in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "latchkey-listener";

/// The pings this node sent and has not heard back yet.
#[derive(Debug, Default)]
struct Pings {
    /// When the current LISTEN took effect: pings begun before it may never arrive, and do not count.
    listening_since: Option<Instant>,
    /// (sequence number, when its NOTIFY began, when it committed), oldest first; at most [`PINGS_KEPT`].
    unechoed: VecDeque<(u64, Instant, Instant)>,
}

const PINGS_KEPT: usize = 64;

impl Pings {
    fn listening(&mut self, since: Instant) {
        self.listening_since = Some(since);
        self.unechoed.clear();
    }

    fn sent(&mut self, seq: u64, began: Instant, committed: Instant) {
        if self.unechoed.len() == PINGS_KEPT {
            self.unechoed.pop_front();
        }
        self.unechoed.push_back((seq, began, committed));
    }

    fn echoed(&mut self, seq: u64) {
        while self.unechoed.front().is_some_and(|(sent, _, _)| *sent <= seq) {
            self.unechoed.pop_front();
        }
    }

    /// True if a ping begun while the current LISTEN was in effect committed more than [`ECHO_GRACE`] ago
    /// and was not heard.
    fn overdue(&self, now: Instant) -> bool {
        let Some(since) = self.listening_since else { return false };
        self.unechoed
            .iter()
            .any(|(_, began, committed)| *began > since && now.saturating_duration_since(*committed) > ECHO_GRACE)
    }
}

/// Starts the listener task on PostgreSQL; returns `None` on SQLite, where there is nothing to hear.
///
/// The listener has a connection of its own (outside the pool, so a stuck one never holds a pool slot).
/// Besides forwarding events it pings itself through NOTIFY every [`PING_EVERY`] from the pool: a ping that
/// committed but is not heard within [`ECHO_GRACE`] means the listener stopped delivering while its
/// connection looks alive, and it is replaced as if it had disconnected — with a
/// [`BusMessage::Reconnected`], so the consumer re-reads what changed.
pub fn spawn_listener(db: &Db) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
    let Db::Postgres(pool) = db else { return None };
    let (tx, rx) = mpsc::unbounded_channel();
    let node = crate::crypto::new_id("node");
    let pings = Arc::new(Mutex::new(Pings::default()));
    tokio::spawn(ping(pool.clone(), node.clone(), Arc::clone(&pings), tx.clone()));
    tokio::spawn(listen(pool.clone(), node, pings, tx));
    Some(rx)
}

async fn ping(pool: PgPool, node: String, pings: Arc<Mutex<Pings>>, tx: mpsc::UnboundedSender<BusMessage>) {
    let mut interval = tokio::time::interval(PING_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0u64.. {
        interval.tick().await;
        if pool.is_closed() || tx.is_closed() {
            return;
        }
        let began = Instant::now();
        let sent =
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(format!("ping:{node}:{seq}")).execute(&pool);
        // A ping that cannot be sent says nothing about the listener: its own connection reports an
        // unreachable database.
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), sent).await {
            pings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).sent(seq, began, Instant::now());
        }
    }
}

/// Connects a listener on a connection of its own, built from the pool's settings.
async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let options = (*pool.connect_options()).clone().application_name(LISTENER_APPLICATION_NAME);
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&own).await?;
    // Shutdown is seen through the main pool (checked every `CHECK_EVERY`), not this one.
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn listen(pool: PgPool, node: String, pings: Arc<Mutex<Pings>>, tx: mpsc::UnboundedSender<BusMessage>) {
    let own_ping = format!("ping:{node}:");
    let lock = || pings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        // A listener that worked is replaced at once; a database that refuses connections is retried
        // every second.
        let mut retry_after = Duration::from_secs(1);
        match connect(&pool).await {
            Err(_) if pool.is_closed() => return,
            Err(error) => tracing::warn!(error = %error, "cannot connect notification listener; retrying"),
            Ok(mut listener) => {
                retry_after = Duration::from_millis(50);
                lock().listening(Instant::now());
                if tx.send(BusMessage::Reconnected).is_err() {
                    return;
                }
                loop {
                    // `try_recv` is cancel-safe (sqlx reads a message whole or not at all).
                    match tokio::time::timeout(CHECK_EVERY, listener.try_recv()).await {
                        Err(_elapsed) => {}
                        Ok(Ok(Some(notification))) => {
                            let payload = notification.payload();
                            if let Some(seq) = payload.strip_prefix(&own_ping) {
                                if let Ok(seq) = seq.parse() {
                                    lock().echoed(seq);
                                }
                            } else if !payload.starts_with("ping:")
                                && tx.send(BusMessage::Event(payload.to_owned())).is_err()
                            {
                                return;
                            }
                        }
                        // The connection dropped and was replaced: notifications may have been lost.
                        Ok(Ok(None)) => {
                            tracing::warn!("notification listener lost its connection; resyncing");
                            lock().listening(Instant::now());
                            if tx.send(BusMessage::Reconnected).is_err() {
                                return;
                            }
                        }
                        Ok(Err(_)) if pool.is_closed() => return,
                        Ok(Err(error)) => {
                            tracing::warn!(error = %error, "notification listener failed; reconnecting");
                            break;
                        }
                    }
                    if pool.is_closed() || tx.is_closed() {
                        return;
                    }
                    if lock().overdue(Instant::now()) {
                        tracing::warn!(
                            "notification listener stopped delivering (its ping was not heard); reconnecting"
                        );
                        break;
                    }
                }
            }
        }
        if tx.is_closed() || pool.is_closed() {
            return;
        }
        tokio::time::sleep(retry_after).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{CacheEvent, Pings, ECHO_GRACE};

    #[test]
    fn a_ping_not_heard_within_the_grace_counts_only_if_it_began_while_listening() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut pings = Pings::default();
        // Before any LISTEN nothing is overdue.
        pings.sent(0, at(0), at(5));
        assert!(!pings.overdue(at(10_000)));

        pings.listening(at(100));
        // Begun before the LISTEN took effect: it may never arrive, and says nothing.
        pings.sent(1, at(90), at(110));
        assert!(!pings.overdue(at(10_000)));
        pings.sent(2, at(200), at(210));
        let grace = ECHO_GRACE.as_millis() as u64;
        assert!(!pings.overdue(at(210 + grace)));
        assert!(pings.overdue(at(211 + grace)));
        // Hearing a later ping clears the earlier ones too (delivery is in order).
        pings.sent(3, at(450), at(460));
        pings.echoed(3);
        assert!(!pings.overdue(at(10_000)));

        // A new LISTEN forgets what was sent before it.
        pings.sent(4, at(500), at(510));
        pings.listening(at(600));
        assert!(!pings.overdue(at(10_000)));
    }

    #[test]
    fn every_event_keeps_its_wire_form_and_reads_back() {
        let events = [
            (CacheEvent::SessionRevoked { session_id: "ses_1".into() }, "session_revoked:ses_1"),
            (CacheEvent::ApiKeyChanged { key_id: "key_1".into() }, "api_key:key_1"),
            (CacheEvent::AllApiKeysChanged, "api_keys:all"),
            (CacheEvent::MembershipsChanged { user_id: "usr_1".into() }, "members:usr_1"),
            (CacheEvent::SigningKeysChanged, "signing_keys"),
            (CacheEvent::TokenRevoked { jti: "jti_1".into(), expires_at: 42 }, "token_revoked:42:jti_1"),
            (CacheEvent::OwnerTokensRevoked { owner: "svu_1".into(), until: 7 }, "tokens_of:7:svu_1"),
            (CacheEvent::SessionChanged { session_id: "ses_1".into() }, "session_changed:ses_1"),
            (
                CacheEvent::SubjectCutOff { subject: "usr_1".into(), issued_before: 5, until: 9 },
                "subject_cut:9:5:usr_1",
            ),
            (CacheEvent::ServiceClientChanged { client_id: "cli_1".into() }, "service_client:cli_1"),
            (CacheEvent::ServiceUserChanged { user_id: "svu_1".into() }, "service_user:svu_1"),
            (CacheEvent::OAuthConfigChanged, "oauth_config"),
            (CacheEvent::BffVendorChanged { vendor_id: "acme-2".into() }, "bff_vendor:acme-2"),
        ];
        for (event, wire) in events {
            assert_eq!(event.encode(), wire);
            assert_eq!(CacheEvent::decode(wire), Some(event));
        }
        for unknown in ["", "nope:1", "token_revoked:notanumber:jti", "tokens_of:"] {
            assert_eq!(CacheEvent::decode(unknown), None, "{unknown}");
        }
    }
}
