//! The Dataverse service-protection budget of one application user: requests and execution
//! time per sliding window, concurrent requests, a "paused until" set by any 429, and the
//! server's `x-ms-dop-hint`. Dataverse counts these per user, so every worker sending as that
//! user must draw on one budget: on PostgreSQL it is a row (and a request log) in the database
//! ([`crate::staging::PgStaging`]); on SQLite, with one submitter per database, it lives in the
//! process ([`LocalBudget`]). Both follow [`decide`], so they behave the same.
//!
//! The budget is proactive: a request is sent only when it fits. The client still handles a
//! 429 (the service's limits "may vary between environments"), and a 429 pauses every worker.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits one application user may use, per `[budget]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetLimits {
    /// Requests per window (Dataverse: 6,000 per 300 s).
    pub requests: u64,
    /// Combined execution time per window, in milliseconds (Dataverse: 1,200,000).
    pub execution_ms: u64,
    pub window_secs: u64,
    /// Concurrent requests (Dataverse: 52); the server's `x-ms-dop-hint` lowers it.
    pub concurrent: u64,
    /// A request not finished after this long no longer counts as in flight (its worker died).
    pub request_timeout_secs: u64,
}

impl BudgetLimits {
    /// How long a request counts against the window here: the window plus a small margin
    /// (1 %, at least 100 ms). A request is counted when it is taken from the budget, the
    /// service counts it when it arrives a little later; without the margin a worker waiting
    /// for the oldest request to leave the window would send just before the service agrees.
    pub fn counted_secs(&self) -> f64 {
        let w = self.window_secs as f64;
        w + (w * 0.01).max(0.1)
    }
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            requests: 6000,
            execution_ms: 1_200_000,
            window_secs: 300,
            concurrent: 52,
            request_timeout_secs: 300,
        }
    }
}

/// A request taken from the budget; hand it back with [`SharedBudget::finish`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket(pub i64);

/// A request sent without the budget (its store failed); finishing it records nothing.
pub const UNTRACKED: Ticket = Ticket(-1);

/// Store failures in a row after which a request is sent untracked.
pub const MAX_STORE_FAILURES: u32 = 10;

/// What the budget's state says about sending one more request now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Send,
    /// Wait this long, then ask again.
    Wait(Duration, WaitReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    Paused,
    Requests,
    ExecutionTime,
    Concurrency,
}

/// The budget's use in the current window, as either store sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Requests started within the window.
    pub requests: u64,
    /// Seconds since the oldest of them started.
    pub oldest_request_age: f64,
    /// Execution time of the finished requests within the window, ms.
    pub execution_ms: u64,
    /// Seconds since the oldest of those started.
    pub oldest_execution_age: f64,
    /// What the requests still in flight are expected to add (their number × the window's
    /// average execution time): they count before they finish.
    pub in_flight_execution_ms: u64,
    /// Requests started but not finished (and not timed out).
    pub in_flight: u64,
    /// Seconds until a pause ends (0 = not paused).
    pub paused_for: f64,
    pub dop_hint: Option<u64>,
}

/// The one rule both stores apply.
pub fn decide(limits: &BudgetLimits, usage: &Usage) -> Decision {
    let window = limits.counted_secs();
    if usage.paused_for > 0.0 {
        return Decision::Wait(secs(usage.paused_for), WaitReason::Paused);
    }
    if usage.requests >= limits.requests.max(1) {
        // Free again when the oldest leaves the window.
        return Decision::Wait(
            secs(window - usage.oldest_request_age),
            WaitReason::Requests,
        );
    }
    if usage.execution_ms + usage.in_flight_execution_ms >= limits.execution_ms {
        return Decision::Wait(
            secs(window - usage.oldest_execution_age),
            WaitReason::ExecutionTime,
        );
    }
    let concurrent = usage
        .dop_hint
        .map_or(limits.concurrent, |h| h.min(limits.concurrent))
        .max(1);
    if usage.in_flight >= concurrent {
        return Decision::Wait(Duration::from_millis(20), WaitReason::Concurrency);
    }
    Decision::Send
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.01))
}

