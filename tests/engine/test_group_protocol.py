"""The engine runs atomic groups through ``TransactionGroupStep`` alone: a third-party step
type that implements it joins groups exactly as ``sql`` does, with no engine change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from batchpilot import RunStatus, TaskState
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.runs import start_run
from batchpilot.errors import PermanentStepError, SpecErrors
from batchpilot.settings import Settings
from batchpilot.spec import build_pipeline
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult
from batchpilot.steps.registry import BUILTIN_STEPS, StepRegistry
from batchpilot.steps.transaction_group import GroupKey
from batchpilot.store import RunStore


def journal_path(connection: Connection) -> Path:
    return Path(str(make_url(connection.url).database))


def read_journal(path: Path) -> dict:
    if not path.exists():
        return {"lines": [], "commits": {}}
    return json.loads(path.read_text())


class JournalTransaction:
    """Lines the group's members append, written to the journal file only on commit."""

    def __init__(self, path: Path, key: GroupKey, token: str) -> None:
        self.path, self.key, self.token = path, key, token
        self.pending: list[str] = []

    def commit(self) -> None:
        """Write the pending lines and the commit record in one file replacement."""
        journal = read_journal(self.path)
        journal["lines"] += self.pending
        journal["commits"]["/".join((self.key.pipeline, self.key.run_id, self.key.group))] = (
            self.token
        )
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(journal))
        scratch.replace(self.path)

    def rollback(self) -> None:
        """Forget the pending lines."""
        self.pending.clear()


class JournalConfig(StepConfig):
    connection: str
    line: str
    fail: bool = False


class JournalAppend(Step):
    """Appends a line to a journal file; inside a group, on the group's commit."""

    type_name = "journal.append"
    Config = JournalConfig
    connection_fields = ("connection",)

    @classmethod
    def open_group_transaction(
        cls, connection: Connection, key: GroupKey, token: str
    ) -> JournalTransaction:
        """A journal transaction on the connection's file."""
        return JournalTransaction(journal_path(connection), key, token)

    @classmethod
    def committed_group_token(cls, connection: Connection, key: GroupKey) -> str | None:
        """The token the journal recorded for the group."""
        commits = read_journal(journal_path(connection))["commits"]
        return commits.get("/".join((key.pipeline, key.run_id, key.group)))

    def run(self, ctx: StepContext) -> StepResult:
        config: JournalConfig = self.config  # type: ignore[assignment]
        path = journal_path(ctx.connections.get(config.connection))
        visible = read_journal(path)["lines"]
        if config.fail:
            raise PermanentStepError(f"refused to write {config.line!r}")
        assert isinstance(ctx.transaction, JournalTransaction)
        ctx.transaction.pending.append(config.line)
        return StepResult(metadata={"visible": visible})


def member(node_id: str, after: str | None, step_type: str, **config: object) -> dict:
    """A node of group ``g`` on the ``journal`` connection."""
    node = {"id": node_id, "type": step_type, "transaction": "g"}
    node["config"] = {"connection": "journal", **config}
    if after:
        node["depends_on"] = [after]
    return node


def journal_pipeline(*, fail_last: bool = False, last_type: str = "journal.append") -> dict:
    last = (
        member("c", "b", "sql", sql="SELECT 1")
        if last_type == "sql"
        else member("c", "b", last_type, line="c", fail=fail_last)
    )
    return {
        "name": "journaled",
        "nodes": [
            member("a", None, "journal.append", line="a"),
            member("b", "a", "journal.append", line="b"),
            last,
        ],
    }


@pytest.fixture
def registry() -> StepRegistry:
    found = StepRegistry()
    for type_name, target in BUILTIN_STEPS.items():
        found.register_lazy(type_name, target)
    found.register(JournalAppend)
    return found


def run(document: dict, settings: Settings, registry: StepRegistry, journal: Path):
    settings = Settings(
        home=settings.home,
        connections=ConnectionRegistry([Connection("journal", f"sqlite:///{journal}")]),
    )
    return start_run(
        build_pipeline(document),
        settings=settings,
        store=RunStore.for_home(settings.home),
        registry=registry,
    )


def test_a_plugin_group_commits_its_members_work_and_record_after_the_last_member(
    settings: Settings, registry: StepRegistry, tmp_path: Path
):
    journal = tmp_path / "journal.json"

    result = run(journal_pipeline(), settings, registry, journal)

    assert result.status is RunStatus.SUCCESS
    assert [result.tasks[t].metadata["visible"] for t in "abc"] == [[], [], []]
    assert read_journal(journal) == {
        "lines": ["a", "b", "c"],
        "commits": {f"journaled/{result.run_id}/g": "a:1"},
    }


def test_a_plugin_group_whose_member_fails_leaves_nothing(
    settings: Settings, registry: StepRegistry, tmp_path: Path
):
    journal = tmp_path / "journal.json"

    result = run(journal_pipeline(fail_last=True), settings, registry, journal)

    assert result.status is RunStatus.FAILED
    assert {t: r.state for t, r in result.tasks.items()} == dict.fromkeys("abc", TaskState.FAILED)
    assert result.tasks["b"].error == "rolled back: transaction group 'g' failed at 'c'"
    assert not journal.exists()


def test_a_group_mixing_two_joining_step_types_is_refused_naming_node_and_field(
    settings: Settings, registry: StepRegistry, tmp_path: Path
):
    with pytest.raises(SpecErrors) as info:
        run(journal_pipeline(last_type="sql"), settings, registry, tmp_path / "journal.json")

    (error,) = info.value.errors
    assert (error.node_id, error.field) == ("c", "type")
    assert "mixes step types journal.append (a) and sql" in error.reason
