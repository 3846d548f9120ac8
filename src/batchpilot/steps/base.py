"""The interface between the engine and every step type.

A step is a small class with a pydantic ``Config`` model (so a wrong field is
named before anything runs) and a ``run`` method that receives a
:class:`StepContext` and returns a :class:`StepResult`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from batchpilot.artifacts import ArtifactRef, ArtifactStore, iter_batches, read_schema, read_table
from batchpilot.artifacts.live import LiveOutput
from batchpilot.connections import ConnectionRegistry
from batchpilot.errors import StepError


class StepConfig(BaseModel):
    """Base of every step's config model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


class DeferredInputs(Mapping[str, Any]):
    """Upstream outputs an attempt that started early gets only once its task really
    started (its upstream succeeded): read before that, they raise :class:`StepError`."""

    def __init__(self, resolve: Callable[[], Mapping[str, Any]], started: threading.Event) -> None:
        self._resolve = resolve
        self._started = started
        self._resolved: Mapping[str, Any] | None = None

    def _values(self) -> Mapping[str, Any]:
        if self._resolved is None:
            if not self._started.is_set():
                raise StepError(
                    "the upstream outputs are known only once the task started: "
                    "call ctx.wait_for_start() before reading ctx.inputs"
                )
            self._resolved = self._resolve()
        return self._resolved

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


