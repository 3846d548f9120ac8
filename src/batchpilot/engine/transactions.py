"""Atomic groups: ``sql`` nodes naming the same ``transaction:`` run in one database
transaction that commits only after the group's last member succeeds.

Each member works in a savepoint of the group's transaction, so a member's
retry starts clean without undoing its predecessors. The commit writes a
marker row (``batchpilot_transactions``) in the same transaction, so after a
crash ``resume`` can tell a committed group (its members count as done) from
one that was rolled back by the crash (all its members run again).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.errors import SpecError, StepError
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.templating import render_config
from batchpilot.steps._database import create_transactional_engine, driver_message

MARKER_TABLE = "batchpilot_transactions"
_markers = Table(
    MARKER_TABLE,
    MetaData(),
    Column("pipeline", String(200), primary_key=True),
    Column("run_id", String(100), primary_key=True),
    Column("group_name", String(200), primary_key=True),
    Column("token", String(300), nullable=False),
    Column("committed_at", DateTime(timezone=True), server_default=func.now()),
)


@dataclass(frozen=True)
class TransactionGroup:
    """The members of one atomic group, in chain order, and their connection."""

    name: str
    members: tuple[str, ...]
    connection: str

    @property
    def first(self) -> str:
        """The member that opens the transaction."""
        return self.members[0]

    @property
    def last(self) -> str:
        """The member after which the transaction commits."""
        return self.members[-1]


def plan_groups(
    spec: PipelineSpec, member_connections: Mapping[str, str | None]
) -> tuple[dict[str, TransactionGroup], list[SpecError]]:
    """Group the nodes that declare ``transaction:`` and check each group.

    ``member_connections`` maps each member to its rendered ``connection``
    (None when its step type has none). A group's members must be ``sql``
    steps on one connection forming a chain: each member after the first
    depends on the one before, and only the last has other dependents.
    """
    errors: list[SpecError] = []
    path = spec.source_path
    by_group: dict[str, list[str]] = {}
    for node in spec.nodes:  # topological order
        if node.transaction:
            by_group.setdefault(node.transaction, []).append(node.id)
    children = spec.downstream()
    groups = {}
    for name, members in by_group.items():
        bad_type = [m for m in members if spec.node(m).type != "sql"]
        for member in bad_type:
            errors.append(
                SpecError(
                    f"transaction group '{name}' holds only sql steps; this node is "
                    f"{spec.node(member).type}",
                    path=path,
                    node_id=member,
                    field="transaction",
                )
            )
        if bad_type:
            continue
        connections = {m: member_connections.get(m) for m in members}
        first_connection = connections[members[0]]
        for member in members[1:]:
            if connections[member] != first_connection:
                errors.append(
                    SpecError(
                        f"transaction group '{name}' spans two connections: "
                        f"'{first_connection}' ({members[0]}) and '{connections[member]}'; "
                        "one database transaction needs one connection",
                        path=path,
                        node_id=member,
                        field="config.connection",
                    )
                )
        for before, after in itertools.pairwise(members):
            if before not in spec.node(after).upstream:
                errors.append(
                    SpecError(
                        f"transaction group '{name}' must be a chain: '{after}' must depend on "
                        f"'{before}'",
                        path=path,
                        node_id=after,
                        field="transaction",
                    )
                )
            outside = [c for c in children[before] if c != after]
            if outside:
                errors.append(
                    SpecError(
                        f"transaction group '{name}': only its last member may have other "
                        f"dependents, but {', '.join(outside)} depend(s) on '{before}' before the "
                        "group commits",
                        path=path,
                        node_id=before,
                        field="transaction",
                    )
                )
        groups[name] = TransactionGroup(name, tuple(members), str(first_connection))
    return groups, errors


class OpenTransactions:
    """The database transactions of a run's atomic groups while they are open."""

    def __init__(
        self,
        *,
        pipeline: str,
        run_id: str,
        groups: Mapping[str, TransactionGroup],
        connections: ConnectionRegistry,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.groups = dict(groups)
        self.connections = connections
        self.member_of = {m: g for g in groups.values() for m in g.members}
        self._open: dict[str, tuple[Any, Any, Any, str]] = {}

    def connection_for(self, group: TransactionGroup, token: str) -> Any:
        """The group's open connection, opening the transaction if needed."""
        if group.name in self._open:
            return self._open[group.name][1]
        connection = self.connections.get(group.connection)
        engine = create_transactional_engine(connection)
        try:
            conn = engine.connect()
            transaction = conn.begin()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StepError(
                f"cannot open transaction group '{group.name}' on "
                f"'{connection.name}': {driver_message(exc)}"
            ) from exc
        self._open[group.name] = (engine, conn, transaction, token)
        return conn

    def commit(self, group: TransactionGroup) -> None:
        """Write the marker and commit; raises :class:`StepError` if the commit fails."""
        engine, conn, transaction, token = self._open.pop(group.name)
        try:
            _markers.create(conn, checkfirst=True)
            values = {
                "pipeline": self.pipeline,
                "run_id": self.run_id,
                "group_name": group.name,
                "token": token,
            }
            found = conn.execute(select(_markers.c.token).where(*self._key(group))).first()
            if found is None:
                conn.execute(insert(_markers).values(**values))
            else:
                conn.execute(update(_markers).where(*self._key(group)).values(token=token))
            transaction.commit()
        except SQLAlchemyError as exc:
            raise StepError(
                f"commit of transaction group '{group.name}' failed: {driver_message(exc)}"
            ) from exc
        finally:
            conn.close()
            engine.dispose()

    def rollback(self, group_name: str) -> None:
        """Roll the group's transaction back (nothing of its members remains)."""
        opened = self._open.pop(group_name, None)
        if opened is None:
            return
        engine, conn, transaction, _ = opened
        try:
            transaction.rollback()
        except SQLAlchemyError:
            pass  # a dead connection has rolled back already
        finally:
            conn.close()
            engine.dispose()

    def rollback_all(self) -> None:
        """Roll back every group still open (the run stops)."""
        for name in list(self._open):
            self.rollback(name)

    def committed_token(self, group: TransactionGroup) -> str | None:
        """The token of the group's last commit in this run, read from the database."""
        connection: Connection = self.connections.get(group.connection)
        engine = create_transactional_engine(connection)
        try:
            with engine.connect() as conn:
                if not engine.dialect.has_table(conn, MARKER_TABLE):
                    return None
                return conn.execute(select(_markers.c.token).where(*self._key(group))).scalar()
        except SQLAlchemyError as exc:
            raise StepError(
                f"cannot read the commit record of transaction group "
                f"'{group.name}': {driver_message(exc)}"
            ) from exc
        finally:
            engine.dispose()

    def _key(self, group: TransactionGroup) -> tuple[Any, ...]:
        return (
            _markers.c.pipeline == self.pipeline,
            _markers.c.run_id == self.run_id,
            _markers.c.group_name == group.name,
        )


def group_token(group: TransactionGroup, first_attempt: int) -> str:
    """Identifies one opening of a group: its first member and that member's attempt."""
    return f"{group.first}:{first_attempt}"


def run_groups(
    spec: PipelineSpec, params: Mapping[str, Any], ds: str, run_id: str
) -> dict[str, TransactionGroup]:
    """The groups of a checked pipeline, with each group's connection name rendered."""
    from batchpilot.engine.preflight import template_context  # preflight imports this module

    members: dict[str, str | None] = {}
    for node in spec.nodes:
        if node.transaction:
            context = template_context(spec, params=params, run_id=run_id, ds=ds, task_id=node.id)
            raw = node.config.get("connection")
            members[node.id] = (
                render_config({"c": raw}, context)["c"] if isinstance(raw, str) else None
            )
    groups, _ = plan_groups(spec, members)
    return groups
