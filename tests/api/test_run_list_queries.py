"""The run lists read their pages along an index, in the page's order, without sorting
the matching runs (migration 0011): the SQLite planner's own account, for each filter
the API and the dashboard offer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.run_queries import RunCursor, RunFilter
from batchpilot.store.tables import runs

DAY = datetime(2026, 1, 1, tzinfo=UTC)
FILTERS = {
    "all runs": RunFilter(),
    "one pipeline": RunFilter(pipeline="daily"),
    "one status": RunFilter(statuses=(RunStatus.FAILED,)),
    "pipeline and status": RunFilter(pipeline="daily", statuses=(RunStatus.FAILED,)),
    "a day": RunFilter(created_from=DAY, created_until=DAY + timedelta(days=1)),
}


def plan_of(store: RunStore, where: RunFilter, *, after: RunCursor | None) -> list[str]:
    """The planner's steps for the page query ``RunQueries.page`` sends."""
    statements: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "bp_runs" in statement:
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.queries.page(where, after=after, limit=50)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    ((statement, parameters),) = statements
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return [row[-1] for row in rows]


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("paged", [False, True], ids=["first page", "by cursor"])
def test_a_page_of_runs_walks_an_index_and_sorts_nothing(
    sqlite_store: RunStore, name: str, paged: bool
) -> None:
    after = RunCursor(datetime(2026, 1, 1, 12, tzinfo=UTC), "x") if paged else None
    steps = plan_of(sqlite_store, FILTERS[name], after=after)
    assert any("USING" in step and "INDEX" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps


def test_the_page_reads_neither_the_pipeline_nor_the_params(sqlite_store: RunStore) -> None:
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO bp_runs (run_id, pipeline, status, params, ds, created_at,"
                " needs_attention, executor, cancel_requested, triggered_by) VALUES"
                " ('r1', 'daily', 'failed', '{}', '2026-01-01',"
                " '2026-01-01 10:00:00.000000', 0, 'local', 0, 'manual')"
            )
        )
        conn.execute(text("INSERT INTO bp_run_specs (run_id, spec) VALUES ('r1', '{\"big\": 1}')"))
    (run,) = sqlite_store.queries.page(RunFilter(pipeline="daily"), limit=50).runs
    assert run.run_id == "r1" and run.status is RunStatus.FAILED
    assert not hasattr(run, "spec") and not hasattr(run, "params")
    assert sqlite_store.get_run("r1").spec == {"big": 1}  # the run itself still has them


def test_cursor_pages_list_every_run_once_newest_first_even_at_one_instant(
    state_store: RunStore,
) -> None:
    instants = [DAY + timedelta(minutes=i // 3) for i in range(20)]  # three runs per instant
    with state_store.engine.begin() as conn:
        for i, created in enumerate(instants):
            conn.execute(
                runs.insert().values(
                    run_id=f"r{i:02d}",
                    pipeline="daily" if i % 2 else "hourly",
                    status="failed" if i % 4 == 1 else "success",
                    params={},
                    ds="2026-01-01",
                    created_at=created,
                    needs_attention=False,
                    executor="local",
                    cancel_requested=False,
                    triggered_by="manual",
                )
            )
    for where in (RunFilter(), RunFilter(pipeline="daily")):
        expected = sorted(
            (
                (created, f"r{i:02d}")
                for i, created in enumerate(instants)
                if where.pipeline in (None, "daily" if i % 2 else "hourly")
            ),
            reverse=True,
        )
        seen: list[str] = []
        page = state_store.queries.page(where, limit=4)
        seen += [run.run_id for run in page.runs]
        while page.next_cursor is not None:
            page = state_store.queries.page(where, after=page.next_cursor, limit=4)
            seen += [run.run_id for run in page.runs]
        assert seen == [run_id for _, run_id in expected]
