//! Exponential backoff with jitter: the one retry schedule of chatmesh (client reconnects and
//! resends, the gateway's publish retries, the worker's consumer restarts and ownership
//! start, stream setup, the load harness's reconnects).

use std::time::Duration;

use rand::Rng;

/// Delays that double from `min` up to `max`, each drawn uniformly between half of `min` and
/// the current bound (full jitter, above a floor that keeps a retry from coming at once), so
/// many clients cut off at once spread over the whole bound rather than its upper half.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    bound: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            bound: min,
        }
    }

    /// The next delay (between half of `min` and the current bound), then doubles the bound.
    pub fn next_delay(&mut self) -> Duration {
        let bound = self.bound;
        self.bound = (self.bound * 2).min(self.max);
        let low = self.min / 2;
        let spread = (bound - low).as_micros() as u64;
        low + Duration::from_micros(rand::rng().random_range(0..=spread))
    }

    /// The bound the next delay is drawn below.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Back to the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.bound = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        for (d, bound) in delays.iter().zip([100, 200, 400, 800, 800, 800]) {
            let bound = Duration::from_millis(bound);
            assert!(
                *d >= Duration::from_millis(50) && *d <= bound,
                "{d:?} outside 50 ms..{bound:?}"
            );
        }
        // At the cap, the whole range is used: some delays below half the bound (200 draws
        // all above it would happen with a chance under 1e-50).
        let low = (0..200)
            .filter(|_| b.next_delay() < Duration::from_millis(400))
            .count();
        assert!(low > 0, "every delay in the upper half: not full jitter");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
