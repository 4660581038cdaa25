//! Which partitions this worker runs.
//!
//! Workers announce themselves in the KV bucket `CHAT_WORKERS` (one key each, with a TTL
//! they refresh; the bucket republishes changes and expiry markers on `chat.workers.<id>`).
//! With [`OwnershipMode::Shared`] each partition belongs to the live worker that ranks
//! highest for it by rendezvous hashing, so a join or a death moves only the partitions it
//! must. Wanting a partition is not enough to run it: the worker must hold the partition's
//! lease (`CHAT_LEASES`, key `p<N>`, TTL, renewed by compare-and-set), so two workers never
//! run one partition's store writer at once, and a dead owner's partitions move once its
//! lease expires (within `lease_ttl_secs`). A leaving owner finishes its batch, then
//! releases the lease at once (all its partitions together; a release NATS does not answer
//! within 2 s is left to expire). With [`OwnershipMode::All`] (an embedded store that only this
//! worker can open) the worker takes every lease. A hot standby on the same fjall store
//! (`worker.standby`) waits for the store's lock before it gets here, then takes each lease
//! as the dead holder's expires (tried every 250 ms), or at once after a graceful release.
//! A worker whose renewal comes late (a starved or paused process: its lease expired) takes
//! the lease straight back unless another worker holds it by then, so starvation never makes
//! the only worker drop its own partitions. With shared partitions each one also has a
//! watchdog that stops it two thirds of the TTL after its last renewal (or at the end of a
//! round of renewals under way), whatever holds the ownership loop up meanwhile.

mod lease;
mod registry;

use chatmesh_protocol::backoff::Backoff;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::WorkerError;
use lease::{Leases, Renewal};
use registry::Registry;

/// How often leases held by others are tried again.
const ACQUIRE_RETRY: Duration = Duration::from_millis(250);

/// How long a stopping partition waits for its lease release (and a leaving worker for its
/// registry entry's removal): a lease that cannot be released expires by its TTL anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// How partitions are shared between workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnershipMode {
    /// This worker runs every partition (an embedded store: one writer per store).
    #[default]
    All,
    /// Live workers share the partitions by rendezvous hashing (a shared store: TiKV).
    Shared,
}

/// Ownership settings (`[worker.ownership]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OwnershipConfig {
    pub mode: OwnershipMode,
    /// Seconds a dead worker's registration and leases live; its partitions move after it.
    pub lease_ttl_secs: u64,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        Self {
            mode: OwnershipMode::All,
            lease_ttl_secs: 3,
        }
    }
}

impl OwnershipConfig {
    pub fn problems(&self) -> Vec<String> {
        if (3..=300).contains(&self.lease_ttl_secs) {
            Vec::new()
        } else {
            vec!["worker.ownership.lease_ttl_secs must be between 3 and 300".into()]
        }
    }
}

/// Starts a partition's tasks with the token that stops them.
pub type SpawnPartition =
    Box<dyn Fn(u32, CancellationToken) -> JoinSet<Result<(), WorkerError>> + Send + Sync>;

/// A fresh id for this worker process.
pub fn new_worker_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    format!("w{:016x}", h.finish())
}

/// The rendezvous owner of partition `p` among `workers`.
pub fn rendezvous<'a>(workers: impl IntoIterator<Item = &'a str>, p: u32) -> Option<&'a str> {
    workers.into_iter().max_by_key(|w| (score(w, p), *w))
}