#[derive(Debug, thiserror::Error)]
#[error("throttling budget: {0}")]
pub struct BudgetError(pub String);

/// One application user's budget, shared by everyone sending as that user.
#[async_trait::async_trait]
pub trait SharedBudget: Send + Sync + std::fmt::Debug {
    /// Take one request from the budget if it fits now.
    async fn try_take(&self) -> Result<Result<Ticket, (Duration, WaitReason)>, BudgetError>;
    /// The request ended after `exec` (its execution time counts against the window).
    async fn finish(&self, ticket: Ticket, exec: Duration) -> Result<(), BudgetError>;
    /// A 429 said `Retry-After`: nobody sends before then.
    async fn pause(&self, retry_after: Duration) -> Result<(), BudgetError>;
    /// The server's `x-ms-dop-hint`.
    async fn set_dop_hint(&self, hint: u64) -> Result<(), BudgetError>;

    /// Wait until one request fits, then take it. A store error is logged and retried (sending
    /// without the budget could overrun it for every worker); after [`MAX_STORE_FAILURES`] in
    /// a row the request goes out untracked (this process's own throttle and the service's
    /// 429s still hold it back) rather than stalling the run.
    async fn take(&self) -> Ticket {
        let mut failures = 0u32;
        loop {
            match self.try_take().await {
                Ok(Ok(ticket)) => return ticket,
                Ok(Err((wait, reason))) => {
                    tracing::debug!(
                        ?reason,
                        wait_ms = wait.as_millis() as u64,
                        "waiting for the throttling budget"
                    );
                    tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                }
                Err(e) if failures + 1 >= MAX_STORE_FAILURES => {
                    tracing::error!(error = %e, "the shared throttling budget cannot be read; sending this request untracked");
                    return UNTRACKED;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot read the shared throttling budget; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
                }
            }
        }
    }
}

/// The budget in this process (SQLite: one submitter per database).
#[derive(Debug)]
pub struct LocalBudget {
    limits: BudgetLimits,
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    next: i64,
    /// (id, started, execution ms once finished)
    requests: VecDeque<(i64, Instant, Option<u64>)>,
    paused_until: Option<Instant>,
    dop_hint: Option<u64>,
}

