//! argon2id password hashing (tens of ms of CPU and ~19 MiB each, so never on the runtime)
//! on a few dedicated threads: on tokio's blocking pool every thread that ever hashed kept
//! its 19 MiB in its malloc arena, and 500 registrations left the process at 3 GiB resident
//! (docs/LOADTEST.md). Hashes are PHC strings: verification reads the parameters from the
//! hash, so changing the configured cost only affects new accounts.

use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{mpsc, oneshot, OnceCell};

type Job = Box<dyn FnOnce() + Send>;

/// A few threads that do all the hashing, so only they ever hold argon2's memory.
struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    fn new() -> Result<Self, PasswordError> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(4);
        let (jobs, rx) = mpsc::channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    // One thread waits in recv at a time; the job runs without the lock.
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                    match job {
                        Some(job) => job(),
                        None => break,
                    }
                })
                .map_err(|e| PasswordError::Task(e.to_string()))?;
        }
        Ok(Self { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| PasswordError::Task("hashing threads are gone".into()))?;
        rx.await
            .map_err(|_| PasswordError::Task("hashing job dropped".into()))
    }
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub(crate) struct Passwords {
    params: Params,
    pool: Arc<HashPool>,
    /// A hash to verify against when the user does not exist, so that "no such user" takes as
    /// long as "wrong password".
    dummy: Arc<OnceCell<String>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    #[error("argon2: {0}")]
    Argon(String),
    #[error("hashing task failed: {0}")]
    Task(String),
}

impl Passwords {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| PasswordError::Argon(e.to_string()))?;
        Ok(Self {
            params,
            pool: Arc::new(HashPool::new()?),
            dummy: Arc::new(OnceCell::new()),
        })
    }

    /// The PHC string of a new hash of `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.pool
            .run(move || {
                let salt = SaltString::generate(&mut OsRng);
                Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                    .hash_password(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .map_err(|e| PasswordError::Argon(e.to_string()))
            })
            .await?
    }

    /// Whether `password` matches `phc`; with no hash, burns the same time and says no.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (phc, real) = match phc {
            Some(h) => (h, true),
            None => {
                let dummy = self
                    .dummy
                    .get_or_try_init(|| self.hash("not a password".into()))
                    .await?;
                (dummy.clone(), false)
            }
        };
        let ok = self
            .pool
            .run(move || {
                let parsed =
                    PasswordHash::new(&phc).map_err(|e| PasswordError::Argon(e.to_string()))?;
                Ok::<_, PasswordError>(
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        Ok(ok && real)
    }
}
