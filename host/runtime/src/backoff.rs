//! Exponential backoff: each failure doubles the delay from a base, up to a cap.

use std::time::Duration;

/// The longest delay between retries of anything (contract, section 5).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(300);

/// Failures so far and the delay they imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration) -> Self {
        Self { base, failures: 0 }
    }

    /// Record a failure and return the delay before the next attempt.
    pub(crate) fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay()
    }

    /// The delay after the failures so far (the base when there were none).
    pub(crate) fn delay(&self) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << exponent).min(MAX_DELAY)
    }

    /// Failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let delays: Vec<u64> = (0..8).map(|_| b.fail().as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.failures(), 8);
        b.reset();
        assert_eq!(b.delay(), Duration::from_secs(10));
        let mut many = Backoff::new(Duration::from_secs(1));
        for _ in 0..1000 {
            many.fail();
        }
        assert_eq!(many.delay(), MAX_DELAY);
    }
}
