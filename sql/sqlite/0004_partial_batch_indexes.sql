-- Orders and ledger events are found by batch only for a batch id (`report --batch`,
-- `rerun --batch`): `batch_id = ?` and `batch_id IN (…)` both imply NOT NULL, so SQLite
-- uses these partial indexes for them. Staging an order (no batch yet) and claiming it (the
-- claim's ledger event has no batch) then no longer insert a NULL key into either index:
-- two fewer B-tree inserts per order on the writer.
--
-- Building an index sorts its keys in temporary files, which `temp_store = memory` (set on
-- every connection, see sqlite.rs) would keep in RAM: 140 MB for a ledger of 3,000,000
-- events. Temporary files on disk for this migration keep it at a few MB.
PRAGMA temp_store = FILE;
DROP INDEX staged_orders_by_batch;
CREATE INDEX staged_orders_by_batch ON staged_orders (batch_id) WHERE batch_id IS NOT NULL;
DROP INDEX ledger_by_batch;
CREATE INDEX ledger_by_batch ON ledger (batch_id) WHERE batch_id IS NOT NULL;
PRAGMA temp_store = MEMORY;
