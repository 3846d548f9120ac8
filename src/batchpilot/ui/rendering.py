"""The Jinja templates of the dashboard and the filters they format values with."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from batchpilot.ui.states_view import state_look, state_text

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: What a page shows for a value that is not there (an en dash).
NO_VALUE = "\u2013"


def format_duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; a dash for None."""
    if seconds is None:
        return NO_VALUE
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Pages:
    """Renders the dashboard's templates, times shown in ``zone``."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        env = self.templates.env
        env.filters["local"] = self.local_time
        env.filters["duration"] = format_duration
        env.filters["state_text"] = state_text
        env.filters["state_icon"] = lambda state: state_look(state).icon
        env.filters["svg"] = Markup  # only for SVG built (and escaped) by graph_svg/charts_svg
        env.globals["timezone"] = zone.key

    def local_time(self, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """An instant in the dashboard's time zone."""
        return value.astimezone(self.zone).strftime(fmt) if value is not None else NO_VALUE

    def render(
        self, request: Request, name: str, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        """The page ``name`` with ``values`` (and the request)."""
        return self.templates.TemplateResponse(
            request, name, values, status_code=status_code, headers=_NO_STORE
        )


#: Pages show live state and a CSRF token: browsers must not keep them.
_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}

__all__ = ["TEMPLATES_DIR", "Pages", "format_duration"]
