//! `RetryPolicy`: how long to wait before resending after a transient failure, and how often.
//!
//! Backoff is `base_ms * factor^n` (n = 0 for the first retry), capped at `cap_ms`, then
//! spread by ±`jitter` (a fraction) so that parallel batches do not retry in lock-step. When
//! the server sent `Retry-After` and it is longer, it wins (it is not capped: the server knows).
//! Defaults live in `crate::config::RetryConfig` (6 retries, 500 ms, ×2, 60 s cap, ±20 %).

use crate::config::RetryConfig;
use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Resends after the first attempt, for transient errors other than throttling.
    pub max_retries: u32,
    pub base: Duration,
    pub factor: f64,
    pub cap: Duration,
    /// Fraction in [0, 1].
    pub jitter: f64,
}

impl RetryPolicy {
    pub fn from_config(c: &RetryConfig) -> Self {
        Self {
            max_retries: c.max_retries,
            base: Duration::from_millis(c.base_ms),
            factor: if c.factor.is_finite() && c.factor >= 1.0 {
                c.factor
            } else {
                1.0
            },
            cap: Duration::from_millis(c.cap_ms.max(c.base_ms)),
            jitter: if c.jitter.is_finite() {
                c.jitter.clamp(0.0, 1.0)
            } else {
                0.0
            },
        }
    }

    /// How many 429 responses one request may absorb. Throttling is expected under load and
    /// is paced by `Retry-After`, so it has its own, larger budget than `max_retries`.
    pub fn max_throttled_retries(&self) -> u32 {
        self.max_retries.saturating_mul(5).max(20)
    }

    /// The backoff before retry number `retry` (0-based), without jitter, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ms = self.base.as_millis() as f64 * self.factor.powi(retry.min(64) as i32);
        let capped = ms.min(self.cap.as_millis() as f64);
        Duration::from_millis(capped as u64)
    }

    /// The wait before retry number `retry`: jittered backoff, or `retry_after` if longer.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.backoff(retry).as_secs_f64();
        let spread = base * self.jitter;
        let jittered = if spread > 0.0 {
            rand::thread_rng().gen_range((base - spread)..=(base + spread))
        } else {
            base
        };
        let jittered = Duration::from_secs_f64(jittered.max(0.0));
        match retry_after {
            Some(ra) if ra > jittered => ra,
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::from_config(&RetryConfig::default())
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        assert_eq!(p.backoff(0), Duration::from_millis(500));
        assert_eq!(p.backoff(1), Duration::from_millis(1000));
        assert_eq!(p.backoff(3), Duration::from_millis(4000));
        assert_eq!(p.backoff(10), Duration::from_secs(60));
        assert_eq!(p.backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_range() {
        let p = policy();
        for retry in 0..8 {
            let b = p.backoff(retry).as_secs_f64();
            for _ in 0..200 {
                let d = p.delay(retry, None).as_secs_f64();
                assert!(
                    d >= b * 0.8 - 1e-9 && d <= b * 1.2 + 1e-9,
                    "{retry}: {d} vs {b}"
                );
            }
        }
    }

    #[test]
    fn retry_after_wins_when_longer_only() {
        let p = policy();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        // Longer than the cap: still honoured.
        assert_eq!(
            p.delay(9, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        // Shorter than the backoff: the backoff stands.
        let d = p.delay(3, Some(Duration::from_millis(10)));
        assert!(d >= Duration::from_millis(3200), "{d:?}");
    }

    #[test]
    fn no_jitter_is_exact_and_bad_values_are_tamed() {
        let p = RetryPolicy::from_config(&RetryConfig {
            max_retries: 2,
            base_ms: 100,
            factor: f64::NAN,
            cap_ms: 10,
            jitter: 5.0,
        });
        assert_eq!(p.factor, 1.0);
        assert_eq!(p.cap, Duration::from_millis(100));
        assert_eq!(p.jitter, 1.0);
        let p = RetryPolicy {
            jitter: 0.0,
            ..policy()
        };
        assert_eq!(p.delay(2, None), Duration::from_millis(2000));
        assert_eq!(p.max_throttled_retries(), 30);
    }
}
