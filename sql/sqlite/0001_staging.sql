-- orderload staging schema (SQLite). Times are UTC RFC 3339 text; money lives in the JSON payload
-- as decimal strings, never as floats.

-- One row per invocation of a command that changes something.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    command       TEXT    NOT NULL,              -- ingest | submit | run | rerun
    args          TEXT    NOT NULL,              -- the command line, secrets never appear there
    host          TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    os_user       TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,                          -- ok | some_failed | could_not_run | lease_held | target_unavailable
    exit_code     INTEGER,
    summary       TEXT                           -- JSON counts
);

-- One row per file content (sha256). A file whose bytes were already ingested is a duplicate.
CREATE TABLE source_files (
    id            INTEGER PRIMARY KEY,
    sha256        TEXT    NOT NULL UNIQUE,
    path          TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    format        TEXT,
    encoding      TEXT    NOT NULL DEFAULT 'utf-8',
    notes         TEXT,                          -- JSON array of strings (BOM, mojibake, ...)
    size_bytes    INTEGER NOT NULL,
    status        TEXT    NOT NULL,              -- reading | ingested | rejected
    error_code    TEXT,
    error         TEXT,
    rows          INTEGER NOT NULL DEFAULT 0,    -- data records read
    rows_staged   INTEGER NOT NULL DEFAULT 0,    -- records that are part of a staged order
    rejected      INTEGER NOT NULL DEFAULT 0,    -- records stored in rejected_rows
    orders        INTEGER NOT NULL DEFAULT 0,    -- orders read from the file
    orders_new    INTEGER NOT NULL DEFAULT 0,
    orders_updated INTEGER NOT NULL DEFAULT 0,
    orders_unchanged INTEGER NOT NULL DEFAULT 0,
    run_id        INTEGER REFERENCES runs(id),
    ingested_at   TEXT    NOT NULL
);

-- One row per (channel, external_id).
CREATE TABLE staged_orders (
    id              INTEGER PRIMARY KEY,
    channel         TEXT    NOT NULL,
    external_id     TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed')),
    retryable       INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error_code TEXT,
    last_error_message TEXT,
    last_http_status INTEGER,
    batch_id        INTEGER,
    last_run_id     INTEGER,
    dynamics_ref    TEXT,
    content_hash    TEXT    NOT NULL,
    payload         TEXT    NOT NULL,            -- canonical Order as JSON
    currency        TEXT    NOT NULL,
    total           TEXT,                        -- decimal text
    line_count      INTEGER NOT NULL,
    row_count       INTEGER NOT NULL,            -- input records the current payload came from
    source_file_id  INTEGER REFERENCES source_files(id),
    source_rows     TEXT    NOT NULL,            -- JSON array of record numbers
    order_created_at TEXT   NOT NULL,            -- the order's own date, UTC
    staged_at       TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    claim_token     TEXT,                        -- set while in_flight: who may record the outcome
    claim_expires_at TEXT,
    UNIQUE (channel, external_id)
);
CREATE INDEX staged_orders_by_status ON staged_orders (status);
CREATE INDEX staged_orders_by_batch ON staged_orders (batch_id);

-- Every input record that could not become part of a valid order, with its raw text.
CREATE TABLE rejected_rows (
    id             INTEGER PRIMARY KEY,
    source_file_id INTEGER NOT NULL REFERENCES source_files(id),
    row_number     INTEGER NOT NULL,
    column_name    TEXT,
    reason_code    TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    raw            TEXT    NOT NULL,
    created_at     TEXT    NOT NULL
);
CREATE INDEX rejected_rows_by_file ON rejected_rows (source_file_id);

CREATE TABLE batches (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs(id),
    parent_batch_id INTEGER REFERENCES batches(id),
    status          TEXT    NOT NULL,            -- sending | succeeded | partially_failed | failed | abandoned
    orders          INTEGER NOT NULL,
    operations      INTEGER NOT NULL,
    succeeded       INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT    NOT NULL,
    finished_at     TEXT
);

-- Append-only: one row per status change of an order.
CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL REFERENCES staged_orders(id),
    batch_id     INTEGER,
    run_id       INTEGER,
    at           TEXT    NOT NULL,
    from_status  TEXT,
    to_status    TEXT    NOT NULL,
    http_status  INTEGER,
    error_code   TEXT,
    message      TEXT
);
CREATE INDEX ledger_by_order ON ledger (order_id);
CREATE INDEX ledger_by_batch ON ledger (batch_id);

-- Operator reruns: who asked for what, when.
CREATE TABLE reruns (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs(id),
    requested_by TEXT    NOT NULL,
    requested_at TEXT    NOT NULL,
    filter       TEXT    NOT NULL,               -- JSON: the selection used
    orders       INTEGER NOT NULL,
    mode         TEXT    NOT NULL                -- submit | queue_only
);

-- One submitter per database: holder, heartbeat, expiry.
CREATE TABLE lease (
    name         TEXT PRIMARY KEY,
    holder       TEXT    NOT NULL,
    run_id       INTEGER,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    acquired_at  TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL
);
