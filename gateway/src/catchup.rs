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

use crate::access::Notify;
use crate::eventlog::Missed;
use crate::reconnects::Rechecked;
use crate::state::AppState;

/// Catches up after every loss `connects` counts until the gateway drains, telling
/// `rechecked` the count each run answered for; a run that could not ask everyone it had to
/// runs again (see [`crate::reconnects::on_reconnect`]).
pub fn spawn(state: &Arc<AppState>, connects: watch::Receiver<u64>, rechecked: Arc<Rechecked>) {
    let weak = Arc::downgrade(state);
    let stats = state.nats.statistics();
    crate::reconnects::on_reconnect(connects, state.drain.clone(), move || {
        let state = weak.upgrade();
        let (stats, rechecked) = (stats.clone(), rechecked.clone());
        async move {
            let Some(state) = state else { return 0 };
            // The count this run answers for: a loss during the run makes another.
            let seen = natskit::lossy::losses(&stats);
            let unanswered = catch_up(&state, seen).await;
            // Those who could not be asked keep their rooms and sessions (as when the
            // worker is down at a join); the rooms need not wait for the retries.
            rechecked.access_done(seen);
            rechecked.tokens_done(seen);
            unanswered
        }
    });
}

/// One catch-up for the losses counted up to `seen`; returns how many could not be asked.
async fn catch_up(state: &Arc<AppState>, seen: u64) -> usize {
    let weak = Arc::downgrade(state);
    let notify: Notify = Arc::new(move |ev| {
        if let Some(state) = weak.upgrade() {
            state.membership_changed(ev);
        }
    });
    let (access, fanout) = (&state.access, &state.fanout);
    match state.event_log.missed().await {
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
                crate::access::recheck(access, fanout, &notify, Some(&named.members)),
                state.revocation.recheck(Some(&named.users)),
            );
            if a + t == 0 {
                state.event_log.caught_up(upto, seen);
            }
            a + t
        }
        Missed::Unknown { why, upto } => {
            metrics::counter!("chatmesh_event_log_fallbacks_total", "why" => why).increment(1);
            tracing::info!(why, "asking about every user here again");
            let (a, t) = tokio::join!(
                crate::access::recheck(access, fanout, &notify, None),
                state.revocation.recheck(None),
            );
            match (a + t, upto) {
                (0, Some(upto)) => state.event_log.caught_up(upto, seen),
                (0, None) => state.event_log.lost_mark(seen),
                _ => {}
            }
            a + t
        }
    }
}
