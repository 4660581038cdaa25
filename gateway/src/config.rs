//! Gateway settings: where to listen, how tokens are checked, limits and deadlines. Typed,
//! with defaults, read by the CLI from the config file and `CHATMESH__GATEWAY__*` variables.

use std::path::PathBuf;

use chatmesh_protocol::Limits;
use serde::{Deserialize, Serialize};

/// Settings of one gateway process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the HTTP/WebSocket listener binds.
    pub listen: String,
    /// Secret for HS256 tokens issued by the built-in accounts (at least 32 bytes).
    pub jwt_secret: String,
    /// Lifetime of issued tokens, seconds.
    pub token_ttl_secs: u64,
    /// Issuer of tokens; tokens from another issuer are refused.
    pub jwt_issuer: String,
    /// Validate tokens of an external OIDC issuer with the keys of this JWKS file instead of
    /// the built-in HS256 secret (keys are looked up by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Audience an external issuer's tokens must carry, if any.
    pub jwt_audience: Option<String>,
    /// Origins allowed to open WebSockets besides the gateway's own host; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Most WebSocket connections held at once; beyond it upgrades get HTTP 503.
    pub max_connections: usize,
    /// Per-session limits (reported in `welcome.limits`).
    pub limits: Limits,
    /// How long a send is retried (same id) while JetStream has no leader, milliseconds.
    pub publish_deadline_ms: u64,
    /// Timeout of one request to a worker service, milliseconds.
    pub service_timeout_ms: u64,
    /// How long a drain waits for sessions to close, milliseconds.
    pub drain_timeout_ms: u64,
    /// Frames per second a session may send of any kind (flood guard), burst twice that.
    pub frames_per_second: u32,
    /// Rate-limited frames in a row after which the session is closed with 4008.
    pub rate_limit_strikes: u32,
    /// Directory of the web client's static files; `None` serves the built-in copy.
    pub web_root: Option<PathBuf>,
    /// Seconds a gateway's presence entries live without a refresh (a crashed gateway's
    /// users show offline within this); refreshed every third of it.
    pub presence_ttl_secs: u64,
    /// `typing` events a session may send per room per second (more are dropped).
    pub typing_per_second: u32,
    /// `typing` events a session may send per second over all its rooms (more are dropped).
    pub typing_per_session_per_second: u32,
    /// At most one read receipt (and one cursor write) per room and user per this interval,
    /// milliseconds; later `read`s in the interval are coalesced into the last one.
    pub receipt_interval_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            jwt_secret: String::new(),
            token_ttl_secs: 24 * 3600,
            jwt_issuer: "chatmesh".into(),
            jwks_file: None,
            jwt_audience: None,
            allowed_origins: Vec::new(),
            max_connections: 19_000,
            limits: Limits::default(),
            publish_deadline_ms: 15_000,
            service_timeout_ms: 5_000,
            drain_timeout_ms: 5_000,
            frames_per_second: 100,
            rate_limit_strikes: 50,
            web_root: None,
            presence_ttl_secs: 30,
            typing_per_second: 1,
            typing_per_session_per_second: 5,
            receipt_interval_ms: 1_000,
        }
    }
}

impl GatewayConfig {
    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(format!(
                "gateway.listen: {:?} is not an address",
                self.listen
            ));
        }
        if self.jwks_file.is_none() && self.jwt_secret.len() < 32 {
            out.push(
                "gateway.jwt_secret must be at least 32 bytes (or set gateway.jwks_file)".into(),
            );
        }
        if let Some(path) = &self.jwks_file {
            if !path.is_file() {
                out.push(format!(
                    "gateway.jwks_file: {} does not exist",
                    path.display()
                ));
            }
        }
        let l = &self.limits;
        if l.max_message_bytes < 1024 || l.max_message_bytes > 16 << 20 {
            out.push("gateway.limits.max_message_bytes must be between 1 KiB and 16 MiB".into());
        }
        if l.max_body_bytes == 0 || l.max_body_bytes > l.max_message_bytes {
            out.push(
                "gateway.limits.max_body_bytes must be positive and below max_message_bytes".into(),
            );
        }
        if l.sends_per_second == 0 || l.send_burst == 0 || self.frames_per_second == 0 {
            out.push("gateway rates must be positive".into());
        }
        if l.outbound_queue < 16 || l.max_rooms == 0 {
            out.push("gateway.limits.outbound_queue must be ≥ 16 and max_rooms ≥ 1".into());
        }
        if self.presence_ttl_secs < 3 || self.presence_ttl_secs > 3600 {
            out.push("gateway.presence_ttl_secs must be between 3 and 3600".into());
        }
        if self.typing_per_second == 0 || self.typing_per_session_per_second == 0 {
            out.push("gateway typing rates must be positive".into());
        }
        if !(10..=60_000).contains(&self.receipt_interval_ms) {
            out.push("gateway.receipt_interval_ms must be between 10 and 60000".into());
        }
        if self.max_connections == 0 || self.token_ttl_secs == 0 {
            out.push("gateway.max_connections and token_ttl_secs must be positive".into());
        }
        out
    }
}
