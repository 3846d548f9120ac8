"""Graph checks and ordering for pipeline nodes, with graphlib."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from batchpilot.errors import SpecError


def topological_order(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """Return node ids so that every node comes after its upstream nodes.

    Ties keep the order in which the nodes were declared, so the same file
    always gives the same order. Raises :class:`SpecError` naming the cycle's
    path when the graph has one.
    """
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for node_id, parents in upstream.items():
        sorter.add(node_id, *parents)
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = list(exc.args[1])
        # graphlib reports the cycle backwards (each node followed by its parent).
        path = " -> ".join(reversed(cycle))
        raise SpecError(f"the graph has a cycle: {path}", node_id=cycle[-1]) from None
    declared = {node_id: i for i, node_id in enumerate(upstream)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=declared.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order
