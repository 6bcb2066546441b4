//! Sending one `$batch` of order changesets, with retries, and mapping every changeset's
//! response to an [`OrderOutcome`].
//!
//! - Whole-request transient failures (5xx, timeouts, dropped connections; 429 beyond what
//!   [`ApiClient::send`] absorbed) resend the batch per the `RetryPolicy`. Resending is safe:
//!   every write is an upsert by key.
//! - Changesets that failed transiently (or were not executed because the batch stopped) are
//!   resent on their own; permanent failures are final at once.
//! - 413 (request too large) splits the batch in halves.
//! - When retries run out every remaining order is `Failed { retryable: true,
//!   code: "retries_exhausted" }`; when not a single response ever arrived because the host
//!   refused every connection, the whole call is `TargetError::Unavailable`.

use super::batch_reader::{changeset_results, read_batch_response, BatchReply, ChangesetResult};
use super::batch_writer::{write_batch, ChangesetPlan, PlannedOperation};
use super::client::{ApiClient, BeforeResend, SendError};
use super::errors::{
    classify, shorten, ErrorClass, Failure, TransportErrorKind, CONCURRENCY_LIMIT_CODE,
};
use super::http::ApiRequest;
use crate::submit::target::{ClaimCheck, OrderOutcome, OrderResult, TargetError, CLAIM_WITHDRAWN};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// An order ready to send: staging id and its changeset.
#[derive(Debug, Clone)]
pub struct OrderChangeset {
    pub order_id: i64,
    pub plan: Arc<ChangesetPlan>,
}

/// The last failure of an order that may still be retried.
#[derive(Debug, Clone)]
struct LastFailure {
    status: Option<u16>,
    code: String,
    message: String,
    retry_after: Option<Duration>,
}

fn failed(retryable: bool, status: Option<u16>, code: &str, message: String) -> OrderResult {
    OrderResult::Failed {
        retryable,
        http_status: status,
        code: code.to_string(),
        message,
    }
}

fn code_or_status(code: &str, status: u16) -> String {
    if code.is_empty() {
        format!("http_{status}")
    } else {
        code.to_string()
    }
}

/// Build the `$batch` request for `plans`.
pub fn batch_request(
    base: &str,
    plans: &[&ChangesetPlan],
) -> (ApiRequest, super::batch_writer::WrittenBatch) {
    let written = write_batch(base, plans);
    let req = ApiRequest {
        method: reqwest::Method::POST,
        url: format!("{base}$batch"),
        body: Some((written.content_type(), written.body.clone().into_bytes())),
        extra_headers: vec![("Prefer", "odata.continue-on-error".to_string())],
    };
    (req, written)
}

