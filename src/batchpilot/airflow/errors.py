"""Errors of the Airflow integration, under :class:`batchpilot.errors.BatchpilotError`.

::

    BatchpilotError
    └── AirflowError                 talking to Airflow or deploying to it failed
        ├── AirflowUnreachable       no answer at the configured URL (exit 2)
        ├── AirflowAuthError         the username or password was rejected (exit 2)
        ├── AirflowApiError          Airflow answered with an unexpected HTTP status
        │   └── AirflowNotFound      the DAG, run or task does not exist (404)
        ├── AirflowConfigError       a BATCHPILOT_AIRFLOW_* setting is missing or invalid
        ├── DagImportError           Airflow could not import the deployed DAG file
        ├── DagNotParsed             Airflow did not pick the DAG file up in time
        └── AirflowRunNotFollowed    a triggered run goes on, but is no longer followed (exit 1;
            │                        also a batchpilot.errors.RunNotFollowed)
            ├── AirflowFollowStopped Ctrl-C while following
            └── AirflowRunLost       Airflow stopped answering while following

Export refusals are :class:`batchpilot.errors.SpecError` (they are about the
pipeline, not about Airflow). Messages never contain a password.
"""

from __future__ import annotations

from batchpilot.errors import BatchpilotError, RunNotFollowed


class AirflowError(BatchpilotError):
    """Root of the errors raised while talking to an Airflow deployment."""


class AirflowUnreachable(AirflowError):
    """Nothing answered at the Airflow URL (down, wrong host or port, timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach Airflow at {url}: {reason}")


class AirflowAuthError(AirflowError):
    """Airflow rejected the configured username or password."""

    def __init__(self, url: str, username: str, status: int) -> None:
        self.url = url
        self.username = username
        self.status = status
        super().__init__(
            f"Airflow at {url} rejected the login of user '{username}' (HTTP {status}): "
            "check BATCHPILOT_AIRFLOW_USERNAME and BATCHPILOT_AIRFLOW_PASSWORD"
        )


class AirflowApiError(AirflowError):
    """Airflow answered a request with an error status; ``detail`` is its own text."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        super().__init__(f"Airflow refused {method} {path} (HTTP {status}): {detail}")


class AirflowNotFound(AirflowApiError):
    """The DAG, DAG run, task instance or log asked for does not exist."""


class AirflowConfigError(AirflowError):
    """A ``BATCHPILOT_AIRFLOW_*`` setting is missing or invalid."""


class DagImportError(AirflowError):
    """Airflow failed to import a DAG file; ``stack_trace`` is Airflow's own text."""

    def __init__(self, filename: str, stack_trace: str) -> None:
        self.filename = filename
        self.stack_trace = stack_trace.strip()
        last = self.stack_trace.splitlines()[-1] if self.stack_trace else "unknown error"
        super().__init__(f"Airflow could not import the DAG file {filename}: {last}")


class DagNotParsed(AirflowError):
    """Airflow did not parse the deployed DAG file within the waiting time."""

    def __init__(self, dag_id: str, filename: str, waited_s: float) -> None:
        self.dag_id = dag_id
        self.filename = filename
        self.waited_s = waited_s
        super().__init__(
            f"Airflow did not load DAG '{dag_id}' from {filename} within {waited_s:.0f}s: "
            "is BATCHPILOT_AIRFLOW_DAGS_FOLDER the DAGs folder of that Airflow, and is its "
            "DAG processor running?"
        )


class AirflowRunNotFollowed(AirflowError, RunNotFollowed):
    """A run Airflow accepted goes on there, but this process stopped following it."""

    def __init__(self, run_id: str, message: str) -> None:
        RunNotFollowed.__init__(self, run_id, message)


class AirflowFollowStopped(AirflowRunNotFollowed):
    """Following was interrupted (Ctrl-C); the run goes on in Airflow."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            run_id,
            f"stopped following; run {run_id} goes on in Airflow "
            f"(batchpilot runs show {run_id}, batchpilot cancel {run_id})",
        )


class AirflowRunLost(AirflowRunNotFollowed):
    """Airflow stopped answering while a run was followed; ``reason`` is why."""

    lost = True

    def __init__(self, run_id: str, reason: BatchpilotError) -> None:
        self.reason = reason
        super().__init__(
            run_id,
            f"lost track of run {run_id} in Airflow: {reason} "
            f"(batchpilot runs show {run_id} tries again)",
        )


__all__ = [
    "AirflowApiError",
    "AirflowAuthError",
    "AirflowConfigError",
    "AirflowError",
    "AirflowFollowStopped",
    "AirflowNotFound",
    "AirflowRunLost",
    "AirflowRunNotFollowed",
    "AirflowUnreachable",
    "DagImportError",
    "DagNotParsed",
]
