"""Small SVG charts drawn on the server: a Gantt of a run's task durations, and bars of a
value (duration, rows) over a pipeline's recent runs. Each bar carries its value and
state as text (a ``<title>`` and a label), never as colour alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from batchpilot.ui.states_view import state_look

LABEL_WIDTH = 170
CHART_WIDTH = 520
ROW_HEIGHT = 22


@dataclass(frozen=True)
class Span:
    """One task's time on the Gantt: ``end`` None while it runs (drawn up to ``now``)."""

    label: str
    start: datetime | None
    end: datetime | None
    state: str


@dataclass(frozen=True)
class Bar:
    """One bar: its label (a run), value (None: nothing to draw) and state."""

    label: str
    value: float | None
    state: str
    href: str | None = None


def render_gantt(spans: Sequence[Span], now: datetime) -> str:
    """Task durations on one time axis from the first start to the last end (or ``now``)."""
    started = [s for s in spans if s.start is not None]
    height = ROW_HEIGHT * max(len(spans), 1) + 30
    width = LABEL_WIDTH + CHART_WIDTH + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="task durations">'
    ]
    if started:
        origin = min(s.start for s in started if s.start is not None)
        finish = max((s.end or now) for s in started)
        total = max((finish - origin).total_seconds(), 0.001)
        for row, span in enumerate(spans):
            y = row * ROW_HEIGHT + 4
            look = state_look(span.state)
            parts.append(
                f'<text x="0" y="{y + 14}" font-size="12">{escape(_short(span.label))}</text>'
            )
            if span.start is None:
                parts.append(
                    f'<text x="{LABEL_WIDTH}" y="{y + 14}" font-size="12">'
                    f"{escape(look.label)} (not started)</text>"
                )
                continue
            left = (span.start - origin).total_seconds() / total * CHART_WIDTH
            seconds = ((span.end or now) - span.start).total_seconds()
            bar = max(seconds / total * CHART_WIDTH, 2.0)
            parts.append(
                f'<g class="span" data-task="{escape(span.label)}">'
                f"<title>{escape(span.label)}: {escape(look.label)}, {seconds:.2f} s</title>"
                f'<rect x="{LABEL_WIDTH + left:.1f}" y="{y}" width="{bar:.1f}" '
                f'height="{ROW_HEIGHT - 6}" fill="{look.fill}" stroke="#333"/>'
                f'<text x="{LABEL_WIDTH + left + bar + 4:.1f}" y="{y + 13}" font-size="11">'
                f"{escape(look.icon)} {seconds:.2f} s</text></g>"
            )
        parts.append(
            f'<text x="{LABEL_WIDTH}" y="{height - 6}" font-size="11">0 s</text>'
            f'<text x="{LABEL_WIDTH + CHART_WIDTH}" y="{height - 6}" font-size="11" '
            f'text-anchor="end">{total:.2f} s</text>'
        )
    else:
        parts.append('<text x="0" y="16" font-size="12">no task has started yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_bars(bars: Sequence[Bar], *, unit: str, title: str) -> str:
    """Vertical bars, oldest run left, scaled to the largest value; each labelled."""
    chart_height = 140
    step = 22
    width = max(len(bars), 1) * step + 60
    height = chart_height + 40
    values = [b.value for b in bars if b.value is not None]
    top = max(values, default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f'<text x="0" y="12" font-size="11">{escape(_number(top))} {escape(unit)}</text>',
        f'<line x1="50" y1="{chart_height + 10}" x2="{width}" y2="{chart_height + 10}" '
        'stroke="#333"/>',
    ]
    for index, bar in enumerate(bars):
        x = 50 + index * step
        look = state_look(bar.state)
        if bar.value is None:
            label = f"{bar.label}: {look.label}, no value"
            parts.append(
                f'<text x="{x + 4}" y="{chart_height + 6}" font-size="10">'
                f"<title>{escape(label)}</title>\u2013</text>"
            )
            continue
        size = bar.value / top * chart_height
        label = f"{bar.label}: {look.label}, {_number(bar.value)} {unit}"
        rect = (
            f'<rect x="{x}" y="{chart_height + 10 - size:.1f}" width="{step - 6}" '
            f'height="{max(size, 1):.1f}" fill="{look.fill}" stroke="#333">'
            f"<title>{escape(label)}</title></rect>"
            f'<text x="{x + (step - 6) / 2:.1f}" y="{chart_height + 26}" font-size="10" '
            f'text-anchor="middle">{escape(look.icon)}</text>'
        )
        if bar.href:
            rect = f'<a href="{escape(bar.href)}">{rect}</a>'
        parts.append(rect)
    parts.append("</svg>")
    return "".join(parts)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")


def _short(text: str) -> str:
    return text if len(text) <= 22 else text[:21] + "…"


__all__ = ["Bar", "Span", "render_bars", "render_gantt"]
