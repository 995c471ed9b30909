//! Cross-node invalidation over PostgreSQL `LISTEN/NOTIFY` (DESIGN.md "Architecture").
//!
//! A node that revokes something publishes a short event; every node's listener forwards it to the
//! in-memory caches. NOTIFY is lost while a listener is disconnected, so a reconnect is reported as
//! [`BusMessage::Reconnected`] and the consumer re-reads what changed; a periodic poll (elsewhere)
//! bounds staleness even if notifications stop. On SQLite (one node) publishing is a no-op.

use std::time::Duration;

use sqlx::postgres::PgListener;
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
        Db::Sqlite(_) => Ok(()),
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

/// Starts the listener task on PostgreSQL; returns `None` on SQLite, where there is nothing to hear.
pub fn spawn_listener(db: &Db) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
    let Db::Postgres(pool) = db else { return None };
    let pool = pool.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match PgListener::connect_with(&pool).await {
                Err(_) if pool.is_closed() => return,
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %error, "LISTEN failed; retrying");
                    } else {
                        if tx.send(BusMessage::Reconnected).is_err() {
                            return;
                        }
                        // `try_recv` answers Ok(None) when the connection dropped (and will reconnect
                        // on the next call): that is exactly when notifications may have been lost.
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(notification)) => {
                                    if tx.send(BusMessage::Event(notification.payload().to_owned())).is_err() {
                                        return;
                                    }
                                }
                                Ok(None) if pool.is_closed() => return,
                                Ok(None) => {
                                    tracing::warn!("notification listener lost its connection; resyncing");
                                    if tx.send(BusMessage::Reconnected).is_err() {
                                        return;
                                    }
                                }
                                // Shutting down: the pool was closed under the listener; nothing to report.
                                Err(_) if pool.is_closed() => return,
                                Err(error) => {
                                    tracing::warn!(error = %error, "notification listener failed; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(error = %error, "cannot connect notification listener; retrying"),
            }
            if tx.is_closed() || pool.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::CacheEvent;

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
