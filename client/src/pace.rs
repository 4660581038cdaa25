//! The pace at which the driver writes frames: within the gateway's flood guard
//! (`welcome.limits.frames_per_second`, 100 frames a second by default, burst twice that;
//! each frame over it is a strike, 50 strikes close the session with 4008) and the session's
//! send rate (`welcome.limits`), at nine tenths of each. A
//! reconnect re-joins every room and resends every waiting send at once: without a pace, a
//! client in a few hundred rooms was closed with 4008 on every reconnect.

use std::time::Duration;

use chatmesh_protocol::limits::Limits;
use tokio::time::Instant;

/// The share of the gateway's rates and bursts the driver uses.
const SHARE: f64 = 0.9;

/// Two token buckets: every frame takes from the first, a send from both.
#[derive(Debug)]
pub(crate) struct Pace {
    frames: f64,
    frames_per_second: f64,
    frame_burst: f64,
    sends: f64,
    sends_per_second: f64,
    send_burst: f64,
    at: Instant,
}

impl Pace {
    /// Full buckets (a new connection) at the session's `limits`.
    pub fn new(limits: &Limits) -> Self {
        let fps = f64::from(limits.frames_per_second());
        let frames_per_second = (fps * SHARE).max(1.0);
        let frame_burst = (2.0 * fps * SHARE).floor().max(1.0);
        let sends_per_second = (f64::from(limits.sends_per_second) * SHARE).max(1.0);
        let send_burst = (f64::from(limits.send_burst) * SHARE).floor().max(1.0);
        Self {
            frames: frame_burst,
            frames_per_second,
            frame_burst,
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
            frames_per_second: f64::INFINITY,
            frame_burst: f64::INFINITY,
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
        self.frames = (self.frames + elapsed * self.frames_per_second).min(self.frame_burst);
        self.sends = (self.sends + elapsed * self.sends_per_second).min(self.send_burst);
        self.at = now;
    }

    /// How long until a frame (a send when `send`) may be written: zero when it may now.
    pub fn wait(&mut self, send: bool) -> Duration {
        self.refill();
        let frame = (1.0 - self.frames).max(0.0) / self.frames_per_second;
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
        for _ in 0..180 {
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
        assert_eq!(written, 90);

        let mut pace = Pace::new(&limits);
        for _ in 0..45 {
            assert_eq!(pace.wait(true), Duration::ZERO);
            pace.take(true);
        }
        assert!(pace.wait(true) > Duration::ZERO);
        assert_eq!(pace.wait(false), Duration::ZERO, "other frames still go");
    }

    /// A gateway whose `welcome` reports a lower flood guard is paced at nine tenths of it.
    #[tokio::test(start_paused = true)]
    async fn the_flood_guard_of_the_welcome() {
        let limits = Limits {
            frames_per_second: Some(10),
            ..Limits::default()
        };
        let mut pace = Pace::new(&limits);
        let mut burst = 0;
        while pace.wait(false) == Duration::ZERO {
            pace.take(false);
            burst += 1;
        }
        assert_eq!(burst, 18, "nine tenths of a burst of 20");
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut written = 0;
        while pace.wait(false) == Duration::ZERO {
            pace.take(false);
            written += 1;
        }
        assert_eq!(written, 9);
    }
}
