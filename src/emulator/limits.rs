//! Service protection limits per user (token subject) over a sliding window: number of
//! requests, combined execution time, and concurrent requests. Exceeding one gives 429 with
//! `Retry-After` (integer seconds until the window frees up) and the documented error code.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::response::{codes, ApiError};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LimitSettings {
    pub limit_requests: u64,
    pub limit_exec_ms: u64,
    pub limit_window_secs: u64,
    pub limit_concurrent: u64,
}

#[derive(Default)]
struct UserWindow {
    requests: VecDeque<Instant>,
    executions: VecDeque<(Instant, u64)>,
    exec_sum: u64,
    in_flight: u64,
    /// Every request that arrived in the window, refused or not.
    arrivals: VecDeque<Instant>,
}

/// The most a client ever asked of the limits: requests arriving within one window (refused
/// ones included) and concurrent requests (counting the one arriving). A client that respects
/// the limits never goes above them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Peaks {
    pub requests_in_window: u64,
    pub concurrent: u64,
}

#[derive(Default)]
pub struct LimitState {
    users: HashMap<String, UserWindow>,
    peaks: Peaks,
}

/// Formats 1200000 as `1,200,000`, as the service's message does.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds_until(at: Instant, now: Instant) -> u64 {
    let wait = at.saturating_duration_since(now);
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

fn too_many(code: &str, message: String, retry_after: u64) -> ApiError {
    ApiError::new(429, code, message).with_header("Retry-After", retry_after.to_string())
}

impl LimitState {
    /// Admits a request (counting it and marking it in flight) or refuses it with a 429.
    pub fn admit(
        &mut self,
        user: &str,
        settings: &LimitSettings,
        now: Instant,
    ) -> Result<(), ApiError> {
        let window = Duration::from_secs(settings.limit_window_secs);
        let state = self.users.entry(user.to_string()).or_default();
        while state
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            state.arrivals.pop_front();
        }
        state.arrivals.push_back(now);
        self.peaks.requests_in_window = self
            .peaks
            .requests_in_window
            .max(state.arrivals.len() as u64);
        self.peaks.concurrent = self.peaks.concurrent.max(state.in_flight + 1);
        while state
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            state.requests.pop_front();
        }
        while let Some(&(t, ms)) = state.executions.front() {
            if now.duration_since(t) < window {
                break;
            }
            state.executions.pop_front();
            state.exec_sum -= ms;
        }
        if state.in_flight >= settings.limit_concurrent {
            return Err(too_many(
                codes::LIMIT_CONCURRENCY,
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    settings.limit_concurrent
                ),
                1,
            ));
        }
        if state.requests.len() as u64 >= settings.limit_requests {
            // Free again when enough of the oldest requests leave the window.
            let excess = state.requests.len() as u64 - settings.limit_requests;
            let at = state.requests[excess as usize] + window;
            return Err(too_many(
                codes::LIMIT_REQUESTS,
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    settings.limit_requests, settings.limit_window_secs
                ),
                seconds_until(at, now),
            ));
        }
        if state.exec_sum >= settings.limit_exec_ms {
            let mut remaining = state.exec_sum;
            let mut at = now;
            for &(t, ms) in &state.executions {
                remaining -= ms;
                at = t + window;
                if remaining < settings.limit_exec_ms {
                    break;
                }
            }
            return Err(too_many(
                codes::LIMIT_EXECUTION_TIME,
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time \
                     window of {} seconds. Decrease number of concurrent requests or reduce the duration of \
                     requests and try again later.",
                    thousands(settings.limit_exec_ms),
                    settings.limit_window_secs
                ),
                seconds_until(at, now),
            ));
        }
        state.requests.push_back(now);
        state.in_flight += 1;
        Ok(())
    }

    pub fn peaks(&self) -> Peaks {
        self.peaks
    }

    /// Ends an admitted request, adding its execution time to the window.
    pub fn finish(&mut self, user: &str, exec_ms: u64, now: Instant) {
        if let Some(state) = self.users.get_mut(user) {
            state.in_flight = state.in_flight.saturating_sub(1);
            state.executions.push_back((now, exec_ms));
            state.exec_sum += exec_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(1_200_000), "1,200,000");
        assert_eq!(thousands(999), "999");
    }
}
