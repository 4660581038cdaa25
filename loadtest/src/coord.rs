//! Several generator processes, on one machine or several, running one load test.
//!
//! Every generator is started with the same `--run-id`, `--generators N` and scenario
//! arguments, its own `--generator I` (0 = the leader) and the same `--coordinator` NATS URL.
//! They build the same plan; generator `I` drives the rooms `r` with `r % N == I` (all of a
//! room's members and publishers, so loss and duplicates are still checked exactly in one
//! process). Over core NATS, under `chatmesh.loadtest.<run>.`:
//!
//! 1. a start barrier: once its connections are up, a follower repeats `ready` every second
//!    until the leader, having heard every follower, answers with the common start time `t0`
//!    (unix µs; generators on several machines need synchronised clocks, as any distributed
//!    latency measurement does);
//! 2. merged results: after its run a follower sends its [`Part`] (its summary plus its
//!    HdrHistograms, serialised) by request-reply, retried until the leader confirms; the
//!    leader merges every part into one summary, so percentiles are exact over all samples.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use futures::StreamExt as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::clock::now_us;
use crate::stats::{Hists, Kind};
use crate::summary::{GeneratorPart, Latency, Summary, TargetMemory};

/// How often a follower repeats `ready` and a result it has not had confirmed.
const RETRY: Duration = Duration::from_secs(1);

/// Which share of the run this process drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub generators: usize,
    pub index: usize,
}

impl Share {
    pub const ALL: Share = Share {
        generators: 1,
        index: 0,
    };

    /// Whether room `r` is driven here.
    pub fn owns_room(self, r: usize) -> bool {
        r % self.generators.max(1) == self.index
    }

    pub fn is_leader(self) -> bool {
        self.index == 0
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    generator: usize,
    held: u64,
    failed: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Start {
    t0_us: u64,
}

/// What a generator reports to the leader at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub generator: usize,
    pub summary: Summary,
    /// Operation name → V2-deflate serialised histogram, base64.
    pub hists: BTreeMap<String, String>,
}

impl Part {
    pub fn new(generator: usize, summary: Summary, hists: &Hists) -> anyhow::Result<Self> {
        let mut out = BTreeMap::new();
        for kind in Kind::ALL {
            let h = hists.get(kind);
            if h.is_empty() {
                continue;
            }
            let mut buf = Vec::new();
            V2DeflateSerializer::new()
                .serialize(h, &mut buf)
                .map_err(|e| anyhow::anyhow!("serialising the {} histogram: {e:?}", kind.name()))?;
            out.insert(
                kind.name().to_owned(),
                base64::engine::general_purpose::STANDARD.encode(buf),
            );
        }
        Ok(Self {
            generator,
            summary,
            hists: out,
        })
    }

    fn histograms(&self) -> anyhow::Result<BTreeMap<String, Histogram<u64>>> {
        let mut out = BTreeMap::new();
        for (name, b64) in &self.hists {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("histogram is not base64")?;
            let h: Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .map_err(|e| anyhow::anyhow!("histogram {name}: {e:?}"))?;
            out.insert(name.clone(), h);
        }
        Ok(out)
    }
}

/// One generator's link to the others.
pub struct Coordinator {
    client: async_nats::Client,
    share: Share,
    prefix: String,
    /// Leader: `ready` and `result` subscriptions, taken when used.
    ready: Option<async_nats::Subscriber>,
    results: Option<async_nats::Subscriber>,
    /// Follower: the `start` subscription.
    start: Option<async_nats::Subscriber>,
    /// Leader: answers late `ready`s with the start time until the run ends.
    echo: Option<JoinHandle<()>>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(echo) = self.echo.take() {
            echo.abort();
        }
    }
}

impl Coordinator {
    /// Connects and subscribes before anything else happens, so no message is missed.
    /// `nkey` is the seed file of the bus role `loadtest` (none: an open nats-server).
    pub async fn connect(
        url: &str,
        nkey: Option<&std::path::Path>,
        run_id: &str,
        share: Share,
    ) -> anyhow::Result<Self> {
        use chatmesh_protocol::bus::{Role, LOADTEST_PREFIX};
        let mut opts = async_nats::ConnectOptions::new();
        if let Some(path) = nkey {
            let seed = std::fs::read_to_string(path)
                .with_context(|| format!("reading the coordinator key {}", path.display()))?;
            opts = opts.nkey(seed.trim().to_owned());
        }
        let client = opts
            .custom_inbox_prefix(Role::Loadtest.inbox_prefix())
            .connect(url)
            .await
            .with_context(|| format!("connecting to the coordinator {url}"))?;
        let prefix = format!("{LOADTEST_PREFIX}.{run_id}");
        let (mut ready, mut results, mut start) = (None, None, None);
        if share.is_leader() {
            ready = Some(client.subscribe(format!("{prefix}.ready")).await?);
            results = Some(client.subscribe(format!("{prefix}.result")).await?);
        } else {
            start = Some(client.subscribe(format!("{prefix}.start")).await?);
        }
        client.flush().await?;
        eprintln!(
            "coordinator {url}: generator {} of {} ({})",
            share.index,
            share.generators,
            if share.is_leader() {
                "leader"
            } else {
                "follower"
            }
        );
        Ok(Self {
            client,
            share,
            prefix,
            ready,
            results,
            start,
            echo: None,
        })
    }

