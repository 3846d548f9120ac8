"""The state store (runs, task instances, attempts) behind one interface."""

from batchpilot.store.records import AttemptRecord, CallbackRecord, RunRecord, TaskRecord, utcnow
from batchpilot.store.run_store import RunStore

__all__ = ["AttemptRecord", "CallbackRecord", "RunRecord", "RunStore", "TaskRecord", "utcnow"]