/// Send `orders` (already within the operation limit) and return one outcome per order.
pub async fn send_orders(
    client: &ApiClient,
    orders: &[OrderChangeset],
    claims: &dyn ClaimCheck,
) -> Result<Vec<OrderOutcome>, TargetError> {
    let mut results: Vec<Option<OrderResult>> = vec![None; orders.len()];
    // Each order's changeset as it is sent now: removals of lines that are already gone are
    // dropped from it (see `Interpreted::CheckRemovals`).
    let mut plans: Vec<Arc<ChangesetPlan>> = orders.iter().map(|o| o.plan.clone()).collect();
    let mut groups: Vec<Vec<usize>> = vec![(0..orders.len()).collect()];
    let mut any_response = false;
    let mut connect_failures_only = true;
    // After the first request, each one asks first which of its orders are still ours
    // (unless the client has just asked, after a 429's pause: `answered`).
    let mut sent_before = false;
    let mut answered: Option<HashSet<i64>> = None;
    while let Some(group) = groups.pop() {
        let mut pending = group;
        let mut retry = 0u32;
        let mut last: Vec<Option<LastFailure>> = vec![None; orders.len()];
        while !pending.is_empty() {
            if sent_before {
                let ours = match answered.take() {
                    Some(ours) => ours,
                    None => {
                        let ids: Vec<i64> = pending.iter().map(|&i| orders[i].order_id).collect();
                        claims.still_ours(&ids).await.into_iter().collect()
                    }
                };
                pending = withdraw_others(&ours, orders, pending, &mut results);
                if pending.is_empty() {
                    break;
                }
            }
            sent_before = true;
            let batch: Vec<&ChangesetPlan> = pending.iter().map(|&i| &*plans[i]).collect();
            let (req, written) = batch_request(&client.base, &batch);
            tracing::debug!(
                orders = pending.len(),
                operations = written.operations(),
                body = %written.body,
                "sending $batch"
            );
            let mut retry_now: Vec<usize> = Vec::new();
            // After a 429's pause the client asks whether every order is still ours before it
            // sends this request again; if not, the 429 comes back here and the request goes
            // again at once without the others (the pause is over, no retry counted).
            let ids: Vec<i64> = pending.iter().map(|&i| orders[i].order_id).collect();
            let all_ours = AllStillOurs {
                claims,
                ids: &ids,
                not_all: std::sync::Mutex::new(None),
            };
            let sent = client.send_checked(&req, Some(&all_ours)).await;
            if let Some(ours) = all_ours
                .not_all
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
            {
                any_response = true;
                connect_failures_only = false;
                answered = Some(ours);
                continue;
            }
            // Orders whose changeset failed on a missing line, to check (see `CheckRemovals`).
            let mut check_now: Vec<(usize, LastFailure)> = Vec::new();
            match sent {
                Err(SendError::Auth(m)) => return Err(TargetError::Auth(m)),
                Err(SendError::TokenUnavailable(m)) => return Err(TargetError::Unavailable(m)),
                Err(SendError::Transport(t)) => {
                    connect_failures_only &= t.kind == TransportErrorKind::Connect;
                    let class = classify(Failure::Transport(t.kind));
                    let failure = LastFailure {
                        status: None,
                        code: format!("{:?}", t.kind).to_lowercase(),
                        message: t.message.clone(),
                        retry_after: None,
                    };
                    for &i in &pending {
                        if class.is_transient() {
                            last[i] = Some(failure.clone());
                            retry_now.push(i);
                        } else {
                            results[i] =
                                Some(failed(false, None, "transport_error", t.message.clone()));
                        }
                    }
                }
                Ok(response) => {
                    any_response = true;
                    connect_failures_only = false;
                    match read_batch_response(
                        response.status,
                        &response.content_type,
                        &response.body,
                    ) {
                        Ok(BatchReply::Rejected { status, error }) => {
                            if status == 413 && pending.len() > 1 {
                                let half = pending.len() / 2;
                                tracing::warn!(
                                    orders = pending.len(),
                                    "$batch too large (413); splitting it"
                                );
                                groups.push(pending[half..].to_vec());
                                groups.push(pending[..half].to_vec());
                                break;
                            }
                            let class = classify(Failure::Http {
                                status,
                                code: &error.code,
                                retry_after: response.retry_after,
                            });
                            let code = code_or_status(&error.code, status);
                            for &i in &pending {
                                if class.is_transient() {
                                    last[i] = Some(LastFailure {
                                        status: Some(status),
                                        code: code.clone(),
                                        message: error.message.clone(),
                                        retry_after: response.retry_after,
                                    });
                                    retry_now.push(i);
                                } else {
                                    let message =
                                        format!("the whole batch was refused: {}", error.message);
                                    results[i] = Some(failed(false, Some(status), &code, message));
                                }
                            }
                        }
                        Ok(BatchReply::Parts { stopped, parts }) => {
                            let per_changeset = changeset_results(&written, &parts);
                            if let Some(pause) = per_changeset.iter().find_map(throttled_part) {
                                client.pause_everyone(pause).await;
                            }
                            for (slot, result) in per_changeset.into_iter().enumerate() {
                                let i = pending[slot];
                                match interpret(client, &plans[i], result, stopped) {
                                    Interpreted::Final(r) => results[i] = Some(r),
                                    Interpreted::Retry(f) => {
                                        last[i] = Some(f);
                                        retry_now.push(i);
                                    }
                                    Interpreted::CheckRemovals(f) => check_now.push((i, f)),
                                }
                            }
                        }
                        Err(e) => {
                            // The batch may or may not have been applied; resending is safe.
                            for &i in &pending {
                                last[i] = Some(LastFailure {
                                    status: Some(response.status),
                                    code: "unreadable_response".into(),
                                    message: e.to_string(),
                                    retry_after: None,
                                });
                                retry_now.push(i);
                            }
                        }
                    }
                }
            }
            // Orders whose changeset lost removals of lines already gone go again at once, as a
            // group of their own: no retry counted, no wait for this group's retries.
            let mut resend_now: Vec<usize> = Vec::new();
            for (i, failure) in check_now {
                match without_absent_lines(client, &plans[i]).await {
                    Ok(Some(plan)) => {
                        plans[i] = Arc::new(plan);
                        resend_now.push(i);
                    }
                    // Every line it removes is there: the 404 is about something else.
                    Ok(None) => {
                        results[i] = Some(failed(
                            false,
                            failure.status,
                            &failure.code,
                            failure.message,
                        ))
                    }
                    Err(f) => {
                        last[i] = Some(f);
                        retry_now.push(i);
                    }
                }
            }
            if !resend_now.is_empty() {
                groups.push(resend_now);
            }
            if retry_now.is_empty() {
                break;
            }
            if retry >= client.policy.max_retries {
                if !any_response && connect_failures_only {
                    let message = last[retry_now[0]]
                        .as_ref()
                        .map(|f| f.message.clone())
                        .unwrap_or_default();
                    return Err(TargetError::Unavailable(format!(
                        "cannot reach {} after {} attempts: {message}",
                        client.base,
                        retry + 1
                    )));
                }
                for &i in &retry_now {
                    let f = last[i].clone().unwrap_or(LastFailure {
                        status: None,
                        code: String::new(),
                        message: String::new(),
                        retry_after: None,
                    });
                    results[i] = Some(failed(
                        true,
                        f.status,
                        "retries_exhausted",
                        format!(
                            "gave up after {} attempts; last error: {}: {}",
                            retry + 1,
                            f.code,
                            f.message
                        ),
                    ));
                }
                break;
            }
            let retry_after = retry_now
                .iter()
                .filter_map(|&i| last[i].as_ref()?.retry_after)
                .max();
            let delay = client.policy.delay(retry, retry_after);
            tracing::warn!(
                orders = retry_now.len(),
                retry = retry + 1,
                delay_ms = delay.as_millis() as u64,
                error = %last[retry_now[0]].as_ref().map(|f| format!("{}: {}", f.code, f.message)).unwrap_or_default(),
                "transient failure; resending"
            );
            client.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            retry += 1;
            pending = retry_now;
        }
    }
    Ok(orders
        .iter()
        .zip(results)
        .map(|(o, r)| OrderOutcome {
            order_id: o.order_id,
            result: r.unwrap_or_else(|| {
                failed(
                    true,
                    None,
                    "no_response",
                    "the service did not answer for this order".into(),
                )
            }),
        })
        .collect())
}

