//! The audit log's writer: records queue in a bounded channel and one task writes them in batches (one
//! statement and one commit per batch), so storing an event costs a request one `try_send`. When the
//! queue is full the record is dropped and counted, never waited for.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{store, Record};
use crate::{clock::Clock, storage::Db};

/// Most records in one batch.
const MAX_BATCH: usize = 512;

/// How long the writer gathers records after the first of a batch arrives: at sign-in rates (hundreds a
/// second) one commit then carries tens of records instead of one or two, so the log's commits do not
/// compete with the sign-ins' own (on SQLite every commit is an fsync). A flush cuts it short.
const LINGER: Duration = Duration::from_millis(100);

/// How often a batch that failed to write is tried again before its records are dropped (and counted).
const WRITE_ATTEMPTS: u32 = 3;

/// What the writer receives.
enum Message {
    Record(Box<Record>),
    /// Answered once everything queued before it is written (or given up on).
    Flush(oneshot::Sender<()>),
}

/// Where a request's audit records go: the writer's queue, and the clock that times them.
#[derive(Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<Message>,
    clock: Clock,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").field("queued", &(self.sender.max_capacity() - self.sender.capacity())).finish()
    }
}

impl AuditSink {
    /// Starts the writer task (on the current runtime) with a queue of `capacity` records.
    pub fn start(db: Db, clock: Clock, capacity: usize) -> AuditSink {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        tokio::spawn(write_batches(db, receiver));
        AuditSink { sender, clock }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Queues a record without waiting; a full queue (or a stopped writer) drops it and counts it.
    pub fn submit(&self, record: Record) {
        if let Err(error) = self.sender.try_send(Message::Record(Box::new(record))) {
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "stopped",
            };
            metrics::counter!("latchkey_audit_dropped_total", "reason" => reason).increment(1);
        }
    }

    /// Waits until every record queued before the call is written (at shutdown, so that nothing the
    /// server acknowledged goes unrecorded).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(MAX_BATCH);
    // Whatever arrived while the previous batch was being written, or within the linger after the first
    // record, goes out together in the next one.
    while receiver.recv_many(&mut messages, MAX_BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + LINGER;
        while messages.len() < MAX_BATCH && !messages.iter().any(|m| matches!(m, Message::Flush(_))) {
            let room = MAX_BATCH - messages.len();
            let more = receiver.recv_many(&mut messages, room);
            match tokio::time::timeout_at(deadline, more).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut records = Vec::with_capacity(messages.len());
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(record) => records.push(*record),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !records.is_empty() {
            write(&db, &records).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(db: &Db, records: &[Record]) {
    for attempt in 1..=WRITE_ATTEMPTS {
        match store::insert(db, records).await {
            Ok(()) => {
                metrics::counter!("latchkey_audit_written_total").increment(records.len() as u64);
                return;
            }
            Err(error) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %error, records = records.len(), attempt, "writing audit records failed; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(error) => {
                tracing::error!(error = %error, records = records.len(), "writing audit records failed; they are dropped");
                metrics::counter!("latchkey_audit_dropped_total", "reason" => "database")
                    .increment(records.len() as u64);
            }
        }
    }
}
