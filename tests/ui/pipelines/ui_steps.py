"""Steps of the dashboard test pipelines (found next to the pipeline files)."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa


def numbers(params: dict) -> pa.Table:
    """``count`` rows numbered from 1."""
    return pa.table({"n": list(range(1, int(params["count"]) + 1))})


def flaky(inputs: dict, params: dict, log) -> int:
    """Fails while the file ``params.marker`` does not exist, creating it: the first attempt
    fails, any later one (a retry) succeeds."""
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("tried once")
        log.info("the warehouse is not ready yet: failing on purpose")
        raise RuntimeError("warehouse not ready (first attempt fails on purpose)")
    log.info("second attempt: the warehouse is ready")
    return next(iter(inputs.values())).num_rows


def nap(params: dict) -> int:
    """Sleeps ``params.sleep_s`` seconds; one row."""
    time.sleep(float(params["sleep_s"]))
    return 1
