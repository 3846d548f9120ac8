"""Which channels an alert goes to: the pipeline's ``notify:`` routes.

A rule with a route of its own goes there; one without goes to ``default``;
with no ``notify:`` at all, to a channel named ``default`` when one is defined,
else nowhere (the alert is still recorded). A recovery notice and a reminder go
where their alert went, unless ``recovery`` is routed.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

#: The channel alerts go to when a pipeline has no ``notify:``.
DEFAULT_CHANNEL = "default"


def channels_for(
    rule: str,
    routes: Mapping[str, Sequence[str]] | None,
    defined: Container[str],
    *,
    recovery: bool = False,
) -> tuple[str, ...]:
    """The channels an alert of ``rule`` (its recovery notice with ``recovery``) goes to."""
    if routes is None:
        return (DEFAULT_CHANNEL,) if DEFAULT_CHANNEL in defined else ()
    if recovery and routes.get("recovery"):
        return tuple(routes["recovery"])
    return tuple(routes.get(rule) or routes.get("default") or ())


__all__ = ["DEFAULT_CHANNEL", "channels_for"]