@dataclass(frozen=True)
class StepContext:
    """What a running step may know and use: its run, inputs, connections and log.

    Built whole by the engine for each attempt, and never changed afterwards.
    """

    pipeline: str
    run_id: str
    task_id: str
    attempt: int
    params: Mapping[str, Any]
    inputs: Mapping[str, ArtifactRef]
    artifacts: ArtifactStore
    connections: ConnectionRegistry
    log: logging.Logger
    cancel_event: threading.Event = field(default_factory=threading.Event)
    extra_inputs: Mapping[str, Mapping[str, ArtifactRef]] = field(default_factory=dict)
    #: ``progress(task_id, rows)``: the live display's row counter
    progress: Callable[[str, int], None] | None = None
    #: for callbacks: pipeline, run_id, task_id, attempt, error, log_path, state
    event: Mapping[str, Any] | None = None
    #: for compensations: the compensated task's id, metadata, rows and output
    original: Mapping[str, Any] | None = None
    #: in an atomic group (``transaction:``): the group's open transaction, opened by its
    #: step type (a :class:`~batchpilot.steps.transaction_group.GroupTransaction`);
    #: the step works inside it (in a savepoint) and never commits it
    transaction: Any = None
    #: how many times this task had already succeeded in this run before this attempt
    #: (``batchpilot retry --task`` runs a succeeded task again)
    reruns: int = 0
    #: set for an attempt that started early (see :attr:`Step.starts_early`): the
    #: upstream outputs it follows while they are written, and the event the engine
    #: sets when the task really starts (its ``inputs`` are then :class:`DeferredInputs`)
    live_inputs: Mapping[str, LiveOutput] = field(default_factory=dict)
    start_signal: threading.Event | None = None
    #: this attempt's main output as consumers that started early follow it, if any
    live_output: LiveOutput | None = None
    #: set by the engine: remembers a database server session this attempt opened
    #: (connection name, backend pid, backend start) so that it can be ended on the
    #: server if the process dies (see :meth:`record_server_session`)
    server_session_recorder: Callable[[str, int, str], None] | None = None
    _cancel_hooks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def load_key(self) -> str:
        """The task's identity in a target's ``batchpilot_loads`` record: its id, then
        ``id#2``, ``id#3``… once retried after it succeeded. A resume re-runs only tasks
        that did not succeed, so it meets the same key and never loads twice; an explicit
        retry of a succeeded load is a new load."""
        return self.task_id if not self.reruns else f"{self.task_id}#{self.reruns + 1}"

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Register ``hook`` to run (from another thread) if the attempt is stopped.

        Steps use it to cancel work the engine cannot interrupt itself, such as
        a SQL statement running on the server (``psycopg`` ``conn.cancel()``).
        If the attempt is already stopped, the hook runs at once.
        """
        self._cancel_hooks.append(hook)
        if self.cancel_event.is_set():
            _call_quietly(hook)

    def record_server_session(self, connection: str, backend_pid: int, backend_start: str) -> None:
        """Tell the engine this attempt opened a server session (PostgreSQL backend), so
        that ``cancel``, ``runs reap`` and ``resume`` can end it if this process dies."""
        if self.server_session_recorder is not None:
            self.server_session_recorder(connection, backend_pid, backend_start)

    def run_cancel_hooks(self) -> None:
        """Called by the engine when it stops the attempt (cancel or timeout)."""
        for hook in list(self._cancel_hooks):
            _call_quietly(hook)

    def single_input(self) -> ArtifactRef:
        """Return the only upstream output; raises :class:`StepError` otherwise."""
        if len(self.inputs) != 1:
            have = ", ".join(self.inputs) or "none"
            raise StepError(
                f"this step takes exactly one upstream dataset, got {len(self.inputs)} ({have})"
            )
        return next(iter(self.inputs.values()))

    def input_batches(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The only upstream output's schema and record batches, read one at a time.

        In an attempt that started early, the batches arrive as the upstream task
        writes them. Raises :class:`StepError` unless there is exactly one upstream
        output, :class:`ArtifactError` if the upstream attempt is abandoned.
        """
        if self.live_inputs:
            (live,) = self.live_inputs.values()
            followed = live.follow(self.cancel_event)
            if followed is None:
                raise StepError(
                    f"this step takes exactly one upstream dataset, got 0 ({live.task_id} "
                    "wrote no output)"
                )
            return followed
        ref = self.single_input()
        return read_schema(ref), iter_batches(ref)

    def wait_for_start(self) -> None:
        """Block until the task really started; a step that starts early calls it
        before any effect others can see (its commit). Returns at once otherwise.

        Raises :class:`StepError` if the attempt is stopped while it waits.
        """
        if self.start_signal is None:
            return
        if not self.start_signal.is_set():
            waited = time.monotonic()
            while not self.start_signal.wait(0.1):
                self.check_cancelled()
            self.log.info(
                "the task starts: its upstream succeeded (waited %.1fs for it)",
                time.monotonic() - waited,
            )

    def input_table(self, node_id: str | None = None) -> pa.Table:
        """Memory-map an upstream output as a table (the only one if no id is given)."""
        ref = self.single_input() if node_id is None else self.inputs[node_id]
        return read_table(ref)

    def write_output(self, table: pa.Table, name: str = "output") -> ArtifactRef:
        """Write a table as this task's output (or a named side output)."""
        return self.write_output_batches(table.schema, table.to_batches(), name=name)

    def write_output_batches(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch], name: str = "output"
    ) -> ArtifactRef:
        """Stream record batches into this task's output."""
        live = self.live_output if name == "output" else None
        return self.artifacts.write_batches(self.task_id, schema, batches, name=name, live=live)

    def report_rows(self, rows: int) -> None:
        """Tell the live display how many rows this step has handled so far."""
        if self.progress is not None:
            self.progress(self.task_id, rows)

    def check_cancelled(self) -> None:
        """Raise :class:`StepError` if the run was asked to stop; call it in long loops."""
        if self.cancel_event.is_set():
            raise StepError("stopped: the run was cancelled")

    def counted_batches(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield ``batches``: before each, :meth:`check_cancelled` and :meth:`report_rows`
        with the rows so far (this one's included). Raises what ``batches`` raises, and
        :class:`StepError` once the run is cancelled."""
        rows = 0
        for batch in batches:
            self.check_cancelled()
            rows += batch.num_rows
            self.report_rows(rows)
            yield batch


def _call_quietly(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:  # a failing cancel hook must not stop the others
        logging.getLogger(__name__).debug("cancel hook failed", exc_info=True)


@dataclass
class StepResult:
    """What a step produced: its output dataset, row counts and metadata."""

    output: ArtifactRef | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int | None = None
    side_outputs: dict[str, ArtifactRef] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


ConfigT = TypeVar("ConfigT", bound=StepConfig)


class Step(ABC, Generic[ConfigT]):
    """A step type, generic over its config model: ``class SqlStep(Step[SqlConfig])``.

    Subclasses set ``type_name`` and ``Config`` (the same model) and implement ``run``;
    ``self.config`` is then typed as that model.
    """

    type_name: ClassVar[str]
    Config: ClassVar[type[StepConfig]] = StepConfig
    #: config field names that name a connection, checked at parse time
    connection_fields: ClassVar[tuple[str, ...]] = ()
    #: False for steps with no side effect to undo (extracts, transforms): a
    #: ``compensate:`` on such a node is a spec error
    compensable: ClassVar[bool] = True
    #: True for steps that may start while their single upstream task still runs,
    #: reading its output as it is written (:meth:`StepContext.input_batches`) and
    #: calling :meth:`StepContext.wait_for_start` before they commit anything: the
    #: engine then overlaps them with that task, and stops them if it fails
    starts_early: ClassVar[bool] = False
    #: True for steps that run no user code and return at once (``empty``): the engine
    #: runs their attempts on its own thread, skipping the hand-off to a worker thread,
    #: as there is nothing to time out or cancel. Read from the class that declares it
    #: only: a subclass that overrides :meth:`run` runs on a worker unless it says so too
    never_blocks: ClassVar[bool] = False

    def __init__(self, config: ConfigT) -> None:
        self.config: ConfigT = config

    @abstractmethod
    def run(self, ctx: StepContext) -> StepResult:
        """Do the work; raise :class:`StepError` (or PermanentStepError for bad data)."""
