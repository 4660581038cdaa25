//! Fault tests (issue 6): a mesh of separate processes launched by `ops/mesh` (3 NATS nodes
//! with an R3 stream, 2 gateways behind HAProxy, one worker, or an active worker and a hot
//! standby on one fjall store), steady traffic through HAProxy checked message by message,
//! and one part killed with SIGKILL while it flows; and two regions with one cut off
//! (`regions.rs`), and the primary cut off with regions running workers of their own
//! (`regional.rs`).
//!
//! They need HAProxy (the launcher installs it) and take a minute each, so `ops/test` leaves
//! this binary out (a nextest filter) and CI runs it as its own step:
//!
//! ```sh
//! cargo nextest run -p chatmesh --test faults --no-capture -j 1
//! ```
//!
//! Each prints its measurements (reconnection time, time without acks) on stdout.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod launcher;
mod regional;
mod regions;
mod resume;
mod run;
mod traffic;
mod ws;

use std::time::Duration;

use anyhow::Result;
use harness::Harness;
use launcher::MeshProc;
use run::Run;

/// Senders, receivers, messages per second per sender.
const SENDERS: usize = 4;
const RECEIVERS: usize = 2;
const RATE: u32 = 10;

/// How long the load harness sends in each test: it starts before the fault and goes on
/// well after it.
const LOAD_FOR: Duration = Duration::from_secs(20);

/// Starts the load harness (beside the test's own client).
fn load_up(mesh: &MeshProc, run_id: &str) -> Result<Harness> {
    Harness::start(&mesh.entry(), run_id, LOAD_FOR)
}

/// Waits until the harness and the test's client are all connected, then a little more so
/// the harness is sending on its schedule when the fault comes.
async fn both_connected(net: &str, clients: usize) -> Result<()> {
    let n = Harness::connections() + clients as u64;
    harness::wait_sessions(net, n, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// SIGKILL of the busiest gateway: its clients reconnect through HAProxy to the other one and
/// resume; zero acked messages lost, zero duplicated, every `prev` chain unbroken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigkill_loses_and_duplicates_nothing() -> Result<()> {
    gateway_stop("127.61.1", "KILL").await
}

/// SIGTERM of the busiest gateway (the zero-downtime upgrade step): it drains, its sessions
/// get 1001 and move to the other gateway; nothing lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_drain_moves_clients_without_loss() -> Result<()> {
    gateway_stop("127.61.5", "TERM").await
}

async fn gateway_stop(net: &str, signal: &str) -> Result<()> {
    let mesh = MeshProc::up(net, 2, 1).await?;
    let room = format!("gw{}", signal.to_lowercase());
    let load = load_up(&mesh, &format!("h{room}"))?;
    let run = Run::start(&mesh.entry(), &room, SENDERS, RECEIVERS, RATE).await?;
    run.wait_acked(60, Duration::from_secs(30)).await?;
    both_connected(net, SENDERS + RECEIVERS).await?;
    let (victim, sessions) = mesh.busiest_gateway().await?;
    mesh.signal(&victim, signal).await?;
    let killed_at = run.started.elapsed();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let v = run.finish().await?;
    println!(
        "gateway SIG{signal} ({victim}, {sessions} sessions) at {killed_at:.1?}: {} sent, {} acked, \
         {} lost, {} duplicated, {} reconnects, longest reconnection {:.2?}, longest time without acks {:.2?}",
        v.sent, v.acked, v.lost, v.duplicated, v.reconnects, v.max_reconnect, v.max_ack_gap
    );
    v.assert_clean();
    assert!(
        v.reconnects > 0,
        "no client was on the killed gateway: {v:#?}"
    );
    load.finish().await?;
    Ok(())
}

/// SIGKILL of the NATS node leading stream CHAT: sends are retried with the same id through
/// the election; zero acked messages lost; the time without any ack is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_leader_sigkill_loses_no_acked_message() -> Result<()> {
    let mesh = MeshProc::up("127.61.2", 2, 1).await?;
    let load = load_up(&mesh, "hleader")?;
    let run = Run::start(&mesh.entry(), "leaderkill", SENDERS, RECEIVERS, RATE).await?;
    run.wait_acked(60, Duration::from_secs(30)).await?;
    both_connected("127.61.2", SENDERS + RECEIVERS).await?;
    let leader = mesh.stream_leader().await?;
    mesh.kill(&leader).await?;
    let killed_at = run.started.elapsed();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let v = run.finish().await?;
    println!(
        "stream leader SIGKILL ({leader}) at {killed_at:.1?}: {} acked, {} lost, {} duplicated, \
         longest time without acks {:.2?}, {} resends, errors {:?}",
        v.acked, v.lost, v.duplicated, v.max_ack_gap, v.resent, v.errors
    );
    v.assert_clean();
    load.finish().await?;
    mesh.start(&leader).await?;
    Ok(())
}

