"""``schedule`` in a pipeline file: a cron or a mapping, checked before anything runs; every
error names the file, the field and the value, and `validate`/`run` exit 2 recording nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpilot.airflow import render_dag
from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec import build_pipeline, load_pipeline_file
from batchpilot.spec.schedule import CatchupPolicy, OverlapPolicy, ScheduleSpec, parse_schedule
from batchpilot.spec.serialize import spec_to_document
from tests.cli_runner import Cli


def pipeline_with(schedule_yaml: str) -> str:
    return f"name: nightly\n{schedule_yaml}\nnodes: [{{id: a, type: empty}}]\n"


def test_a_plain_cron_string_keeps_working_with_every_default():
    schedule = parse_schedule("0 2 * * *")
    assert schedule == ScheduleSpec(cron="0 2 * * *", expression="0 2 * * *")
    assert (schedule.timezone, schedule.catchup, schedule.overlap) == (
        "UTC",
        CatchupPolicy.LAST,
        OverlapPolicy.SKIP,
    )
    assert (schedule.max_active_runs, schedule.jitter_s, schedule.max_consecutive_failures) == (
        1,
        0.0,
        None,
    )


@pytest.mark.parametrize(
    ("preset", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
    ],
)
def test_presets_stand_for_their_crons(preset: str, cron: str):
    schedule = parse_schedule(preset)
    assert (schedule.cron, schedule.expression) == (cron, preset)


def test_the_mapping_form_sets_every_field(tmp_path: Path):
    path = tmp_path / "nightly.yaml"
    path.write_text(
        pipeline_with(
            "schedule:\n  cron: '30 2 * * 1-5'\n  timezone: Europe/Paris\n  catchup: all\n"
            "  start_date: 2024-01-01\n  end_date: 2024-06-30\n  overlap: buffer_one\n"
            "  max_active_runs: 3\n  jitter: 30s\n  max_consecutive_failures: 5"
        )
    )
    schedule = load_pipeline_file(path).schedule
    assert schedule is not None
    assert (schedule.cron, schedule.timezone, schedule.catchup, schedule.overlap) == (
        "30 2 * * 1-5",
        "Europe/Paris",
        CatchupPolicy.ALL,
        OverlapPolicy.BUFFER_ONE,
    )
    assert (schedule.max_active_runs, schedule.jitter_s, schedule.max_consecutive_failures) == (
        3,
        30.0,
        5,
    )
    # dates are local to the schedule's zone; an end date covers its whole day
    assert schedule.start_date == datetime(2023, 12, 31, 23, 0, tzinfo=UTC)
    assert schedule.end_date == datetime(2024, 6, 30, 21, 59, 59, 999999, tzinfo=UTC)


def test_a_stored_spec_reads_back_into_the_same_schedule():
    for value in (
        "@daily",
        {"cron": "0 2 * * *", "timezone": "America/New_York", "catchup": "none"},
        {"cron": "*/15 * * * *", "start_date": "2024-03-01T06:00", "jitter": "1m30s"},
    ):
        spec = build_pipeline(
            {"name": "p", "schedule": value, "nodes": [{"id": "a", "type": "empty"}]}
        )
        again = build_pipeline(spec_to_document(spec))
        assert again.schedule == spec.schedule
    assert (
        spec_to_document(
            build_pipeline(
                {"name": "p", "schedule": "@daily", "nodes": [{"id": "a", "type": "empty"}]}
            )
        )["schedule"]
        == "@daily"
    )


@pytest.mark.parametrize(
    ("schedule_yaml", "field", "words"),
    [
        ("schedule: '61 * * * *'", "schedule", "minute field '61' is not valid (allowed: 0-59"),
        ("schedule: every tuesday", "schedule", "invalid cron expression 'every tuesday': use 5"),
        ("schedule: '0 2 * * * *'", "schedule", "use 5 fields"),
        ("schedule: '0 25 * * *'", "schedule", "hour field '25' is not valid"),
        ("schedule: '0 0 30 2 *'", "schedule", "never matches a date"),
        ("schedule: '@fortnightly'", "schedule", "or a preset: @hourly"),
        ("schedule: 5", "schedule", "expected a cron expression (text) or a mapping"),
        ("schedule: {timezone: UTC}", "schedule.cron", "required field is missing"),
        (
            "schedule: {cron: '@daily', timezone: Mars/Olympus}",
            "schedule.timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            "schedule: {cron: '@daily', timezone: ../../etc/passwd}",
            "schedule.timezone",
            "unknown time zone",
        ),
        (
            "schedule: {cron: '@daily', overlap: queue}",
            "schedule.overlap",
            "unknown overlap policy 'queue': use one of skip, buffer_one, buffer_all, "
            "cancel_running, allow",
        ),
        (
            "schedule: {cron: '@daily', catchup: sometimes}",
            "schedule.catchup",
            "unknown catchup policy 'sometimes': use one of none, last, all",
        ),
        (
            "schedule: {cron: '@daily', start_date: 2024-02-01, end_date: 2024-01-01}",
            "schedule.end_date",
            "end_date 2024-01-01 is before start_date 2024-02-01",
        ),
        (
            "schedule: {cron: '@daily', start_date: yesterday}",
            "schedule.start_date",
            "expected a date or a date-time",
        ),
        (
            "schedule: {cron: '@daily', max_active_runs: 0}",
            "schedule.max_active_runs",
            "expected a whole number from 1 to 1000, got 0",
        ),
        (
            "schedule: {cron: '@daily', max_active_runs: true}",
            "schedule.max_active_runs",
            "got True",
        ),
        (
            "schedule: {cron: '@daily', max_active_runs: 99999999999999999999}",
            "schedule.max_active_runs",
            "from 1 to 1000",
        ),
        (
            "schedule: {cron: '@daily', max_consecutive_failures: -1}",
            "schedule.max_consecutive_failures",
            "from 1 to 1000, got -1",
        ),
        ("schedule: {cron: '@daily', jitter: inf}", "schedule.jitter", "from 0 to 1h"),
        ("schedule: {cron: '@daily', jitter: 2h}", "schedule.jitter", "from 0 to 1h, got '2h'"),
        ("schedule: {cron: '@daily', jitter: soon}", "schedule.jitter", "invalid duration"),
        ("schedule: {cron: '@daily', every: 1d}", "schedule.every", "unknown field"),
    ],
)
def test_a_bad_schedule_is_refused_naming_file_field_and_value(
    tmp_path: Path, schedule_yaml: str, field: str, words: str
):
    path = tmp_path / "nightly.yaml"
    path.write_text(pipeline_with(schedule_yaml))
    with pytest.raises(SpecErrors) as caught:
        load_pipeline_file(path)
    (error,) = caught.value.errors
    assert (error.path, error.field) == (str(path), field)
    assert words in error.reason
    assert str(error).startswith(str(path))


def test_every_problem_of_a_schedule_is_reported_at_once():
    with pytest.raises(SpecErrors) as caught:
        parse_schedule(
            {"cron": "61 * * * *", "timezone": "Nowhere/City", "overlap": "x", "catchup": "y"},
            path="p.yaml",
        )
    assert [e.field for e in caught.value.errors] == [
        "schedule.cron",
        "schedule.timezone",
        "schedule.catchup",
        "schedule.overlap",
    ]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_exit_2_on_a_bad_schedule_and_record_nothing(
    cli_in_process: Cli, tmp_path: Path, command: str
):
    path = tmp_path / "bad.yaml"
    path.write_text(pipeline_with("schedule: '61 * * * *'"))
    result = cli_in_process(command, str(path))
    assert result.code == 2, result.stdout + result.stderr
    said = result.stdout + result.stderr  # validate reports on stdout, run on stderr
    assert "field 'schedule'" in said and "'61 * * * *'" in said
    assert "Traceback" not in said
    assert cli_in_process("runs", "list", "-o", "json").json() == []


def test_export_airflow_writes_the_checked_cron_in_its_time_zone():
    def dag_text(schedule: object) -> str:
        spec = build_pipeline(
            {"name": "nightly", "schedule": schedule, "nodes": [{"id": "a", "type": "empty"}]}
        )
        return render_dag(spec)

    assert 'schedule="0 0 * * *",' in dag_text("@daily")
    zoned = dag_text({"cron": " 30 2 * * * ", "timezone": "Europe/Paris"})
    assert 'schedule=CronTriggerTimetable("30 2 * * *", timezone="Europe/Paris"),' in zoned
    assert "from airflow.sdk import CronTriggerTimetable, DAG, Param" in zoned
    compile(zoned, "nightly.py", "exec")
    unscheduled = build_pipeline({"name": "adhoc", "nodes": [{"id": "a", "type": "empty"}]})
    assert "schedule=None," in render_dag(unscheduled)


def test_a_schedule_error_is_a_spec_error_with_its_parts():
    with pytest.raises(SpecError) as caught:
        parse_schedule("every tuesday", path="p.yaml", line=4)
    (error,) = caught.value.errors  # type: ignore[attr-defined]
    assert (error.path, error.line, error.field, error.node_id) == ("p.yaml", 4, "schedule", None)
