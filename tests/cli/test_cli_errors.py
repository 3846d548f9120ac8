"""The one map from batchpilot's errors to the CLI's exit codes and messages."""

from __future__ import annotations

import pytest
import typer

from batchpilot.airflow.errors import (
    AirflowAuthError,
    AirflowFollowStopped,
    AirflowRunLost,
    AirflowUnreachable,
)
from batchpilot.cli.errors import exit_code_for, exit_codes
from batchpilot.cli.output import EXIT_INVALID, EXIT_RUN_FAILED
from batchpilot.engine import UnknownExecutor
from batchpilot.errors import (
    ArtifactError,
    BatchpilotError,
    ConnectionError,
    RunInterrupted,
    RunNotFound,
    RunStateError,
    RunTakenOver,
    SpecError,
    SpecErrors,
    StoreError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SpecError("bad field"), EXIT_INVALID),
        (SpecErrors([SpecError("one"), SpecError("two")]), EXIT_INVALID),
        (RunNotFound("r1"), EXIT_INVALID),
        (RunStateError("already ended", run_id="r1"), EXIT_INVALID),
        (RunTakenOver("r1"), EXIT_INVALID),
        (ConnectionError("unknown connection 'x'"), EXIT_INVALID),
        (UnknownExecutor("k8s", ["local"]), EXIT_INVALID),
        (AirflowUnreachable("http://af", "refused"), EXIT_INVALID),
        (AirflowAuthError("http://af", "admin", 401), EXIT_INVALID),
        (RunInterrupted("r1"), EXIT_RUN_FAILED),
        (AirflowFollowStopped("r1"), EXIT_RUN_FAILED),
        (AirflowRunLost("r1", AirflowUnreachable("http://af", "refused")), EXIT_RUN_FAILED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_each_error_family_has_its_exit_code(error: BatchpilotError, code: int):
    assert exit_code_for(error, otherwise=EXIT_RUN_FAILED) == code
    assert exit_code_for(error, otherwise=EXIT_INVALID) == code


@pytest.mark.parametrize("error", [StoreError("disk full"), ArtifactError("gone")])
def test_an_unlisted_error_gets_the_command_s_own_code(error: BatchpilotError):
    assert exit_code_for(error, otherwise=EXIT_RUN_FAILED) == EXIT_RUN_FAILED
    assert exit_code_for(error, otherwise=EXIT_INVALID) == EXIT_INVALID


def test_several_spec_errors_print_one_line_each(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(typer.Exit) as exited, exit_codes():
        raise SpecErrors([SpecError("first", path="p.yaml"), SpecError("second", node_id="n")])
    assert exited.value.exit_code == EXIT_INVALID
    assert capsys.readouterr().err.splitlines() == [
        "error: p.yaml: first",
        "error: node 'n': second",
    ]


def test_the_following_messages_say_where_the_run_goes_on():
    assert str(AirflowFollowStopped("r1")) == (
        "stopped following; run r1 goes on in Airflow "
        "(batchpilot runs show r1, batchpilot cancel r1)"
    )
    lost = AirflowRunLost("r1", AirflowUnreachable("http://af", "refused"))
    assert str(lost) == (
        "lost track of run r1 in Airflow: cannot reach Airflow at http://af: refused "
        "(batchpilot runs show r1 tries again)"
    )
