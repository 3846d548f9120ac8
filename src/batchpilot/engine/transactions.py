"""Atomic groups while a run is open: ``sql`` nodes naming the same ``transaction:``
run in one database transaction that commits only after the group's last member
succeeds.

The engine never talks to the target database: each group's step type opens,
commits and rolls back the transaction, and reads its commit record on
``resume``, through :class:`~batchpilot.steps.transaction_group.TransactionGroupStep`.
Which nodes form a group is planned in :mod:`batchpilot.engine.group_plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchpilot.connections import ConnectionRegistry
from batchpilot.engine.group_plan import TransactionGroup, group_token, plan_groups
from batchpilot.engine.preflight import template_context
from batchpilot.errors import StepError
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.templating import render_config
from batchpilot.steps.registry import StepRegistry
from batchpilot.steps.transaction_group import GroupKey, GroupTransaction, TransactionGroupStep

__all__ = [
    "OpenTransactions",
    "TransactionGroup",
    "group_token",
    "plan_groups",
    "run_groups",
]


class OpenTransactions:
    """The database transactions of a run's atomic groups while they are open."""

    def __init__(
        self,
        *,
        pipeline: str,
        run_id: str,
        groups: Mapping[str, TransactionGroup],
        connections: ConnectionRegistry,
        registry: StepRegistry,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.groups = dict(groups)
        self.connections = connections
        self.registry = registry
        self.member_of = {m: g for g in groups.values() for m in g.members}
        self._open: dict[str, GroupTransaction] = {}

    def connection_for(self, group: TransactionGroup, token: str) -> GroupTransaction:
        """The group's open transaction, opened by its step type if needed; members get
        it as ``StepContext.transaction``. Raises :class:`StepError` if it cannot open."""
        if group.name not in self._open:
            self._open[group.name] = self._step_type(group).open_group_transaction(
                self.connections.get(group.connection), self._key(group), token
            )
        return self._open[group.name]

    def commit(self, group: TransactionGroup) -> None:
        """Record the commit and commit; raises :class:`StepError` if the commit fails."""
        self._open.pop(group.name).commit()

    def rollback(self, group_name: str) -> None:
        """Roll the group's transaction back (nothing of its members remains)."""
        opened = self._open.pop(group_name, None)
        if opened is not None:
            opened.rollback()

    def rollback_all(self) -> None:
        """Roll back every group still open (the run stops)."""
        for name in list(self._open):
            self.rollback(name)

    def committed_token(self, group: TransactionGroup) -> str | None:
        """The token of the group's last commit in this run, read from the database.

        Raises :class:`StepError` if the record cannot be read."""
        return self._step_type(group).committed_group_token(
            self.connections.get(group.connection), self._key(group)
        )

    def _key(self, group: TransactionGroup) -> GroupKey:
        return GroupKey(pipeline=self.pipeline, run_id=self.run_id, group=group.name)

    def _step_type(self, group: TransactionGroup) -> TransactionGroupStep:
        step_class = self.registry.get(group.step_type)
        if not isinstance(step_class, TransactionGroupStep):
            # preflight refuses such a group; a registry changed since is a bug to report
            raise StepError(
                f"step type '{group.step_type}' of transaction group '{group.name}' cannot "
                "open a database transaction"
            )
        return step_class


def run_groups(
    spec: PipelineSpec, params: Mapping[str, Any], ds: str, run_id: str, registry: StepRegistry
) -> dict[str, TransactionGroup]:
    """The groups of a checked pipeline, with each group's connection name rendered.

    A member's connection is the value of its step type's first connection field
    (see :func:`~batchpilot.engine.group_plan.member_connection`).
    """
    members: dict[str, str | None] = {}
    for node in spec.nodes:
        if node.transaction:
            fields = registry.get(node.type).connection_fields
            raw = node.config.get(fields[0]) if fields else None
            context = template_context(spec, params=params, run_id=run_id, ds=ds, task_id=node.id)
            members[node.id] = (
                render_config({"c": raw}, context)["c"] if isinstance(raw, str) else None
            )
    groups, _ = plan_groups(spec, members)
    return groups
