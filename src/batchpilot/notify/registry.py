"""The channels of a batchpilot home: ``notifications.yaml`` and ``BATCHPILOT_NOTIFY_<NAME>``.

Read once at the edge (CLI, ``serve``) into a frozen registry that the
deliverer and the monitor are handed; nothing below reads the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import yaml

from batchpilot.errors import NotifyError, UnknownChannel
from batchpilot.notify.channels import Channel, parse_channel

ENV_PREFIX = "BATCHPILOT_NOTIFY_"
NOTIFICATIONS_FILE = "notifications.yaml"


def channel_key(name: str) -> str:
    """How names are compared: case-insensitive, ``-`` the same as ``_`` (so
    ``BATCHPILOT_NOTIFY_DATA_TEAM`` overrides ``data-team`` in the file)."""
    return name.strip().lower().replace("-", "_")


class ChannelRegistry:
    """Channels by name; the only place the deliverer and the monitor look them up."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._by_key: dict[str, Channel] = {channel_key(c.name): c for c in channels}

    def get(self, name: str) -> Channel:
        """Return the channel; raises :class:`UnknownChannel` listing the known names."""
        try:
            return self._by_key[channel_key(name)]
        except KeyError:
            known = ", ".join(self.names()) or "none defined"
            raise UnknownChannel(
                f"unknown notification channel '{name}' (known: {known}); define it in "
                f"{NOTIFICATIONS_FILE} in the batchpilot home or with "
                f"{ENV_PREFIX}{channel_key(name).upper()}=<url>",
                channel=name,
            ) from None

    def names(self) -> list[str]:
        """The channels' names, sorted."""
        return sorted(c.name for c in self._by_key.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and channel_key(name) in self._by_key

    def __iter__(self) -> Iterator[Channel]:
        return iter(sorted(self._by_key.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"ChannelRegistry({list(self)!r})"

    def redact(self, text: str) -> str:
        """``text`` with the secrets of every channel replaced by ``***``."""
        for channel in self._by_key.values():
            text = channel.redact(text)
        return text

    @classmethod
    def from_sources(cls, environ: Mapping[str, str], home: Path | None = None) -> ChannelRegistry:
        """Read ``notifications.yaml`` in ``home``, then ``BATCHPILOT_NOTIFY_*`` (which win).

        Raises :class:`~batchpilot.errors.ChannelConfigError` for a bad URL
        (naming the channel, where it came from and the field) and
        :class:`NotifyError` for a file that is not a mapping of name to URL.
        """
        channels: dict[str, Channel] = {}
        if home is not None:
            for channel in _read_notifications_file(home / NOTIFICATIONS_FILE):
                channels[channel_key(channel.name)] = channel
        for key, value in sorted(environ.items()):
            if key.startswith(ENV_PREFIX) and value and len(key) > len(ENV_PREFIX):
                name = key[len(ENV_PREFIX) :].lower()
                channels[channel_key(name)] = parse_channel(name, value, origin=f"${key}")
        return cls(channels.values())


def _read_notifications_file(path: Path) -> list[Channel]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise NotifyError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(data, dict) and isinstance(data.get("channels"), dict):
        data = data["channels"]
    if not isinstance(data, dict):
        raise NotifyError(f"{path}: expected a mapping of channel name to URL (oncall: smtp://…)")
    out = []
    for name, value in data.items():
        url = value.get("url") if isinstance(value, dict) else value
        if not isinstance(url, str):
            raise NotifyError(f"{path}: channel '{name}' needs a URL", channel=str(name))
        out.append(parse_channel(str(name), url, origin=str(path)))
    return out
