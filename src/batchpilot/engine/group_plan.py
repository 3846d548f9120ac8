"""Which nodes form each atomic group, and whether the groups can work: a pure plan.

Nodes that name the same ``transaction:`` form a group. A group can work if its
members are of one step type that joins transaction groups (see
:mod:`batchpilot.steps.transaction_group`), share one connection (the one their
type's first ``connection_fields`` entry names), and form a chain: each member
after the first depends on the one before, and only the last has other
dependents (nothing outside may see work that is not committed).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from batchpilot.errors import SpecError
from batchpilot.spec.model import PipelineSpec
from batchpilot.steps.base import Step
from batchpilot.steps.registry import StepRegistry
from batchpilot.steps.transaction_group import joins_transaction_groups


@dataclass(frozen=True)
class TransactionGroup:
    """The members of one atomic group, in chain order, their connection and step type."""

    name: str
    members: tuple[str, ...]
    connection: str
    #: the members' step type, whose class opens and commits the group's transaction
    step_type: str

    @property
    def first(self) -> str:
        """The member that opens the transaction."""
        return self.members[0]

    @property
    def last(self) -> str:
        """The member after which the transaction commits."""
        return self.members[-1]


def plan_groups(
    spec: PipelineSpec,
    member_connections: Mapping[str, str | None],
    joinable_types: Collection[str] | None = None,
) -> tuple[dict[str, TransactionGroup], list[SpecError]]:
    """Group the nodes that declare ``transaction:`` and check each group.

    ``member_connections`` maps each member to its rendered ``connection``
    (None when its step type has none). ``joinable_types`` are the step types
    that may join a group (see :func:`joinable_types`); None skips that check,
    for a pipeline already checked. Returns the groups that can work and an
    error for each rule a group breaks.
    """
    by_group: dict[str, list[str]] = {}
    for node in spec.nodes:  # topological order
        if node.transaction:
            by_group.setdefault(node.transaction, []).append(node.id)
    errors: list[SpecError] = []
    groups = {}
    for name, members in by_group.items():
        type_errors = _type_errors(spec, name, members, joinable_types)
        errors += type_errors
        if type_errors:
            continue
        errors += _connection_errors(spec, name, members, member_connections)
        errors += _chain_errors(spec, name, members)
        groups[name] = TransactionGroup(
            name,
            tuple(members),
            str(member_connections.get(members[0])),
            spec.node(members[0]).type,
        )
    return groups, errors


def joinable_types(spec: PipelineSpec, registry: StepRegistry) -> frozenset[str]:
    """The step types of ``spec``'s group members whose class joins transaction groups.

    A type the registry does not know is left out (preflight reports it).
    """
    found = set()
    for type_name in {n.type for n in spec.nodes if n.transaction}:
        try:
            step_class = registry.get(type_name)
        except SpecError:
            continue
        if joins_transaction_groups(step_class):
            found.add(type_name)
    return frozenset(found)


def member_connection(step: Step) -> str | None:
    """The connection a group member works on: its first connection field's value (None
    if its type names no connection)."""
    if not step.connection_fields:
        return None
    value = getattr(step.config, step.connection_fields[0], None)
    return value if isinstance(value, str) else None


def group_token(group: TransactionGroup, first_attempt: int) -> str:
    """Identifies one opening of a group: its first member and that member's attempt."""
    return f"{group.first}:{first_attempt}"


def _type_errors(
    spec: PipelineSpec, name: str, members: list[str], joinable: Collection[str] | None
) -> list[SpecError]:
    if joinable is not None:
        refused = [m for m in members if spec.node(m).type not in joinable]
        if refused:
            return [
                _error(
                    spec,
                    f"transaction group '{name}' holds only steps that share a database "
                    f"transaction (such as sql); this node is {spec.node(member).type}",
                    member,
                    "transaction",
                )
                for member in refused
            ]
    first_type = spec.node(members[0]).type
    return [
        _error(
            spec,
            f"transaction group '{name}' mixes step types {first_type} ({members[0]}) and "
            f"{spec.node(member).type}; its members share one transaction, so they must be "
            "of one type",
            member,
            "type",
        )
        for member in members[1:]
        if spec.node(member).type != first_type
    ]


def _connection_errors(
    spec: PipelineSpec, name: str, members: list[str], connections: Mapping[str, str | None]
) -> list[SpecError]:
    first = connections.get(members[0])
    return [
        _error(
            spec,
            f"transaction group '{name}' spans two connections: '{first}' ({members[0]}) "
            f"and '{connections.get(member)}'; one database transaction needs one connection",
            member,
            "config.connection",
        )
        for member in members[1:]
        if connections.get(member) != first
    ]


def _chain_errors(spec: PipelineSpec, name: str, members: list[str]) -> list[SpecError]:
    errors = []
    children = spec.downstream()
    for before, after in itertools.pairwise(members):
        if before not in spec.node(after).upstream:
            errors.append(
                _error(
                    spec,
                    f"transaction group '{name}' must be a chain: '{after}' must depend on "
                    f"'{before}'",
                    after,
                    "transaction",
                )
            )
        outside = [c for c in children[before] if c != after]
        if outside:
            errors.append(
                _error(
                    spec,
                    f"transaction group '{name}': only its last member may have other "
                    f"dependents, but {', '.join(outside)} depend(s) on '{before}' before the "
                    "group commits",
                    before,
                    "transaction",
                )
            )
    return errors


def _error(spec: PipelineSpec, reason: str, node_id: str, field: str) -> SpecError:
    return SpecError(reason, path=spec.source_path, node_id=node_id, field=field)
