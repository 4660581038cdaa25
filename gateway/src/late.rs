//! Events the workers published again because the event log had not confirmed storing them
//! (header [`LATE_HEADER`]; see the workers' `events.rs`). Such an event may be older than
//! what this gateway has heard since (a removal published again after the user was added
//! back), so it is not applied: what it names is gathered here and asked about again by
//! [`crate::catchup`], as after a loss, all that gathered meanwhile at once.

use std::sync::Mutex;

use async_nats::HeaderMap;
use chatmesh_protocol::subjects::LATE_HEADER;
use tokio::sync::Notify;

use crate::eventlog::Named;

/// What late events named, not asked about yet.
#[derive(Debug, Default)]
pub struct Late {
    named: Mutex<Named>,
    ready: Notify,
}

impl Late {
    /// Whether a message with `headers` is an event published again late.
    pub fn is_late(headers: Option<&HeaderMap>) -> bool {
        headers.is_some_and(|h| h.get(LATE_HEADER).is_some())
    }

    /// Takes what the late event on `subject` names.
    pub fn add(&self, subject: &str, payload: &[u8]) {
        metrics::counter!("chatmesh_event_log_late_events_total").increment(1);
        self.named
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(subject, payload);
        self.ready.notify_one();
    }

    /// Everything named since the last call, once there is something.
    pub async fn next(&self) -> Named {
        loop {
            {
                let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
                if !named.members.is_empty() || !named.users.is_empty() {
                    return std::mem::take(&mut *named);
                }
            }
            // A permit is kept for an `add` between the look and the wait.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_late_events_name_is_handed_over_together() {
        let late = Late::default();
        let mut headers = HeaderMap::new();
        assert!(!Late::is_late(Some(&headers)));
        assert!(!Late::is_late(None));
        headers.insert(LATE_HEADER, "1");
        assert!(Late::is_late(Some(&headers)));

        late.add(
            "chat.mem.hall",
            br#"{"room":"hall","user":"bob","role":null}"#,
        );
        late.add("chat.user.ann", b"{}");
        late.add("chat.user.ann", b"{}");
        let named = late.next().await;
        assert_eq!(named.members.len(), 1);
        assert!(named
            .members
            .contains(&("hall".to_owned(), "bob".to_owned())));
        assert_eq!(named.users.len(), 1);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), late.next());
        assert!(waiting.await.is_err(), "nothing more was named");
    }
}
