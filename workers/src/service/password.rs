//! argon2id password hashing (tens of ms of CPU and ~19 MiB each, so never on the runtime)
//! on a few dedicated threads: on tokio's blocking pool every thread that ever hashed kept
//! its 19 MiB in its malloc arena, and 500 registrations left the process at 3 GiB resident
//! (docs/LOADTEST.md). Hashes are PHC strings: verification reads the parameters from the
//! hash, so changing the configured cost only affects new accounts.
//!
//! Password requests are admitted before they run: at most `threads + queue` are in progress
//! (hashing or waiting for a thread), and one more fails at once with `rate_limited` instead
//! of queueing. They never hold the worker's shared service permits, so history, room lists
//! and access checks never wait behind hashing (a login flood answered 503 to everyone).
//!
//! Logins of known devices (a valid device token, checked by the gateway) go first: their
//! jobs are taken before any other waiting, and when the shared places are all taken (a
//! flood of guesses from many addresses) one of the places kept for known devices (a quarter
//! of the queue, at least four; one per account at a time) admits them, so the flood does not
//! keep an account's owner out.
//!
//! A request admitted in time can still wait for a thread past the moment its caller gives
//! up ([`natskit::deadline`]): the deadline it came with ([`with_request`]) is checked
//! again when a thread takes its job, and an expired job is not hashed (`expired`), so a
//! queue filled by a flood does not spend the threads on answers nobody reads.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{oneshot, OnceCell, OwnedSemaphorePermit, Semaphore};

type Job = Box<dyn FnOnce() + Send>;

/// What the hashing of the request being served needs to know of it.
#[derive(Debug, Clone, Copy, Default)]
struct Request {
    /// When its caller stops waiting (ms since the Unix epoch), if it said.
    deadline: Option<u64>,
    /// A known device's login: its jobs go first.
    known: bool,
}

tokio::task_local! {
    static REQUEST: Request;
}

/// Runs `fut`, a request's service call, with the request's `deadline` (hashing it asks for
/// is skipped if a thread takes it up only after the deadline) and whether it is a known
/// device's login (`known`: its hashing goes before other waiting jobs).
pub(crate) async fn with_request<F: std::future::Future>(
    deadline: Option<u64>,
    known: bool,
    fut: F,
) -> F::Output {
    REQUEST.scope(Request { deadline, known }, fut).await
}

/// The deadline of the request being served (ms since the Unix epoch), if it has one.
pub(crate) fn request_deadline() -> Option<u64> {
    REQUEST.try_with(|r| r.deadline).ok().flatten()
}

#[derive(Default)]
struct Queues {
    known: VecDeque<Job>,
    others: VecDeque<Job>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

/// A few threads that do all the hashing, so only they ever hold argon2's memory. Admission
/// bounds what waits in their queues.
struct HashPool {
    shared: Arc<Shared>,
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.ready.notify_all();
    }
}

impl HashPool {
    fn new(threads: usize) -> Result<Self, PasswordError> {
        let shared = Arc::new(Shared::default());
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = {
                        let mut q = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            if let Some(job) = q.known.pop_front().or_else(|| q.others.pop_front())
                            {
                                break Some(job);
                            }
                            if q.closed {
                                break None;
                            }
                            q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    // The job runs without the lock.
                    match job {
                        Some(job) => job(),
                        None => break,
                    }
                })
                .map_err(PasswordError::Spawn)?;
        }
        Ok(Self { shared })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let request = REQUEST.try_with(|r| *r).unwrap_or_default();
        let job: Job = Box::new(move || {
            let done = match request.deadline {
                Some(d) if natskit::deadline::passed(d) => None,
                _ => Some(f()),
            };
            let _ = tx.send(done);
        });
        {
            let mut q = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            if q.closed {
                return Err(PasswordError::Task("hashing threads are gone"));
            }
            if request.known {
                q.known.push_back(job);
            } else {
                q.others.push_back(job);
            }
        }
        self.shared.ready.notify_one();
        let done = rx
            .await
            .map_err(|_| PasswordError::Task("hashing job dropped"))?;
        done.ok_or_else(|| {
            metrics::counter!("chatmesh_password_jobs_expired_total").increment(1);
            PasswordError::Expired
        })
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
    /// Password requests in progress: hashing, or waiting for a hashing thread.
    slots: Arc<Semaphore>,
    /// More places, for logins of known devices only ([`Passwords::admit_known`]).
    reserved: Arc<Semaphore>,
    /// The accounts holding one of those now (one each).
    reserved_by: Arc<Mutex<HashSet<String>>>,
}