    /// The start barrier: returns the common start time (unix µs), `lead` after the last
    /// generator got ready. Fails after `deadline`.
    pub async fn barrier(
        &mut self,
        held: u64,
        failed: u64,
        lead: Duration,
        deadline: Duration,
    ) -> anyhow::Result<u64> {
        let until = tokio::time::Instant::now() + deadline;
        if self.share.is_leader() {
            self.lead_barrier(held, failed, lead, until).await
        } else {
            self.follow_barrier(held, failed, until).await
        }
    }

    async fn lead_barrier(
        &mut self,
        held: u64,
        failed: u64,
        lead: Duration,
        until: tokio::time::Instant,
    ) -> anyhow::Result<u64> {
        let mut sub = self.ready.take().context("barrier already passed")?;
        let mut seen = BTreeSet::new();
        let (mut all_held, mut all_failed) = (held, failed);
        while seen.len() + 1 < self.share.generators {
            let msg = tokio::time::timeout_at(until, sub.next())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "start barrier: {} of {} followers ready before the deadline",
                        seen.len(),
                        self.share.generators - 1
                    )
                })?
                .context("coordinator connection closed")?;
            let Ok(r) = serde_json::from_slice::<Ready>(&msg.payload) else {
                continue;
            };
            if r.generator > 0 && r.generator < self.share.generators && seen.insert(r.generator) {
                all_held += r.held;
                all_failed += r.failed;
                eprintln!(
                    "[barrier] generator {} ready ({} held, {} failed); {}/{} ready",
                    r.generator,
                    r.held,
                    r.failed,
                    seen.len() + 1,
                    self.share.generators
                );
            }
        }
        let t0_us = now_us() + lead.as_micros() as u64;
        let start = serde_json::to_vec(&Start { t0_us })?;
        let subject = format!("{}.start", self.prefix);
        self.client
            .publish(subject.clone(), start.clone().into())
            .await?;
        self.client.flush().await?;
        eprintln!(
            "[barrier] all {} generators ready: {all_held} connections held, {all_failed} failed; start in {} ms",
            self.share.generators,
            lead.as_millis()
        );
        // A follower that missed the start repeats `ready`: answer it again.
        let client = self.client.clone();
        self.echo = Some(tokio::spawn(async move {
            while sub.next().await.is_some() {
                let _ = client.publish(subject.clone(), start.clone().into()).await;
            }
        }));
        Ok(t0_us)
    }

    async fn follow_barrier(
        &mut self,
        held: u64,
        failed: u64,
        until: tokio::time::Instant,
    ) -> anyhow::Result<u64> {
        let mut sub = self.start.take().context("barrier already passed")?;
        let ready = serde_json::to_vec(&Ready {
            generator: self.share.index,
            held,
            failed,
        })?;
        loop {
            if tokio::time::Instant::now() >= until {
                bail!("start barrier: no start from the leader (generator 0) before the deadline");
            }
            self.client
                .publish(format!("{}.ready", self.prefix), ready.clone().into())
                .await?;
            self.client.flush().await?;
            let wait = (tokio::time::Instant::now() + RETRY).min(until);
            match tokio::time::timeout_at(wait, sub.next()).await {
                Ok(Some(msg)) => {
                    if let Ok(s) = serde_json::from_slice::<Start>(&msg.payload) {
                        eprintln!("[barrier] start from the leader");
                        return Ok(s.t0_us);
                    }
                }
                Ok(None) => bail!("coordinator connection closed"),
                Err(_) => {}
            }
        }
    }

    /// Follower: hands its part to the leader, retried until confirmed or `deadline`.
    pub async fn send_part(&self, part: &Part, deadline: Duration) -> anyhow::Result<()> {
        let body = serde_json::to_vec(part)?;
        let until = tokio::time::Instant::now() + deadline;
        let subject = format!("{}.result", self.prefix);
        loop {
            let ask = self.client.request(subject.clone(), body.clone().into());
            match tokio::time::timeout(RETRY * 5, ask).await {
                Ok(Ok(_)) => {
                    eprintln!("results handed to the leader (generator 0)");
                    return Ok(());
                }
                Ok(Err(e)) if tokio::time::Instant::now() >= until => {
                    bail!("the leader did not take the results: {e}")
                }
                Err(_) if tokio::time::Instant::now() >= until => {
                    bail!("the leader did not take the results in time")
                }
                _ => tokio::time::sleep(RETRY).await,
            }
        }
    }

    /// Leader: every follower's part (deduplicated), or an error after `deadline`.
    pub async fn collect_parts(&mut self, deadline: Duration) -> anyhow::Result<Vec<Part>> {
        let mut sub = self.results.take().context("results already collected")?;
        let until = tokio::time::Instant::now() + deadline;
        let mut parts: BTreeMap<usize, Part> = BTreeMap::new();
        while parts.len() + 1 < self.share.generators {
            let msg = tokio::time::timeout_at(until, sub.next())
                .await
                .map_err(|_| {
                    let have: Vec<_> = parts.keys().collect();
                    anyhow::anyhow!("results: only followers {have:?} reported before the deadline")
                })?
                .context("coordinator connection closed")?;
            let part = match serde_json::from_slice::<Part>(&msg.payload) {
                Ok(p) if p.generator > 0 && p.generator < self.share.generators => p,
                _ => continue,
            };
            if let Some(reply) = msg.reply {
                let _ = self.client.publish(reply, "ok".into()).await;
            }
            if !parts.contains_key(&part.generator) {
                eprintln!(
                    "results of generator {} in ({}/{})",
                    part.generator,
                    parts.len() + 2,
                    self.share.generators
                );
                parts.insert(part.generator, part);
            }
        }
        self.client.flush().await?;
        Ok(parts.into_values().collect())
    }
}

