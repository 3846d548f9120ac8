"""The engine's services: what the edges (CLI, scheduler, REST API) call, and nothing else.

::

    from batchpilot.engine import RunService

    service = RunService(settings=Settings.from_env(), store=store)
    result = service.start(spec, on="local", params={"day": "2024-01-01"})
    service.cancel(run_id)
    for log in service.read_logs(run_id, task="load"):
        print(log.text)

Where a run executes sits behind :class:`Executor` (:class:`LocalExecutor`
here, ``AirflowExecutor`` over Airflow's REST API); a :class:`RunService` built
without executors runs on this machine only, and ``batchpilot.executors.default_executors``
(above the engine) gives the edges both. :func:`check_pipeline_file` and
:func:`check_connection` check without running anything. The modules below this
package (runs, runner, attempts…) are internal.
"""

from batchpilot.engine.checks import (
    ConnectionCheck,
    PipelineCheck,
    check_connection,
    check_pipeline_file,
    with_trigger_graph,
)
from batchpilot.engine.control import ReapedRun
from batchpilot.engine.executors import (
    AIRFLOW,
    LOCAL,
    Executor,
    Executors,
    LocalExecutor,
    UnknownExecutor,
)
from batchpilot.engine.listener import ListenerChain, RunListener
from batchpilot.engine.logs import AttemptLog
from batchpilot.engine.queued import check_queued_run, queued_run
from batchpilot.engine.results import RunResult, TaskResult
from batchpilot.engine.runs import new_run_id
from batchpilot.engine.services import RunService, run_summary

__all__ = [
    "AIRFLOW",
    "LOCAL",
    "AttemptLog",
    "ConnectionCheck",
    "Executor",
    "Executors",
    "ListenerChain",
    "LocalExecutor",
    "PipelineCheck",
    "ReapedRun",
    "RunListener",
    "RunResult",
    "RunService",
    "TaskResult",
    "UnknownExecutor",
    "check_connection",
    "check_pipeline_file",
    "check_queued_run",
    "new_run_id",
    "queued_run",
    "run_summary",
    "with_trigger_graph",
]
