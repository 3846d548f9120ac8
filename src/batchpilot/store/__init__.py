"""The state store (runs, task instances, attempts) behind one interface."""

from batchpilot.store.records import AttemptRecord, CallbackRecord, RunRecord, TaskRecord
from batchpilot.store.run_store import RunStore, utcnow

__all__ = ["AttemptRecord", "CallbackRecord", "RunRecord", "RunStore", "TaskRecord", "utcnow"]
