"""Who drives a run: this process's owner id, whether another owner is gone, and
taking a run over."""

from __future__ import annotations

import os
import secrets
import socket

from batchpilot.errors import RunStateError
from batchpilot.settings import Settings
from batchpilot.store import RunRecord, RunStore


def owner_id() -> str:
    """Identifies this process as a run's owner: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid:token``) is a process of this host that is gone."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only its heartbeat can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_or_refuse(store: RunStore, run: RunRecord, settings: Settings) -> str:
    """Take ownership of the run for this process; raises :class:`RunStateError` if a
    live process holds it."""
    owner = owner_id()
    dead = [run.owner] if run.owner and owner_is_dead(run.owner) else []
    if not store.claim_run(
        run.run_id, owner, stale_after_s=settings.stale_after_s, dead_owners=dead
    ):
        raise RunStateError(
            f"run {run.run_id} is already being run or resumed by another process ({run.owner})",
            run_id=run.run_id,
        )
    return owner
