//! The config file and environment: defaults, then a TOML file, then `CHATMESH__SECTION__KEY`
//! variables (e.g. `CHATMESH__GATEWAY__LISTEN=0.0.0.0:8080`). Every problem is reported at
//! once; `--check-config` prints them and exits.

use std::path::Path;

use chatmesh_files::FilesConfig;
use chatmesh_gateway::GatewayConfig;
use chatmesh_protocol::admin::AdminConfig;
use chatmesh_protocol::MeshConfig;
use chatmesh_workers::ownership::OwnershipMode;
use chatmesh_workers::push::PushConfig;
use chatmesh_workers::{Backend, WorkerConfig};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole configuration of one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub mesh: MeshConfig,
    pub gateway: GatewayConfig,
    pub worker: WorkerConfig,
    /// Shared files: where their bytes live, size caps and quotas (docs/FILES.md).
    pub files: FilesConfig,
    /// Push notifications to offline members (docs/PUSH.md); run by the worker.
    pub push: PushConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    /// OpenTelemetry traces over OTLP/HTTP; off by default.
    pub trace: TraceConfig,
    /// The server admins (admin API, `chatmesh admin`) and the audit log's retention.
    pub admin: AdminConfig,
}

/// How a process writes its log (to stderr).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text`: lines for people (colour only at a terminal); `json`: one JSON object per
    /// line for a collector (Elasticsearch, Loki): timestamp, level, target, the event's
    /// fields, and the fields of the spans it happened in (session, user, partition).
    /// `--log-format` overrides it.
    pub format: LogFormat,
}

/// The log's format; see [`LogConfig::format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where a process without an HTTP server of its own (a standalone worker) serves
/// Prometheus metrics. Gateways serve `/metrics` on their own listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// e.g. `127.0.0.1:9464`; none by default. Where the process serves its Prometheus
    /// metrics (any path). A gateway (and `chatmesh up`) serves them on its client port
    /// while this is unset, and only here once it is set: the client port then answers
    /// `/metrics` with 404, so a gateway facing the internet does not show them to it.
    pub listen: Option<String>,
}

/// `[trace]`: OpenTelemetry traces, off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// The OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces` (JSON
    /// encoding); unset: no traces. The batch processor honours the `OTEL_BSP_*` variables.
    pub otlp_endpoint: Option<String>,
    /// The share of sends traced, 0.0 to 1.0 (a ratio of trace ids; each hop follows the
    /// sender's decision).
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "chatmesh".into(),
        }
    }
}

impl TraceConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(url) = &self.otlp_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(format!(
                    "trace.otlp_endpoint {url:?} must be an http:// or https:// URL"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            out.push("trace.sample_ratio must be between 0.0 and 1.0".into());
        }
        if self.service_name.is_empty() {
            out.push("trace.service_name must not be empty".into());
        }
        out
    }
}

/// Which sections a command uses (only those are checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Worker,
    Both,
}

impl Config {
    /// The defaults with what tests and one-machine experiments need instead: cheap
    /// password hashing, and the send, frame, login, registration, room-creation, API and
    /// search rate limits out of the way (every client of such a run comes from 127.0.0.1). Never
    /// for a deployment: the limits are what protects one.
    pub fn for_tests() -> Self {
        let mut c = Config::default();
        c.worker.argon2_memory_kib = 64;
        c.worker.argon2_iterations = 1;
        c.gateway.limits.sends_per_second = 100_000;
        c.gateway.limits.send_burst = 100_000;
        c.gateway.frames_per_second = 100_000;
        c.gateway.login_per_ip_per_minute = 100_000;
        c.gateway.login_ip_burst = 100_000;
        c.gateway.register_per_ip_per_hour = 1_000_000;
        c.gateway.register_ip_burst = 100_000;
        c.gateway.rooms_per_minute = 100_000;
        c.gateway.rooms_burst = 100_000;
        c.gateway.dms_per_minute = 100_000;
        c.gateway.dm_burst = 100_000;
        c.gateway.key_claims_per_target_per_hour = 100_000;
        c.gateway.api_per_user_per_minute = 10_000_000;
        c.gateway.api_user_burst = 1_000_000;
        c.gateway.searches_per_minute = 100_000;
        c.gateway.search_burst = 100_000;
        c
    }

    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Vec<String>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(vec![format!(
                    "config file {} does not exist",
                    file.display()
                )]);
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("CHATMESH__").split("__").lowercase(true));
        figment
            .extract::<Config>()
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    /// Every problem of the sections `role` uses.
    pub fn problems(&self, role: Role) -> Vec<String> {
        let mut out = self.mesh.problems();
        out.extend(self.files.problems());
        out.extend(self.trace.problems());
        out.extend(self.admin.problems());
        if matches!(role, Role::Gateway | Role::Both) {
            out.extend(self.gateway.problems());
        }
        if let Some(listen) = &self.metrics.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                out.push(format!("metrics.listen: {listen:?} is not an address"));
            }
        }
        if matches!(role, Role::Worker | Role::Both) {
            out.extend(self.worker.problems());
            out.extend(self.push.problems());
            let shared = self.worker.ownership.mode == OwnershipMode::Shared;
            if shared && self.worker.backend == Backend::Fjall {
                out.push(
                    "worker.ownership.mode = \"shared\" needs a store every worker reaches \
                     (backend = \"tikv\"); an embedded fjall store is owned by one worker (mode = \"all\")"
                        .into(),
                );
            }
        }
        out
    }
}
