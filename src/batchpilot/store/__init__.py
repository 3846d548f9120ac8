"""The state store (runs, task instances, attempts) behind one interface."""

from batchpilot.store.records import AttemptRecord, RunRecord, TaskRecord
from batchpilot.store.run_store import RunStore, utcnow

__all__ = ["AttemptRecord", "RunRecord", "RunStore", "TaskRecord", "utcnow"]
