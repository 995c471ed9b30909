//! Argon2id password hashing (m=19456 KiB, t=2, p=1; DESIGN.md "Capability 1") on a small pool of
//! dedicated, low-priority threads.
//!
//! A hash costs ~24 ms of CPU. Running it on the async runtime would stall every other request, and
//! running it at normal priority on every core lets a sign-in flood starve session checks; so hashing
//! happens on `threads` OS threads niced to 10, fed through a bounded queue. Unknown users are verified
//! against a dummy hash so that "no such email" and "wrong password" take the same time.

use std::sync::{mpsc, Arc, Mutex};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};
use tokio::sync::{oneshot, Semaphore};

use crate::config::Secret;

/// Jobs that may wait per worker before callers wait (asynchronously) for a queue slot.
const QUEUE_PER_THREAD: usize = 32;

enum Job {
    Hash(Secret, oneshot::Sender<anyhow::Result<String>>),
    Verify(Secret, String, oneshot::Sender<bool>),
}

/// Handle to the Argon2id worker pool. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<(Job, tracing::Span)>,
    queue: Arc<Semaphore>,
    dummy_hash: Arc<String>,
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &Secret) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))
}

fn verify_now(password: &Secret, phc: &str) -> bool {
    // Parameters come from the PHC string, so hashes made with older parameters still verify.
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok()
}

impl PasswordHasher {
    /// Starts `threads` workers (0: one per core) and computes the dummy hash.
    pub fn start(threads: usize) -> anyhow::Result<PasswordHasher> {
        let threads =
            if threads == 0 { std::thread::available_parallelism().map(usize::from).unwrap_or(1) } else { threads };
        let (tx, rx) = mpsc::channel::<(Job, tracing::Span)>();
        let rx = Arc::new(Mutex::new(rx));
        for index in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new().name(format!("argon2-{index}")).spawn(move || {
                lower_thread_priority();
                loop {
                    // Holding the lock only while waiting for the next job; a poisoned lock or a
                    // closed channel means the server is shutting down.
                    let next = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((job, span)) = next else { return };
                    let _entered = span.enter();
                    match job {
                        Job::Hash(password, reply) => {
                            let _ = reply.send(hash_now(&password));
                        }
                        Job::Verify(password, phc, reply) => {
                            let _ = reply.send(verify_now(&password, &phc));
                        }
                    }
                }
            })?;
        }
        let dummy_hash = hash_now(&Secret::new(crate::crypto::random_alphanumeric(32)))?;
        Ok(PasswordHasher {
            jobs: tx,
            queue: Arc::new(Semaphore::new(threads * QUEUE_PER_THREAD)),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> anyhow::Result<T> {
        let _slot = self.queue.acquire().await?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((job(reply), tracing::Span::current()))
            .map_err(|_| anyhow::anyhow!("password hashing pool stopped"))?;
        Ok(answer.await?)
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
        let hasher = PasswordHasher::start(1).unwrap();
        let phc = hasher.hash(Secret::new("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify(Secret::new("correct horse"), Some(phc.clone())).await.unwrap());
        assert!(!hasher.verify(Secret::new("wrong horse"), Some(phc)).await.unwrap());
        assert!(!hasher.verify(Secret::new("correct horse"), None).await.unwrap());
    }
}