/// Stop the whole mesh (SIGTERM, in order) and start it again on the same data: the room's
/// history holds every acked message with an unbroken chain, and new sends continue it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_mesh_restart_keeps_history() -> Result<()> {
    let mesh = MeshProc::up("127.61.3", 2, 1).await?;
    let run = Run::start(&mesh.entry(), "restart", SENDERS, 1, RATE).await?;
    run.wait_acked(100, Duration::from_secs(30)).await?;
    let acked = run.acked_map();
    let token = run.tokens[0].1.clone();
    let v = run.finish().await?;
    v.assert_clean();
    let acked_all = acked;
    mesh.down().await?;
    let t = std::time::Instant::now();
    mesh.start_all().await?;
    println!("whole mesh restart: up again in {:.1?}", t.elapsed());

    let hist = history_until(&mesh.entry(), &token, "restart", v.last_seq).await?;
    let mut last = 0;
    for (seq, prev, _, _) in &hist {
        assert_eq!(*prev, last, "history chain broken at {seq}");
        last = *seq;
    }
    let missing = missing_from(&acked_all, &hist);
    // `acked_all` was taken before finish(); the count check covers the later acks.
    assert!(
        missing.is_empty(),
        "acked but missing from history: {missing:?}"
    );
    assert!(
        hist.len() >= v.acked,
        "history {} < acked {}",
        hist.len(),
        v.acked
    );

    let again = Run::start(&mesh.entry(), "restart2", 1, 1, RATE).await?;
    again.wait_acked(10, Duration::from_secs(30)).await?;
    again.finish().await?.assert_clean();
    println!(
        "whole mesh restart: history of {} messages intact, sends continue",
        hist.len()
    );
    Ok(())
}

/// The acked `(seq, user, id)`s that history does not hold with that seq.
fn missing_from<'a>(
    acked: &'a [(u64, String, String)],
    hist: &[(u64, u64, String, String)],
) -> Vec<&'a (u64, String, String)> {
    let by_seq: std::collections::HashMap<u64, (&str, &str)> = hist
        .iter()
        .map(|(s, _, f, i)| (*s, (f.as_str(), i.as_str())))
        .collect();
    acked
        .iter()
        .filter(|(s, u, i)| by_seq.get(s) != Some(&(u.as_str(), i.as_str())))
        .collect()
}

