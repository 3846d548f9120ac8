"""``batchpilot stats NAME``: a pipeline's success rate, durations and rows, with sparklines.

Translation only: :func:`batchpilot.monitor.stats.read_pipeline_stats` computes;
this prints a table (or ``--output json``, the same numbers). Exit codes: 0
(also for a pipeline without ended runs, with a message), 2 an unknown pipeline
or a bad option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from batchpilot.cli.errors import exit_codes
from batchpilot.cli.output import EXIT_INVALID, OutputFormat, OutputOption, out, print_json
from batchpilot.monitor.stats import PipelineStats, Trend, percentile, read_pipeline_stats
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.store import RunStore

#: eight heights of a sparkline, lowest first
SPARK_BARS = "▁▂▃▄▅▆▇█"
_PIPELINE_SUFFIXES = (".yaml", ".yml", ".json", ".py")


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled from the lowest (▁) to the highest (█) of ``values``."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARK_BARS[len(SPARK_BARS) // 2 - 1] * len(values)
    top = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[round((v - low) / (high - low) * top)] for v in values)


def stats(
    name: Annotated[str, typer.Argument(help="pipeline name (or its file)")],
    last: Annotated[int, typer.Option("--last", min=1, help="how many ended runs")] = 30,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Success rate, duration p50/p95 and trend, rows written and trend of a pipeline's
    last ended runs (sparklines oldest to newest)."""
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
        pipeline = _pipeline_name(name)
        store = RunStore.for_home(settings.home, settings.database_url)
        result = read_pipeline_stats(store, pipeline, last=last)
    if output is OutputFormat.json:
        print_json(result.to_dict())
        return
    if not result.runs:
        out.print(f"pipeline '{pipeline}' has no ended runs yet", markup=False)
        return
    _render(result)


def _pipeline_name(name: str) -> str:
    """``name`` itself, or the name of the pipeline in the file ``name``."""
    path = Path(name)
    if path.suffix.lower() in _PIPELINE_SUFFIXES and path.is_file():
        return load_pipeline(path).name
    return name


def _render(result: PipelineStats) -> None:
    first, latest = result.first_run_at, result.last_run_at
    span = f" ({first:%Y-%m-%d %H:%M} to {latest:%Y-%m-%d %H:%M} UTC)" if first and latest else ""
    out.print(f"{result.pipeline}: last {result.runs} ended runs{span}", markup=False)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("what", style="bold")
    table.add_column("numbers")
    table.add_column("trend")
    table.add_column("sparkline")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.by_status.items()))
    rate = result.success_rate
    outcomes = "".join("█" if s.status.value == "success" else "▁" for s in result.samples)
    table.add_row(
        "success rate", f"{rate:.1%} ({counts})" if rate is not None else counts, "", outcomes
    )
    durations = result.durations
    if durations:
        table.add_row(
            "duration",
            f"p50 {_seconds(percentile(durations, 50))}  p95 {_seconds(percentile(durations, 95))}",
            _trend(result.duration_trend, _seconds),
            sparkline(durations),
        )
    rows = result.rows
    if rows:
        table.add_row(
            "rows written",
            f"last {rows[-1]:,}",
            _trend(result.rows_trend, lambda v: f"{v:,.0f}"),
            sparkline(rows),
        )
    delays = result.slot_delays
    if delays:
        table.add_row(
            "slot delay",
            f"p50 {_seconds(percentile(delays, 50))}  p95 {_seconds(percentile(delays, 95))}",
            "",
            sparkline(delays),
        )
    out.print(table)
    if not durations:
        out.print("no successful run yet: no durations or rows to show", markup=False)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _trend(trend: Trend | None, fmt: Callable[[float], str]) -> str:
    if trend is None:
        return ""
    change = trend.change
    pct = f" {change:+.0%}" if change is not None else ""
    return f"{trend.direction}{pct} ({fmt(trend.older_mean)} → {fmt(trend.newer_mean)})"
