//! What new content for an order that is already staged does to it: one rule for both
//! backends (they once differed, and an order in flight on SQLite kept the old content's
//! outcome).

use super::StagingError;

/// New content sends an order back to `pending` unless it has not been sent yet. An order in
/// flight (a submit is sending the old content right now: ingest does not wait for the lease)
/// has its claim withdrawn, so that submit's outcome is stale and the new content is sent.
pub(crate) fn requeues(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "in_flight")
}

/// The ledger message of an order that new content sent back to `pending`.
pub(crate) fn requeue_message(file_id: i64, from_status: &str) -> String {
    if from_status == "in_flight" {
        format!(
            "content changed in file {file_id} while in flight; the claim is withdrawn and the new content queued to be sent"
        )
    } else {
        format!("content changed in file {file_id}; queued to be sent again as an update")
    }
}

/// The update that stores new content must have hit the order's row.
pub(crate) fn check_updated(rows: u64, file_id: i64, order_id: i64) -> Result<(), StagingError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StagingError::Accounting {
            file_id,
            detail: format!("order {order_id} changed but its row was not updated"),
        })
    }
}