/// History as soon as the worker has stored up to `last_seq` (bounded wait).
async fn history_until(
    entry: &str,
    token: &str,
    room: &str,
    last_seq: u64,
) -> Result<Vec<(u64, u64, String, String)>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hist = run::history(entry, token, room).await;
        match hist {
            Ok(h) if h.last().map(|m| m.0) >= Some(last_seq) => return Ok(h),
            Ok(h) if std::time::Instant::now() > deadline => {
                anyhow::bail!("history ends at {:?}, want {last_seq}", h.last())
            }
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// SIGKILL of the only worker (embedded fjall store, no standby): live chat goes on; after
/// the restart on the same store (what a StatefulSet does) the writer resumes from its
/// checkpoint and history holds every acked message, none twice. With a standby see
/// `worker_sigkill_standby_takes_over`; two workers sharing partitions (`ownership.mode =
/// "shared"`) need a shared store (TiKV) and are not run here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkill_keeps_history_complete() -> Result<()> {
    let mesh = MeshProc::up("127.61.4", 2, 1).await?;
    let run = Run::start(&mesh.entry(), "workerkill", SENDERS, RECEIVERS, RATE).await?;
    run.wait_acked(60, Duration::from_secs(30)).await?;
    mesh.kill("worker-1").await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let acked_while_down = run.acked();
    mesh.start("worker-1").await?;
    let restarted = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let token = run.tokens[0].1.clone();
    let acked = run.acked_map();
    let v = run.finish().await?;
    v.assert_clean();
    let hist = history_until(&mesh.entry(), &token, "workerkill", v.last_seq).await?;
    let caught_up = restarted.elapsed();
    let mut seen = std::collections::HashSet::new();
    for (seq, ..) in &hist {
        assert!(seen.insert(*seq), "seq {seq} twice in history");
    }
    let missing: Vec<_> = acked.iter().filter(|m| !seen.contains(&m.0)).collect();
    println!(
        "worker SIGKILL: live chat went on ({acked_while_down} acked by then), {} acked in all, \
         history {} messages, {} missing, history complete {caught_up:.1?} after the restart",
        v.acked,
        hist.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acked but not in history: {missing:?}");
    assert!(
        hist.len() >= v.acked,
        "history {} < acked {}",
        hist.len(),
        v.acked
    );
    Ok(())
}

/// The only worker starved (SIGSTOP for twice the lease TTL, as an overloaded box can starve
/// it), then resumed (SIGCONT) under steady traffic: its leases expired meanwhile, and nobody
/// else holds them, so it keeps all of its partitions — none is stopped and taken again, live
/// delivery never stops, nothing acked is lost or duplicated, history is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_worker_keeps_its_partitions() -> Result<()> {
    let mesh = MeshProc::up("127.61.7", 2, 1).await?;
    let partitions = f64::from(chatmesh_protocol::MeshConfig::default().partitions);
    wait_gauges(&mesh, 1, Duration::from_secs(10), "active", |s, o| {
        s == 0.0 && o == partitions
    })
    .await?;
    let before = acquisitions(&mesh).await?;
    let run = Run::start(&mesh.entry(), "starved", SENDERS, RECEIVERS, RATE).await?;
    run.wait_acked(60, Duration::from_secs(30)).await?;
    let ttl = chatmesh_workers::ownership::OwnershipConfig::default().lease_ttl_secs;
    mesh.signal("worker-1", "STOP").await?;
    tokio::time::sleep(Duration::from_secs(2 * ttl)).await;
    let acked_while_stopped = run.acked();
    mesh.signal("worker-1", "CONT").await?;
    // Let the resumed worker renew (and retake) every lease, with traffic still flowing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let owned = mesh.worker_gauges(1).await?.1;
    let retaken = mesh
        .worker_metric(1, "chatmesh_partition_lease_retaken_total")
        .await?
        .unwrap_or(0.0);
    let after = acquisitions(&mesh).await?;
    let token = run.tokens[0].1.clone();
    let acked = run.acked_map();
    let v = run.finish().await?;
    v.assert_clean();
    let hist = history_until(&mesh.entry(), &token, "starved", v.last_seq).await?;
    let missing = missing_from(&acked, &hist);
    let log = mesh.log("worker-1");
    let dropped = log.matches("stopping it").count();
    println!(
        "worker SIGSTOP {}s + SIGCONT: {acked_while_stopped} acked by the resume, {} in all; \
         partitions owned after {owned:?}, leases retaken {retaken}, acquisitions {before} -> \
         {after}, partitions stopped {dropped}; history {} messages, {} missing",
        2 * ttl,
        v.acked,
        hist.len(),
        missing.len()
    );
    assert_eq!(owned, Some(partitions), "the worker lost partitions");
    assert_eq!(dropped, 0, "the worker stopped its own partitions:\n{log}");
    assert_eq!(after, before, "partitions were released and taken again");
    assert!(
        retaken > 0.0,
        "the leases never expired: the test starved nothing"
    );
    assert!(missing.is_empty(), "acked but not in history: {missing:?}");
    Ok(())
}

