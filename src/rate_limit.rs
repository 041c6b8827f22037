//! Token bucket that caps the rate of Directory API uploads across the whole process.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Shared upload rate limit. Cloning shares the bucket.
#[derive(Clone)]
pub struct UploadLimiter {
    limiter: Arc<DefaultDirectRateLimiter>,
    per_second: f64,
}

impl UploadLimiter {
    /// Allows `per_second` uploads per second on average and bursts of up to `burst`.
    /// Returns `None` for a rate that is not positive, which means no limit.
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / per_second);
        let burst = NonZeroU32::new(burst.max(1))?;
        let quota = Quota::with_period(period)?.allow_burst(burst);
        let limiter = Arc::new(RateLimiter::direct(quota));
        Some(Self {
            limiter,
            per_second,
        })
    }

    /// Waits until one more upload may be sent.
    pub async fn acquire(&self) {
        self.limiter.until_ready().await;
    }
}

impl std::fmt::Debug for UploadLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadLimiter({} per second)", self.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_means_no_limit() {
        assert!(UploadLimiter::new(0.0, 1).is_none());
        assert!(UploadLimiter::new(-1.0, 1).is_none());
    }

    #[tokio::test]
    async fn burst_passes_then_rate_applies() {
        let limiter = UploadLimiter::new(20.0, 2).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
        }
        // Two tokens are free; two more take 50 ms each at 20 per second.
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "{:?}",
            started.elapsed()
        );
    }
}
