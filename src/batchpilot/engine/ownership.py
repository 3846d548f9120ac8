"""Who drives a run: this process's owner id, whether another owner is gone, and
taking a run over."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from batchpilot.errors import RunStateError
from batchpilot.settings import Settings
from batchpilot.store import RunRecord, RunStore


def owner_id() -> str:
    """Identifies this process as a run's owner: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid:token``) is a process of this host that is gone,
    or has ended and only waits for its parent to collect it (a zombie)."""
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
    return _has_ended(int(pid_text))


def _has_ended(pid: int) -> bool:
    """A process that exited but was not collected yet (Linux: state Z or X in
    ``/proc/<pid>/stat``). Its id stays taken until its parent, or init once the parent
    is gone too, collects it: a ``kill -9`` of a ``serve`` and its worker can leave
    the worker so for a while. Elsewhere (no ``/proc``): False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]  # after "pid (command) "
    return state in (b"Z", b"X")


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