/// The only worker starved (SIGSTOP) while its one busy room gets far more messages than the
/// stream keeps per room (`stream_max_msgs_per_room`, 100 here): the stream refuses what it
/// cannot keep instead of dropping acked messages the worker has not read, so the room's
/// sends wait (or answer `unavailable` and are resent) while the worker is stopped; once it
/// runs again it trims what it stored of the room and the sends land. Nothing acked is lost:
/// history holds every acked message. (Before, the stream dropped the room's oldest
/// messages at its cap, read or not: acked messages were missing from history.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_outgrowing_the_stream_under_a_starved_worker_loses_nothing() -> Result<()> {
    const CAP: usize = 100;
    let cap = CAP.to_string();
    // Small pull batches: what a stopped worker was sent already (into its socket) is small.
    let env = [
        ("CHATMESH__MESH__STREAM_MAX_MSGS_PER_ROOM", cap.as_str()),
        ("CHATMESH__WORKER__BATCH_MAX_MESSAGES", "16"),
    ];
    let mesh = MeshProc::up_with("127.61.8", 1, 1, &env).await?;
    let run = Run::start(&mesh.entry(), "outgrow", SENDERS, RECEIVERS, RATE).await?;
    run.wait_acked(60, Duration::from_secs(30)).await?;
    let at_stop = run.acked();
    mesh.signal("worker-1", "STOP").await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let at_cont = run.acked();
    mesh.signal("worker-1", "CONT").await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let trims = mesh
        .worker_metric(1, r#"chatmesh_worker_room_trims_total{why="full"}"#)
        .await?
        .unwrap_or(0.0);
    let token = run.tokens[0].1.clone();
    let acked = run.acked_map();
    let v = run.finish().await?;
    v.assert_clean();
    let hist = history_until(&mesh.entry(), &token, "outgrow", v.last_seq).await?;
    let missing = missing_from(&acked, &hist);
    println!(
        "worker SIGSTOP 8 s with a room cap of {CAP}: {} acked while stopped ({} sent per second), \
         {} acked in all, {trims} trims, history {} messages, {} missing",
        at_cont - at_stop,
        SENDERS as u32 * RATE,
        v.acked,
        hist.len(),
        missing.len()
    );
    assert!(
        at_cont - at_stop < CAP,
        "the room took more than its cap while nothing stored it: the test exercised nothing"
    );
    assert!(
        v.acked > at_cont + 40,
        "sends did not land after the worker came back"
    );
    assert!(
        trims >= 1.0,
        "the worker never trimmed the full room when asked"
    );
    assert!(missing.is_empty(), "acked but not in history: {missing:?}");
    Ok(())
}

/// How many times worker 1 acquired a partition lease.
async fn acquisitions(mesh: &MeshProc) -> Result<f64> {
    Ok(mesh
        .worker_metric(1, "chatmesh_partition_acquired_total")
        .await?
        .unwrap_or(0.0))
}

/// How long the standby may take to run every partition after the active worker's SIGKILL
/// (issue 6: "partitions move within 10 s").
const TAKEOVER_LIMIT: Duration = Duration::from_secs(10);

/// Worker `i`'s gauges, `(standby, partitions owned)`, or `None` while it does not answer.
async fn gauges(mesh: &MeshProc, i: u32) -> Option<(f64, f64)> {
    match mesh.worker_gauges(i).await {
        Ok((standby, owned)) => Some((standby?, owned.unwrap_or(0.0))),
        Err(_) => None,
    }
}