fn score(worker: &str, p: u32) -> u64 {
    // FNV-1a 64 over "worker:p".
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in worker
        .bytes()
        .chain(b":".iter().copied())
        .chain(p.to_string().into_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV alone mixes short keys poorly; murmur3's finalizer spreads every bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

struct Running {
    stop: CancellationToken,
    tasks: JoinSet<Result<(), WorkerError>>,
    revision: u64,
    renewed: tokio::time::Instant,
    /// With shared partitions: the moment the partition's [`watchdog`] stops it unless this
    /// moves on first (a renewal, or a round of renewals under way).
    cut: Option<watch::Sender<tokio::time::Instant>>,
}

impl Running {
    /// Moves the watchdog's moment (with shared partitions).
    fn cut_at(&self, at: tokio::time::Instant) {
        if let Some(cut) = &self.cut {
            cut.send_replace(at);
        }
    }
}

/// Stops a shared partition (cancels `stop`) when the moment in `cut` passes without having
/// moved on: its lease may be taken by another worker from then on. Whatever holds the
/// ownership loop up meanwhile (a lease read of another partition that waits out its request
/// timeout, a stopping partition's batch), the partition does not run past its margin.
///
/// A watchdog that wakes late (the process was starved or paused: the renewal round is
/// waking too) gives the round `grace` to move the moment first: a starved worker asks for
/// its leases before it stops anything, and takes them straight back if nobody else has.
async fn watchdog(
    p: u32,
    stop: CancellationToken,
    mut cut: watch::Receiver<tokio::time::Instant>,
    grace: Duration,
) -> Result<(), WorkerError> {
    let mut graced = None;
    loop {
        let at = graced.unwrap_or(*cut.borrow_and_update());
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            changed = cut.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                graced = None;
            }
            () = tokio::time::sleep_until(at) => {
                if graced.is_none() && *cut.borrow() > at {
                    continue;
                }
                let now = tokio::time::Instant::now();
                if graced.is_none() && now.duration_since(at) > grace / 4 {
                    graced = Some(now + grace);
                    continue;
                }
                warn!(partition = p, "the partition lease was not renewed within its margin; stopping it");
                metrics::counter!("chatmesh_partition_lease_margin_stops_total").increment(1);
                stop.cancel();
                return Ok(());
            }
        }
    }
}

/// What one group of workers shares: the primary's workers, or a region's own
/// (`mesh.regional_workers`), each with their partitions and buckets.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The worker partitions these workers run between them.
    pub partitions: Vec<u32>,
    /// Their registry and lease buckets.
    pub buckets: chatmesh_protocol::subjects::OwnershipBuckets,
    /// The NATS cluster (region) the buckets are placed in; `None`: where the server that
    /// creates them is.
    pub cluster: Option<String>,
    /// Replicas of the buckets.
    pub replicas: usize,
}

