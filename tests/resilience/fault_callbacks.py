"""Callbacks used by the fault-injection pipeline: each delivery is written down."""

import os

import psycopg


def record(event, run_id, callback_id):
    """One row per delivery (duplicates are visible); the effect table is keyed by
    callback_id, the idempotency key batchpilot hands every callback."""
    with psycopg.connect(os.environ["FAULT_DSN"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (run_id, callback_id, event) VALUES (%s, %s, %s)",
            (run_id, callback_id, event["event"]),
        )
