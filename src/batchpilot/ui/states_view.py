"""How a state is shown: an icon and a word always, a colour only on top of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StateLook:
    """The icon, label and colours of one state (fill for shapes, text on that fill)."""

    icon: str
    label: str
    fill: str
    ink: str = "#111111"


_LOOKS: dict[str, StateLook] = {
    "ok": StateLook("✅", "OK", "#b7e4c7"),
    "success": StateLook("✅", "SUCCESS", "#b7e4c7"),
    "slow": StateLook("⚠️", "SLOW", "#ffe08a"),
    "failed": StateLook("❌", "FAILED", "#f4a3a3"),
    "running": StateLook("⏳", "RUNNING", "#a9cdf5"),
    "retry": StateLook("🔁", "RETRY", "#ffc98b"),
    "queued": StateLook("🕓", "QUEUED", "#dddddd"),
    "pending": StateLook("🕓", "PENDING", "#eeeeee"),
    "skipped": StateLook("⏭️", "SKIPPED", "#f2f2f2"),
    "cancelled": StateLook("🚫", "CANCELLED", "#c8c8c8"),
    "compensating": StateLook("↩️", "COMPENSATING", "#d7c4f0"),
    "compensated": StateLook("↩️", "COMPENSATED", "#c4e8e4"),
    "compensation_failed": StateLook("❌", "COMPENSATION FAILED", "#e59090"),
}
_UNKNOWN = StateLook("❔", "UNKNOWN", "#eeeeee")


def state_look(state: str) -> StateLook:
    """The look of a run or task state or a verdict (``ok``, ``slow``); unknown ones get
    a question mark and their own name."""
    look = _LOOKS.get(state)
    if look is None:
        return StateLook(_UNKNOWN.icon, state.upper() or _UNKNOWN.label, _UNKNOWN.fill)
    return look


def state_text(state: str) -> str:
    """``❌ FAILED``: the icon and the word, as the pages print a state."""
    look = state_look(state)
    return f"{look.icon} {look.label}"