/// A password request's place, held until it is answered. The account's hold goes before
/// the permit (fields drop in order), so a place freed is never seen still held.
pub(crate) struct Place {
    _reserved: Option<ReservedBy>,
    _permit: OwnedSemaphorePermit,
}

impl From<OwnedSemaphorePermit> for Place {
    fn from(permit: OwnedSemaphorePermit) -> Self {
        Self {
            _permit: permit,
            _reserved: None,
        }
    }
}

/// An account's hold on a place kept for known devices; let go when dropped.
struct ReservedBy {
    by: Arc<Mutex<HashSet<String>>>,
    user: String,
}

impl Drop for ReservedBy {
    fn drop(&mut self) {
        self.by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.user);
    }
}

/// Places kept for logins of known devices beside a queue of `queue`: a quarter of it, at
/// least four.
pub(crate) fn reserved_places(queue: usize) -> usize {
    (queue / 4).max(4)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    #[error("argon2: {0}")]
    Argon(argon2::Error),
    #[error("argon2 hash: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("starting a hashing thread")]
    Spawn(#[source] std::io::Error),
    #[error("hashing task failed: {0}")]
    Task(&'static str),
    /// The request's caller gave up before a hashing thread was free; not hashed.
    #[error("the request's deadline passed while it waited for a hashing thread")]
    Expired,
}

/// Hashing threads when `password_threads = 0`: one core is left to everything else (the
/// runtime answering other services), at most four.
pub(crate) fn auto_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .clamp(1, 4)
}

impl Passwords {
    /// `threads` hashing threads (0: [`auto_threads`]) and room for `queue` more requests.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        threads: usize,
        queue: usize,
    ) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(PasswordError::Argon)?;
        let threads = if threads == 0 {
            auto_threads()
        } else {
            threads
        };
        Ok(Self {
            params,
            pool: Arc::new(HashPool::new(threads)?),
            dummy: Arc::new(OnceCell::new()),
            slots: Arc::new(Semaphore::new(threads + queue)),
            reserved: Arc::new(Semaphore::new(reserved_places(queue))),
            reserved_by: Arc::default(),
        })
    }

    /// A place for one password request (held until it is answered), or `None` when every
    /// thread is busy and the queue is full: the caller answers `rate_limited` at once.
    pub fn admit(&self) -> Option<Place> {
        self.slots.clone().try_acquire_owned().ok().map(Place::from)
    }

    /// [`Passwords::admit`] for the login of a known device of `user` (the gateway checked
    /// its device token): when the shared places are taken (a flood of guesses from
    /// elsewhere), one of the places kept for known devices, if `user` holds none yet.
    pub fn admit_known(&self, user: &str) -> Option<Place> {
        if let Some(place) = self.admit() {
            return Some(place);
        }
        let mut by = self.reserved_by.lock().unwrap_or_else(|e| e.into_inner());
        if by.contains(user) {
            return None;
        }
        let permit = self.reserved.clone().try_acquire_owned().ok()?;
        by.insert(user.to_owned());
        Some(Place {
            _permit: permit,
            _reserved: Some(ReservedBy {
                by: self.reserved_by.clone(),
                user: user.to_owned(),
            }),
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
                    .map_err(PasswordError::Hash)
            })
            .await?
    }

    /// Whether `phc` was made otherwise than [`Self::hash`] makes a hash now (other costs,
    /// algorithm or version, or it does not parse): a login with the right password then
    /// stores a new hash, so accounts move to costs the operator raised (and their logins
    /// take the time an unknown name's does again).
    pub fn outdated(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let current = Params::try_from(&parsed).ok();
        parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed.version != Some(Version::V0x13.into())
            || current.is_none_or(|p| {
                (p.m_cost(), p.t_cost(), p.p_cost())
                    != (
                        self.params.m_cost(),
                        self.params.t_cost(),
                        self.params.p_cost(),
                    )
            })
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
                let parsed = PasswordHash::new(&phc).map_err(PasswordError::Hash)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// With one thread and a queue of two, three requests are admitted and the fourth is
    /// refused at once; a finished request frees its place.
    #[test]
    fn admission_is_bounded_and_fails_fast() {
        let p = Passwords::new(8, 1, 1, 2).unwrap();
        let held: Vec<_> = (0..3).map(|_| p.admit().expect("admitted")).collect();
        assert!(p.admit().is_none(), "over threads + queue");
        drop(held);
        assert!(p.admit().is_some());
    }

    /// When a flood holds every shared place, a known device's login still gets one of the
    /// places kept for known devices, one per account at a time; once those are taken too,
    /// it is refused like the rest.
    #[test]
    fn known_devices_have_places_of_their_own() {
        let p = Passwords::new(8, 1, 1, 8).unwrap();
        let flood: Vec<_> = std::iter::from_fn(|| p.admit()).take(100).collect();
        assert_eq!(flood.len(), 1 + 8, "threads + queue");
        assert!(p.admit().is_none());
        let ann = p.admit_known("ann").expect("a kept place");
        assert!(p.admit_known("ann").is_none(), "one per account");
        let others: Vec<_> = (0..100)
            .map_while(|i| p.admit_known(&format!("u{i}")))
            .collect();
        assert_eq!(others.len() + 1, reserved_places(8));
        drop(ann);
        assert!(p.admit_known("ann").is_some(), "let go when answered");
        drop(flood);
        assert!(
            p.admit_known("bob").is_some(),
            "the shared places first once free"
        );
    }

    /// A known device's hashing goes before the jobs that were waiting.
    #[tokio::test]
    async fn a_known_devices_job_goes_first() {
        let p = Passwords::new(8, 1, 1, 8).unwrap();
        let busy = {
            let pool = p.pool.clone();
            tokio::spawn(async move {
                pool.run(|| std::thread::sleep(std::time::Duration::from_millis(300)))
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let job = |name: &'static str, known: bool| {
            let (pool, order) = (p.pool.clone(), order.clone());
            tokio::spawn(with_request(None, known, async move {
                pool.run(move || order.lock().unwrap().push(name)).await
            }))
        };
        let waiting = job("waiting", false);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let known = job("known", true);
        busy.await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
        known.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["known", "waiting"]);
    }

    /// A job whose request's deadline passes while it waits for the only thread is not
    /// hashed when the thread takes it up; one with time left is.
    #[tokio::test]
    async fn a_job_whose_caller_gave_up_is_not_hashed() {
        let p = Passwords::new(8, 1, 1, 2).unwrap();
        let busy = {
            let pool = p.pool.clone();
            tokio::spawn(async move {
                pool.run(|| std::thread::sleep(std::time::Duration::from_millis(800)))
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Passes (beyond the slack) 200 ms from now, long before the thread is free.
        let slack = natskit::deadline::SLACK.as_millis() as u64;
        let soon = natskit::deadline::after(std::time::Duration::from_millis(200)) - slack;
        let late = with_request(Some(soon), false, p.hash("pw".into()));
        let later = natskit::deadline::after(std::time::Duration::from_secs(60));
        let in_time = with_request(Some(later), false, p.hash("pw".into()));
        let (late, in_time) = tokio::join!(late, in_time);
        assert!(matches!(late, Err(PasswordError::Expired)), "{late:?}");
        assert!(in_time.expect("hashed").starts_with("$argon2id$"));
        busy.await.unwrap().unwrap();
        // Without a deadline (requests from older gateways, tests) everything is hashed.
        assert!(p.hash("pw".into()).await.is_ok());
    }
}
