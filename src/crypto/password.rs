//! Argon2id password hashing (m=19456 KiB, t=2, p=1; DESIGN.md "Capability 1") on a small pool of
//! dedicated, low-priority threads.
//!
//! A hash costs ~24 ms of CPU. Running it on the async runtime would stall every other request, and
//! running it at normal priority on every core lets a sign-in flood starve session checks; so hashing
//! happens on `threads` OS threads niced to 10, fed through a bounded queue. Unknown users are verified
//! against a dummy hash so that "no such email" and "wrong password" take the same time.
//!
//! Each worker keeps its 19 MiB Argon2 block memory between jobs (allocating and faulting it in per hash
//! measured ~40% fewer sign-ins per second) and frees it after [`IDLE_RELEASE`] without work, so an
//! idle server holds none of it.
//!
//! The queue is bounded twice, so a flood of sign-ins is shed instead of queued for ever: at most
//! [`QueueBounds::queue`] hashes wait or run at once (one more is refused at once), and a caller waits
//! at most [`QueueBounds::max_wait`] for its answer (past it, it is refused and its job, if not started,
//! is skipped). Either refusal is [`Busy`], which callers answer with 503 `SERVER_BUSY` and
//! `Retry-After`. Nothing else waits on this pool: session, key and token checks never hash.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crossbeam_channel::{self as channel, RecvTimeoutError};

use argon2::{
    password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::secret::Secret;

/// Hashes that may wait or run per worker when [`QueueBounds::queue`] is 0 (the default): ~0.8 s of work
/// at ~40 hashes a second per core.
pub const QUEUE_PER_THREAD: usize = 32;
/// A worker idle this long frees its block memory.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// How much waiting the pool accepts before it sheds (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBounds {
    /// Most hashes waiting or running at once (0: [`QUEUE_PER_THREAD`] per worker).
    pub queue: usize,
    /// Longest a caller waits for its answer.
    pub max_wait: Duration,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds { queue: 0, max_wait: Duration::from_secs(5) }
    }
}

/// The pool is saturated: the hash was refused (queue full) or waited past its bound. The request may
/// succeed later (503 `SERVER_BUSY`, `Retry-After: 1`).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the password hashing queue is saturated")]
pub struct Busy;

enum Job {
    Hash(Secret, oneshot::Sender<anyhow::Result<String>>),
    Verify(Secret, String, oneshot::Sender<bool>),
}

impl Job {
    /// True if nobody waits for the answer any more (the caller gave up at its deadline).
    fn abandoned(&self) -> bool {
        match self {
            Job::Hash(_, reply) => reply.is_closed(),
            Job::Verify(_, _, reply) => reply.is_closed(),
        }
    }
}

/// A job as queued: its queue slot is freed when a worker is done with it (run or skipped), so the
/// channel never holds more than the bound, abandoned jobs included.
struct Queued {
    job: Job,
    span: tracing::Span,
    _slot: OwnedSemaphorePermit,
}

/// Handle to the Argon2id worker pool. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: channel::Sender<Queued>,
    queue: Arc<Semaphore>,
    max_wait: Duration,
    dummy_hash: Arc<String>,
}

fn params() -> anyhow::Result<Params> {
    Params::new(19_456, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))
}

/// The first `count` blocks of `memory`, growing it if needed (the crate's own primitive does the hashing;
/// we only own the buffer).
fn blocks(memory: &mut Vec<Block>, count: usize) -> &mut [Block] {
    if memory.len() < count {
        memory.resize(count, Block::default());
    }
    &mut memory[..count]
}

fn hash_now(password: &Secret, memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let params = params()?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; 32];
    argon2
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            salt_bytes,
            &mut out,
            blocks(memory, params.block_count()),
        )
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

fn verify_now(password: &Secret, phc: &str, memory: &mut Vec<Block>) -> bool {
    // Parameters come from the PHC string, so hashes made with other parameters still verify.
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else { return false };
    let mut out = vec![0u8; expected.len()];
    let count = params.block_count();
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.expose().as_bytes(),
        salt_bytes,
        &mut out,
        blocks(memory, count),
    );
    hashed.is_ok() && crate::crypto::constant_time_eq(&out, expected.as_bytes())
}

