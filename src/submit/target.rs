//! The target trait: what the submit job needs from a Dynamics back end.
//!
//! The job logic (claim, batch, ledger, recovery) only talks to this trait, so a Finance &
//! Operations or Business Central target can come later without touching it.

use crate::model::Order;
use std::any::Any;
use std::sync::Arc;

/// A staged order as the job hands it to the target.
#[derive(Debug, Clone)]
pub struct OrderToSend {
    /// Staging row id; outcomes are reported against it.
    pub order_id: i64,
    pub order: Order,
    /// The most lines an earlier version of this order had since it last succeeded (0: none).
    /// Lines are keyed by position, so lines above the order's own count up to this one may
    /// still be in the target from that version: the target removes them with this order.
    pub earlier_lines: u32,
}

/// An order mapped to target operations, validated, ready to go into a batch.
#[derive(Debug, Clone)]
pub struct PlannedOrder {
    pub order_id: i64,
    /// The key the order has in Dynamics (e.g. `shopify-us.1001`).
    pub dynamics_key: String,
    /// Number of HTTP operations this order takes (1 salesorder + n lines + optional contact).
    pub operations: usize,
    /// Target-specific payload (for Dataverse: the order's changeset).
    pub payload: TargetPayload,
}

/// What a target's `plan_order` made of an order, handed back to the same target's
/// `submit_batch` as it is: typed and shared, never serialized or copied on the way (the job
/// only moves it around).
#[derive(Clone)]
pub struct TargetPayload(Arc<dyn Any + Send + Sync>);

impl TargetPayload {
    pub fn new<T: Any + Send + Sync>(plan: T) -> Self {
        Self(Arc::new(plan))
    }

    /// A payload that holds nothing (batching tests).
    pub fn empty() -> Self {
        Self::new(())
    }

    /// The plan, if it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.clone().downcast::<T>().ok()
    }

    /// The plan to change in place, if it is a `T` and this is its only handle (tests that
    /// tamper with a plan to get past the client's own checks).
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        Arc::get_mut(&mut self.0)?.downcast_mut::<T>()
    }
}

impl std::fmt::Debug for TargetPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetPayload(..)")
    }
}

/// Why an order was refused before anything was sent (e.g. a value longer than its column).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    pub code: String,
    pub message: String,
}

/// The outcome of one order in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderResult {
    Succeeded {
        dynamics_ref: String,
    },
    Failed {
        retryable: bool,
        http_status: Option<u16>,
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderOutcome {
    pub order_id: i64,
    pub result: OrderResult,
}

/// A failure that stops the whole run: nothing more can be submitted.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("target unavailable: {0}")]
    Unavailable(String),
    #[error("target configuration: {0}")]
    Config(String),
}

/// Counters the target keeps for the run summary and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetStats {
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
    pub token_refreshes: u64,
}

/// The outcome code of an order not sent again because its claim was withdrawn: not a
/// failure, and not recorded (the claim is someone else's, or new content's).
pub const CLAIM_WITHDRAWN: &str = "claim_withdrawn";

/// Which orders a sender still holds the claim of (see [`Target::submit_batch_checked`]).
#[async_trait::async_trait]
pub trait ClaimCheck: Send + Sync {
    /// Of `order_ids`, those still claimed by this sender.
    async fn still_ours(&self, order_ids: &[i64]) -> Vec<i64>;
}

/// Every order is still ours (no staging to ask: tests, dry runs).
pub struct AllOurs;

#[async_trait::async_trait]
impl ClaimCheck for AllOurs {
    async fn still_ours(&self, order_ids: &[i64]) -> Vec<i64> {
        order_ids.to_vec()
    }
}

#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// Authenticate, check the connection and resolve reference data (price list, currency...).
    async fn prepare(&self) -> Result<(), TargetError>;

    /// Map and validate one order. Pure: sends nothing.
    fn plan_order(&self, order: &OrderToSend) -> Result<PlannedOrder, PlanError>;

    /// The most operations one batch request may hold (Dataverse: 1000).
    fn max_operations_per_batch(&self) -> usize;

    /// Send a batch; returns one outcome per order, in any order. Transient failures are
    /// retried inside (with backoff and the client-wide throttle) until the retry policy gives
    /// up, then reported as `Failed { retryable: true }`.
    async fn submit_batch(&self, orders: &[PlannedOrder])
        -> Result<Vec<OrderOutcome>, TargetError>;

    /// [`Target::submit_batch`], asking `claims` before an order is sent again (a retry) whether
    /// it is still this sender's to send: one whose claim was withdrawn (new content was
    /// staged, or the claim expired and another worker took it) is not sent again, so that a
    /// late retry cannot overwrite what was sent after it. Its outcome is `claim_withdrawn`
    /// (and is not recorded: the claim is gone).
    async fn submit_batch_checked(
        &self,
        orders: &[PlannedOrder],
        claims: &dyn ClaimCheck,
    ) -> Result<Vec<OrderOutcome>, TargetError> {
        let _ = claims;
        self.submit_batch(orders).await
    }

    /// How many batches may be in flight right now (adapts to throttling and `x-ms-dop-hint`).
    fn parallelism(&self) -> usize;

    /// Render what `submit_batch` would send, for `--dry-run`.
    fn describe_batch(&self, orders: &[PlannedOrder]) -> String;

    fn stats(&self) -> TargetStats;
}
