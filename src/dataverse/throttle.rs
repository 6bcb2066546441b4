//! The client-wide throttle: one per `DataverseTarget`, shared by every batch in flight.
//!
//! Dataverse limits are per user, so when one request is told to slow down, all of them must:
//! - on a 429 the whole client pauses until `Retry-After` has passed — every caller of
//!   [`Throttle::acquire`] waits, not just the one that got the 429;
//! - parallelism halves (minimum 1) on a 429 or on the concurrency-limit code `0x80072326`,
//!   at most once per pause (the other requests that were already in flight when the first
//!   429 came back do not halve it again);
//! - after [`RAMP_UP_AFTER`] successes in a row it grows by one again;
//! - it never exceeds `min(submit.max_parallel, x-ms-dop-hint)`.
//!
//! [`Throttle::acquire`] also enforces the limit: at most `parallelism()` requests hold a
//! permit at once, whatever the caller does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Successes in a row after which parallelism grows by one.
pub const RAMP_UP_AFTER: u32 = 5;

#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
    changed: Notify,
    throttled: AtomicU64,
}

#[derive(Debug)]
struct State {
    max_parallel: usize,
    dop_hint: Option<usize>,
    current: usize,
    in_flight: usize,
    successes: u32,
    paused_until: Option<Instant>,
}

impl State {
    fn ceiling(&self) -> usize {
        self.dop_hint
            .map_or(self.max_parallel, |h| h.min(self.max_parallel))
            .max(1)
    }

    fn lower(&mut self, now: Instant) {
        let already_paused = self.paused_until.is_some_and(|u| u > now);
        if !already_paused {
            self.current = (self.current / 2).max(1);
        }
        self.successes = 0;
    }
}

/// A slot for one request; released on drop.
#[derive(Debug)]
pub struct ThrottlePermit<'a> {
    throttle: &'a Throttle,
}

impl Drop for ThrottlePermit<'_> {
    fn drop(&mut self) {
        let mut s = self.throttle.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.throttle.changed.notify_waiters();
    }
}

impl Throttle {
    pub fn new(max_parallel: usize) -> Self {
        let max_parallel = max_parallel.max(1);
        Self {
            state: Mutex::new(State {
                max_parallel,
                dop_hint: None,
                current: max_parallel,
                in_flight: 0,
                successes: 0,
                paused_until: None,
            }),
            changed: Notify::new(),
            throttled: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many requests may be in flight now.
    pub fn parallelism(&self) -> usize {
        self.lock().current
    }

    /// `min(max_parallel, x-ms-dop-hint)`.
    pub fn ceiling(&self) -> usize {
        self.lock().ceiling()
    }

    /// Throttled responses seen so far.
    pub fn throttled_count(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Record the server's `x-ms-dop-hint`; parallelism is clamped to it at once.
    pub fn set_dop_hint(&self, hint: usize) {
        let mut s = self.lock();
        if s.dop_hint == Some(hint) {
            return;
        }
        let first = s.dop_hint.is_none();
        s.dop_hint = Some(hint.max(1));
        let ceiling = s.ceiling();
        // The first hint sets the starting point; later ones only clamp.
        s.current = if first {
            ceiling
        } else {
            s.current.min(ceiling)
        };
        drop(s);
        self.changed.notify_waiters();
    }

    /// Wait until the client is not paused and a slot is free, then take the slot.
    pub async fn acquire(&self) -> ThrottlePermit<'_> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pause = {
                let mut s = self.lock();
                match s.paused_until {
                    Some(until) if until > Instant::now() => Some(until),
                    _ => {
                        if s.in_flight < s.current {
                            s.in_flight += 1;
                            return ThrottlePermit { throttle: self };
                        }
                        None
                    }
                }
            };
            match pause {
                Some(until) => tokio::time::sleep_until(until).await,
                None => notified.await,
            }
        }
    }

    /// A 429: pause everybody for `pause` and lower parallelism.
    pub fn on_throttled(&self, pause: Duration) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut s = self.lock();
        s.lower(now);
        let until = now + pause;
        if s.paused_until.is_none_or(|u| u < until) {
            s.paused_until = Some(until);
        }
        tracing::info!(
            pause_ms = pause.as_millis() as u64,
            parallelism = s.current,
            "Dataverse throttled the client; pausing all requests"
        );
    }

    /// `0x80072326` (too many concurrent requests) without a 429: lower parallelism only.
    pub fn on_concurrency_limit(&self) {
        let mut s = self.lock();
        s.lower(Instant::now());
        tracing::info!(
            parallelism = s.current,
            "Dataverse concurrency limit reached; lowering parallelism"
        );
    }

    /// A request that was not throttled.
    pub fn on_success(&self) {
        let mut s = self.lock();
        s.successes += 1;
        if s.successes >= RAMP_UP_AFTER && s.current < s.ceiling() {
            s.current += 1;
            s.successes = 0;
            drop(s);
            self.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_caller() {
        let t = Arc::new(Throttle::new(4));
        t.on_throttled(Duration::from_secs(10));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let _p = t.acquire().await;
                Instant::now()
            }));
        }
        for task in tasks {
            let at = task.await.unwrap();
            assert!(at - start >= Duration::from_secs(10), "{:?}", at - start);
        }
        assert_eq!(t.throttled_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn parallelism_halves_once_per_pause_and_recovers() {
        let t = Throttle::new(8);
        assert_eq!(t.parallelism(), 8);
        t.on_throttled(Duration::from_secs(1));
        assert_eq!(t.parallelism(), 4);
        // Other in-flight requests hitting the same pause do not halve again.
        t.on_throttled(Duration::from_secs(1));
        assert_eq!(t.parallelism(), 4);
        tokio::time::advance(Duration::from_secs(2)).await;
        t.on_throttled(Duration::from_secs(1));
        assert_eq!(t.parallelism(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        t.on_concurrency_limit();
        assert_eq!(t.parallelism(), 1);
        t.on_concurrency_limit();
        assert_eq!(t.parallelism(), 1, "never below 1");
        for _ in 0..RAMP_UP_AFTER - 1 {
            t.on_success();
        }
        assert_eq!(t.parallelism(), 1);
        t.on_success();
        assert_eq!(t.parallelism(), 2);
        for _ in 0..RAMP_UP_AFTER * 20 {
            t.on_success();
        }
        assert_eq!(t.parallelism(), 8, "back to the ceiling, not above");
        assert_eq!(t.throttled_count(), 3);
    }

    #[tokio::test]
    async fn never_above_the_dop_hint() {
        let t = Throttle::new(10);
        t.set_dop_hint(3);
        assert_eq!((t.parallelism(), t.ceiling()), (3, 3));
        for _ in 0..100 {
            t.on_success();
        }
        assert_eq!(t.parallelism(), 3);
        // max_parallel below the hint wins.
        let t = Throttle::new(2);
        t.set_dop_hint(16);
        assert_eq!(t.parallelism(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_enforces_the_limit() {
        let t = Arc::new(Throttle::new(2));
        let a = t.acquire().await;
        let _b = t.acquire().await;
        let t2 = t.clone();
        let waiter = tokio::spawn(async move {
            let _c = t2.acquire().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("released slot is handed on")
            .unwrap();
    }
}