/// Keeps this generator's rooms in `plan`: the others' schedules and members are not its
/// to count (their generators settle them). Fails when a generator would get no room.
pub fn take_share(plan: &mut crate::plan::Plan, share: Share) -> anyhow::Result<()> {
    if plan.rooms.len() < share.generators {
        bail!(
            "{} generators need at least as many rooms (this scenario has {}): a room's members \
             and publishers are always driven by one generator",
            share.generators,
            plan.rooms.len()
        );
    }
    for (r, room) in plan.rooms.iter_mut().enumerate() {
        if !share.owns_room(r) {
            room.messages = 0;
            room.members = 0;
        }
    }
    Ok(())
}

/// One summary over every generator's part: counts and rates add up, latencies come from
/// the merged histograms, target memory adds up over distinct targets.
pub fn merge(parts: &[Part]) -> anyhow::Result<Summary> {
    let first = parts.first().context("no parts to merge")?;
    let mut s = first.summary.clone();
    s.generators = parts.len() as u64;
    s.generator_parts = parts
        .iter()
        .map(|p| GeneratorPart {
            generator: p.generator as u64,
            target: p.summary.target.clone(),
            connections_held: p.summary.connections.held,
            connections_failed: p.summary.connections.failed,
            delivered: p.summary.counts.delivered,
            target_memory: p.summary.target_memory.clone(),
            generator_rss_bytes: p.summary.generator_rss_bytes,
            generator_cpu_s: p.summary.generator_cpu_s,
        })
        .collect();
    let mut hists: BTreeMap<String, Histogram<u64>> = first.histograms()?;
    for p in &parts[1..] {
        let o = &p.summary;
        s.counts = add_fields(&s.counts, &o.counts)?;
        s.connections = add_fields(&s.connections, &o.connections)?;
        for (k, v) in &o.errors {
            *s.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.rates {
            *s.rates.entry(k.clone()).or_default() += v;
        }
        s.setup_s = s.setup_s.max(o.setup_s);
        s.connect_s = s.connect_s.max(o.connect_s);
        s.measured_s = s.measured_s.max(o.measured_s);
        s.drain_s = s.drain_s.max(o.drain_s);
        s.generator_rss_bytes += o.generator_rss_bytes;
        s.generator_cpu_s += o.generator_cpu_s;
        for (name, h) in p.histograms()? {
            match hists.get_mut(&name) {
                Some(all) => all
                    .add(&h)
                    .map_err(|e| anyhow::anyhow!("merging {name}: {e:?}"))?,
                None => {
                    hists.insert(name, h);
                }
            }
        }
    }
    s.latency_ms = hists
        .iter()
        .map(|(name, h)| (name.clone(), Latency::of(h)))
        .collect();
    let targets: BTreeSet<&str> = parts.iter().map(|p| p.summary.target.as_str()).collect();
    s.target = targets.into_iter().collect::<Vec<_>>().join(",");
    s.target_memory = merged_memory(parts);
    Ok(s)
}

/// Field-by-field sum of two records of counts (every field, including ones added later).
fn add_fields<T: Serialize + serde::de::DeserializeOwned>(a: &T, b: &T) -> anyhow::Result<T> {
    let (serde_json::Value::Object(mut sum), serde_json::Value::Object(other)) =
        (serde_json::to_value(a)?, serde_json::to_value(b)?)
    else {
        bail!("counts are not records");
    };
    for (k, v) in other {
        let total = match (sum.get(&k).and_then(|x| x.as_u64()), v.as_u64()) {
            (Some(x), Some(y)) => serde_json::Value::from(x + y),
            _ => match (sum.get(&k).and_then(|x| x.as_f64()), v.as_f64()) {
                (Some(x), Some(y)) => serde_json::Value::from(x + y),
                _ => v,
            },
        };
        sum.insert(k, total);
    }
    Ok(serde_json::from_value(serde_json::Value::Object(sum))?)
}

/// Target memory over distinct targets (two generators on one gateway count it once).
fn merged_memory(parts: &[Part]) -> Option<TargetMemory> {
    let mut by_target: BTreeMap<&str, &TargetMemory> = BTreeMap::new();
    for p in parts {
        if let Some(m) = &p.summary.target_memory {
            by_target.entry(p.summary.target.as_str()).or_insert(m);
        }
    }
    if by_target.is_empty() {
        return None;
    }
    let mut m = TargetMemory::default();
    for t in by_target.values() {
        m.rss_before += t.rss_before;
        m.rss_after += t.rss_after;
        m.sessions_before += t.sessions_before;
        m.sessions_after += t.sessions_after;
    }
    m.bytes_per_connection =
        (m.rss_after - m.rss_before) / (m.sessions_after - m.sessions_before).max(1.0);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Sample;

    fn part(generator: usize, target: &str, delivered: &[u64], mem: (f64, f64)) -> Part {
        let mut hists = Hists::new().unwrap();
        for &us in delivered {
            hists.record(Sample {
                kind: Kind::Deliver,
                us,
            });
        }
        let mut summary = Summary {
            target: target.into(),
            generators: 1,
            ..Summary::default()
        };
        summary.counts.delivered = delivered.len() as u64;
        summary.counts.loss = generator as u64;
        summary.counts.history_pages = 2;
        summary.connections.held = 10;
        summary.rates.insert("delivered_per_s".into(), 100.0);
        summary.errors.insert("rate_limited".into(), 1);
        summary.target_memory = Some(TargetMemory {
            rss_before: mem.0,
            rss_after: mem.1,
            sessions_before: 0.0,
            sessions_after: 10.0,
            bytes_per_connection: (mem.1 - mem.0) / 10.0,
        });
        Part::new(generator, summary, &hists).unwrap()
    }

    #[test]
    fn parts_merge_exactly() {
        // Generator 0 saw fast deliveries, 1 and 2 slow ones: the merged p99 must come from
        // the slow ones, which no per-part percentile average would give.
        let fast: Vec<u64> = (0..98).map(|_| 1_000).collect();
        let parts = [
            part(0, "http://a", &fast, (100.0, 1100.0)),
            part(1, "http://b", &[500_000], (0.0, 2000.0)),
            part(2, "http://b", &[400_000], (0.0, 9999.0)),
        ];
        // Through JSON, as over NATS.
        let parts: Vec<Part> = parts
            .iter()
            .map(|p| serde_json::from_slice(&serde_json::to_vec(p).unwrap()).unwrap())
            .collect();
        let s = merge(&parts).unwrap();
        assert_eq!(s.generators, 3);
        assert_eq!(s.counts.delivered, 100);
        assert_eq!(s.counts.loss, 3);
        assert_eq!(s.counts.history_pages, 6);
        assert_eq!(s.connections.held, 30);
        assert_eq!(s.errors["rate_limited"], 3);
        assert_eq!(s.rates["delivered_per_s"], 300.0);
        let d = &s.latency_ms["deliver"];
        assert_eq!(d.count, 100);
        assert!((d.p50 - 1.0).abs() < 0.01, "p50 {}", d.p50);
        assert!((d.max - 500.0).abs() < 1.0, "max {}", d.max);
        assert!(d.p99 >= 399.0, "p99 {}", d.p99);
        // Targets a and b once each: (1000 + 2000) bytes over 20 sessions.
        let m = s.target_memory.unwrap();
        assert_eq!(m.sessions_after, 20.0);
        assert_eq!(m.bytes_per_connection, 150.0);
        assert_eq!(s.target, "http://a,http://b");
        assert_eq!(s.generator_parts.len(), 3);
    }

    #[test]
    fn rooms_are_shared_out() {
        let shares: Vec<Share> = (0..3)
            .map(|index| Share {
                generators: 3,
                index,
            })
            .collect();
        for r in 0..10 {
            assert_eq!(shares.iter().filter(|s| s.owns_room(r)).count(), 1);
        }
        assert!(Share::ALL.owns_room(7));
    }
}
