//! One run from start to verdict: setup (accounts, rooms), the plan, the goose attack with
//! its controller, then the summary, reports, baseline deltas and threshold checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt as _, TryStreamExt as _};
use serde_json::json;

use crate::cli::{Cli, Protocol, Scenario};
use crate::engine::Engine;
use crate::plan::Plan;
use crate::report;
use crate::setup::Api;
use crate::summary::{TargetCpu, TargetMemory};

/// Runs the scenario; returns whether every threshold held.
pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    let common = cli.common.clone();
    let thresholds = common
        .thresholds
        .iter()
        .map(|t| crate::threshold::Threshold::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let regressions = common
        .max_regressions
        .iter()
        .map(|r| crate::regression::MaxRegression::parse(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !regressions.is_empty() && common.baseline.is_none() {
        bail!("--max-regression needs --baseline FILE");
    }
    let nats = common.protocol == Protocol::NatsWs;
    if nats && !matches!(cli.scenario, Scenario::Fanout(_) | Scenario::Connect(_)) {
        bail!("--protocol nats-ws runs the fanout and connect scenarios only");
    }
    if common.reconnect && (nats || !matches!(cli.scenario, Scenario::Fanout(_) | Scenario::Dm(_)))
    {
        bail!("--reconnect works with the chatmesh protocol's fanout and dm scenarios");
    }
    let share = common.share().map_err(anyhow::Error::msg)?;
    let run_id = common
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    // Subscribed before anything else, so no barrier or result message is missed.
    let coord = match &common.coordinator {
        Some(url) if share.generators > 1 => {
            let key = common.coordinator_nkey.as_deref();
            Some(crate::coord::Coordinator::connect(url, key, &run_id, share).await?)
        }
        _ => None,
    };
    let api = Api::new(&common.target)?;
    let setup_started = Instant::now();
    let secs = common.duration.as_secs_f64();
    let (scenario, params, accounts_needed) = describe(&cli.scenario);
    // Several generators: each writes its own reports under `generator-<i>/`, the leader
    // the merged one in `--out` itself.
    let out = if share.generators > 1 {
        common.out.join(format!("generator-{}", share.index))
    } else {
        common.out.clone()
    };
    let (accounts, login_time) = if nats {
        (vec![("nats".to_owned(), String::new())], Duration::ZERO)
    } else {
        crate::tokens::accounts(
            &api,
            &common.token_dir,
            &common.target,
            &common.user_prefix,
            &common.password,
            accounts_needed,
            common.setup_concurrency,
        )
        .await
        .context("setting up accounts")?
    };
    eprintln!(
        "setup: {} accounts in {:.1} s (0 = all from the token cache)",
        accounts.len(),
        login_time.as_secs_f64()
    );
    let home = common.room_home.as_deref();
    let plan = match &cli.scenario {
        Scenario::Fanout(a) => {
            let names = crate::setup::rooms(&api, &accounts, &run_id, a.rooms, nats, home).await?;
            Plan::fanout(
                names,
                a.members,
                a.publishers_per_room,
                a.rate,
                secs,
                accounts.len(),
                a.body_bytes,
            )
        }
        Scenario::Connect(a) => {
            let names =
                crate::setup::rooms(&api, &accounts, &run_id, a.rooms.max(1), nats, home).await?;
            let per_room = a.connections.div_ceil(names.len());
            let mut plan = Plan::fanout(names, per_room, 0, 0.0, secs, accounts.len(), 32);
            plan.conns.truncate(a.connections);
            for r in &mut plan.rooms {
                r.members = 0;
            }
            plan.ramp_rate = a.ramp_rate;
            plan
        }
        Scenario::Dm(a) => {
            let names = dms(&api, &accounts, a.pairs).await?;
            Plan::fanout(names, 2, 1, a.rate, secs, accounts.len(), a.body_bytes)
        }
        Scenario::History(a) => crate::history::setup(&api, &common, &accounts, &run_id, a).await?,
        Scenario::Mixed(a) => crate::mixed::setup(&api, &common, &accounts, &run_id, a).await?,
        Scenario::Files(a) => {
            let names = crate::setup::rooms(&api, &accounts, &run_id, a.rooms, false, home).await?;
            Plan::fanout(
                names,
                a.members,
                1,
                a.rate,
                secs,
                accounts.len(),
                a.body_bytes,
            )
        }
    };
    let mut plan = plan;
    crate::coord::take_share(&mut plan, share)?;
    // `files`: the members of each room, by token (one generator, the leader, uploads).
    let file_members = match &cli.scenario {
        Scenario::Files(a) if share.is_leader() => {
            let mut members: crate::files::Members = vec![Vec::new(); plan.rooms.len()];
            for c in &plan.conns {
                if let (Some(m), Some(acc)) = (members.get_mut(c.room), accounts.get(c.account)) {
                    if !m.contains(&acc.1) {
                        m.push(acc.1.clone());
                    }
                }
            }
            let rooms: Vec<String> = plan.rooms.iter().map(|r| r.name.clone()).collect();
            Some((rooms, members, a.uploads_per_second, a.file_bytes))
        }
        _ => None,
    };
    let setup_s = setup_started.elapsed().as_secs_f64();
    let engine = Engine::new(common.clone(), run_id.clone(), plan, accounts)?;
    let before = if nats { None } else { scrape(&api).await };
    let after = Arc::new(std::sync::Mutex::new(None));
    let cpu = Arc::new(std::sync::Mutex::new(None));
    let hold = {
        let (api_m, after) = (api.clone(), after.clone());
        let memory = async move {
            // Let the target's allocator settle before reading its memory.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let m = scrape(&api_m).await;
            if let Ok(mut slot) = after.lock() {
                *slot = m;
            }
        };
        // The target's CPU per send needs every send of the window: one generator only.
        let sampled = !nats && coord.is_none() && engine.plan.rate > 0.0;
        let cpu = sampled.then(|| cpu_window(engine.clone(), api.clone(), cpu.clone()));
        async move {
            match cpu {
                Some(cpu) => drop(tokio::join!(memory, cpu)),
                None => memory.await,
            }
        }
    };
    std::fs::create_dir_all(&out)?;
    let goose_reports = vec![out.join("goose-report.html").display().to_string()];
    let cpu_at_start = report::own_cpu_s();
    let controller = tokio::spawn(crate::control::control(engine.clone(), hold, coord));
    let file_traffic = file_members.map(|(rooms, members, rate, bytes)| {
        tokio::spawn(crate::files::traffic(
            engine.clone(),
            api.clone(),
            rooms,
            members,
            rate,
            bytes,
        ))
    });
    // `mixed`: searches beside the chat (one generator, the leader, searches).
    let search_rate = engine.plan.mix.searches_per_s;
    let searches = (search_rate > 0.0 && share.is_leader()).then(|| {
        let rooms = crate::search::searchable(&engine);
        let scheduled = if rooms.is_empty() {
            0
        } else {
            crate::search::scheduled(&engine, search_rate)
        };
        let task = tokio::spawn(crate::search::traffic(
            engine.clone(),
            api.clone(),
            rooms,
            search_rate,
        ));
        (task, scheduled)
    });
    crate::attack::run(engine.clone(), goose_reports).await?;
    let (phases, coord) = controller.await?;
    let files = match file_traffic {
        Some(task) => Some(task.await?),
        None => None,
    };
    let searches_scheduled = match searches {
        Some((task, scheduled)) => {
            task.await?;
            scheduled
        }
        None => 0,
    };
    let phases = phases?;
    let memory = match (before, after.lock().ok().and_then(|m| *m)) {
        (Some(b), Some(a)) => Some(TargetMemory {
            rss_before: b.0,
            rss_after: a.0,
            sessions_before: b.1,
            sessions_after: a.1,
            bytes_per_connection: (a.0 - b.0) / (a.1 - b.1).max(1.0),
        }),
        _ => None,
    };
    let target_cpu = cpu.lock().ok().and_then(|c| c.clone());
    let summary = report::summarize(
        &engine,
        scenario,
        params,
        setup_s,
        phases,
        report::TargetReadings {
            memory,
            cpu: target_cpu,
            files,
            searches_scheduled,
        },
        cpu_at_start,
    );
    let Some(mut coord) = coord else {
        let baseline = common.baseline.as_deref();
        return report::write(&summary, &out, baseline, &thresholds, &regressions);
    };
    // Coordinated: this generator's own report, then the leader merges every part.
    let own = report::write(&summary, &out, None, &[], &[])?;
    let part = crate::coord::Part::new(share.index, summary, &lock(&engine.hists)?)?;
    let deadline = common.grace + RESULTS_DEADLINE;
    if !share.is_leader() {
        coord.send_part(&part, deadline).await?;
        return Ok(own);
    }
    let mut parts = vec![part];
    parts.extend(coord.collect_parts(deadline).await?);
    let merged = crate::coord::merge(&parts)?;
    eprintln!("merged report of {} generators:", parts.len());
    let baseline = common.baseline.as_deref();
    report::write(&merged, &common.out, baseline, &thresholds, &regressions)
}

/// How long after its own end the leader waits for the followers' results (on top of
/// `--grace`: they started together, so they end within their own grace of each other).
const RESULTS_DEADLINE: Duration = Duration::from_secs(120);

fn lock<T: Clone>(m: &std::sync::Mutex<T>) -> anyhow::Result<T> {
    m.lock()
        .map(|g| g.clone())
        .map_err(|_| anyhow::anyhow!("a recorder panicked"))
}

fn describe(s: &Scenario) -> (&'static str, serde_json::Value, usize) {
    match s {
        Scenario::Fanout(a) => {
            let conns = a.rooms * a.members;
            let accounts = if a.accounts == 0 {
                conns
            } else {
                a.accounts.min(conns)
            };
            let p = json!({"rooms": a.rooms, "members": a.members, "rate": a.rate,
                "publishers_per_room": a.publishers_per_room, "body_bytes": a.body_bytes, "accounts": accounts});
            ("fanout", p, accounts.max(1))
        }
        Scenario::Connect(a) => {
            let p = json!({"connections": a.connections, "rooms": a.rooms,
                "accounts": a.accounts, "ramp_rate": a.ramp_rate});
            ("connect", p, a.accounts.clamp(1, a.connections.max(1)))
        }
        Scenario::Dm(a) => {
            let p = json!({"pairs": a.pairs, "rate": a.rate, "body_bytes": a.body_bytes});
            ("dm", p, a.pairs * 2)
        }
        Scenario::History(a) => {
            let accounts = if a.accounts == 0 {
                a.readers
            } else {
                a.accounts.min(a.readers)
            };
            let p = json!({"rooms": a.rooms, "readers": a.readers,
                "messages_per_room": a.messages_per_room, "page": a.page, "rate": a.rate,
                "body_bytes": a.body_bytes, "accounts": accounts});
            ("history", p, accounts.max(1))
        }
        Scenario::Mixed(a) => {
            let accounts = if a.accounts == 0 {
                a.users
            } else {
                a.accounts.min(a.users)
            };
            let p = json!({"users": a.users, "rooms": a.rooms,
                "chatters_fraction": a.chatters_fraction,
                "scrollers_fraction": a.scrollers_fraction, "rate": a.rate,
                "history_rate": a.history_rate, "messages_per_room": a.messages_per_room,
                "edits_fraction": a.edits_fraction, "reactions_fraction": a.reactions_fraction,
                "search_rate": a.search_rate,
                "page": a.page, "body_bytes": a.body_bytes, "accounts": accounts});
            ("mixed", p, accounts.max(1))
        }
        Scenario::Files(a) => {
            let conns = a.rooms * a.members;
            let p = json!({"rooms": a.rooms, "members": a.members, "rate": a.rate,
                "body_bytes": a.body_bytes, "uploads_per_second": a.uploads_per_second,
                "file_bytes": a.file_bytes, "accounts": conns});
            ("files", p, conns.max(1))
        }
    }
}

/// The DM room of accounts `2i` and `2i+1`, for each pair.
async fn dms(
    api: &Api,
    accounts: &[(String, String)],
    pairs: usize,
) -> anyhow::Result<Vec<String>> {
    stream::iter(0..pairs)
        .map(|i| async move { api.dm(&accounts[2 * i].1, &accounts[2 * i + 1].0).await })
        .buffered(16)
        .try_collect()
        .await
}

/// The target's CPU from two scrapes of its `/metrics`: at the end of the warm-up and half a
/// second before the measured phase ends (nothing if the target does not export it).
async fn cpu_window(engine: Arc<Engine>, api: Api, slot: Arc<std::sync::Mutex<Option<TargetCpu>>>) {
    let t0 = engine.started().await;
    let common = &engine.common;
    let from = t0 + common.warmup.as_micros() as u64;
    let to = (t0 + common.duration.as_micros() as u64).saturating_sub(500_000);
    if to < from + 1_000_000 {
        return;
    }
    tokio::time::sleep_until(engine.instant_of(from)).await;
    let Some(c0) = scrape_cpu(&api).await else {
        return;
    };
    let started = crate::clock::now_us();
    tokio::time::sleep_until(engine.instant_of(to)).await;
    let Some(c1) = scrape_cpu(&api).await else {
        return;
    };
    let window_s = crate::clock::now_us().saturating_sub(started) as f64 / 1e6;
    let sends = engine.plan.rate * window_s;
    let cpu_s = (c1 - c0).max(0.0);
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(TargetCpu {
            window_s,
            cpu_s,
            sends,
            us_per_send: cpu_s / sends.max(1.0) * 1e6,
        });
    }
}

/// CPU seconds of the target: its process and every child it exports.
async fn scrape_cpu(api: &Api) -> Option<f64> {
    let text = api.metrics().await.ok()?;
    let own = crate::setup::prom_value(&text, "chatmesh_process_cpu_seconds")?;
    Some(own + crate::setup::prom_sum(&text, "chatmesh_child_cpu_seconds"))
}

/// `(resident bytes, sessions)` from the target's /metrics.
async fn scrape(api: &Api) -> Option<(f64, f64)> {
    let text = api.metrics().await.ok()?;
    let rss = crate::setup::prom_value(&text, "chatmesh_process_resident_memory_bytes")?;
    let sessions = crate::setup::prom_value(&text, "chatmesh_sessions").unwrap_or(0.0);
    Some((rss, sessions))
}
