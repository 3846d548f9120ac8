"""batchpilot: pipelines of ETL steps and SQL batches, run and watched on one machine.

The public API is small: :class:`Pipeline`, :class:`Task`, the results and
the errors. Everything else is internal.
"""

from batchpilot.engine.results import RunResult, TaskResult
from batchpilot.errors import (
    ArtifactError,
    BatchpilotError,
    ConnectionError,
    PermanentStepError,
    RunInterrupted,
    RunNotFound,
    RunStateError,
    SpecError,
    SpecErrors,
    StepError,
    StoreError,
)
from batchpilot.pipeline import Pipeline, Task
from batchpilot.states import RunStatus, TaskState

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "BatchpilotError",
    "ConnectionError",
    "PermanentStepError",
    "Pipeline",
    "RunInterrupted",
    "RunNotFound",
    "RunResult",
    "RunStateError",
    "RunStatus",
    "SpecError",
    "SpecErrors",
    "StepError",
    "StoreError",
    "Task",
    "TaskResult",
    "TaskState",
    "__version__",
]
