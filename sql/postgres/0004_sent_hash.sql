-- As in SQLite (0006): the content hash of the version Dynamics last stored.
ALTER TABLE staged_orders ADD COLUMN sent_hash TEXT;