impl PasswordHasher {
    /// Starts `threads` workers (0: one per core) and computes the dummy hash.
    pub fn start(threads: usize, bounds: QueueBounds) -> anyhow::Result<PasswordHasher> {
        let threads =
            if threads == 0 { std::thread::available_parallelism().map(usize::from).unwrap_or(1) } else { threads };
        let queue = if bounds.queue == 0 { threads.saturating_mul(QUEUE_PER_THREAD) } else { bounds.queue };
        let queue = queue.min(Semaphore::MAX_PERMITS);
        // A multi-consumer channel: each idle worker waits on its own timeout (with a shared
        // `Mutex<Receiver>` only the lock holder would ever time out, and the others kept their memory).
        // Unbounded as a channel, bounded by the queue slots its jobs hold.
        let (tx, rx) = channel::unbounded::<Queued>();
        for index in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("argon2-{index}")).spawn(move || {
                lower_thread_priority();
                let mut memory: Vec<Block> = Vec::new();
                loop {
                    // A closed channel means the server is shutting down.
                    let Queued { job, span, _slot } = match rx.recv_timeout(IDLE_RELEASE) {
                        Ok(next) => next,
                        Err(RecvTimeoutError::Timeout) => {
                            memory = Vec::new();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    if job.abandoned() {
                        continue;
                    }
                    let _entered = span.enter();
                    match job {
                        Job::Hash(password, reply) => {
                            let _ = reply.send(hash_now(&password, &mut memory));
                        }
                        Job::Verify(password, phc, reply) => {
                            let _ = reply.send(verify_now(&password, &phc, &mut memory));
                        }
                    }
                }
            })?;
        }
        let dummy_hash = hash_now(&Secret::new(crate::crypto::random_alphanumeric(32)), &mut Vec::new())?;
        Ok(PasswordHasher {
            jobs: tx,
            queue: Arc::new(Semaphore::new(queue)),
            max_wait: bounds.max_wait,
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    /// Queues a job and waits for its answer; [`Busy`] (in the error) when the queue is full or the
    /// answer takes longer than the wait bound.
    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> anyhow::Result<T> {
        let Ok(slot) = Arc::clone(&self.queue).try_acquire_owned() else {
            metrics::counter!("latchkey_password_hashes_shed_total", "reason" => "queue_full").increment(1);
            return Err(Busy.into());
        };
        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        let queued = Queued { job: job(reply), span: tracing::Span::current(), _slot: slot };
        self.jobs.send(queued).map_err(|_| anyhow::anyhow!("password hashing pool stopped"))?;
        match tokio::time::timeout(self.max_wait, answer).await {
            Ok(answer) => Ok(answer.map_err(|_| anyhow::anyhow!("password hashing worker stopped"))?),
            Err(_) => {
                // Dropping `answer` marks the job abandoned: a worker that has not started it skips it.
                metrics::counter!("latchkey_password_hashes_shed_total", "reason" => "waited_too_long").increment(1);
                tracing::debug!(waited_ms = started.elapsed().as_millis() as u64, "password hash shed");
                Err(Busy.into())
            }
        }
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: Secret) -> anyhow::Result<String> {
        self.submit(|reply| Job::Hash(password, reply)).await?
    }

    /// Verifies a password against a PHC string, or against the dummy hash when there is none (an
    /// unknown user), in which case the answer is always `false` but takes as long.
    pub async fn verify(&self, password: Secret, phc: Option<String>) -> anyhow::Result<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        let ok = self.submit(|reply| Job::Verify(password, phc, reply)).await?;
        Ok(ok && known)
    }
}

/// Nice 10 for the calling thread (Linux: per-thread priorities), so session checks on the runtime
/// threads win the CPU while sign-ins saturate it.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_design_parameters_and_verify() {
        let hasher = PasswordHasher::start(1, QueueBounds::default()).unwrap();
        let phc = hasher.hash(Secret::new("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify(Secret::new("correct horse"), Some(phc.clone())).await.unwrap());
        assert!(!hasher.verify(Secret::new("wrong horse"), Some(phc)).await.unwrap());
        assert!(!hasher.verify(Secret::new("correct horse"), None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_verify_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::start(1, QueueBounds::default()).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"pa55word-xyz", &salt).unwrap().to_string();
        assert!(hasher.verify(Secret::new("pa55word-xyz"), Some(theirs)).await.unwrap());
        let ours = hasher.hash(Secret::new("pa55word-xyz")).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pa55word-xyz", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"other", &parsed).is_err());
    }

    /// `count` verifications of an unknown user's password, all submitted before any is answered.
    async fn verify_concurrently(hasher: &PasswordHasher, count: usize) -> Vec<anyhow::Result<bool>> {
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.verify(Secret::new("some password"), None).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    #[tokio::test]
    async fn past_the_queue_bound_a_hash_is_refused_at_once() {
        let hasher = PasswordHasher::start(1, QueueBounds { queue: 2, max_wait: Duration::from_secs(30) }).unwrap();
        let started = Instant::now();
        let answers = verify_concurrently(&hasher, 6).await;
        let busy = answers.iter().filter(|a| a.as_ref().is_err_and(|e| e.is::<Busy>())).count();
        let done = answers.iter().filter(|a| matches!(a, Ok(false))).count();
        assert_eq!((busy, done), (4, 2), "two slots: two verified, four shed");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_hash_waiting_past_the_wait_bound_is_refused_and_skipped() {
        let max_wait = Duration::from_millis(40);
        let hasher = PasswordHasher::start(1, QueueBounds { queue: 100, max_wait }).unwrap();
        let started = Instant::now();
        let answers = verify_concurrently(&hasher, 20).await;
        let took = started.elapsed();
        let busy = answers.iter().filter(|a| a.as_ref().is_err_and(|e| e.is::<Busy>())).count();
        assert!(busy >= 15, "one worker cannot do 20 hashes in 40 ms: {busy} shed");
        // Every caller had its answer by the bound (plus scheduling slack), not after 20 hashes.
        assert!(took < Duration::from_millis(40 * 20), "{took:?}");
        // The abandoned jobs are skipped, so the queue drains at once and the pool serves again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hasher = PasswordHasher { max_wait: Duration::from_secs(30), ..hasher };
        assert!(!hasher.verify(Secret::new("some password"), None).await.unwrap());
    }
}
