//! Retry timing: exponential backoff with jitter for transient failures, a long wait for
//! failures that only a change can clear, and jittered periodic re-checks.

use std::time::Duration;

use crate::reason::{Failure, Recovery};

/// First delay after a transient failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Maximum delay between transient retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// Longest `Retry-After` that is honoured as given; a longer one is capped to this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60 * 60);

/// Returns the delay before retry number `attempt` (1 for the first retry) of a failure.
/// `interval` is the object's re-check interval, used for failures that await a change.
pub fn retry_delay(failure: &Failure, attempt: u32, interval: Duration) -> Duration {
    if failure.reason.recovery() == Recovery::AwaitChange {
        return jittered(interval);
    }
    let exponent = attempt.saturating_sub(1).min(20);
    let backoff = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX);
    let backoff = jittered(backoff).min(BACKOFF_MAX);
    match failure.retry_after_secs {
        Some(secs) => Duration::from_secs(secs).min(RETRY_AFTER_MAX).max(backoff),
        None => backoff,
    }
}

/// Spreads a delay over 80% to 100% of its length, so objects created together do not
/// come due together.
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.8..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;

    fn transient() -> Failure {
        Failure::new(
            Reason::DirectoryUnavailable,
            "Directory API failed (HTTP 500)",
        )
    }

    #[test]
    fn transient_backoff_doubles_within_jitter() {
        let interval = Duration::from_secs(3600);
        for attempt in 1..=8 {
            let full = BACKOFF_BASE * (1 << (attempt - 1));
            let delay = retry_delay(&transient(), attempt, interval);
            assert!(delay <= full, "attempt {attempt}: {delay:?} > {full:?}");
            assert!(
                delay >= full.mul_f64(0.8),
                "attempt {attempt}: {delay:?} too short"
            );
        }
    }

    #[test]
    fn transient_backoff_is_capped() {
        let delay = retry_delay(&transient(), 40, Duration::from_secs(3600));
        assert!(delay <= BACKOFF_MAX, "{delay:?}");
        assert!(delay >= BACKOFF_MAX.mul_f64(0.8), "{delay:?}");
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut failure = Failure::new(Reason::RateLimited, "rate limited");
        failure.retry_after_secs = Some(120);
        let delay = retry_delay(&failure, 1, Duration::from_secs(3600));
        assert_eq!(delay, Duration::from_secs(120));
    }

    #[test]
    fn permanent_failure_waits_for_interval() {
        let failure = Failure::new(Reason::Unauthorized, "rejected the token");
        let delay = retry_delay(&failure, 1, Duration::from_secs(3600));
        assert!(delay >= Duration::from_secs(2880), "{delay:?}");
        assert!(delay <= Duration::from_secs(3600), "{delay:?}");
    }
}
