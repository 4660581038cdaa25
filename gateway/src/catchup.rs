//! After a possible loss of membership and account events (a NATS reconnect, a
//! slow-consumer drop: [`crate::reconnects`]): what was missed is read from the event log
//! ([`crate::eventlog`]) and only the (room, user) pairs and users it names are asked about
//! again; when the log cannot say, every user of this gateway's rooms is. Either way the
//! rooms hold their messages until it has run ([`Rechecked`]), so nothing stored after a
//! missed removal or revocation reaches the removed user or the revoked token's session.
//!
//! Asking only about what the log names keeps the catch-up short on a gateway with many
//! sessions: a pass over every pair asks 16 questions at a time and may take longer than the
//! rooms' hold (`gateway.recheck_hold_ms`).

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::access::{AccessCache, Notify};
use crate::eventlog::{EventLog, Missed};
use crate::fanout::Fanout;
use crate::late::Late;
use crate::reconnects::Rechecked;
use crate::revocation::Revocation;

/// What a catch-up reads and asks again.
pub struct Parts {
    pub log: Arc<EventLog>,
    pub access: AccessCache,
    pub fanout: Fanout,
    pub revocation: Arc<Revocation>,
    /// Tells a user's sessions of a membership change (a removal found by the catch-up).
    pub notify: Notify,
}

/// Catches up after every loss `connects` counts on `nats` until `drain`, telling
/// `rechecked` the count each run answered for; a run that could not ask everyone it had to
/// runs again (see [`crate::reconnects::on_reconnect`]). Beside it, asks again about what
/// `late` events name.
pub fn spawn(
    parts: Parts,
    late: Arc<Late>,
    nats: &async_nats::Client,
    background: &crate::supervise::Supervisor,
    (connects, rechecked): (watch::Receiver<u64>, Arc<Rechecked>),
) {
    let parts = Arc::new(parts);
    let drain = background.drain().clone();
    background.spawn("late events", ask_about_late(parts.clone(), late, drain));
    let stats = nats.statistics();
    crate::reconnects::on_reconnect(connects, background, move || {
        let (parts, stats, rechecked) = (parts.clone(), stats.clone(), rechecked.clone());
        async move {
            // The count this run answers for: a loss during the run makes another.
            let seen = natskit::lossy::losses(&stats);
            let unanswered = catch_up(&parts, seen).await;
            // Those who could not be asked keep their rooms and sessions (as when the
            // worker is down at a join); the rooms need not wait for the retries.
            rechecked.done(seen);
            unanswered
        }
    });
}

/// Until `drain`, asks again about the pairs and users late events name: all named while
/// the last round was asked, in one round.
async fn ask_about_late(parts: Arc<Parts>, late: Arc<Late>, drain: CancellationToken) {
    let (access, fanout, notify) = (&parts.access, &parts.fanout, &parts.notify);
    loop {
        let named = tokio::select! {
            _ = drain.cancelled() => return,
            named = late.next() => named,
        };
        tracing::info!(
            pairs = named.members.len(),
            users = named.users.len(),
            "asking again about what late events name"
        );
        tokio::join!(
            crate::access::recheck(access, fanout, notify, Some(&named.members)),
            parts.revocation.recheck(Some(&named.users)),
        );
    }
}

/// One catch-up for the losses counted up to `seen`; returns how many could not be asked.
async fn catch_up(parts: &Parts, seen: u64) -> usize {
    let (access, fanout, notify) = (&parts.access, &parts.fanout, &parts.notify);
    match parts.log.missed().await {
        Missed::Events { named, upto, read } => {
            metrics::counter!("chatmesh_event_log_catchups_total").increment(1);
            metrics::counter!("chatmesh_event_log_events_read_total").increment(read);
            tracing::info!(
                read,
                pairs = named.members.len(),
                users = named.users.len(),
                "catching up on missed events from the event log"
            );
            let (a, t) = tokio::join!(
                crate::access::recheck(access, fanout, notify, Some(&named.members)),
                parts.revocation.recheck(Some(&named.users)),
            );
            if a + t == 0 {
                parts.log.caught_up(upto, seen);
            }
            a + t
        }
        Missed::Unknown { why, upto } => {
            metrics::counter!("chatmesh_event_log_fallbacks_total", "why" => why).increment(1);
            tracing::info!(why, "asking about every user here again");
            let (a, t) = tokio::join!(
                crate::access::recheck(access, fanout, notify, None),
                parts.revocation.recheck(None),
            );
            match (a + t, upto) {
                (0, Some(upto)) => parts.log.caught_up(upto, seen),
                (0, None) => parts.log.lost_mark(seen),
                _ => {}
            }
            a + t
        }
    }
}
