//! The per-session limits of protocol v1, with their defaults. `welcome.limits` reports the
//! ones in force, so clients never have to guess.

use serde::{Deserialize, Serialize};

/// Limits a gateway enforces on each session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest WebSocket frame or reassembled message, in bytes (close 1009 beyond).
    pub max_message_bytes: usize,
    /// Largest `send.body`, in bytes (`too_large` beyond).
    pub max_body_bytes: usize,
    /// Sustained sends per second per session.
    pub sends_per_second: u32,
    /// Sends allowed in a burst above the sustained rate.
    pub send_burst: u32,
    /// Rooms one session may have joined at once.
    pub max_rooms: usize,
    /// Frames queued for one session before it is closed as a slow consumer (1013).
    pub outbound_queue: usize,
    /// Seconds a new connection has to send `hello`.
    pub hello_timeout_secs: u64,
    /// Frames of any kind a session may send per second, burst twice that (each one over is
    /// a strike toward 4008). Extension: set in `welcome` only (the gateway's
    /// `frames_per_second`); `None` from a gateway that does not report it, which enforces
    /// [`DEFAULT_FRAMES_PER_SECOND`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_second: Option<u32>,
}

/// The gateway's flood guard by default, frames a second (burst twice that).
pub const DEFAULT_FRAMES_PER_SECOND: u32 = 100;

impl Limits {
    /// The flood guard in force: what `welcome` reported, else the default.
    pub fn frames_per_second(&self) -> u32 {
        self.frames_per_second.unwrap_or(DEFAULT_FRAMES_PER_SECOND)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024,
            sends_per_second: 20,
            send_burst: 50,
            max_rooms: 1000,
            outbound_queue: 1024,
            hello_timeout_secs: 10,
            frames_per_second: None,
        }
    }
}
