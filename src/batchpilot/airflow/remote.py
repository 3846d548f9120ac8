"""Runs on an Airflow deployment: deploy the DAG, trigger, follow, cancel, read logs.

The run lives in Airflow; batchpilot's store keeps a mirror of it (executor
``airflow``, ``external_id`` = the DAG run id, which is batchpilot's run id
too) so ``runs list/show``, ``logs`` and ``cancel`` work as for local runs.
A run is recorded only once Airflow has accepted the trigger, so a failed
deploy or a refused trigger leaves nothing half-registered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from batchpilot.airflow.client import AirflowClient, TaskInstance
from batchpilot.airflow.errors import (
    AirflowError,
    AirflowUnreachable,
    DagImportError,
    DagNotParsed,
)
from batchpilot.airflow.export import render_dag, write_dag_file
from batchpilot.airflow.layout import (
    compensated_node,
    compensation_task_id,
    dag_file_name,
    dag_id_for,
)
from batchpilot.airflow.states import (
    compensation_state_from_airflow,
    run_status_from_airflow,
    task_state_from_airflow,
)
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import merged_params
from batchpilot.engine.runs import new_run_id
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document, to_jsonable
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore
from batchpilot.store.records import RunRecord

EXECUTOR = "airflow"
#: Airflow's clock and ours may differ a little; a parse this close to the deploy counts.
CLOCK_SKEW = timedelta(seconds=2)
TERMINAL_DAG_RUN_STATES = frozenset({"success", "failed"})
# A busy or restarting API server is not a lost run: keep asking this long before giving up.
UNREACHABLE_GRACE_S = 120.0

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Deployment:
    """A DAG file placed in Airflow's DAGs folder and loaded by Airflow."""

    dag_id: str
    path: Path
    changed: bool


# -- deploying ------------------------------------------------------------------------------


def deploy_pipeline(
    client: AirflowClient,
    spec: PipelineSpec,
    *,
    dags_folder: Path,
    source: str | None,
    artifacts: str | None,
    parse_timeout_s: float,
    poll_s: float,
    sleep: Sleep = time.sleep,
) -> Deployment:
    """Write the pipeline's DAG into ``dags_folder``, wait for Airflow to load it, unpause it.

    Raises :class:`SpecErrors` (nothing written) when the pipeline cannot be
    exported, :class:`DagImportError` with Airflow's own error text,
    :class:`DagNotParsed` when Airflow does not pick the file up in time.
    """
    text = render_dag(spec, source=source, artifacts=artifacts)
    dag_id = dag_id_for(spec.name)
    file_name = dag_file_name(spec.name)
    before = client.get_dag(dag_id)  # also checks Airflow answers before anything is written
    deployed_at = datetime.now(UTC)
    path, changed = write_dag_file(dags_folder, file_name, text)
    if changed and before is not None:
        # Ask for a prompt re-parse; the DAG processor re-parses on its own schedule anyway.
        with contextlib.suppress(AirflowError, KeyError):
            client.request_reparse(client.get_dag_details(dag_id)["file_token"])
    dag = wait_for_dag(
        client,
        dag_id,
        file_name,
        since=deployed_at if changed else None,
        timeout_s=parse_timeout_s,
        poll_s=poll_s,
        sleep=sleep,
    )
    if dag.get("is_paused"):
        client.set_paused(dag_id, False)
    return Deployment(dag_id=dag_id, path=path, changed=changed)