/// Runs the ownership loop until `shutdown`, starting and stopping partitions as ownership
/// changes. Returns the first partition task error, if any.
pub async fn run(
    cfg: OwnershipConfig,
    js: jetstream::Context,
    nats: async_nats::Client,
    scope: Scope,
    me: String,
    spawn: SpawnPartition,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let ttl = Duration::from_secs(cfg.lease_ttl_secs);
    // The registry and lease buckets are R3 streams: right after a NATS cluster (re)start
    // their Raft groups may have no leader yet. Retry until they answer (or shutdown) rather
    // than leave a worker up that runs nothing.
    let mut pause = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let (mut registry, leases) = loop {
        let setup = async {
            let registry = Registry::start(&js, &nats, &scope, &me, ttl).await?;
            let leases = Leases::open(&js, &scope, &me, ttl).await?;
            Ok::<_, WorkerError>((registry, leases))
        };
        let failed = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = setup => match r {
                Ok(ready) => break ready,
                Err(e) => e,
            },
        };
        let delay = pause.next_delay();
        warn!(error = %failed, retry_in = ?delay, "partition ownership cannot start yet");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    };
    let mut running: HashMap<u32, Running> = HashMap::new();
    // How often a wanted partition whose lease someone else holds is tried again: a dead
    // owner's lease is taken within this of expiring (the loop is cheap when all run).
    let mut tick = tokio::time::interval(ACQUIRE_RETRY.min(ttl / 3));
    let mut renew = tokio::time::interval(ttl / 3);
    let mut failure = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = registry.changed() => if let Err(e) = changed {
                failure = Some(e);
                break;
            },
            _ = renew.tick() => {
                // All at once, and never past a shutdown: one after another, with NATS
                // unreachable, each renewal waited out its request timeout (16 partitions:
                // minutes in which nothing else, not even a shutdown, was looked at).
                let held: Vec<(u32, u64, tokio::time::Instant)> = running
                    .iter()
                    .map(|(p, r)| (*p, r.revision, r.renewed))
                    .collect();
                // A renewal counts from before it was asked (the round also reads the
                // registry, which may take longer than the renewals themselves).
                let asked = tokio::time::Instant::now();
                // With shared partitions, a renewal that hangs (a lease bucket electing a
                // leader) must not keep its partition running past its margin, two thirds of
                // the TTL since it was last renewed: by then another worker may take it. Each
                // renewal is cut there on its own (still given a third of the TTL, so a
                // worker that was starved past its margin asks first and takes its leases
                // straight back if nobody else has), and the registry's heartbeat, another
                // bucket, is bounded by a third of the TTL beside them rather than holding
                // them up. A worker that runs every partition has no one to hand them to: it
                // waits for the round.
                let shared = cfg.mode == OwnershipMode::Shared;
                let heartbeat = async {
                    if shared {
                        let _ = tokio::time::timeout(ttl / 3, registry.heartbeat()).await;
                    } else {
                        registry.heartbeat().await;
                    }
                };
                let renewals = held.iter().map(|(p, rev, renewed)| {
                    let cut = (*renewed + ttl * 2 / 3).max(asked + ttl / 3);
                    if let Some(r) = running.get(p) {
                        r.cut_at(cut);
                    }
                    let renewal = leases.renew(*p, *rev);
                    async move {
                        if !shared {
                            return Some(renewal.await);
                        }
                        tokio::time::timeout_at(cut, renewal).await.ok()
                    }
                });
                let round = futures::future::join(heartbeat, futures::future::join_all(renewals));
                let renewals = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    ((), renewals) = round => renewals,
                };
                for ((p, _, _), renewal) in held.iter().zip(renewals) {
                    let Some(r) = running.get_mut(p) else { continue };
                    let Some(renewal) = renewal else {
                        warn!(partition = p, "the partition lease's renewal is taking too long; stopping it");
                        r.stop.cancel();
                        continue;
                    };
                    match renewal {
                        Renewal::Renewed(rev) => {
                            r.revision = rev;
                            r.renewed = asked;
                            r.cut_at(asked + ttl * 2 / 3);
                        }
                        Renewal::Lost => {
                            warn!(partition = p, "another worker holds the partition lease; stopping it");
                            r.stop.cancel();
                        }
                        // Nobody can take the lease before its TTL: keep running until then
                        // (with a margin), so a NATS restart does not stop every partition.
                        Renewal::Unreachable if r.renewed.elapsed() > ttl * 2 / 3 => {
                            warn!(partition = p, "cannot renew the partition lease; stopping it");
                            r.stop.cancel();
                        }
                        // Its margin again, not the round's cut (which may lie later).
                        Renewal::Unreachable => r.cut_at(r.renewed + ttl * 2 / 3),
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let wanted: BTreeSet<u32> = match cfg.mode {
            OwnershipMode::All => scope.partitions.iter().copied().collect(),
            OwnershipMode::Shared => {
                let live = registry.live();
                scope
                    .partitions
                    .iter()
                    .copied()
                    .filter(|p| {
                        rendezvous(live.iter().map(String::as_str), *p) == Some(me.as_str())
                    })
                    .collect()
            }
        };
        // Stop what we no longer want (or lost), then take what we want and can lease.
        let stale: Vec<(u32, Running)> = running
            .extract_if(|p, r| !wanted.contains(p) || r.stop.is_cancelled())
            .collect();
        if let Err(e) = stop_all(stale, &leases).await {
            failure.get_or_insert(e);
        }
        // Taken all at once too, and given up on a shutdown (a lease taken in NATS by then
        // expires by its TTL).
        let free: Vec<u32> = wanted
            .into_iter()
            .filter(|p| !running.contains_key(p))
            .collect();
        // With shared partitions each take is bounded by a third of the TTL, so a lease
        // read that hangs holds the next round of renewals up no longer (a take that timed
        // out but was written leaves our own id on the lease: the next take finds it).
        let taking = futures::future::join_all(free.iter().map(|p| async {
            if cfg.mode == OwnershipMode::Shared {
                tokio::time::timeout(ttl / 3, leases.acquire(*p))
                    .await
                    .ok()
                    .flatten()
            } else {
                leases.acquire(*p).await
            }
        }));
        let taken = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            taken = taking => taken,
        };
        for (p, taken) in free.into_iter().zip(taken) {
            if let Some(revision) = taken {
                info!(partition = p, "partition acquired");
                metrics::counter!("chatmesh_partition_acquired_total").increment(1);
                let stop = CancellationToken::new();
                let mut tasks = spawn(p, stop.clone());
                let renewed = tokio::time::Instant::now();
                let cut = (cfg.mode == OwnershipMode::Shared).then(|| {
                    let (cut, watched) = watch::channel(renewed + ttl * 2 / 3);
                    tasks.spawn(watchdog(p, stop.clone(), watched, ttl / 3));
                    cut
                });
                running.insert(
                    p,
                    Running {
                        stop,
                        tasks,
                        revision,
                        renewed,
                        cut,
                    },
                );
            }
        }
        metrics::gauge!("chatmesh_partitions_owned").set(running.len() as f64);
        if let Some(e) = failed(&mut running) {
            failure = Some(e);
            break;
        }
    }
    if let Err(e) = stop_all(running.drain().collect(), &leases).await {
        failure.get_or_insert(e);
    }
    if tokio::time::timeout(RELEASE_WAIT, registry.leave())
        .await
        .is_err()
    {
        warn!("cannot leave the worker registry (NATS unreachable); the entry expires by its TTL");
    }
    failure.map_or(Ok(()), Err)
}

