//! The thumbnail queue: jobs wait per uploader and are taken in turn, one user after
//! another, so one user's burst of images waits behind everyone else's next image instead
//! of in front of it. Bounded twice: `total` jobs in all and `per_user` of one uploader
//! (`[files] thumbnail_queue`, `thumbnail_queue_per_user`). A job that finds no room stays
//! `pending` in the store and the sweeper queues it again later; a job already waiting is
//! not queued a second time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

/// A thumbnail to make: a file of a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Job {
    pub room: String,
    pub id: String,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `total` jobs wait already.
    Full,
    /// `per_user` jobs of this uploader wait already.
    UserFull,
    /// The same file waits already.
    Queued,
}

impl Refused {
    /// The metric label (`chatmesh_file_thumbnails_total{outcome}`).
    pub fn label(self) -> &'static str {
        match self {
            Refused::Full => "queue_full",
            Refused::UserFull => "user_queue_full",
            Refused::Queued => "already_queued",
        }
    }
}

/// Jobs per uploader, taken round-robin.
#[derive(Debug)]
pub struct FairQueue {
    total: usize,
    per_user: usize,
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Each uploader's waiting jobs, oldest first.
    by_user: HashMap<String, VecDeque<Job>>,
    /// Uploaders with waiting jobs, whose turn is next first.
    turns: VecDeque<String>,
    /// Every waiting job.
    waiting: HashSet<Job>,
}

impl FairQueue {
    pub fn new(total: usize, per_user: usize) -> Self {
        Self {
            total: total.max(1),
            per_user: per_user.max(1),
            state: Mutex::default(),
            ready: Notify::new(),
        }
    }

    /// Queues `job` of uploader `user`, or says why not.
    pub fn push(&self, user: &str, job: Job) -> Result<(), Refused> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.waiting.contains(&job) {
            return Err(Refused::Queued);
        }
        if s.waiting.len() >= self.total {
            return Err(Refused::Full);
        }
        let mine = s.by_user.get(user).map_or(0, VecDeque::len);
        if mine >= self.per_user {
            return Err(Refused::UserFull);
        }
        if mine == 0 {
            s.turns.push_back(user.to_owned());
        }
        s.waiting.insert(job.clone());
        s.by_user.entry(user.to_owned()).or_default().push_back(job);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job: the oldest of the uploader whose turn it is, or `None` if none waits.
    pub fn try_pop(&self) -> Option<Job> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let user = s.turns.pop_front()?;
        let jobs = s.by_user.get_mut(&user)?;
        let job = jobs.pop_front()?;
        if jobs.is_empty() {
            s.by_user.remove(&user);
        } else {
            s.turns.push_back(user);
        }
        s.waiting.remove(&job);
        Some(job)
    }

    /// Waits for the next job.
    pub async fn pop(&self) -> Job {
        loop {
            let ready = self.ready.notified();
            if let Some(job) = self.try_pop() {
                return job;
            }
            ready.await;
        }
    }

    /// How many jobs wait.
    pub fn len(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting.len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32) -> Job {
        Job {
            room: "r".into(),
            id: format!("f{n}"),
        }
    }

    /// A burst of one uploader is taken in turn with the others' jobs; each bound refuses
    /// with its own reason; a waiting job is not queued twice.
    #[test]
    fn uploaders_take_turns_within_both_bounds() {
        let q = FairQueue::new(10, 4);
        for n in 0..4 {
            q.push("ann", job(n)).unwrap();
        }
        assert_eq!(q.push("ann", job(4)), Err(Refused::UserFull));
        assert_eq!(q.push("bob", job(0)), Err(Refused::Queued));
        q.push("bob", job(10)).unwrap();
        q.push("cat", job(20)).unwrap();
        q.push("cat", job(21)).unwrap();
        let order: Vec<String> = std::iter::from_fn(|| q.try_pop()).map(|j| j.id).collect();
        assert_eq!(order, ["f0", "f10", "f20", "f1", "f21", "f2", "f3"]);
        assert_eq!(q.len(), 0);
        // Taken jobs may be queued again.
        q.push("ann", job(0)).unwrap();

        let q = FairQueue::new(3, 3);
        for n in 0..3 {
            q.push(&format!("u{n}"), job(n)).unwrap();
        }
        assert_eq!(q.push("u9", job(9)), Err(Refused::Full));
    }

    /// `pop` waits for a job pushed later.
    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(FairQueue::new(4, 4));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.push("ann", job(1)).unwrap();
        assert_eq!(waiter.await.unwrap(), job(1));
    }
}
