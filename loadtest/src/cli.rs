//! Typed command line of `chatmesh-loadtest`: options every scenario shares (target, time,
//! outputs, thresholds, generators) and one subcommand per scenario with its own sizes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "chatmesh-loadtest",
    version,
    about = "Load tests of chatmesh (protocol v1) and raw NATS over WebSocket, on goose"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// What the generator speaks.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// chatmesh protocol v1 (HTTP accounts + WebSocket `chatmesh.v1`).
    Chatmesh,
    /// Plain NATS over a nats-server websocket listener (the comparison target).
    NatsWs,
}

/// Options of every scenario.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Base URL: the gateway (`http://127.0.0.1:8080`) or, with `--protocol nats-ws`, the
    /// nats-server websocket listener (`ws://127.0.0.1:8443`).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    #[arg(long, global = true, value_enum, default_value_t = Protocol::Chatmesh)]
    pub protocol: Protocol,
    /// Measured time once every connection is up (`30s`, `2m`, `1500ms`).
    #[arg(long, global = true, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sends scheduled before this much of the run are checked for loss but not timed.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After the last send, how long to wait for outstanding acks and deliveries.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// goose users; each drives an equal share of the connections (a shard).
    #[arg(long, global = true, default_value_t = 2)]
    pub shards: usize,
    /// Record 1 of every N deliveries in goose's report (all go into the HdrHistogram).
    #[arg(long, global = true, default_value_t = 1)]
    pub goose_sample: u64,
    /// Source addresses for client sockets, used in turn (loopback targets only):
    /// 127.0.0.1 and 127.0.0.2..=127.0.0.N. 0 = one per 20,000 connections.
    #[arg(long, global = true, default_value_t = 0)]
    pub source_ips: u8,
    /// Concurrent account logins during setup (argon2 is slow on purpose).
    #[arg(long, global = true, default_value_t = 8)]
    pub setup_concurrency: usize,
    /// Concurrent WebSocket handshakes per shard.
    #[arg(long, global = true, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Home region of the run's rooms (`fanout`, `connect`, `files`): rooms are named
    /// `<region>~lt-<run>-<i>` and live in that region's stream (docs/REGIONS.md).
    #[arg(long, global = true)]
    pub room_home: Option<String>,
    /// Prefix of account names; accounts are reused across runs (password below).
    #[arg(long, global = true, default_value = "lt")]
    pub user_prefix: String,
    #[arg(long, global = true, default_value = "loadtest-password")]
    pub password: String,
    /// Run id (rooms and multi-generator coordination); default: random.
    #[arg(long, global = true)]
    pub run_id: Option<String>,
    /// Generator processes in this run, on this machine or others. Start each with the same
    /// `--run-id`, scenario and sizes, its own `--generator`, and one `--coordinator`; they
    /// meet at a start barrier and generator 0 writes the merged report.
    #[arg(long, global = true, default_value_t = 1)]
    pub generators: usize,
    /// This process's index among the generators (0 = the leader).
    #[arg(long, global = true, default_value_t = 0)]
    pub generator: usize,
    /// NATS URL the generators coordinate through (any nats-server they all reach, e.g. the
    /// mesh's own `nats://127.0.0.1:4222`).
    #[arg(long, global = true)]
    pub coordinator: Option<String>,
    /// The bus key of role `loadtest` for `--coordinator` (a closed bus: `chatmesh up` writes
    /// it to `<data>/creds/loadtest.nk`, `chatmesh nats-auth` for a deployment).
    #[arg(long, global = true, env = "CHATMESH_LOADTEST_NKEY")]
    pub coordinator_nkey: Option<PathBuf>,
    /// Where account tokens are cached between runs (`tokens-<prefix>.json`).
    #[arg(long, global = true, default_value = "target/loadtest")]
    pub token_dir: PathBuf,
    /// Output directory for summary.json, summary.md and goose's report.html.
    #[arg(long, global = true, default_value = "target/loadtest")]
    pub out: PathBuf,
    /// SLO checks, e.g. `deliver.p99<50ms`, `loss==0`, `errors<=0`; repeatable.
    #[arg(long = "threshold", global = true)]
    pub thresholds: Vec<String>,
    /// A previous summary.json: print the change of every figure.
    #[arg(long, global = true)]
    pub baseline: Option<PathBuf>,
    /// With `--baseline`: fail when a figure got worse by more than this, e.g.
    /// `deliver.p99=+200%`, `delivered_per_s=10%` (rates: a fall), `loss=0%`; repeatable.
    #[arg(long = "max-regression", global = true)]
    pub max_regressions: Vec<String>,
    /// Clients reconnect when a connection is lost (through the same target, e.g. a load
    /// balancer), resume with `join {since}` and resend unacked sends with the same id, as a
    /// real client does: for measuring failover (fanout and dm only). Each reconnect is timed
    /// (`reconnect`) and its cause counted in `errors`.
    #[arg(long, global = true)]
    pub reconnect: bool,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, global = true, default_value_t = 2)]
    pub progress_secs: u64,
}