/// Stops partitions all at once (one after another, with NATS unreachable, each waited for
/// its lease release in turn); the first error of their tasks, if any.
async fn stop_all(parts: Vec<(u32, Running)>, leases: &Leases) -> Result<(), WorkerError> {
    for (_, r) in &parts {
        r.stop.cancel();
    }
    let stops = parts.into_iter().map(|(p, r)| stop(p, r, leases));
    futures::future::join_all(stops)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(drop)
}

/// Stops a partition's tasks (each finishes what it is doing), then releases its lease.
async fn stop(p: u32, mut r: Running, leases: &Leases) -> Result<(), WorkerError> {
    r.stop.cancel();
    let mut first = None;
    while let Some(res) = r.tasks.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first.get_or_insert(e);
            }
            Err(e) => {
                first.get_or_insert(WorkerError::Task(e));
            }
        }
    }
    match tokio::time::timeout(RELEASE_WAIT, leases.release(p, r.revision)).await {
        Ok(true) => info!(partition = p, "partition released"),
        // Nobody else can hold it before it expires: the next owner waits out the TTL.
        Ok(false) | Err(_) => {
            warn!(
                partition = p,
                "partition stopped; its lease could not be released and expires by its TTL"
            );
        }
    }
    first.map_or(Ok(()), Err)
}

/// The error of a partition task that ended on its own, if any.
fn failed(running: &mut HashMap<u32, Running>) -> Option<WorkerError> {
    for r in running.values_mut() {
        while let Some(res) = r.tasks.try_join_next() {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Some(e),
                Err(e) => return Some(WorkerError::Task(e)),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(1);

    fn watched(
        at: tokio::time::Instant,
    ) -> (
        CancellationToken,
        watch::Sender<tokio::time::Instant>,
        tokio::task::JoinHandle<Result<(), WorkerError>>,
    ) {
        let stop = CancellationToken::new();
        let (cut, rx) = watch::channel(at);
        let task = tokio::spawn(watchdog(0, stop.clone(), rx, GRACE));
        (stop, cut, task)
    }

    /// The watchdog stops its partition when the moment passes unmoved, not while it keeps
    /// moving on.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_stops_at_an_unmoved_cut() {
        let start = tokio::time::Instant::now();
        let (stop, cut, task) = watched(start + Duration::from_secs(2));
        for i in 1..=5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cut.send_replace(start + Duration::from_secs(i + 2));
        }
        assert!(!stop.is_cancelled(), "renewed in time, kept");
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert!(stop.is_cancelled(), "stopped at its unmoved cut");
        task.await.unwrap().unwrap();
    }

    /// A watchdog that wakes late (a starved process) waits `grace` for the renewal round
    /// to move the cut before it stops anything; unmoved, it stops then.
    #[tokio::test(start_paused = true)]
    async fn a_late_watchdog_gives_the_round_its_grace() {
        let start = tokio::time::Instant::now();
        let (stop, cut, task) = watched(start + Duration::from_secs(2));
        // The runtime is stalled past the cut: the timer fires 3 s late.
        tokio::time::sleep(Duration::from_millis(10)).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert!(!stop.is_cancelled(), "late: the round gets its grace first");
        cut.send_replace(tokio::time::Instant::now() + Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(
            !stop.is_cancelled(),
            "the round renewed within the grace: kept"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        // Late again and never renewed: stopped after the grace.
        tokio::time::sleep(GRACE + Duration::from_millis(10)).await;
        assert!(stop.is_cancelled(), "no renewal within the grace: stopped");
        task.await.unwrap().unwrap();
    }

    /// Rendezvous hashing spreads partitions and moves only the leaver's on a departure.
    #[test]
    fn rendezvous_moves_only_what_it_must() {
        let three = ["w-a", "w-b", "w-c"];
        let owners: Vec<_> = (0..64).map(|p| rendezvous(three, p).unwrap()).collect();
        for w in three {
            let n = owners.iter().filter(|o| **o == w).count();
            assert!(n > 8, "{w} owns {n} of 64");
        }
        let two = ["w-a", "w-c"];
        for p in 0..64 {
            let before = owners[p as usize];
            let after = rendezvous(two, p).unwrap();
            if before != "w-b" {
                assert_eq!(before, after, "partition {p} moved without need");
            }
        }
        assert_eq!(rendezvous(std::iter::empty::<&str>(), 3), None);
    }
}
