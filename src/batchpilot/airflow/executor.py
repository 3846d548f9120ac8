"""The ``airflow`` executor: runs live in an Airflow deployment, mirrored into the store.

It implements :class:`batchpilot.engine.executors.Executor` with the REST
client (:mod:`batchpilot.airflow.client`) and the deploy / trigger / follow /
cancel / logs functions of :mod:`batchpilot.airflow.remote`. Its settings
(``BATCHPILOT_AIRFLOW_*``) are read when Airflow is first needed, so a
machine that never uses Airflow never needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from batchpilot.airflow import remote
from batchpilot.airflow.client import AirflowClient
from batchpilot.airflow.errors import AirflowFollowStopped, AirflowRunLost
from batchpilot.airflow.export import source_label
from batchpilot.airflow.settings import AirflowSettings
from batchpilot.engine.listener import RunListener
from batchpilot.engine.logs import AttemptLog, Offsets, offset_key
from batchpilot.engine.preflight import check_pipeline, merged_params
from batchpilot.engine.results import RunResult
from batchpilot.errors import BatchpilotError, RunStateError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.steps.registry import default_registry
from batchpilot.store import RunRecord, RunStore


class AirflowExecutor:
    """Runs pipelines on the Airflow deployment that ``BATCHPILOT_AIRFLOW_*`` names."""

    name = remote.EXECUTOR

    def __init__(
        self, load_settings: Callable[[], AirflowSettings] = AirflowSettings.from_env
    ) -> None:
        self._load_settings = load_settings

    def settings(self) -> AirflowSettings:
        """The Airflow settings; raises :class:`AirflowConfigError` when one is invalid."""
        return self._load_settings()

    def client(self, settings: AirflowSettings | None = None) -> AirflowClient:
        """A client of the configured API; raises :class:`AirflowConfigError` naming what is
        missing."""
        url, username, password = (settings or self.settings()).require_api()
        return AirflowClient(url, username, password)

    def start(
        self,
        spec: PipelineSpec,
        *,
        settings: Settings,
        store: RunStore,
        params: Mapping[str, Any],
        ds: str | None,
        workers: int | None,
        listener: RunListener,
        run_id: str | None = None,
    ) -> RunResult:
        """Deploy the pipeline's DAG, trigger it, follow it to the end (``workers`` is
        Airflow's business). Nothing is recorded unless Airflow accepted the trigger.

        Raises :class:`SpecError`, :class:`AirflowError` (config, login, deploy, trigger),
        then :class:`AirflowRunNotFollowed` once the run exists but cannot be followed.
        """
        airflow = self.settings()
        client = self.client(airflow)
        dags_folder = airflow.require_dags_folder()
        check_pipeline(spec, default_registry(), None, params=merged_params(spec, params))
        client.login()
        remote.deploy_pipeline(
            client,
            spec,
            dags_folder=dags_folder,
            source=source_label(spec.source_path),
            artifacts=airflow.artifacts,
            parse_timeout_s=airflow.parse_timeout_s,
            poll_s=airflow.poll_s,
        )
        run = remote.trigger_run(client, store, spec, params=params, ds=ds, run_id=run_id)
        return self._follow(client, airflow, run, store=store, listener=listener)

    def check_available(self) -> None:
        """Raises :class:`AirflowConfigError` naming each ``BATCHPILOT_AIRFLOW_*`` setting
        that is missing (the API's URL and login, the DAGs folder)."""
        airflow = self.settings()
        airflow.require_api()
        airflow.require_dags_folder()

    def execute_queued(
        self,
        run: RunRecord,
        *,
        settings: Settings,
        store: RunStore,
        listener: RunListener,
        workers: int | None,
    ) -> RunResult:
        """Deploy the run's stored pipeline as a DAG, trigger its DAG run (once: a run
        already triggered is only followed) and mirror it into the store until it ends.

        Raises :class:`AirflowError` (config, login, deploy, trigger), then
        :class:`AirflowRunNotFollowed` once the DAG run exists but cannot be followed.
        """
        airflow = self.settings()
        client = self.client(airflow)
        if not run.external_id:
            spec = build_pipeline(run.spec, source_path=run.source_path)
            client.login()
            remote.deploy_pipeline(
                client,
                spec,
                dags_folder=airflow.require_dags_folder(),
                source=source_label(spec.source_path),
                artifacts=airflow.artifacts,
                parse_timeout_s=airflow.parse_timeout_s,
                poll_s=airflow.poll_s,
            )
            run = remote.trigger_queued_run(client, store, run)
        return self._follow(client, airflow, run, store=store, listener=listener)

    def follow(self, run: RunRecord, *, store: RunStore, listener: RunListener) -> RunResult:
        """Mirror the DAG run into the store until it ends."""
        airflow = self.settings()
        return self._follow(self.client(airflow), airflow, run, store=store, listener=listener)

    def _follow(
        self,
        client: AirflowClient,
        airflow: AirflowSettings,
        run: RunRecord,
        *,
        store: RunStore,
        listener: RunListener,
    ) -> RunResult:
        follower = remote.RemoteRunFollower(
            client, store, run, listener=listener, poll_s=airflow.poll_s
        )
        try:
            follower.follow()
        except KeyboardInterrupt:
            raise AirflowFollowStopped(run.run_id) from None
        except BatchpilotError as exc:
            raise AirflowRunLost(run.run_id, exc) from exc
        return RunResult.load(store, run.run_id)

    def refresh(
        self, runs: list[RunRecord], *, store: RunStore, warn: Callable[[str], None]
    ) -> list[RunRecord]:
        """Unfinished runs re-read from Airflow; when Airflow cannot be asked, ``warn`` is
        told once and the stored state is returned."""
        stale = [r for r in runs if not r.status.is_terminal()]
        if not stale:
            return runs
        fresh: dict[str, RunRecord] = {}
        try:
            client = self.client()
            for record in stale:
                fresh[record.run_id] = remote.refresh_run(client, store, record)
        except BatchpilotError as exc:
            warn(f"Airflow runs shown as last seen: {exc}")
        return [fresh.get(r.run_id, r) for r in runs]

    def cancel(
        self, run: RunRecord, *, settings: Settings, store: RunStore, compensate_after: bool
    ) -> RunResult:
        """Mark the DAG run failed (Airflow stops its tasks) and record the run cancelled.
        Compensation is the exported DAG's business, so ``compensate_after`` is not used."""
        if run.status.is_terminal():
            raise RunStateError(
                f"run {run.run_id} already ended ({run.status.value}); nothing to cancel",
                run_id=run.run_id,
            )
        remote.cancel_run(self.client(), store, run)
        return RunResult.load(store, run.run_id)

    def read_logs(
        self,
        run: RunRecord,
        *,
        settings: Settings,
        store: RunStore,
        task: str | None,
        attempt: int | None,
        offset: int,
        offsets: Offsets | None = None,
    ) -> list[AttemptLog]:
        """Each try's log read through Airflow's API (``offset`` counts characters)."""
        logs = []
        for item in remote.remote_logs(self.client(), run, task=task, attempt=attempt):
            text = item["log"]
            key = offset_key(item["log_path"], item["task_id"], item["attempt"])
            start = (offsets or {}).get(key, offset)
            logs.append(
                AttemptLog(
                    task_id=item["task_id"],
                    attempt=item["attempt"],
                    state=item["state"],
                    error=item["error"],
                    log_path=item["log_path"],
                    text=text[start:],
                    offset=start,
                    next_offset=max(start, len(text)),
                )
            )
        return logs
