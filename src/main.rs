//! `chatmesh`: parse arguments, start tracing, run the chosen command, drain on signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use chatmesh::commands;
use chatmesh::config::{Config, LogFormat, Role};

/// mimalloc for `up`, `worker` and `notifier`, glibc's malloc for the rest, the standalone
/// gateway above all (chatmesh-allocator; docs/PERFORMANCE.md, "The allocator per command").
#[global_allocator]
static ALLOCATOR: chatmesh_allocator::PerCommand = chatmesh_allocator::PerCommand::new();

#[derive(Parser)]
#[command(
    name = "chatmesh",
    version,
    about = "A horizontally scalable chat backend on NATS JetStream"
)]
struct Cli {
    /// Config file (TOML); `CHATMESH__SECTION__KEY` variables override it.
    #[arg(long, short, global = true, env = "CHATMESH_CONFIG")]
    config: Option<PathBuf>,
    /// Only check the configuration, print every problem, and exit.
    #[arg(long, global = true)]
    check_config: bool,
    /// Log format on stderr (default: `[log] format`, i.e. `CHATMESH__LOG__FORMAT`, or text).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole mesh on one machine: nats-server child, worker, gateway, fjall store.
    Up {
        /// Data directory (NATS store, message store, token secret).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Gateway listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Fixed NATS client port (default: a free one).
        #[arg(long)]
        nats_port: Option<u16>,
        /// Threads of the nats-server child (its GOMAXPROCS; 0: one per core).
        #[arg(long, env = "CHATMESH_NATS_THREADS", default_value_t = 1)]
        nats_threads: usize,
    },
    /// A terminal client: interactive on a terminal; over a pipe each line is a message to
    /// the first --room (exits once all are acked).
    Chat(chatmesh::chat::ChatArgs),
    /// The admin API of a running gateway (server admins of `[admin] users` only): list
    /// accounts, disable or enable one, delete a room, export a user, read the audit log.
    Admin(chatmesh::admin::AdminArgs),
    /// One gateway against the NATS servers of `mesh.nats_urls`.
    Gateway,
    /// One worker against the NATS servers of `mesh.nats_urls`.
    Worker {
        /// Wait as a hot standby while another live worker holds the embedded store, and take
        /// over when it is released (same as `[worker] standby = true`).
        #[arg(long)]
        standby: bool,
    },
    /// The push notifier alone, for workers that share a store (TiKV) and run with
    /// `[push] in_worker = false`; with fjall it runs inside the worker instead.
    Notifier,
    /// Generate the NATS bus keys (one nkey seed per role, 0600) into a directory, keeping
    /// existing ones, and write `auth.conf` (the nats-server `authorization` block) beside
    /// them.
    NatsAuth {
        /// Directory of the seeds and auth.conf (created 0700).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Write one room (record, members, messages) as JSON Lines; the worker must be stopped.
    Export {
        #[arg(long)]
        room: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Store directory (default: `worker.data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Report progress on stderr every N messages.
        #[arg(long, default_value_t = 10_000)]
        progress_every: u64,
    },
    /// Read one `export` into the store; the worker must be stopped.
    Import {
        /// Input file (default: stdin).
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// Store directory (default: `worker.data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Report progress on stderr every N messages.
        #[arg(long, default_value_t = 10_000)]
        progress_every: u64,
    },
}

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (reqwest, object_store and async-nats use
    // rustls without choosing one): without it the first HTTPS-capable client built, e.g.
    // `chatmesh chat`'s, panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // The terminal client's screen is for the chat: only warnings and errors by default.
    let default_filter = match cli.command {
        Command::Chat(_) | Command::Admin(_) => "warn",
        _ => "info,async_nats=warn",
    };
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(problems) => return report(&problems),
    };
    let format = cli.log_format.unwrap_or(config.log.format);
    // Held to the end: dropping it flushes the spans not yet exported.
    let _telemetry = match chatmesh::telemetry::init(default_filter, format, &config.trace) {
        Ok(t) => t,
        Err(problem) => return report(&[problem]),
    };
    tracing::info!(
        allocator = ALLOCATOR.name(),
        "chatmesh {}",
        env!("CARGO_PKG_VERSION")
    );
    if let Command::Worker { standby: true } = cli.command {
        config.worker.standby = true;
    }
    if let Command::NatsAuth { dir } = &cli.command {
        return match chatmesh::bus::BusCredentials::ensure(dir, &config.mesh.regions) {
            Ok(_) => {
                println!(
                    "bus credentials in {}: gateway.nk, worker.nk, loadtest.nk, admin.nk (0600), \
                     {} (include it in every nats-server config)",
                    dir.display(),
                    chatmesh::bus::AUTH_CONF
                );
                ExitCode::SUCCESS
            }
            Err(e) => report(&[format!("{e}")]),
        };
    }
    let role = match cli.command {
        Command::Up { .. } | Command::NatsAuth { .. } | Command::Chat(_) | Command::Admin(_) => {
            None
        }
        Command::Gateway => Some(Role::Gateway),
        Command::Worker { .. }
        | Command::Notifier
        | Command::Export { .. }
        | Command::Import { .. } => Some(Role::Worker),
    };
    if cli.check_config {
        let embedded = matches!(cli.command, Command::Up { .. });
        if embedded && config.gateway.jwt_secret.is_empty() && config.gateway.jwks_file.is_none() {
            // `up` makes a secret of its own in the data dir (src/mesh.rs): not a problem.
            config.gateway.jwt_secret = "generated by chatmesh up at start".into();
        }
        let mut problems = config.problems(role.unwrap_or(Role::Both));
        if matches!(cli.command, Command::Notifier) {
            problems.extend(commands::notifier_problems(&config));
        }
        if problems.is_empty() {
            println!("configuration ok");
            return ExitCode::SUCCESS;
        }
        return report(&problems);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return report(&[format!("cannot start the runtime: {e}")]),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up {
                data,
                listen,
                nats_port,
                nats_threads,
            } => commands::up(config, data, listen, nats_port, nats_threads).await,
            Command::Chat(args) => chatmesh::chat::run(args).await,
            Command::Admin(args) => chatmesh::admin::run(args).await,
            Command::Gateway => commands::gateway(config).await,
            Command::Worker { .. } => commands::worker(config).await,
            Command::Notifier => commands::notifier(config).await,
            Command::Export {
                room,
                out,
                data,
                progress_every,
            } => chatmesh::export::export(&config.worker, data, &room, out, progress_every).await,
            Command::Import {
                input,
                data,
                progress_every,
            } => chatmesh::export::import(&config.worker, data, input, progress_every).await,
            Command::NatsAuth { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&[format!("{e:#}")]),
    }
}

fn report(problems: &[String]) -> ExitCode {
    for p in problems {
        eprintln!("error: {p}");
    }
    ExitCode::FAILURE
}
