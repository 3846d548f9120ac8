"""The state store (runs, task instances, attempts) behind one interface."""

from batchpilot.store.records import AttemptRecord, CallbackRecord, RunRecord, TaskRecord, utcnow
from batchpilot.store.run_store import RunStore
from batchpilot.store.server_sessions import ServerSession

__all__ = [
    "AttemptRecord",
    "CallbackRecord",
    "RunRecord",
    "RunStore",
    "ServerSession",
    "TaskRecord",
    "utcnow",
]