/// Whether every order of a request is still ours (asked after a 429's pause).
struct AllStillOurs<'a> {
    claims: &'a dyn ClaimCheck,
    ids: &'a [i64],
    /// The orders still ours, when not all of them were (the caller goes on with those).
    not_all: std::sync::Mutex<Option<HashSet<i64>>>,
}

#[async_trait::async_trait]
impl BeforeResend for AllStillOurs<'_> {
    async fn still_wanted(&self) -> bool {
        let ours = self.claims.still_ours(self.ids).await;
        let all = ours.len() == self.ids.len();
        if !all {
            *self.not_all.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(ours.into_iter().collect());
        }
        all
    }
}

/// The orders of `pending` in `ours` (still claimed by this sender); the others get
/// `claim_withdrawn` and are not sent again (their claim went to new content or to another
/// worker, which may have sent a newer version already: resending this one could overwrite it).
fn withdraw_others(
    ours: &HashSet<i64>,
    orders: &[OrderChangeset],
    pending: Vec<usize>,
    results: &mut [Option<OrderResult>],
) -> Vec<usize> {
    let (keep, withdrawn): (Vec<usize>, Vec<usize>) = pending
        .into_iter()
        .partition(|&i| ours.contains(&orders[i].order_id));
    for &i in &withdrawn {
        results[i] = Some(failed(
            true,
            None,
            CLAIM_WITHDRAWN,
            "not sent again: its claim was withdrawn (new content was staged, or the claim expired and another worker took it)".into(),
        ));
    }
    if !withdrawn.is_empty() {
        tracing::warn!(
            orders = withdrawn.len(),
            "claims withdrawn while their batch was being retried; those orders are not sent again"
        );
    }
    keep
}

