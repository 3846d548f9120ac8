"""A pipeline's graph as an SVG drawn on the server: one box per task, coloured AND
labelled with its state, arrows from each task to the tasks that depend on it.

The layout is layered by depth: a task sits one column right of its deepest
upstream task; within a column tasks keep the pipeline's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from batchpilot.ui.states_view import state_look

BOX_WIDTH = 180
BOX_HEIGHT = 46
COLUMN_GAP = 60
ROW_GAP = 18
MARGIN = 10
MAX_LABEL = 24


@dataclass(frozen=True)
class GraphNode:
    """A task to draw: its id, the ids it depends on, and its state (``pending``…)."""

    node_id: str
    upstream: tuple[str, ...]
    state: str


@dataclass(frozen=True)
class Placed:
    """A node's box: top-left corner."""

    node: GraphNode
    x: int
    y: int


def depths(nodes: Sequence[GraphNode]) -> dict[str, int]:
    """Each node's depth: 0 without upstream tasks, else one more than its deepest upstream
    (upstream ids not among ``nodes`` are ignored; ``nodes`` may come in any order)."""
    known = {n.node_id: n for n in nodes}
    found: dict[str, int] = {}

    def depth(node_id: str, seen: frozenset[str]) -> int:
        if node_id in found:
            return found[node_id]
        ups = [u for u in known[node_id].upstream if u in known and u not in seen]
        value = 1 + max((depth(u, seen | {node_id}) for u in ups), default=-1)
        found[node_id] = value
        return value

    for node in nodes:
        depth(node.node_id, frozenset())
    return found


def layout(nodes: Sequence[GraphNode]) -> list[Placed]:
    """Place each node in its depth's column, in the order given."""
    level = depths(nodes)
    rows: dict[int, int] = {}
    placed = []
    for node in nodes:
        column = level[node.node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        placed.append(
            Placed(
                node,
                MARGIN + column * (BOX_WIDTH + COLUMN_GAP),
                MARGIN + row * (BOX_HEIGHT + ROW_GAP),
            )
        )
    return placed


def render_graph(nodes: Sequence[GraphNode], *, title: str = "pipeline graph") -> str:
    """The SVG document (an ``<svg>`` element) of ``nodes``."""
    placed = layout(nodes)
    where = {p.node.node_id: p for p in placed}
    width = max((p.x for p in placed), default=0) + BOX_WIDTH + MARGIN
    height = max((p.y for p in placed), default=0) + BOX_HEIGHT + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='8' "
        "markerHeight='8' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#555'/></marker></defs>",
    ]
    for p in placed:
        for up in p.node.upstream:
            source = where.get(up)
            if source is None:
                continue
            x1, y1 = source.x + BOX_WIDTH, source.y + BOX_HEIGHT // 2
            x2, y2 = p.x, p.y + BOX_HEIGHT // 2
            middle = (x1 + x2) // 2
            parts.append(
                f'<path class="edge" data-from="{escape(up)}" data-to="{escape(p.node.node_id)}" '
                f'd="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}" fill="none" '
                f'stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    for p in placed:
        look = state_look(p.node.state)
        node_id = escape(p.node.node_id)
        label = escape(_shorten(p.node.node_id))
        state = escape(f"{look.icon} {look.label}")
        parts.append(
            f'<g class="node" data-node="{node_id}" data-state="{escape(p.node.state)}">'
            f"<title>{node_id}: {escape(look.label)}</title>"
            f'<rect x="{p.x}" y="{p.y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
            f'fill="{look.fill}" stroke="#333" stroke-width="1"/>'
            f'<text x="{p.x + 8}" y="{p.y + 19}" font-size="13" font-weight="bold" '
            f'fill="{look.ink}">{label}</text>'
            f'<text x="{p.x + 8}" y="{p.y + 37}" font-size="12" fill="{look.ink}">{state}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def graph_nodes(
    upstream: Mapping[str, Sequence[str]], states: Mapping[str, str]
) -> list[GraphNode]:
    """Nodes from each task's upstream ids (in pipeline order) and states (``pending`` when
    a task has none)."""
    return [
        GraphNode(node_id, tuple(ups), states.get(node_id, "pending"))
        for node_id, ups in upstream.items()
    ]


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


__all__ = ["GraphNode", "Placed", "depths", "graph_nodes", "layout", "render_graph"]
