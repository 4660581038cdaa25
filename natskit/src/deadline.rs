//! Deadlines of service requests. A caller stops waiting for an answer after its timeout; a
//! request it sent carries that moment ([`HEADER`], ms since the Unix epoch), and a worker
//! that only reaches the request later ([`expired`], with [`SLACK`] for the two machines'
//! clocks) does not run it. Otherwise an overloaded worker would spend itself on requests
//! nobody waits for any more, every answer coming too late, and a timed-out change (a member
//! added, a room created) would still happen after its caller was told it failed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;

/// The header: when the caller stops waiting, ms since the Unix epoch.
pub const HEADER: &str = "Chatmesh-Deadline";
/// How far past its deadline a request is still run (the caller's and the worker's clocks
/// may differ a little).
pub const SLACK: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The deadline of a caller that waits `timeout` from now, ms since the Unix epoch.
pub fn after(timeout: Duration) -> u64 {
    let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    now_ms().saturating_add(timeout)
}

/// Headers of a request whose caller waits `timeout` for its answer.
pub fn headers(timeout: Duration) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER, after(timeout).to_string().as_str());
    headers
}

/// The deadline a request with `headers` carries, if any (one that does not parse is none).
pub fn of(headers: Option<&HeaderMap>) -> Option<u64> {
    headers
        .and_then(|h| h.get(HEADER))
        .and_then(|v| v.as_str().parse::<u64>().ok())
}

/// Has `deadline` (ms since the Unix epoch) passed, beyond [`SLACK`]?
pub fn passed(deadline: u64) -> bool {
    let slack = u64::try_from(SLACK.as_millis()).unwrap_or(0);
    now_ms() > deadline.saturating_add(slack)
}

/// How long until `deadline` (ms since the Unix epoch) passes, with [`SLACK`]; zero once it
/// has.
pub fn left(deadline: u64) -> Duration {
    let slack = u64::try_from(SLACK.as_millis()).unwrap_or(0);
    Duration::from_millis(deadline.saturating_add(slack).saturating_sub(now_ms()))
}

/// Has the caller of a request with `headers` stopped waiting (beyond [`SLACK`])? A request
/// without the header (or with one that does not parse) has no deadline.
pub fn expired(headers: Option<&HeaderMap>) -> bool {
    of(headers).is_some_and(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_passes_after_its_timeout_and_the_slack() {
        assert!(!expired(None));
        assert!(!expired(Some(&headers(Duration::from_secs(5)))));
        let mut past = HeaderMap::new();
        let then = now_ms() - 2 * u64::try_from(SLACK.as_millis()).unwrap();
        past.insert(HEADER, then.to_string().as_str());
        assert!(expired(Some(&past)));
        let mut garbled = HeaderMap::new();
        garbled.insert(HEADER, "soon");
        assert!(!expired(Some(&garbled)));
    }
}