/// A changeset answered 429: how long every worker should wait.
fn throttled_part(result: &ChangesetResult) -> Option<Duration> {
    match result {
        ChangesetResult::Failed { response, .. } if response.status == 429 => {
            Some(response.retry_after.unwrap_or(Duration::from_secs(1)))
        }
        _ => None,
    }
}

enum Interpreted {
    Final(OrderResult),
    Retry(LastFailure),
    /// The changeset, which removes lines, failed with 404 on one of its removals, or on an
    /// operation the response does not name: a line may be gone already (an earlier attempt
    /// whose answer was lost removed it, or that version never reached Dynamics). Which of
    /// its lines are still there is asked, and it goes again without the others.
    CheckRemovals(LastFailure),
}

fn interpret(
    client: &ApiClient,
    plan: &ChangesetPlan,
    result: ChangesetResult,
    stopped: bool,
) -> Interpreted {
    match result {
        ChangesetResult::Succeeded { entity_ids } => {
            let order_op = plan.operations.iter().position(|op| op.label == "order");
            let dynamics_ref = order_op
                .and_then(|i| entity_ids.get(i).cloned().flatten())
                .unwrap_or_else(|| plan.order_key.clone());
            Interpreted::Final(OrderResult::Succeeded { dynamics_ref })
        }
        ChangesetResult::NotExecuted => Interpreted::Retry(LastFailure {
            status: None,
            code: "not_executed".into(),
            message: if stopped {
                "the batch stopped at an earlier error before this order".into()
            } else {
                "the response had no part for this order".into()
            },
            retry_after: None,
        }),
        ChangesetResult::Failed {
            operation,
            response,
        } => {
            let error = response.error.clone().unwrap_or_default();
            if error.code.eq_ignore_ascii_case(CONCURRENCY_LIMIT_CODE) {
                client.throttle.on_concurrency_limit();
            }
            if response.status == 429 {
                client
                    .throttle
                    .on_throttled(response.retry_after.unwrap_or(Duration::from_secs(1)));
            }
            let label = operation
                .and_then(|i| plan.operations.get(i))
                .map(|op| format!("{}: ", op.label))
                .unwrap_or_default();
            let message = format!("{label}{}", error.message);
            let code = code_or_status(&error.code, response.status);
            if may_be_a_line_already_gone(plan, operation, response.status) {
                return Interpreted::CheckRemovals(LastFailure {
                    status: Some(response.status),
                    code,
                    message,
                    retry_after: None,
                });
            }
            let class = classify(Failure::Http {
                status: response.status,
                code: &error.code,
                retry_after: response.retry_after,
            });
            match class {
                ErrorClass::Transient { retry_after } => Interpreted::Retry(LastFailure {
                    status: Some(response.status),
                    code,
                    message,
                    retry_after,
                }),
                // A 401 inside a batch whose request was authorized: let a later run retry.
                ErrorClass::Auth => {
                    Interpreted::Final(failed(true, Some(response.status), &code, message))
                }
                ErrorClass::Permanent => {
                    Interpreted::Final(failed(false, Some(response.status), &code, message))
                }
            }
        }
    }
}