impl LocalBudget {
    pub fn new(limits: BudgetLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(LocalState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl SharedBudget for LocalBudget {
    async fn try_take(&self) -> Result<Result<Ticket, (Duration, WaitReason)>, BudgetError> {
        let now = Instant::now();
        let window = Duration::from_secs_f64(self.limits.counted_secs());
        let timeout = Duration::from_secs(self.limits.request_timeout_secs);
        let mut s = self.lock();
        while s
            .requests
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) >= window.max(timeout))
        {
            s.requests.pop_front();
        }
        let mut usage = Usage {
            paused_for: s
                .paused_until
                .map_or(0.0, |u| u.saturating_duration_since(now).as_secs_f64()),
            dop_hint: s.dop_hint,
            ..Default::default()
        };
        for (_, at, ms) in &s.requests {
            let age = now.duration_since(*at);
            if age < window {
                usage.requests += 1;
                usage.oldest_request_age = usage.oldest_request_age.max(age.as_secs_f64());
                if let Some(ms) = ms {
                    usage.execution_ms += ms;
                    usage.oldest_execution_age = usage.oldest_execution_age.max(age.as_secs_f64());
                }
            }
            if ms.is_none() && age < timeout {
                usage.in_flight += 1;
            }
        }
        let finished = s
            .requests
            .iter()
            .filter(|(_, at, ms)| ms.is_some() && now.duration_since(*at) < window)
            .count() as u64;
        if let Some(average) = usage.execution_ms.checked_div(finished) {
            usage.in_flight_execution_ms = usage.in_flight * average;
        }
        match decide(&self.limits, &usage) {
            Decision::Send => {
                s.next += 1;
                let id = s.next;
                s.requests.push_back((id, now, None));
                Ok(Ok(Ticket(id)))
            }
            Decision::Wait(d, why) => Ok(Err((d, why))),
        }
    }

    async fn finish(&self, ticket: Ticket, exec: Duration) -> Result<(), BudgetError> {
        let mut s = self.lock();
        if let Some(r) = s.requests.iter_mut().find(|(id, _, _)| *id == ticket.0) {
            r.2 = Some(exec.as_millis() as u64);
        }
        Ok(())
    }

    async fn pause(&self, retry_after: Duration) -> Result<(), BudgetError> {
        let until = Instant::now() + retry_after;
        let mut s = self.lock();
        if s.paused_until.is_none_or(|u| u < until) {
            s.paused_until = Some(until);
        }
        Ok(())
    }

    async fn set_dop_hint(&self, hint: u64) -> Result<(), BudgetError> {
        self.lock().dop_hint = Some(hint.max(1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests: u64, execution_ms: u64, concurrent: u64) -> BudgetLimits {
        BudgetLimits {
            requests,
            execution_ms,
            window_secs: 10,
            concurrent,
            request_timeout_secs: 60,
        }
    }

    #[test]
    fn requests_wait_until_the_oldest_leaves_the_window() {
        let l = limits(3, 1_000_000, 10);
        let mut u = Usage {
            requests: 3,
            oldest_request_age: 9.0,
            ..Default::default()
        };
        match decide(&l, &u) {
            Decision::Wait(d, WaitReason::Requests) => {
                assert!((d.as_secs_f64() - 1.1).abs() < 1e-6, "{d:?}")
            }
            other => panic!("{other:?}"),
        }
        u.requests = 2; // the oldest left the window
        assert_eq!(decide(&l, &u), Decision::Send);
    }

    #[test]
    fn execution_time_pause_and_concurrency_each_hold_requests_back() {
        let l = limits(100, 500, 4);
        let u = Usage {
            requests: 2,
            execution_ms: 550,
            oldest_execution_age: 8.0,
            ..Default::default()
        };
        assert!(matches!(
            decide(&l, &u),
            Decision::Wait(_, WaitReason::ExecutionTime)
        ));
        let u = Usage {
            requests: 3,
            execution_ms: 300,
            oldest_execution_age: 8.0,
            in_flight: 2,
            in_flight_execution_ms: 200,
            ..Default::default()
        };
        assert!(
            matches!(decide(&l, &u), Decision::Wait(_, WaitReason::ExecutionTime)),
            "requests in flight count toward the execution time before they finish"
        );
        let u = Usage {
            paused_for: 3.0,
            ..Default::default()
        };
        assert_eq!(
            decide(&l, &u),
            Decision::Wait(Duration::from_secs(3), WaitReason::Paused)
        );
        let u = Usage {
            in_flight: 2,
            dop_hint: Some(2),
            ..Default::default()
        };
        assert!(matches!(
            decide(&l, &u),
            Decision::Wait(_, WaitReason::Concurrency)
        ));
        let u = Usage {
            in_flight: 3,
            ..Default::default()
        };
        assert_eq!(decide(&l, &u), Decision::Send);
    }

    #[tokio::test]
    async fn the_local_budget_never_lets_more_than_the_limit_through() {
        let b = LocalBudget::new(limits(5, 1_000_000, 100));
        let mut taken = 0;
        for _ in 0..20 {
            if let Ok(Ok(t)) = b.try_take().await {
                b.finish(t, Duration::from_millis(1)).await.unwrap();
                taken += 1;
            }
        }
        assert_eq!(taken, 5);
        b.pause(Duration::from_secs(30)).await.unwrap();
        assert!(matches!(
            b.try_take().await.unwrap(),
            Err((_, WaitReason::Paused))
        ));
    }
}
