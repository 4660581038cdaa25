//! The pace at which the driver writes frames: within the gateway's flood guard (100 frames
//! a second, burst 200; each frame over it is a strike, 50 strikes close the session with
//! 4008) and the session's send rate (`welcome.limits`), at nine tenths of each. A
//! reconnect re-joins every room and resends every waiting send at once: without a pace, a
//! client in a few hundred rooms was closed with 4008 on every reconnect.

use std::time::Duration;

use chatmesh_protocol::limits::Limits;
use tokio::time::Instant;

/// Frames a second, and in a burst.
const FRAMES_PER_SECOND: f64 = 90.0;
const FRAME_BURST: f64 = 180.0;
/// The share of the session's send rate and burst the driver uses.
const SEND_SHARE: f64 = 0.9;

/// Two token buckets: every frame takes from the first, a send from both.
#[derive(Debug)]
pub(crate) struct Pace {
    frames: f64,
    sends: f64,
    sends_per_second: f64,
    send_burst: f64,
    at: Instant,
}

impl Pace {
    /// Full buckets (a new connection), sends at the session's `limits`.
    pub fn new(limits: &Limits) -> Self {
        let sends_per_second = (f64::from(limits.sends_per_second) * SEND_SHARE).max(1.0);
        let send_burst = (f64::from(limits.send_burst) * SEND_SHARE).floor().max(1.0);
        Self {
            frames: FRAME_BURST,
            sends: send_burst,
            sends_per_second,
            send_burst,
            at: Instant::now(),
        }
    }

    /// No limit: for the last frames before the client closes the session.
    pub fn unlimited() -> Self {
        Self {
            frames: f64::INFINITY,
            sends: f64::INFINITY,
            sends_per_second: f64::INFINITY,
            send_burst: f64::INFINITY,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        if self.frames.is_infinite() {
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.frames = (self.frames + elapsed * FRAMES_PER_SECOND).min(FRAME_BURST);
        self.sends = (self.sends + elapsed * self.sends_per_second).min(self.send_burst);
        self.at = now;
    }

    /// How long until a frame (a send when `send`) may be written: zero when it may now.
    pub fn wait(&mut self, send: bool) -> Duration {
        self.refill();
        let frame = (1.0 - self.frames).max(0.0) / FRAMES_PER_SECOND;
        let send = match send {
            true => (1.0 - self.sends).max(0.0) / self.sends_per_second,
            false => 0.0,
        };
        Duration::from_secs_f64(frame.max(send))
    }

    /// A frame (a send when `send`) is written now.
    pub fn take(&mut self, send: bool) {
        self.refill();
        self.frames -= 1.0;
        if send {
            self.sends -= 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst goes at once, then frames come at the sustained rate; sends keep to their own.
    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let limits = Limits::default();
        let mut pace = Pace::new(&limits);
        for _ in 0..FRAME_BURST as usize {
            assert_eq!(pace.wait(false), Duration::ZERO);
            pace.take(false);
        }
        let next = pace.wait(false);
        assert!(
            next > Duration::ZERO && next <= Duration::from_millis(12),
            "{next:?}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut written = 0;
        while pace.wait(false) == Duration::ZERO {
            pace.take(false);
            written += 1;
        }
        assert_eq!(written, FRAMES_PER_SECOND as usize);

        let mut pace = Pace::new(&limits);
        for _ in 0..45 {
            assert_eq!(pace.wait(true), Duration::ZERO);
            pace.take(true);
        }
        assert!(pace.wait(true) > Duration::ZERO);
        assert_eq!(pace.wait(false), Duration::ZERO, "other frames still go");
    }
}
