"""Dagster side of ``engine_overhead.py``; runs in ``.bench/venv-dagster``, not the project venv.

Usage: ``python _dagster_worker.py --tasks N --reps R [--instance DIR]``.

Builds the two graphs (a chain of N no-op ops, and 1 -> N -> 1 fan-out/fan-in)
out of one op that does nothing, wired by ``Nothing`` dependencies. Graph
construction is not timed: only ``job.execute_in_process()`` is. A 3-op job
is executed first so one-off first-call costs (imports, lazy setup) are not
charged to either graph. Prints one JSON line:
``{"dagster": "1.x", "chain": [s, ...], "fanout": [s, ...], "warmup_s": s}``.

By default ``execute_in_process`` uses Dagster's ephemeral in-memory instance
(nothing is persisted). ``--instance DIR`` runs on a persistent SQLite-backed
instance in DIR instead, which is closer to what batchpilot does.
"""

from __future__ import annotations

import argparse
import json
import time

import dagster
from dagster import DagsterInstance, In, Nothing, Out, job, op


@op(ins={"after": In(Nothing)}, out=Out(Nothing))
def noop() -> None:
    """Do nothing."""


def chain_job(n: int) -> dagster.JobDefinition:
    """N ops, each after the previous one."""

    @job(name=f"chain_{n}")
    def chain() -> None:
        prev = noop.alias("t0")()
        for i in range(1, n):
            prev = noop.alias(f"t{i}")(after=prev)

    return chain


def fanout_job(n: int) -> dagster.JobDefinition:
    """One source, N ops after it, one sink after all of them."""

    @job(name=f"fanout_{n}")
    def fanout() -> None:
        source = noop.alias("source")()
        middle = [noop.alias(f"m{i}")(after=source) for i in range(n)]
        noop.alias("sink")(after=middle)

    return fanout


def timed_execute(job_def: dagster.JobDefinition, instance: DagsterInstance | None) -> float:
    """Execute the job in process; return the wall seconds, checking every op succeeded."""
    started = time.perf_counter()
    result = job_def.execute_in_process(instance=instance, raise_on_error=True)
    elapsed = time.perf_counter() - started
    expected = len(job_def.graph.node_dict)
    succeeded = len(result.get_step_success_events())
    if not result.success or succeeded != expected:
        raise SystemExit(f"dagster run of {job_def.name}: {succeeded}/{expected} ops succeeded")
    return elapsed


def main() -> None:
    """Parse arguments, run the graphs, print the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--instance", default=None)
    args = parser.parse_args()
    instance = DagsterInstance.local_temp(tempdir=args.instance) if args.instance else None
    warmup = timed_execute(chain_job(3), instance)
    jobs = {"chain": chain_job(args.tasks), "fanout": fanout_job(args.tasks)}
    out: dict[str, object] = {"dagster": dagster.__version__, "warmup_s": warmup}
    for shape, job_def in jobs.items():
        out[shape] = [timed_execute(job_def, instance) for _ in range(args.reps)]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
