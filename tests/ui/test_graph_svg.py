"""The run page's graph: a layered layout by depth, every task drawn with its state in
words, an arrow per dependency; and the charts label every bar."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from batchpilot.ui.charts_svg import Bar, Span, render_bars, render_gantt
from batchpilot.ui.graph_svg import GraphNode, depths, layout, render_graph

SVG = "{http://www.w3.org/2000/svg}"

DIAMOND = [
    GraphNode("extract", (), "success"),
    GraphNode("clean", ("extract",), "running"),
    GraphNode("enrich", ("extract",), "retry"),
    GraphNode("load", ("clean", "enrich"), "pending"),
    GraphNode("audit", (), "compensation_failed"),
]


def test_depth_is_one_more_than_the_deepest_upstream_task() -> None:
    assert depths(DIAMOND) == {"extract": 0, "clean": 1, "enrich": 1, "load": 2, "audit": 0}
    # the order nodes come in does not matter
    assert depths(list(reversed(DIAMOND))) == depths(DIAMOND)


def test_each_depth_is_a_column_and_tasks_of_one_column_do_not_overlap() -> None:
    placed = {p.node.node_id: p for p in layout(DIAMOND)}
    assert placed["extract"].x == placed["audit"].x < placed["clean"].x == placed["enrich"].x
    assert placed["enrich"].x < placed["load"].x
    assert placed["clean"].y != placed["enrich"].y
    assert placed["extract"].y != placed["audit"].y


def test_every_node_is_drawn_with_its_id_and_its_state_in_words() -> None:
    svg = render_graph(DIAMOND)
    root = ET.fromstring(svg)  # well-formed XML
    groups = root.findall(f"{SVG}g")
    assert [g.get("data-node") for g in groups] == [n.node_id for n in DIAMOND]
    texts = {g.get("data-node"): [t.text for t in g.findall(f"{SVG}text")] for g in groups}
    assert texts == {
        "extract": ["extract", "✅ SUCCESS"],
        "clean": ["clean", "⏳ RUNNING"],
        "enrich": ["enrich", "🔁 RETRY"],
        "load": ["load", "🕓 PENDING"],
        "audit": ["audit", "❌ COMPENSATION FAILED"],
    }
    fills = {g.get("data-node"): g.find(f"{SVG}rect").get("fill") for g in groups}
    assert fills["extract"] != fills["clean"] != fills["enrich"]


def test_an_edge_is_drawn_for_each_dependency() -> None:
    root = ET.fromstring(render_graph(DIAMOND))
    edges = {(p.get("data-from"), p.get("data-to")) for p in root.findall(f"{SVG}path")}
    assert edges == {
        ("extract", "clean"),
        ("extract", "enrich"),
        ("clean", "load"),
        ("enrich", "load"),
    }


def test_ids_are_escaped_and_an_unknown_state_is_still_named() -> None:
    svg = render_graph([GraphNode("<script>x</script>", (), "teleported")])
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    (group,) = root.findall(f"{SVG}g")
    assert group.get("data-node") == "<script>x</script>"
    assert [t.text for t in group.findall(f"{SVG}text")][1] == "❔ TELEPORTED"


def test_the_gantt_labels_each_task_with_its_duration() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spans = [
        Span("extract", start, start + timedelta(seconds=2), "success"),
        Span("load", start + timedelta(seconds=2), start + timedelta(seconds=5), "failed"),
        Span("report", None, None, "skipped"),
    ]
    root = ET.fromstring(render_gantt(spans, now=start + timedelta(seconds=6)))
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert titles == ["extract: SUCCESS, 2.00 s", "load: FAILED, 3.00 s"]
    assert any(t.text == "SKIPPED (not started)" for t in root.iter(f"{SVG}text"))


def test_bars_carry_their_value_and_state_as_text() -> None:
    svg = render_bars(
        [Bar("r1", 2.0, "success"), Bar("r2", None, "failed"), Bar("r3", 8.0, "slow")],
        unit="s",
        title="durations",
    )
    root = ET.fromstring(svg)
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert titles == ["r1: SUCCESS, 2 s", "r2: FAILED, no value", "r3: SLOW, 8 s"]
    heights = [float(r.get("height")) for r in root.iter(f"{SVG}rect")]
    assert heights[1] == 4 * heights[0]
    assert re.search(r">8 s<", svg)
