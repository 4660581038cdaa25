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
    /// Lifetime of the device tokens a login hands out (extension), seconds: a login that
    /// brings one back is a known device's, not held by lockouts others set off.
    pub device_token_ttl_secs: u64,
    /// Issuer of tokens; tokens from another issuer are refused.
    pub jwt_issuer: String,
    /// Validate tokens of an external OIDC issuer with the keys of this JWKS file instead of
    /// the built-in HS256 secret (keys are looked up by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Audience an external issuer's tokens must carry (required with `jwks_file`: an issuer
    /// serves many applications, and a token for another one must not sign in here).
    pub jwt_audience: Option<String>,
    /// Origins allowed to open WebSockets besides the gateway's own host; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Most WebSocket connections held at once; beyond it upgrades get HTTP 503.
    pub max_connections: usize,
    /// Per-session limits (reported in `welcome.limits`).
    pub limits: Limits,
    /// How long a send is retried (same id) while JetStream has no leader, milliseconds.
    pub publish_deadline_ms: u64,
    /// Sends of this gateway awaiting their PubAck at once (each session has 64 of them too,
    /// each user over its sessions an eighth of this, at least 64, each client address
    /// over its accounts a quarter, at least a user's); past it a send waits
    /// `admission_wait_ms` for a slot, then gets `unavailable`.
    pub max_inflight_sends: usize,
    /// Longest wait of a send for an in-flight slot (its session's or the gateway's) before it
    /// is refused with `unavailable`, milliseconds. Bounds how long a session's reader stops.
    pub admission_wait_ms: u64,
    /// Timeout of one request to a worker service, milliseconds.
    pub service_timeout_ms: u64,
    /// How long a drain waits for sessions to close, milliseconds.
    pub drain_timeout_ms: u64,
    /// After the server closes a session, how long its input is still read and discarded
    /// (until the client's close frame or EOF, at most 1 MiB) so that a client still
    /// writing gets the close frame instead of a reset, milliseconds.
    pub close_linger_ms: u64,
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
    /// PEM certificate chain served over TLS (`https://`, `wss://`); set with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// `Strict-Transport-Security: max-age` sent on every HTTP response under TLS; 0 omits it.
    pub hsts_max_age_secs: u64,
    /// Time a client has to finish the TLS handshake, milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Time a client has to send a whole request body, milliseconds (then 408 and close).
    pub body_read_timeout_ms: u64,
    /// Time a response body (a file download, an export) may wait for the client to read
    /// on, milliseconds: when none of it could be sent for this long, the connection closes.
    pub body_write_timeout_ms: u64,
    /// Time a client has to send a request's headers, milliseconds (then the connection closes).
    pub header_read_timeout_ms: u64,
    /// A keep-alive HTTP connection with no request in flight is closed after this,
    /// milliseconds. WebSocket sessions are not affected.
    pub http_idle_timeout_ms: u64,
    /// TCP connections held from one client IP at once (HTTP, TLS and WebSocket alike);
    /// beyond it new ones get 429 and are closed. Trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// Proxies (e.g. HAProxy) whose `X-Forwarded-For` is believed: when the TCP peer is one of
    /// them, the client IP is the rightmost forwarded address that is not a trusted proxy.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Login attempts per client IP per minute (token bucket; HTTP 429 beyond).
    pub login_per_ip_per_minute: u32,
    /// Login attempts one client IP may make at once before the rate applies.
    pub login_ip_burst: u32,
    /// Wrong passwords from one IP for one account before that pair is locked out.
    pub login_free_failures: u32,
    /// First lockout of an (IP, account) pair, seconds; it doubles with each further failure.
    pub login_lockout_base_secs: u64,
    /// Longest lockout of an (IP, account) pair, seconds.
    pub login_lockout_max_secs: u64,
    /// Wrong passwords per account per minute from all IPs together (token bucket).
    pub login_account_failures_per_minute: u32,
    /// Wrong passwords one account may take at once before that rate applies.
    pub login_account_burst: u32,
    /// Registrations per client IP per hour (token bucket).
    pub register_per_ip_per_hour: u32,
    /// Registrations one client IP may make at once before that rate applies.
    pub register_ip_burst: u32,
    /// Rooms a user may create per minute (token bucket; `max_rooms_per_user` of the worker
    /// caps the total).
    pub rooms_per_minute: u32,
    /// Rooms a user may create at once before that rate applies.
    pub rooms_burst: u32,
    /// DMs a user may open per minute (`POST /v1/dm/{user}`, token bucket): each new one is a
    /// room its peer cannot leave.
    pub dms_per_minute: u32,
    /// DMs a user may open at once before that rate applies.
    pub dm_burst: u32,
    /// Authenticated HTTP API calls (`/v1`, any endpoint) a user may make per minute (token
    /// bucket, per gateway): one account cannot keep the workers busy for everyone.
    pub api_per_user_per_minute: u32,
    /// API calls a user may make at once before that rate applies (a client's start-up).
    pub api_user_burst: u32,
    /// Searches (`GET /v1/search`) a user may make per minute (token bucket): each asks
    /// every partition the user has rooms in.
    pub searches_per_minute: u32,
    /// Searches a user may make at once before that rate applies.
    pub search_burst: u32,
    /// Late resends (`send` with `resend_after`) a user may have checked per minute (token
    /// bucket): each has a worker read up to 10,000 stored messages of the room.
    pub resend_checks_per_minute: u32,
    /// Late resends a user may have checked at once before that rate applies (an outbox
    /// written again after a long disconnect).
    pub resend_check_burst: u32,
    /// Commits and proposals of e2ee rooms a user may send per minute (token bucket): a
    /// worker checks each (a commit against the room's group, read from a file of up to
    /// 8 MiB); welcomes follow a commit and are not counted. Groups commit on membership
    /// changes and key updates, not per message.
    pub mls_checks_per_minute: u32,
    /// Commits and proposals a user may send at once before that rate applies.
    pub mls_check_burst: u32,
    /// KeyPackages a user may claim per minute (`POST /v1/e2ee/users/{user}/claim`, token
    /// bucket), so no one drains another user's packages down to the last-resort one.
    pub key_claims_per_minute: u32,
    /// Claims a user may make at once before that rate applies (adding a whole team to an
    /// e2ee room at once).
    pub key_claim_burst: u32,
    /// Claims of one user's KeyPackages one caller may make per hour (and at once): a few
    /// accounts cannot use up a device's one-time packages.
    pub key_claims_per_target_per_hour: u32,
    /// Entries each throttle table keeps (least used evicted first), bounding its memory.
    pub throttle_max_entries: u64,
    /// How long a user's token generation is cached, seconds (revocation events clear it
    /// sooner; this bounds how long a lost event leaves a revoked token usable).
    pub user_gen_cache_secs: u64,
    /// How often every open session's token is checked again against its user's
    /// generation, and every session's access to the rooms it joined, seconds (0: never): a
    /// revocation, disable or removal whose event never reached this gateway without it
    /// noticing a loss (a NATS route that dropped it, a worker that stopped before
    /// publishing it) closes the session, or takes it out of the room, within this. Each
    /// pass is spread over half the period: one worker request per user with a session here
    /// whose generation is not cached, and one per (room, user) joined here (at most 86400).
    pub session_recheck_secs: u64,
    /// Replays (`join` with `since`) one session may have running at once; one more is
    /// refused with `rate_limited`. A re-join of a room replaces that room's replay.
    pub max_replays_per_session: usize,
    /// Replays running at once on this gateway, over all sessions.
    pub max_replays: usize,
    /// Replays one user may have running at once on this gateway, over all their sessions;
    /// one more is refused with `rate_limited` (one user's slow readers cannot hold every
    /// slot).
    pub max_replays_per_user: usize,
    /// Replays the sessions of one client address (an IPv6 client by its /64; behind a
    /// trusted proxy, the forwarded client) may have running at once on this gateway, over
    /// all their accounts; one more is refused with `rate_limited` (many accounts from one
    /// address cannot hold every slot). Trusted proxies themselves are exempt.
    pub max_replays_per_ip: usize,
    /// Bytes of replies (history pages, search results, acks) queued at once for all the
    /// WebSocket sessions of one client address (an IPv6 client by its /64); beyond it
    /// their replies wait, and their requests with them, until they read. Each session
    /// also holds at most 4 MiB of its own. Trusted proxies that name no client are exempt.
    pub reply_bytes_per_address: usize,
    /// Bytes of queued replies all sessions of this gateway may hold together (at least
    /// `reply_bytes_per_address`). Beyond it the sessions of the addresses that have gone the
    /// longest without reading are closed with 1013, so many addresses that read nothing
    /// cannot add up.
    pub reply_bytes_total: usize,
    /// How long a `join` with `since` waits for one of `max_replays` to free up before it
    /// is refused with `unavailable`, milliseconds.
    pub replay_wait_ms: u64,
    /// Bytes a second a client must read of its replay while the replay waits for it
    /// (measured over each 10 s of waiting); a slower reader's session is closed with 1013
    /// and resumes after reconnecting, so slow readers cannot hold the replay slots.
    pub replay_min_bytes_per_sec: u64,
    /// After a NATS reconnect (or a slow-consumer drop), how long the rooms hold their
    /// messages for the access re-check of every user with a session here (membership
    /// events sent meanwhile are lost), milliseconds; then they deliver without it. 0 never
    /// holds: a user removed while the gateway was away gets the room's messages until the
    /// re-check reaches them.
    pub recheck_hold_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            jwt_secret: String::new(),
            token_ttl_secs: 24 * 3600,
            device_token_ttl_secs: 90 * 24 * 3600,
            jwt_issuer: "chatmesh".into(),
            jwks_file: None,
            jwt_audience: None,
            allowed_origins: Vec::new(),
            max_connections: 19_000,
            limits: Limits::default(),
            publish_deadline_ms: 15_000,
            max_inflight_sends: 4_096,
            admission_wait_ms: 1_000,
            service_timeout_ms: 5_000,
            drain_timeout_ms: 5_000,
            close_linger_ms: 2_000,
            frames_per_second: chatmesh_protocol::limits::DEFAULT_FRAMES_PER_SECOND,
            rate_limit_strikes: 50,
            web_root: None,
            presence_ttl_secs: 30,
            typing_per_second: 1,
            typing_per_session_per_second: 5,
            receipt_interval_ms: 1_000,
            tls_cert: None,
            tls_key: None,
            hsts_max_age_secs: 31_536_000,
            tls_handshake_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            body_write_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
            max_connections_per_ip: 256,
            trusted_proxies: Vec::new(),
            login_per_ip_per_minute: 60,
            login_ip_burst: 30,
            login_free_failures: 5,
            login_lockout_base_secs: 2,
            login_lockout_max_secs: 900,
            login_account_failures_per_minute: 20,
            login_account_burst: 40,
            register_per_ip_per_hour: 20,
            register_ip_burst: 10,
            rooms_per_minute: 10,
            rooms_burst: 10,
            dms_per_minute: 20,
            dm_burst: 20,
            api_per_user_per_minute: 3_000,
            api_user_burst: 1_000,
            searches_per_minute: 120,
            search_burst: 20,
            resend_checks_per_minute: 60,
            resend_check_burst: 100,
            mls_checks_per_minute: 60,
            mls_check_burst: 100,
            key_claims_per_minute: 60,
            key_claim_burst: 200,
            key_claims_per_target_per_hour: 20,
            throttle_max_entries: 100_000,
            user_gen_cache_secs: 30,
            session_recheck_secs: 300,
            max_replays_per_session: 4,
            max_replays: 32,
            max_replays_per_user: 8,
            max_replays_per_ip: 16,
            reply_bytes_per_address: 32 << 20,
            reply_bytes_total: 1 << 30,
            replay_wait_ms: 1_000,
            replay_min_bytes_per_sec: 16 * 1024,
            recheck_hold_ms: 5_000,
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
            if self.jwt_audience.as_deref().is_none_or(str::is_empty) {
                out.push(
                    "gateway.jwt_audience must be set with gateway.jwks_file: without it every \
                     token the issuer makes for any of its applications is taken here"
                        .into(),
                );
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
        if l.frames_per_second.is_some() {
            out.push(
                "gateway.limits.frames_per_second is not a setting: the flood guard is \
                 gateway.frames_per_second (welcome.limits reports it)"
                    .into(),
            );
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
        if !(1..=65_536).contains(&self.max_inflight_sends) {
            out.push("gateway.max_inflight_sends must be between 1 and 65536".into());
        }
        if !(10..=60_000).contains(&self.admission_wait_ms) {
            out.push("gateway.admission_wait_ms must be between 10 and 60000".into());
        }
        if !(10..=60_000).contains(&self.receipt_interval_ms) {
            out.push("gateway.receipt_interval_ms must be between 10 and 60000".into());
        }
        if self.close_linger_ms > 60_000 {
            out.push("gateway.close_linger_ms must be at most 60000".into());
        }
        if !(1..=1_000).contains(&self.max_replays_per_session) {
            out.push("gateway.max_replays_per_session must be between 1 and 1000".into());
        }
        if !(1..=100_000).contains(&self.max_replays) {
            out.push("gateway.max_replays must be between 1 and 100000".into());
        }
        if !(1..=100_000).contains(&self.max_replays_per_user) {
            out.push("gateway.max_replays_per_user must be between 1 and 100000".into());
        }
        if !(1..=100_000).contains(&self.max_replays_per_ip) {
            out.push("gateway.max_replays_per_ip must be between 1 and 100000".into());
        }
        if !(4 << 20..=1 << 40).contains(&self.reply_bytes_per_address) {
            out.push(format!(
                "gateway.reply_bytes_per_address must be between 4 MiB (one session's own) and 1 TiB, not {}",
                self.reply_bytes_per_address
            ));
        }
        if !(self.reply_bytes_per_address..=1 << 40).contains(&self.reply_bytes_total) {
            out.push(format!(
                "gateway.reply_bytes_total must be between reply_bytes_per_address ({}) and 1 TiB, not {}",
                self.reply_bytes_per_address, self.reply_bytes_total
            ));
        }
        if self.replay_wait_ms > 60_000 {
            out.push("gateway.replay_wait_ms must be at most 60000".into());
        }
        if !(1..=1 << 30).contains(&self.replay_min_bytes_per_sec) {
            out.push("gateway.replay_min_bytes_per_sec must be between 1 and 2^30".into());
        }
        if self.recheck_hold_ms > 60_000 {
            out.push("gateway.recheck_hold_ms must be at most 60000".into());
        }
        // Out of these ranges every session fails while the gateway looks healthy (a zero
        // `hello` window, a deadline past what `Instant` holds, a zero service timeout).
        let waits = [
            (
                "limits.hello_timeout_secs",
                self.limits.hello_timeout_secs.saturating_mul(1_000),
                1_000,
                "1 s",
            ),
            ("service_timeout_ms", self.service_timeout_ms, 100, "100 ms"),
            (
                "publish_deadline_ms",
                self.publish_deadline_ms,
                100,
                "100 ms",
            ),
            ("drain_timeout_ms", self.drain_timeout_ms, 0, "0 ms"),
        ];
        for (name, ms, least, least_text) in waits {
            if !(least..=3_600_000).contains(&ms) {
                out.push(format!(
                    "gateway.{name} must be between {least_text} and 1 hour"
                ));
            }
        }
        if self.rate_limit_strikes == 0 {
            out.push("gateway.rate_limit_strikes must be positive".into());
        }
        if self.max_connections == 0 || self.token_ttl_secs == 0 {
            out.push("gateway.max_connections and token_ttl_secs must be positive".into());
        }
        if !(60..=400 * 24 * 3600).contains(&self.device_token_ttl_secs) {
            out.push(
                "gateway.device_token_ttl_secs must be between 60 and 34560000 (400 days)".into(),
            );
        }
        out.extend(self.edge_problems());
        out
    }

    /// Problems of the HTTP edge settings: TLS files, connection caps and read deadlines.
    fn edge_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                if let Err(e) = crate::tls::acceptor(cert, key) {
                    out.push(format!("gateway.tls_cert/tls_key: {e}"));
                }
            }
            _ => out.push("gateway.tls_cert and gateway.tls_key must be set together".into()),
        }
        if self.max_connections_per_ip == 0 {
            out.push("gateway.max_connections_per_ip must be positive".into());
        }
        let deadlines = [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("body_write_timeout_ms", self.body_write_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("http_idle_timeout_ms", self.http_idle_timeout_ms),
        ];
        for (name, ms) in deadlines {
            if !(100..=3_600_000).contains(&ms) {
                out.push(format!(
                    "gateway.{name} must be between 100 ms and 1 hour, not {ms}"
                ));
            }
        }
        let throttles = [
            ("login_per_ip_per_minute", self.login_per_ip_per_minute),
            ("login_ip_burst", self.login_ip_burst),
            ("login_free_failures", self.login_free_failures),
            (
                "login_account_failures_per_minute",
                self.login_account_failures_per_minute,
            ),
            ("login_account_burst", self.login_account_burst),
            ("register_per_ip_per_hour", self.register_per_ip_per_hour),
            ("register_ip_burst", self.register_ip_burst),
            ("rooms_per_minute", self.rooms_per_minute),
            ("rooms_burst", self.rooms_burst),
            ("dms_per_minute", self.dms_per_minute),
            ("dm_burst", self.dm_burst),
            ("api_per_user_per_minute", self.api_per_user_per_minute),
            ("api_user_burst", self.api_user_burst),
            ("searches_per_minute", self.searches_per_minute),
            ("search_burst", self.search_burst),
            ("resend_checks_per_minute", self.resend_checks_per_minute),
            ("resend_check_burst", self.resend_check_burst),
            ("mls_checks_per_minute", self.mls_checks_per_minute),
            ("mls_check_burst", self.mls_check_burst),
            ("key_claims_per_minute", self.key_claims_per_minute),
            ("key_claim_burst", self.key_claim_burst),
            (
                "key_claims_per_target_per_hour",
                self.key_claims_per_target_per_hour,
            ),
        ];
        for (name, value) in throttles {
            if value == 0 {
                out.push(format!("gateway.{name} must be positive"));
            }
        }
        if self.login_lockout_base_secs == 0
            || self.login_lockout_max_secs < self.login_lockout_base_secs
            || self.login_lockout_max_secs > 86_400
        {
            out.push(
                "gateway.login_lockout_base_secs must be positive and at most \
                 login_lockout_max_secs (≤ 86400)"
                    .into(),
            );
        }
        if !(1_000..=100_000_000).contains(&self.throttle_max_entries) {
            out.push("gateway.throttle_max_entries must be between 1000 and 100000000".into());
        }
        if !(1..=3_600).contains(&self.user_gen_cache_secs) {
            out.push("gateway.user_gen_cache_secs must be between 1 and 3600".into());
        }
        if self.session_recheck_secs > 86_400 {
            out.push("gateway.session_recheck_secs must be at most 86400".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> GatewayConfig {
        GatewayConfig {
            jwt_secret: "x".repeat(32),
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn the_defaults_have_no_edge_problems() {
        assert_eq!(base().problems(), Vec::<String>::new());
    }

    /// The flood guard has one setting, `gateway.frames_per_second`; `welcome.limits` reports
    /// it, and a `[gateway.limits]` value would be overwritten there, so it is refused.
    #[test]
    fn the_flood_guard_is_not_a_limits_setting() {
        let mut c = base();
        c.limits.frames_per_second = Some(50);
        let p = c.problems();
        assert!(
            p.iter().any(|p| p.contains("gateway.frames_per_second")),
            "{p:?}"
        );
    }

    /// An external issuer's tokens are taken only for this audience: one the issuer made for
    /// another of its applications is not.
    #[test]
    fn an_external_issuer_needs_an_audience() {
        let dir = tempfile_dir("jwks");
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
        let mut c = base();
        c.jwks_file = Some(jwks);
        let p = c.problems();
        assert!(p.iter().any(|p| p.contains("jwt_audience")), "{p:?}");
        c.jwt_audience = Some("chatmesh".into());
        assert_eq!(c.problems(), Vec::<String>::new());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir(what: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("chatmesh-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tls_needs_both_files_and_readable_pem() {
        let mut c = base();
        c.tls_cert = Some("/nonexistent/cert.pem".into());
        let p = c.problems();
        assert!(p.iter().any(|p| p.contains("set together")), "{p:?}");
        c.tls_key = Some("/nonexistent/key.pem".into());
        let p = c.problems();
        assert!(
            p.iter().any(|p| p.contains("/nonexistent/cert.pem")),
            "{p:?}"
        );
        let dir = std::env::temp_dir().join(format!("chatmesh-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        c.tls_cert = Some(junk.clone());
        c.tls_key = Some(junk);
        let p = c.problems();
        assert!(p.iter().any(|p| p.contains("no certificate")), "{p:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn caps_and_deadlines_are_checked() {
        let mut c = base();
        c.max_connections_per_ip = 0;
        c.body_read_timeout_ms = 0;
        c.http_idle_timeout_ms = 10_000_000;
        c.tls_handshake_timeout_ms = 99;
        let p = c.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|p| p.contains("max_connections_per_ip")));
        assert!(p.iter().any(|p| p.contains("body_read_timeout_ms")));
        assert!(p.iter().any(|p| p.contains("http_idle_timeout_ms")));
        assert!(p.iter().any(|p| p.contains("tls_handshake_timeout_ms")));
    }

    /// Each of these made every session fail while the gateway looked healthy: a zero
    /// `hello` window closed every session before its `hello`, a huge one overflowed the
    /// deadline (a panic in every session), a zero service timeout failed every worker call.
    #[test]
    fn session_timeouts_and_strikes_are_checked() {
        for (name, set) in [
            ("hello_timeout_secs", |c: &mut GatewayConfig, v| {
                c.limits.hello_timeout_secs = v
            }),
            ("service_timeout_ms", |c: &mut GatewayConfig, v| {
                c.service_timeout_ms = v
            }),
            ("publish_deadline_ms", |c: &mut GatewayConfig, v| {
                c.publish_deadline_ms = v
            }),
            ("drain_timeout_ms", |c: &mut GatewayConfig, v| {
                c.drain_timeout_ms = v
            }),
        ] as [(&str, fn(&mut GatewayConfig, u64)); 4]
        {
            let zero_ok = name == "drain_timeout_ms";
            for (v, bad) in [(0, !zero_ok), (u64::MAX, true), (3_600_001_000, true)] {
                let mut c = base();
                set(&mut c, v);
                let p = c.problems();
                assert_eq!(
                    p.iter().any(|p| p.contains(name)),
                    bad,
                    "{name} = {v}: {p:?}"
                );
            }
        }
        let c = GatewayConfig {
            rate_limit_strikes: 0,
            ..base()
        };
        let p = c.problems();
        assert!(p.iter().any(|p| p.contains("rate_limit_strikes")), "{p:?}");
    }

    #[test]
    fn replay_bounds_are_checked() {
        let c = GatewayConfig {
            max_replays_per_session: 0,
            max_replays: 0,
            max_replays_per_user: 0,
            max_replays_per_ip: 0,
            reply_bytes_per_address: 1 << 20,
            reply_bytes_total: 512 << 10,
            replay_wait_ms: 60_001,
            replay_min_bytes_per_sec: 0,
            recheck_hold_ms: 60_001,
            ..base()
        };
        let p = c.problems();
        assert_eq!(p.len(), 9, "{p:?}");
        assert!(p.iter().any(|p| p.contains("recheck_hold_ms")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("reply_bytes_total")), "{p:?}");
        assert!(
            p.iter().any(|p| p.contains("reply_bytes_per_address")),
            "{p:?}"
        );
    }

    #[test]
    fn throttle_settings_are_checked() {
        let ok = GatewayConfig {
            jwt_secret: "s".repeat(32),
            ..GatewayConfig::default()
        };
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        let bad = GatewayConfig {
            login_ip_burst: 0,
            rooms_per_minute: 0,
            login_lockout_max_secs: 1,
            user_gen_cache_secs: 0,
            session_recheck_secs: 86_401,
            ..ok
        };
        assert_eq!(bad.problems().len(), 5, "{:?}", bad.problems());
    }
}
