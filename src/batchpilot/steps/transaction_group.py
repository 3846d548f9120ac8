"""The step interface for atomic groups: what a step type implements to join one.

Nodes that share ``transaction: <group>`` run in one database transaction that
commits only after the group's last member succeeded. The engine plans the
groups and decides when to open, commit or roll back, but never talks to a
database itself: it goes through the group's step type, whose class
implements :class:`TransactionGroupStep`:

1. When the first member starts, the engine calls
   ``open_group_transaction(connection, key, token)`` and hands the returned
   :class:`GroupTransaction` to every member as ``StepContext.transaction``;
   each member works inside it and never commits it.
2. After the last member succeeded, the engine calls
   :meth:`GroupTransaction.commit`, which records ``(key, token)`` in the target
   database *in the same transaction* as the members' work; if a member
   failed for good, or the run stops, :meth:`GroupTransaction.rollback`.
3. On ``resume`` the engine calls ``committed_group_token(connection, key)``: a
   group whose recorded token is its last opening's committed before the crash
   (its members count as done); any other group was rolled back by the crash
   (all its members run again).

This module is part of the step interface, beside :mod:`batchpilot.steps.base`:
the engine imports it, concrete steps implement it, and it imports no step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from batchpilot.connections import Connection


@dataclass(frozen=True)
class GroupKey:
    """Which group of which run a commit record belongs to."""

    pipeline: str
    run_id: str
    group: str


@runtime_checkable
class GroupTransaction(Protocol):
    """An open database transaction shared by the members of one atomic group.

    The step type that opened it knows its concrete class; members of that type
    work inside it (a member's retry must not undo its predecessors, so each
    member works in a savepoint, for instance). The engine only commits it or
    rolls it back, each exactly once.
    """

    def commit(self) -> None:
        """Record the group's key and token, then commit, in one transaction; close it.

        Raises :class:`~batchpilot.errors.StepError` if the commit fails (then
        nothing of the group remains).
        """
        ...

    def rollback(self) -> None:
        """Undo everything the members did and close the transaction; never raises
        (a connection that died has rolled back already)."""
        ...


@runtime_checkable
class TransactionGroupStep(Protocol):
    """A step type whose nodes may join an atomic group, implemented by the step's class.

    Every method is called on the class (a classmethod), not on a built step:
    the engine opens the group before the first member's attempt, and reads
    commit records on ``resume`` when no step is built. The connection it passes
    is the one the members name in their type's first ``connection_fields`` entry.
    """

    def open_group_transaction(
        self, connection: Connection, key: GroupKey, token: str
    ) -> GroupTransaction:
        """Open the group's transaction on ``connection``; ``token`` identifies this
        opening and is what :meth:`GroupTransaction.commit` records.

        Raises :class:`~batchpilot.errors.StepError` if the database is unreachable.
        """
        ...

    def committed_group_token(self, connection: Connection, key: GroupKey) -> str | None:
        """The token of the group's last commit in ``key``'s run, or None if it never
        committed. Raises :class:`~batchpilot.errors.StepError` if it cannot be read."""
        ...


def joins_transaction_groups(step_class: type) -> bool:
    """True if nodes of ``step_class`` may be members of an atomic group."""
    return isinstance(step_class, TransactionGroupStep)