/// Polls worker `i` until `want(standby, owned)` holds; the time it took.
async fn wait_gauges(
    mesh: &MeshProc,
    i: u32,
    within: Duration,
    what: &str,
    want: impl Fn(f64, f64) -> bool,
) -> Result<Duration> {
    let t = std::time::Instant::now();
    loop {
        let got = gauges(mesh, i).await;
        if got.is_some_and(|(s, o)| want(s, o)) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > within {
            anyhow::bail!("worker-{i} not {what} within {within:?}: (standby, owned) = {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An active worker and a hot standby on one fjall store (`ops/mesh up --workers 2`); SIGKILL
/// of the active one under steady traffic: the standby opens the store when the OS frees its
/// lock and runs every partition once the dead worker's leases expire, within 10 s, without
/// a restart. Zero acked messages lost or duplicated, history complete with an unbroken
/// chain, history answered again; the killed worker started again becomes the standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkill_standby_takes_over() -> Result<()> {
    let mesh = MeshProc::up("127.61.6", 2, 2).await?;
    let partitions = f64::from(chatmesh_protocol::MeshConfig::default().partitions);
    let active = |s: f64, o: f64| s == 0.0 && o == partitions;
    let standby = |s: f64, o: f64| s == 1.0 && o == 0.0;
    wait_gauges(&mesh, 1, Duration::from_secs(10), "active", active).await?;
    wait_gauges(&mesh, 2, Duration::from_secs(10), "standby", standby).await?;

    let room = "standby";
    let load = load_up(&mesh, "hstandby")?;
    let run = Run::start(&mesh.entry(), room, SENDERS, RECEIVERS, RATE).await?;
    run.wait_acked(60, Duration::from_secs(30)).await?;
    both_connected("127.61.6", SENDERS + RECEIVERS).await?;
    let token = run.tokens[0].1.clone();
    run::history(&mesh.entry(), &token, room).await?;

    // History asked over a live WebSocket all through the takeover, one request at a time:
    // measured (how many were answered, how long the longest waited), not judged.
    let (user, tok) = run.tokens[0].clone();
    let stop_asking = tokio_util::sync::CancellationToken::new();
    let asking = tokio::spawn(ask_history_meanwhile(
        mesh.entry(),
        user,
        tok,
        room.to_owned(),
        stop_asking.clone(),
    ));

    // Timed from before `ops/mesh kill` (a Python start-up, ~0.1 s) so that the measured
    // takeover is an upper bound.
    let killed = std::time::Instant::now();
    let killed_at = run.started.elapsed();
    mesh.kill("worker-1").await?;
    // Allow more than the limit here, so that a slow takeover is measured, then judged.
    wait_gauges(
        &mesh,
        2,
        Duration::from_secs(30),
        "out of standby",
        |s, _| s == 0.0,
    )
    .await?;
    let opened = killed.elapsed();
    wait_gauges(&mesh, 2, Duration::from_secs(30), "active", active).await?;
    let took_over = killed.elapsed();
    let acked_at_takeover = run.acked();
    // History goes through HAProxy, which takes gateways back once /readyz finds a worker.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let history_back = loop {
        if run::history(&mesh.entry(), &token, room).await.is_ok() {
            break killed.elapsed();
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "history not answered within 30 s of the takeover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    stop_asking.cancel();
    let asked = asking.await??;

    // The killed worker, started again with its recorded command, waits as the new standby.
    mesh.start("worker-1").await?;
    wait_gauges(&mesh, 1, Duration::from_secs(30), "standby", standby).await?;
    run.wait_acked(run.acked() + 40, Duration::from_secs(30))
        .await?;

    let acked = run.acked_map();
    let v = run.finish().await?;
    v.assert_clean();
    let hist = history_until(&mesh.entry(), &token, room, v.last_seq).await?;
    let mut last = 0;
    let mut seqs = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for (seq, prev, from, id) in &hist {
        assert_eq!(*prev, last, "history chain broken at {seq}");
        assert!(seqs.insert(*seq), "seq {seq} twice in history");
        assert!(
            ids.insert((from.clone(), id.clone())),
            "{from}/{id} stored twice"
        );
        last = *seq;
    }
    let missing = missing_from(&acked, &hist);
    println!(
        "worker SIGKILL with a hot standby (at {killed_at:.1?}): store opened by the standby \
         {opened:.2?} after the kill, all {partitions} partitions running after {took_over:.2?}, \
         history answered again after {history_back:.2?}; {acked_at_takeover} acked by the \
         takeover, {} acked in all, {} lost, {} duplicated; history {} messages, {} missing; \
         worker-1 restarted as the standby; {asked}",
        v.acked,
        v.lost,
        v.duplicated,
        hist.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acked but not in history: {missing:?}");
    assert!(
        hist.len() >= v.acked,
        "history {} < acked {}",
        hist.len(),
        v.acked
    );
    assert!(
        took_over <= TAKEOVER_LIMIT,
        "the standby ran every partition {took_over:?} after the kill (limit {TAKEOVER_LIMIT:?})"
    );
    load.finish().await?;
    Ok(())
}

/// Asks `room`'s latest page over one live WebSocket every 250 ms (one request at a time,
/// each waited for up to 15 s) until `stop`; a line saying how many were answered, which
/// errors came back, and the longest wait.
async fn ask_history_meanwhile(
    entry: String,
    user: String,
    token: String,
    room: String,
    stop: tokio_util::sync::CancellationToken,
) -> Result<String> {
    let mut socket = ws::session(&entry, &user, &token, &room, 0).await?;
    let (mut answered, mut errors, mut longest) = (0u32, Vec::new(), Duration::ZERO);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let asked = std::time::Instant::now();
        let ask = common::frame::history_before(&room, None, 10);
        ws::send(&mut socket, ask, n).await?;
        let reply = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                let f = ws::next_frame(&mut socket).await?;
                if common::replies_to(&f, n) {
                    return anyhow::Ok(f);
                }
            }
        })
        .await??;
        longest = longest.max(asked.elapsed());
        match common::error_code(&reply) {
            None if reply.frame_type() == common::FrameType::History => answered += 1,
            code => errors.push(code.map_or("?", |c| c.as_str()).to_owned()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(format!(
        "history over a live WebSocket through the takeover: {n} asked, {answered} answered, \
         errors {errors:?}, longest wait {longest:.2?}"
    ))
}