/// Whether a changeset's failure may be a removal of a line that is not there: a 404 on one
/// of its `DELETE`s, or on an operation the response does not name (the service need not echo
/// the failed request's Content-ID) when it has any.
fn may_be_a_line_already_gone(plan: &ChangesetPlan, operation: Option<usize>, status: u16) -> bool {
    status == 404
        && match operation {
            Some(i) => plan
                .operations
                .get(i)
                .is_some_and(PlannedOperation::is_removal),
            None => plan.operations.iter().any(PlannedOperation::is_removal),
        }
}

/// `plan` without the removals of lines that are not in Dynamics, each looked up by its key
/// (`GET salesorderdetails(<key>)`: 200 there, 404 gone); `None` when every line it removes is
/// there. A lookup that gets another answer is a failure to retry with the order.
async fn without_absent_lines(
    client: &ApiClient,
    plan: &ChangesetPlan,
) -> Result<Option<ChangesetPlan>, LastFailure> {
    let mut kept = Vec::with_capacity(plan.operations.len());
    let mut dropped = Vec::new();
    for op in &plan.operations {
        if !op.is_removal() {
            kept.push(op.clone());
            continue;
        }
        let url = format!("{}{}?$select=salesorderdetailid", client.base, op.path);
        let lookup_failed = |status: Option<u16>, message: String| LastFailure {
            status,
            code: "line_lookup_failed".into(),
            message: format!("{}: looking the line up: {message}", op.label),
            retry_after: None,
        };
        match client.send(&ApiRequest::get(url)).await {
            Ok(r) if r.status == 404 => dropped.push(op.label.clone()),
            Ok(r) if (200..300).contains(&r.status) => kept.push(op.clone()),
            Ok(r) => return Err(lookup_failed(Some(r.status), shorten(&r.text(), 200))),
            Err(SendError::Transport(t)) => return Err(lookup_failed(None, t.message)),
            Err(SendError::Auth(m) | SendError::TokenUnavailable(m)) => {
                return Err(lookup_failed(None, m))
            }
        }
    }
    if dropped.is_empty() {
        return Ok(None);
    }
    tracing::debug!(
        order = %plan.order_key,
        removals = ?dropped,
        "lines already gone from Dynamics; sending the order without their removal"
    );
    Ok(Some(ChangesetPlan {
        order_key: plan.order_key.clone(),
        operations: kept,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, label: &str) -> PlannedOperation {
        PlannedOperation {
            method: method.into(),
            path: format!("x('{label}')"),
            body: String::new(),
            label: label.into(),
        }
    }

    #[test]
    fn a_404_may_be_a_line_already_gone_only_on_a_removal_or_an_unnamed_operation() {
        let with_removal = ChangesetPlan {
            order_key: "s.1".into(),
            operations: vec![op("PATCH", "order"), op("DELETE", "remove line 2")],
        };
        let without = ChangesetPlan {
            order_key: "s.1".into(),
            operations: vec![op("PATCH", "order"), op("PATCH", "line 1")],
        };
        assert!(may_be_a_line_already_gone(&with_removal, Some(1), 404));
        // The service did not say which operation failed.
        assert!(may_be_a_line_already_gone(&with_removal, None, 404));
        assert!(!may_be_a_line_already_gone(&with_removal, Some(0), 404));
        assert!(!may_be_a_line_already_gone(&with_removal, Some(1), 400));
        assert!(!may_be_a_line_already_gone(&without, None, 404));
        assert!(!may_be_a_line_already_gone(&without, Some(1), 404));
    }
}
