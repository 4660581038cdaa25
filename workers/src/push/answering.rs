//! Which push service origins are known to answer: those that gave an HTTP answer (any
//! status: a 503 is an answer, it holds no slot for long) within [`REMEMBERED`]. A request
//! that gets none (it timed out, or failed at transport level) makes its origin unknown
//! again, unless the origin answered another request since it was sent: a busy push service
//! with one stalling endpoint still answers. [`super::origins`] lets only the requests to
//! known origins go without a slot of the one pool that all the others share.
//!
//! The operator's own push services (its FCM, its APNs hosts) count as answering from the
//! start, so a notifier that starts while unknown origins hang does not hold FCM's and
//! APNs's first pushes behind them; like any other origin, one that stops answering is
//! not known to answer until it answers again.
//!
//! Bounded: at most [`MAX_ORIGINS`] origins are remembered (the least used go first), and
//! an origin that never answers is never remembered, whatever origins users register.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Origins remembered at most.
const MAX_ORIGINS: u64 = 10_000;
/// How long an answer is remembered: a push service that answered today is still trusted
/// after a quiet night.
const REMEMBERED: Duration = Duration::from_secs(24 * 3600);

/// The origins known to answer. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Answering {
    /// What each origin was last heard to do; an origin not operator's that did not answer
    /// is forgotten instead of kept as [`Heard::Silent`].
    heard: moka::future::Cache<String, Heard>,
    /// The operator's origins: answering until heard otherwise.
    operator: Arc<HashSet<String>>,
}

#[derive(Debug, Clone, Copy)]
enum Heard {
    /// Its last answer, then.
    Answered(Instant),
    /// An operator's origin whose request got no answer, and none since.
    Silent,
}

impl Answering {
    /// Knows `operator`'s origins (see [`super::origins::origin_of`]) as answering.
    pub fn new(operator: impl IntoIterator<Item = String>) -> Self {
        let heard = moka::future::Cache::builder()
            .max_capacity(MAX_ORIGINS)
            .time_to_live(REMEMBERED)
            .build();
        Self {
            heard,
            operator: Arc::new(operator.into_iter().collect()),
        }
    }

    /// Whether `origin` is known to answer.
    pub async fn answers(&self, origin: &str) -> bool {
        match self.heard.get(origin).await {
            Some(Heard::Answered(_)) => true,
            Some(Heard::Silent) => false,
            None => self.operator.contains(origin),
        }
    }

    /// A request to `origin` was answered.
    pub async fn answered(&self, origin: &str) {
        let now = Heard::Answered(Instant::now());
        self.heard.insert(origin.to_owned(), now).await;
    }

    /// A request to `origin` sent at `sent` got no answer: the origin is unknown again,
    /// unless it answered another request since.
    pub async fn silent(&self, origin: &str, sent: Instant) {
        if let Some(Heard::Answered(at)) = self.heard.get(origin).await {
            if at >= sent {
                return;
            }
        }
        if self.operator.contains(origin) {
            self.heard.insert(origin.to_owned(), Heard::Silent).await;
        } else {
            self.heard.invalidate(origin).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An origin is known to answer from its first answer until a request sent after its
    /// last answer gets none; an operator origin from the start, until then too, and again
    /// once it answers.
    #[tokio::test(start_paused = true)]
    async fn an_answer_makes_an_origin_known_and_no_answer_unknown() {
        let known = Answering::new(["https://fcm.example".to_owned()]);
        let user = "https://push.example";
        assert!(!known.answers(user).await, "never heard");
        let before = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        known.answered(user).await;
        known.silent(user, before).await;
        assert!(
            known.answers(user).await,
            "answered since that request was sent"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        known.silent(user, Instant::now()).await;
        assert!(!known.answers(user).await);

        let fcm = "https://fcm.example";
        assert!(known.answers(fcm).await, "the operator's, from the start");
        known.silent(fcm, Instant::now()).await;
        assert!(!known.answers(fcm).await);
        known.answered(fcm).await;
        assert!(known.answers(fcm).await);
    }
}
