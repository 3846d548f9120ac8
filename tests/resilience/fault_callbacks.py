"""Callbacks used by the fault-injection pipeline."""

import os

import psycopg


def record(event, run_id, callback_id):
    """One row per delivery, so a repeated delivery is visible; and the effect, keyed
    by callback_id (the idempotency key batchpilot hands every callback), so a
    repeated delivery cannot apply it twice."""
    with psycopg.connect(os.environ["FAULT_DSN"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (run_id, callback_id, event) VALUES (%s, %s, %s)",
            (run_id, callback_id, event["event"]),
        )
        conn.execute(
            "INSERT INTO effects (run_id, callback_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (run_id, callback_id),
        )
