//! The searches of the `mixed` scenario: `--search-rate` full-text searches per second over
//! the measured phase (open model: search `i` is due at `warmup + i / rate`, whatever
//! happened to the others), each by a member of one of the run's filled rooms, for the word
//! `h<j>` of one of its fill messages, limited to that room. The answer must hold that fill
//! message (`search_missed` otherwise): the rooms were filled before the run, so the index
//! has had the setup's time to take them in. `search` latency runs from the due time to the
//! answer (waiting for one of [`IN_FLIGHT`] slots counts).

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::history::fill_k;
use crate::setup::Api;
use crate::stats::{Counters, Kind, Sample};

/// Searches in progress at once.
pub const IN_FLIGHT: usize = 32;

/// Hits asked for per search.
const LIMIT: u32 = 10;

/// One room that can be searched: its name, its fill, and its members' tokens.
#[derive(Debug, Clone)]
pub struct Searchable {
    pub room: String,
    pub fill: u64,
    pub tokens: Vec<String>,
}

/// The rooms of this generator's plan that hold fill messages and have members.
pub fn searchable(engine: &Engine) -> Vec<Searchable> {
    let plan = &engine.plan;
    let mut out: Vec<Searchable> = plan
        .rooms
        .iter()
        .map(|r| Searchable {
            room: r.name.clone(),
            fill: r.fill,
            tokens: Vec::new(),
        })
        .collect();
    for c in engine.own_conns() {
        let conn = &plan.conns[c];
        if let (Some(s), Some((_, token))) =
            (out.get_mut(conn.room), engine.accounts.get(conn.account))
        {
            if !s.tokens.contains(token) {
                s.tokens.push(token.clone());
            }
        }
    }
    out.retain(|s| s.fill > 0 && !s.tokens.is_empty());
    out
}

/// Searches scheduled in the measured phase at `rate` per second.
pub fn scheduled(engine: &Engine, rate: f64) -> u64 {
    let common = &engine.common;
    let secs = (common.duration.as_secs_f64() - common.warmup.as_secs_f64()).max(0.0);
    (secs * rate.max(0.0)).floor() as u64
}

/// Runs the searches of the measured phase; returns once every one is answered.
pub async fn traffic(engine: Arc<Engine>, api: Api, rooms: Vec<Searchable>, rate: f64) {
    let count = scheduled(&engine, rate);
    if rooms.is_empty() || count == 0 {
        return;
    }
    caught_up(&api, &rooms).await;
    let t0 = engine.started().await;
    let from = engine.common.warmup.as_secs_f64();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let rooms = Arc::new(rooms);
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let due_us = t0 + ((from + i as f64 / rate) * 1e6) as u64;
        tokio::time::sleep_until(engine.instant_of(due_us)).await;
        let (engine, api, rooms, slots) =
            (engine.clone(), api.clone(), rooms.clone(), slots.clone());
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let s = &rooms[i as usize % rooms.len()];
            let token = &s.tokens[(i as usize / rooms.len()) % s.tokens.len()];
            let j = pick(i, s.fill);
            let counters = &engine.counters;
            match api.search(token, &s.room, &format!("h{j}"), LIMIT).await {
                Ok(bodies) => {
                    let us = crate::clock::now_us().saturating_sub(due_us);
                    if let Ok(mut h) = engine.hists.lock() {
                        h.record(Sample {
                            kind: Kind::Search,
                            us,
                        });
                    }
                    Counters::add(&counters.searches, 1);
                    if !bodies.iter().any(|b| fill_k(b) == Some(j)) {
                        Counters::add(&counters.search_missed, 1);
                        counters.error("search_missed");
                    }
                }
                Err(_) => {
                    Counters::add(&counters.search_failed, 1);
                    counters.error("search_failed");
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits (while the connections open) until a search finds the newest fill message of every
/// room, at most [`CATCH_UP`], and says how long that took: the measured searches then time
/// queries, not the index's lag behind the fill.
async fn caught_up(api: &Api, rooms: &[Searchable]) {
    let started = std::time::Instant::now();
    let mut waiting: Vec<&Searchable> = rooms.iter().collect();
    let mut round = 0;
    while !waiting.is_empty() && started.elapsed() < CATCH_UP {
        let mut still = Vec::new();
        round += 1;
        for s in waiting {
            let newest = s.fill - 1;
            // Members take turns: each has its own search throttle.
            let token = &s.tokens[round % s.tokens.len()];
            let found = api
                .search(token, &s.room, &format!("h{newest}"), LIMIT)
                .await
                .is_ok_and(|bodies| bodies.iter().any(|b| fill_k(b) == Some(newest)));
            if !found {
                still.push(s);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if waiting.is_empty() {
        eprintln!(
            "search: the index holds every room's fill ({} rooms) after {secs:.1} s",
            rooms.len()
        );
    } else {
        eprintln!(
            "search: after {secs:.0} s the index still lacks the newest fill message of {} of {} rooms; searching anyway",
            waiting.len(),
            rooms.len()
        );
    }
}

/// The longest wait for the index to hold the fill before the searches start.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(30);

/// The fill message search `i` looks for: spread over the whole fill, old and new.
fn pick(i: u64, fill: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % fill.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_cover_the_fill() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2_000 {
            let j = pick(i, 100);
            assert!(j < 100);
            seen.insert(j);
        }
        assert!(seen.len() > 90, "{}", seen.len());
        assert_eq!(pick(5, 0), 0);
    }
}