/// The scenarios and their sizes.
#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Rooms of S members; publishers at a fixed total rate (open model).
    Fanout(FanoutArgs),
    /// Ramp N connections, hold them idle, read memory per connection from /metrics.
    Connect(ConnectArgs),
    /// Pairs of users in DM rooms, one side sending at a fixed total rate.
    Dm(DmArgs),
    /// Readers paging pre-filled rooms' history backwards at a fixed total rate (open model).
    History(HistoryArgs),
    /// Mostly idle users; some chat (open model, checked as in fanout), some page history.
    Mixed(MixedArgs),
    /// Chat as in fanout while members upload files and others download and check them.
    Files(FilesArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FilesArgs {
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Members per room (one of them chats; uploaders and downloaders take turns).
    #[arg(long, default_value_t = 20)]
    pub members: usize,
    /// Chat sends per second over all rooms.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Uploads per second over all rooms (each is downloaded once by another member).
    #[arg(long, default_value_t = 2.0)]
    pub uploads_per_second: f64,
    /// Size of each file, bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub file_bytes: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Members per room (publishers included).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Total sends per second over all publishers.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 1)]
    pub publishers_per_room: usize,
    /// Body size in bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Distinct accounts (0 = one per connection).
    #[arg(long, default_value_t = 0)]
    pub accounts: usize,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Rooms the connections join (evenly).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Distinct accounts (connections reuse them in turn).
    #[arg(long, default_value_t = 500)]
    pub accounts: usize,
    /// New connections per second (0 = as fast as the handshakes go).
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,
}

#[derive(Args, Debug, Clone)]
pub struct DmArgs {
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
}

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Reader connections, spread evenly over the rooms.
    #[arg(long, default_value_t = 20)]
    pub readers: usize,
    /// Messages each room holds before the run (sent during setup; a room already filled
    /// for the same `--run-id` is reused).
    #[arg(long, default_value_t = 2000)]
    pub messages_per_room: u64,
    /// Messages per page (the `history` frame's `limit`, 1–100).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub page: u64,
    /// Total page requests per second over all readers.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Body size of the fill messages in bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Distinct accounts (0 = one per reader).
    #[arg(long, default_value_t = 0)]
    pub accounts: usize,
}

#[derive(Args, Debug, Clone)]
pub struct MixedArgs {
    /// Connections (users), spread evenly over the rooms.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Share of the users that send (publishers on the open-model schedule).
    #[arg(long, default_value_t = 0.1)]
    pub chatters_fraction: f64,
    /// Share of the users that page history (never the same users as the chatters).
    #[arg(long, default_value_t = 0.05)]
    pub scrollers_fraction: f64,
    /// Total sends per second over all chatters.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Total page requests per second over all scrollers.
    #[arg(long, default_value_t = 50.0)]
    pub history_rate: f64,
    /// Share of the chatters' sends that edit the sender's latest acked message.
    #[arg(long, default_value_t = 0.05)]
    pub edits_fraction: f64,
    /// Share of the chatters' sends that react to the latest message seen in the room.
    #[arg(long, default_value_t = 0.2)]
    pub reactions_fraction: f64,
    /// Full-text searches per second over all users (`GET /v1/search` in the searcher's
    /// room, for a word of one fill message; each answer is checked).
    #[arg(long, default_value_t = 2.0)]
    pub search_rate: f64,
    /// Messages each room holds before the run, for the scrollers.
    #[arg(long, default_value_t = 500)]
    pub messages_per_room: u64,
    /// Messages per page (1–100).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub page: u64,
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Distinct accounts (0 = one per user).
    #[arg(long, default_value_t = 0)]
    pub accounts: usize,
}

impl Common {
    /// This generator's share of the run, after checking the coordination flags.
    pub fn share(&self) -> Result<crate::coord::Share, String> {
        let share = crate::coord::Share {
            generators: self.generators.max(1),
            index: self.generator,
        };
        if share.index >= share.generators {
            return Err(format!(
                "--generator {} must be below --generators {}",
                share.index, share.generators
            ));
        }
        if share.generators > 1 && (self.coordinator.is_none() || self.run_id.is_none()) {
            return Err("--generators > 1 needs --coordinator NATS_URL and the same --run-id on every generator".into());
        }
        Ok(share)
    }

    /// Source address for the `i`-th connection, when the target is on loopback.
    pub fn source_ip(&self, i: usize, total: usize) -> Option<IpAddr> {
        let n = match self.source_ips {
            0 => total.div_ceil(20_000).max(1),
            n => usize::from(n),
        };
        if n <= 1 || !self.target.contains("127.0.0.1") {
            return None;
        }
        let last = (i % n) as u8 + 1;
        Some(IpAddr::from([127, 0, 0, last]))
    }
}

/// `250ms`, `30s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {text:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("x").is_err());
    }
}
