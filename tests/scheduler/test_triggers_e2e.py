"""Triggers run by ``batchpilot serve``, as users run it: files dropped in a folder, and a
downstream pipeline started by its upstream's success. ``serve`` runs in its own process
group and is always killed when the test ends (see the ``serve`` fixture)."""

from __future__ import annotations

from pathlib import Path

from batchpilot.states import RunStatus
from tests.cli_runner import Cli
from tests.scheduler import test_serve_e2e
from tests.scheduler.conftest import write_pipeline
from tests.scheduler.test_serve_e2e import runs_of

serve = test_serve_e2e.serve  # the ``serve`` fixture: kills serve and its workers

RECORD_STEP = '''
from pathlib import Path


def record(out: str, line: str) -> None:
    """Appends one line to ``out`` (what the run's templates rendered)."""
    with open(out, "a") as handle:
        handle.write(line + "\\n")
'''


def record_node(out: Path, line: str) -> list[dict]:
    return [
        {
            "id": "record",
            "type": "python",
            "config": {
                "callable": "record_steps:record",
                "kwargs": {"out": str(out), "line": line},
            },
        }
    ]


def test_two_dropped_files_give_two_runs_and_each_success_starts_the_downstream_with_its_ds(
    serve, cli: Cli, home: Path, tmp_path: Path
):
    folder, inbox = tmp_path / "pipelines", tmp_path / "in"
    folder.mkdir()
    inbox.mkdir()
    (folder / "record_steps.py").write_text(RECORD_STEP)
    loaded, reported = tmp_path / "loaded.txt", tmp_path / "reported.txt"
    write_pipeline(
        folder,
        "loader",
        triggers=[{"file": {"path": f"{inbox}/users_*.csv", "stable_for": "1s"}}],
        nodes=record_node(loaded, "{{ trigger.path }}|{{ ds }}"),
    )
    write_pipeline(
        folder,
        "report",
        triggers=[{"after": {"pipeline": "loader", "status": "success"}}],
        nodes=record_node(reported, "{{ trigger.run_id }}|{{ ds }}"),
    )
    process = serve(folder)
    process.wait_for(lambda: "serving" in process.output(), "serve to start")
    first, second = inbox / "users_1.csv", inbox / "users_2.csv"
    first.write_text("id\n1\n")
    second.write_text("id\n2\n")
    (inbox / "notes.txt").write_text("not matched")

    def all_ended() -> bool:
        loader, report = runs_of(home, "loader"), runs_of(home, "report")
        ended = [r for r in loader + report if r.status.is_terminal()]
        return len(loader) == 2 and len(report) == 2 and len(ended) == 4

    process.wait_for(all_ended, "two loader runs and two report runs")
    loader, report = runs_of(home, "loader"), runs_of(home, "report")
    assert {r.status for r in loader + report} == {RunStatus.SUCCESS}
    assert {r.triggered_by for r in loader} == {"trigger"}
    assert {r.triggered_by for r in report} == {"upstream"}
    lines = sorted(loaded.read_text().splitlines())
    ds = loader[0].ds
    assert lines == [f"{first}|{ds}", f"{second}|{ds}"]
    reported_lines = sorted(reported.read_text().splitlines())
    assert reported_lines == sorted(f"{r.run_id}|{r.ds}" for r in loader)
    assert sorted(r.ds for r in report) == sorted(r.ds for r in loader)
    assert process.terminate() == 0
    assert len(runs_of(home, "loader")) == 2 and len(runs_of(home, "report")) == 2
