"""The state store (runs, task instances, attempts) behind one interface."""

from batchpilot.store.records import (
    ActiveRunRecord,
    AttemptRecord,
    CallbackRecord,
    RunRecord,
    RunSummaryRecord,
    TaskRecord,
    utcnow,
)
from batchpilot.store.run_store import RunStore
from batchpilot.store.schedules import SlotClaimRequest
from batchpilot.store.server_sessions import ServerSession

__all__ = [
    "ActiveRunRecord",
    "AttemptRecord",
    "CallbackRecord",
    "RunRecord",
    "RunStore",
    "RunSummaryRecord",
    "ServerSession",
    "SlotClaimRequest",
    "TaskRecord",
    "utcnow",
]
