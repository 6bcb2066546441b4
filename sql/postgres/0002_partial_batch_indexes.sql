-- As in SQLite (0004): orders and ledger events are found by batch only for a batch id
-- (`batch_id = $1`, `batch_id = ANY($1)`, both imply NOT NULL), so staging an order and
-- claiming it no longer insert a NULL key into these indexes.
DROP INDEX staged_orders_by_batch;
CREATE INDEX staged_orders_by_batch ON staged_orders (batch_id) WHERE batch_id IS NOT NULL;
DROP INDEX ledger_by_batch;
CREATE INDEX ledger_by_batch ON ledger (batch_id) WHERE batch_id IS NOT NULL;
