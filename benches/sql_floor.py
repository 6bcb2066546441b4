#!/usr/bin/env python3
"""The SQL floor of `orderload submit`: its bookkeeping statements replayed without orderload.

    python3 benches/sql_floor.py STAGED.db [ROUNDS]

STAGED.db is an orderload SQLite database whose orders are all pending (an ingest, nothing
submitted; `ORDERLOAD_BENCH_KEEP=1 cargo bench --bench orderload -- overhead` keeps one, or
ingest a generated file: `target/release/deps/orderload-* generate ROWS FILE`). It is copied,
never changed. Each variant runs on a fresh copy, in WAL mode with synchronous=NORMAL and
foreign keys on (as orderload opens it), in batches of 50 orders (the default batch size),
every order succeeding:

- today: claim 400 orders at a time (one ledger row each), then per batch of 50 a batch start
  (batch row, orders tagged) and the outcome (orders rewritten, one ledger row each, batch row
  finished): the statements of src/staging/orders.rs and claims.rs;
- merged: claim and batch start in one statement per batch;
- payload elsewhere: today's statements on rows whose payload is 1 byte (as if the payload lived
  in a table of its own that the submit only reads);
- payload elsewhere + merged;
- least: one rewrite and one ledger row per order (no claim at all), payload elsewhere: the
  least any per-order ledger could write.

BENCHMARKS.md ("Eighth round") has the figures and what they mean for issue 6's target 3.
"""

import os
import shutil
import sqlite3
import sys
import tempfile
import time

NOW = "2026-11-28T21:00:00.000Z"
TOKEN = "run-1-0123456789abcdef0123456789abcdef"
BATCH = 50
ROUND = 400


def connect(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = NORMAL")
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("PRAGMA temp_store = MEMORY")
    return c


def fresh_copy(src, dst):
    for suffix in ("-wal", "-shm", ""):
        try:
            os.remove(dst + suffix)
        except FileNotFoundError:
            pass
    shutil.copy(src, dst)
    c = connect(dst)
    run = c.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    return c, run


def new_batch(c, run, n):
    return c.execute(
        "INSERT INTO batches (run_id, status, orders, operations, created_at) VALUES (?, 'sending', ?, ?, ?)",
        (run, n, n * 4, NOW),
    ).lastrowid


def outcome(c, run, b, ids, before="in_flight"):
    q = ",".join("?" * len(ids))
    c.execute("BEGIN IMMEDIATE")
    c.execute(
        "UPDATE staged_orders SET status = 'succeeded', retryable = 0, last_error_code = NULL,"
        " last_error_message = NULL, last_http_status = NULL,"
        " dynamics_ref = 'salesorders(new_externalorderid=''' || external_id || ''')',"
        " claim_token = NULL, claim_expires_at = NULL, updated_at = ?"
        f" WHERE id IN ({q}) AND status = ?",
        (NOW, *ids, before),
    )
    c.execute(
        "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, message)"
        " SELECT id, ?, ?, ?, ?, 'succeeded', 'stored in Dynamics as ' || dynamics_ref"
        f" FROM staged_orders WHERE id IN ({q})",
        (b, run, NOW, before, *ids),
    )
    c.execute(
        "UPDATE batches SET status = 'succeeded', succeeded = ?, finished_at = ? WHERE id = ?",
        (len(ids), NOW, b),
    )
    c.execute("COMMIT")


CLAIM = (
    "UPDATE staged_orders SET status = 'in_flight', {batch} claim_token = ?, claim_expires_at = ?,"
    " last_run_id = ?, attempts = attempts + 1, updated_at = ?"
    " WHERE id IN (SELECT id FROM staged_orders WHERE status = 'pending' ORDER BY id LIMIT ?)"
    " RETURNING id, payload"
)


def claim_ledger(c, run, ids, batch=None):
    c.executemany(
        "INSERT INTO ledger (order_id, batch_id, run_id, at, from_status, to_status, message)"
        " VALUES (?, ?, ?, ?, 'pending', 'in_flight', 'claimed for attempt 1')",
        [(i, batch, run, NOW) for i in ids],
    )


def today(c, run):
    while True:
        c.execute("BEGIN IMMEDIATE")
        rows = c.execute(CLAIM.format(batch=""), (TOKEN, NOW, run, NOW, ROUND)).fetchall()
        ids = sorted(r[0] for r in rows)
        claim_ledger(c, run, ids)
        c.execute("COMMIT")
        if not ids:
            return
        for i in range(0, len(ids), BATCH):
            part = ids[i : i + BATCH]
            q = ",".join("?" * len(part))
            c.execute("BEGIN IMMEDIATE")
            b = new_batch(c, run, len(part))
            c.execute(
                f"UPDATE staged_orders SET batch_id = ?, claim_expires_at = ? WHERE id IN ({q})"
                " AND status = 'in_flight' RETURNING id",
                (b, NOW, *part),
            ).fetchall()
            c.execute("COMMIT")
            outcome(c, run, b, part)


def merged(c, run):
    while True:
        c.execute("BEGIN IMMEDIATE")
        b = new_batch(c, run, BATCH)
        rows = c.execute(CLAIM.format(batch="batch_id = ?,"), (b, TOKEN, NOW, run, NOW, BATCH)).fetchall()
        ids = sorted(r[0] for r in rows)
        claim_ledger(c, run, ids, b)
        c.execute("COMMIT")
        if not ids:
            return
        outcome(c, run, b, ids)


def least(c, run):
    while True:
        c.execute("BEGIN IMMEDIATE")
        b = new_batch(c, run, BATCH)
        rows = c.execute(
            "SELECT id, payload FROM staged_orders WHERE status = 'pending' ORDER BY id LIMIT ?",
            (BATCH,),
        ).fetchall()
        c.execute("COMMIT")
        ids = [r[0] for r in rows]
        if not ids:
            return
        outcome(c, run, b, ids, before="pending")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory(prefix="orderload-sql-floor-") as tmp:
        small = os.path.join(tmp, "small.db")
        c, _ = fresh_copy(src, small)
        orders = c.execute("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'").fetchone()[0]
        c.execute("UPDATE staged_orders SET payload = '{}'")
        c.execute("VACUUM")
        c.close()
        variants = [
            ("today", src, today),
            ("merged", src, merged),
            ("payload elsewhere", small, today),
            ("payload elsewhere + merged", small, merged),
            ("least: one rewrite + one ledger row", small, least),
        ]
        print(f"{orders} pending orders, batches of {BATCH}, SQLite {sqlite3.sqlite_version}, {rounds} rounds")
        times = {name: [] for name, _, _ in variants}
        for _ in range(rounds):
            for name, db, run in variants:
                c, run_id = fresh_copy(db, os.path.join(tmp, "run.db"))
                t = time.perf_counter()
                run(c, run_id)
                times[name].append(time.perf_counter() - t)
                left = c.execute("SELECT COUNT(*) FROM staged_orders WHERE status != 'succeeded'").fetchone()[0]
                c.close()
                if left:
                    sys.exit(f"{name}: {left} orders did not end succeeded")
        for name, ts in times.items():
            per = min(ts) / orders * 1e6
            print(f"  {name:<38} {' / '.join(f'{t:.2f}' for t in ts)} s   {per:.0f} µs per order (best)")


if __name__ == "__main__":
    main()