def wait_for_dag(
    client: AirflowClient,
    dag_id: str,
    file_name: str,
    *,
    since: datetime | None,
    timeout_s: float,
    poll_s: float,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Poll until Airflow has loaded ``dag_id`` from ``file_name`` (parsed after ``since``).

    Raises :class:`DagImportError` as soon as Airflow reports an import error
    for the file (newer than ``since``), :class:`DagNotParsed` after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        for error in client.import_errors(file_name):
            name = str(error.get("filename", ""))
            stamp = _parse_time(error.get("timestamp"))
            fresh = since is None or (stamp is not None and stamp >= since - CLOCK_SKEW)
            if Path(name).name == file_name and fresh:
                raise DagImportError(name, str(error.get("stack_trace") or ""))
        dag = client.get_dag(dag_id)
        if dag is not None:
            parsed = _parse_time(dag.get("last_parsed_time"))
            if since is None or (parsed is not None and parsed >= since - CLOCK_SKEW):
                return dag
        if time.monotonic() >= deadline:
            raise DagNotParsed(dag_id, file_name, timeout_s)
        sleep(poll_s)


# -- starting -------------------------------------------------------------------------------


def trigger_run(
    client: AirflowClient,
    store: RunStore,
    spec: PipelineSpec,
    *,
    params: Mapping[str, Any],
    ds: str | None,
    run_id: str | None = None,
) -> RunRecord:
    """Trigger a DAG run and record it in the store (only once Airflow accepted it).

    The DAG run id is the batchpilot run id (``run_id``, else a new one), so
    ``{{ run_id }}`` renders the same in both. ``ds`` (if given) becomes the
    DAG run's logical date.
    """
    run_id = run_id or new_run_id()
    run_params = merged_params(spec, params)
    dag_id = dag_id_for(spec.name)
    logical_date = f"{ds}T00:00:00+00:00" if ds else None
    dag_run = client.trigger(
        dag_id,
        run_id=run_id,
        conf=to_jsonable({k: run_params[k] for k in params}),
        logical_date=logical_date,
    )
    store.create_run(
        run_id=run_id,
        pipeline=spec.name,
        spec=spec_to_document(spec),
        params=to_jsonable(run_params),
        ds=ds or date.today().isoformat(),
        source_path=str(Path(spec.source_path).resolve()) if spec.source_path else None,
        task_ids=spec.node_ids,
        executor=EXECUTOR,
        external_id=str(dag_run.get("dag_run_id") or run_id),
    )
    return store.get_run(run_id)


def trigger_queued_run(client: AirflowClient, store: RunStore, run: RunRecord) -> RunRecord:
    """Trigger the DAG run of a run queued for Airflow (``serve``'s worker), with its
    stored params and date, and record the DAG run's id on it. A run that already has
    one (its worker died after triggering) is returned as it is, never triggered twice.
    """
    if run.external_id:
        return run
    logical_date = f"{run.ds}T00:00:00+00:00" if run.ds else None
    dag_run = client.trigger(
        dag_id_for(run.pipeline),
        run_id=run.run_id,
        conf=to_jsonable(dict(run.params)),
        logical_date=logical_date,
    )
    store.set_external_id(run.run_id, str(dag_run.get("dag_run_id") or run.run_id))
    return store.get_run(run.run_id)


# -- following ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """A pipeline node's state in Airflow, in batchpilot's terms."""

    state: TaskState
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None


def node_views(spec: PipelineSpec, instances: list[TaskInstance]) -> dict[str, NodeView]:
    """Each node's state from Airflow's task instances; a compensation task's state
    (compensating, compensated, compensation_failed) overrides its node's."""
    by_id = {ti.task_id: ti for ti in instances}
    views: dict[str, NodeView] = {}
    for node_id in spec.node_ids:
        ti = by_id.get(node_id)
        state = task_state_from_airflow(ti.state) if ti else TaskState.PENDING
        compensation = by_id.get(compensation_task_id(node_id))
        if compensation is not None:
            state = compensation_state_from_airflow(compensation.state) or state
        views[node_id] = NodeView(
            state=state,
            attempts=ti.try_number if ti else 0,
            started_at=ti.start_date if ti else None,
            ended_at=ti.end_date if ti else None,
            duration_s=ti.duration_s if ti else None,
        )
    return views


class RemoteRunFollower:
    """Mirrors one Airflow DAG run into the store and tells a listener what changed."""

    def __init__(
        self,
        client: AirflowClient,
        store: RunStore,
        run: RunRecord,
        *,
        listener: RunListener | None = None,
        poll_s: float = 1.0,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        unreachable_grace_s: float = UNREACHABLE_GRACE_S,
    ) -> None:
        self.client = client
        self.store = store
        self.run_id = run.run_id
        self.spec = build_pipeline(run.spec, source_path=run.source_path)
        self.dag_id = dag_id_for(self.spec.name)
        self.dag_run_id = run.external_id or run.run_id
        self.listener = listener or RunListener()
        self.poll_s = poll_s
        self.sleep = sleep
        self.clock = clock
        self.unreachable_grace_s = unreachable_grace_s
        self._known = {t.task_id: t.state for t in store.get_tasks(run.run_id)}

    def follow(self) -> RunStatus:
        """Poll until the DAG run ends; returns the run's final status.

        Airflow not answering is retried for ``unreachable_grace_s`` since the last answer
        (a loaded or restarting API server); after that :class:`AirflowUnreachable` is raised.
        """
        self.listener.run_started(self.run_id, self.spec, dict(self._known))
        status = RunStatus.UNKNOWN
        last_answer = self.clock()
        try:
            while True:
                try:
                    dag_state = self.sync()
                except AirflowUnreachable:
                    if self.clock() - last_answer >= self.unreachable_grace_s:
                        raise
                    self.sleep(self.poll_s)
                    continue
                last_answer = self.clock()
                if dag_state in TERMINAL_DAG_RUN_STATES:
                    status = self.finish(dag_state)
                    return status
                self.sleep(self.poll_s)
        finally:
            self.listener.run_finished(self.run_id, status)

    def sync(self) -> str | None:
        """One round: read the DAG run and its tasks, write changes to the store; returns
        Airflow's DAG-run state."""
        dag_run = self.client.get_dag_run(self.dag_id, self.dag_run_id)
        instances = self.client.task_instances(self.dag_id, self.dag_run_id)
        record = self.store.get_run(self.run_id)
        dag_state = dag_run.get("state")
        if record.status is RunStatus.QUEUED and dag_state == "running":
            self.store.set_run_status(self.run_id, RunStatus.RUNNING)
        elif record.status is RunStatus.UNKNOWN and dag_state in ("queued", "running"):
            # followed again after it was lost: what Airflow says now replaces "unknown"
            status = RunStatus.RUNNING if dag_state == "running" else RunStatus.QUEUED
            self.store.set_run_status(self.run_id, status)
        cancelled: set[str] = set()
        if record.cancel_requested:  # Airflow's "failed"/"skipped" after a cancel say no more
            cancelled = {
                t.task_id
                for t in self.store.get_tasks(self.run_id)
                if t.state is TaskState.CANCELLED
            }
        for node_id, view in node_views(self.spec, instances).items():
            known = self._known.get(node_id)
            if node_id in cancelled:
                if known is not TaskState.CANCELLED:
                    self._known[node_id] = TaskState.CANCELLED
                    self.listener.task_state_changed(
                        node_id, TaskState.CANCELLED, attempt=view.attempts, error=None
                    )
                continue
            if view.state is known:
                continue
            rows_out = None
            if view.state is TaskState.SUCCESS:
                payload = self.client.xcom(self.dag_id, self.dag_run_id, node_id)
                if isinstance(payload, Mapping) and isinstance(payload.get("rows_out"), int):
                    rows_out = payload["rows_out"]
            error = None
            if view.state in (TaskState.FAILED, TaskState.RETRY, TaskState.COMPENSATION_FAILED):
                error = (
                    f"{view.state.value} in Airflow (try {view.attempts}); "
                    f"see: batchpilot logs {self.run_id} --task {node_id}"
                )
            self.store.sync_task(
                self.run_id,
                node_id,
                state=view.state,
                attempts=view.attempts,
                started_at=view.started_at,
                ended_at=view.ended_at,
                duration_s=view.duration_s,
                error=error,
                rows_out=rows_out,
            )
            self._known[node_id] = view.state
            self.listener.task_state_changed(
                node_id, view.state, attempt=view.attempts, error=error
            )
            if rows_out is not None:
                self.listener.task_rows_reported(node_id, rows_out)
        return dag_state

    def finish(self, dag_state: str) -> RunStatus:
        """Record the run's final status from Airflow's (cancelled when it was asked to stop)."""
        record = self.store.get_run(self.run_id)
        if record.cancel_requested:
            status, error = RunStatus.CANCELLED, "cancelled on request"
        else:
            status = run_status_from_airflow(dag_state)
            failed = [t for t, s in self._known.items() if s is TaskState.FAILED]
            error = f"failed tasks: {', '.join(failed)}" if status is RunStatus.FAILED else None
            if status is RunStatus.FAILED and not failed:
                error = "the DAG run failed in Airflow"
        if record.status is not status or record.error != error:
            self.store.set_run_status(self.run_id, status, error=error)
        return status


def refresh_run(client: AirflowClient, store: RunStore, run: RunRecord) -> RunRecord:
    """Bring a stored Airflow run up to date (one sync); returns the fresh record."""
    follower = RemoteRunFollower(client, store, run)
    dag_state = follower.sync()
    if dag_state in TERMINAL_DAG_RUN_STATES:
        follower.finish(dag_state)
    return store.get_run(run.run_id)


def cancel_run(client: AirflowClient, store: RunStore, run: RunRecord) -> RunRecord:
    """Stop an Airflow run: mark the DAG run failed (Airflow stops its tasks); record the
    run as cancelled and its unfinished tasks as cancelled."""
    follower = RemoteRunFollower(client, store, run)
    dag_state = follower.sync()
    if dag_state in TERMINAL_DAG_RUN_STATES:
        follower.finish(dag_state)
        return store.get_run(run.run_id)
    unfinished = [t.task_id for t in store.get_tasks(run.run_id) if not t.state.is_terminal()]
    store.request_cancel(run.run_id)
    client.set_dag_run_state(follower.dag_id, follower.dag_run_id, "failed")
    store.set_task_states(run.run_id, unfinished, TaskState.CANCELLED, error="cancelled on request")
    store.set_run_status(run.run_id, RunStatus.CANCELLED, error="cancelled on request")
    return store.get_run(run.run_id)


# -- logs -----------------------------------------------------------------------------------


def remote_logs(
    client: AirflowClient,
    run: RunRecord,
    *,
    task: str | None = None,
    attempt: int | None = None,
) -> list[dict[str, Any]]:
    """Each try's log of the run's tasks (and their compensations), from Airflow."""
    spec = build_pipeline(run.spec, source_path=run.source_path)
    dag_id = dag_id_for(spec.name)
    dag_run_id = run.external_id or run.run_id
    items = []
    for ti in client.task_instances(dag_id, dag_run_id):
        node = compensated_node(ti.task_id) or ti.task_id
        if node not in spec.node_ids or (task is not None and node != task):
            continue
        for try_number in range(1, ti.try_number + 1):
            if attempt is not None and try_number != attempt:
                continue
            lines = client.task_log(dag_id, dag_run_id, ti.task_id, try_number)
            items.append(
                {
                    "task_id": ti.task_id,
                    "attempt": try_number,
                    "state": (
                        task_state_from_airflow(ti.state).value
                        if try_number == ti.try_number
                        else TaskState.FAILED.value
                    ),
                    "error": None,
                    "log_path": f"airflow:{dag_id}/{dag_run_id}/{ti.task_id}/{try_number}",
                    "log": "\n".join(lines),
                }
            )
    order = {n: i for i, n in enumerate(spec.node_ids)}
    items.sort(
        key=lambda i: (
            order.get(compensated_node(i["task_id"]) or i["task_id"], 0),
            i["task_id"].startswith("compensate."),
            i["attempt"],
        )
    )
    return items


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
