"""Notification channels: one URL each, parsed into a frozen value that never shows its secrets.

::

    smtp://user:pass@host:587?from=etl@example.com&to=a@example.com,b@example.com
    smtps://user:pass@host:465?from=…&to=…          (implicit TLS)
    slack+https://hooks.slack.com/services/T…/B…/…   (the path is the secret)
    teams+https://….webhook.office.com/…            (the path is the secret)
    webhook+https://host/path?secret=…              (``secret`` signs the body, is not sent)

Every kind also takes ``ca_file=/path/ca.pem``: the certificates to trust for
that channel's TLS instead of the system's (a private CA, a test server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import (
    SplitResult,
    parse_qsl,
    quote,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

from batchpilot.errors import ChannelConfigError

MASK = "***"
SMTP_SCHEMES = {"smtp": 25, "smtps": 465}
HTTP_KINDS = ("slack", "teams", "webhook")
KNOWN_SCHEMES = (
    "smtp",
    "smtps",
    *(f"{kind}+{proto}" for kind in HTTP_KINDS for proto in ("https", "http")),
)
_SMTP_PARAMS = ("from", "to", "ca_file")
_SECRET_SEGMENT = re.compile(r"(?=.*\d)[^/]{8,}")


@dataclass(frozen=True, kw_only=True, repr=False)
class Channel:
    """A named place to send notifications; subclasses say how."""

    name: str
    origin: str = "unknown"
    ca_file: str | None = None

    kind = "channel"
    #: Connections one delivery round may send on at once (messages of one group
    #: always share one). Chat services rate-limit a webhook, so they get one.
    lanes = 1

    @property
    def masked_url(self) -> str:
        """The channel's URL with every secret replaced by ``***``."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Every secret of this channel, as it may appear in text (to scrub it)."""
        return []

    def redact(self, text: str) -> str:
        """``text`` with every secret of this channel replaced by ``***``."""
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self.masked_url!r})"

    __str__ = __repr__


@dataclass(frozen=True, kw_only=True, repr=False)
class EmailChannel(Channel):
    """Email over SMTP: STARTTLS when the server offers it, or implicit TLS (``smtps``)."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, compare=False)
    sender: str
    recipients: tuple[str, ...]

    kind = "email"

    @property
    def masked_url(self) -> str:
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="@")
            auth += f":{MASK}@" if self.password else "@"
        query = urlencode({"from": self.sender, "to": ",".join(self.recipients)}, safe="@,")
        if self.ca_file:
            query += "&" + urlencode({"ca_file": self.ca_file}, safe="/")
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{auth}{_host_port(self.host, self.port)}?{query}"

    def secrets(self) -> list[str]:
        if not self.password:
            return []
        return sorted({self.password, quote(self.password, safe="")})


@dataclass(frozen=True, kw_only=True, repr=False)
class HttpChannel(Channel):
    """A channel that POSTs JSON to ``target_url`` (Slack, Teams, a webhook)."""

    target_url: str = field(compare=False)

    @property
    def masked_url(self) -> str:
        parts = urlsplit(self.target_url)
        host = parts.netloc.rpartition("@")[2]  # a login in a chat webhook URL is a secret too
        return f"{self.kind}+{parts.scheme}://{host}/{MASK}"

    def secrets(self) -> list[str]:
        parts = urlsplit(self.target_url)
        found = {parts.path, parts.query} if parts.query else {parts.path}
        found |= {s for s in parts.path.split("/") if _SECRET_SEGMENT.fullmatch(s)}
        if parts.password:
            found.add(parts.password)
        found |= {unquote(s) for s in found}
        return sorted(s for s in found if len(s) > 1)


@dataclass(frozen=True, kw_only=True, repr=False)
class SlackChannel(HttpChannel):
    """A Slack incoming webhook: a Block Kit message POSTed to ``target_url``."""

    kind = "slack"


@dataclass(frozen=True, kw_only=True, repr=False)
class TeamsChannel(HttpChannel):
    """A Microsoft Teams incoming webhook (or workflow URL): an Adaptive Card message."""

    kind = "teams"


@dataclass(frozen=True, kw_only=True, repr=False)
class WebhookChannel(HttpChannel):
    """Any HTTP endpoint: a JSON body signed with HMAC-SHA256 when a ``secret`` is set."""

    secret: str | None = field(default=None, compare=False)

    kind = "webhook"
    lanes = 4

    @property
    def masked_url(self) -> str:
        parts = urlsplit(self.target_url)
        netloc = parts.netloc
        if parts.password:
            netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        if self.secret:
            query.append(("secret", MASK))
        url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))
        return f"webhook+{url}"

    def secrets(self) -> list[str]:
        parts = urlsplit(self.target_url)
        found = {s for s in (self.secret, parts.password) if s}
        found |= {unquote(s) for s in found}
        return sorted(found | {quote(s, safe="") for s in found})


def parse_channel(name: str, url: str, *, origin: str = "unknown") -> Channel:
    """Parse one channel URL; raises :class:`ChannelConfigError` naming the field at fault.

    The error's text shows the URL only with its secrets masked.
    """
    if not isinstance(url, str) or not url.strip():
        raise ChannelConfigError("the URL is empty", channel=name, field="url", origin=origin)
    url = url.strip()
    scheme, sep, _rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in KNOWN_SCHEMES:
        shown = scheme if sep else "(none)"
        hint = ""
        if scheme in ("http", "https"):
            hint = "; prefix an HTTP URL with slack+, teams+ or webhook+"
        raise ChannelConfigError(
            f"unknown scheme '{shown}' in {_mask_unparsed(url)}; expected one of "
            f"{', '.join(KNOWN_SCHEMES)}{hint}",
            channel=name,
            field="scheme",
            origin=origin,
        )
    if scheme in SMTP_SCHEMES:
        return _parse_smtp(name, url, scheme, origin)
    kind, _, inner_scheme = scheme.partition("+")
    return _parse_http(name, kind, inner_scheme + url[len(scheme) :], origin)


def _parse_smtp(name: str, url: str, scheme: str, origin: str) -> EmailChannel:
    def fail(message: str, field_name: str) -> ChannelConfigError:
        return ChannelConfigError(message, channel=name, field=field_name, origin=origin)

    parts = _split(url, name, origin)
    if not parts.hostname:
        raise fail(f"no host in {_mask_unparsed(url)}", "host")
    port = _port(parts, name, origin) or SMTP_SCHEMES[scheme]
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - set(_SMTP_PARAMS))
    if unknown:
        raise fail(f"unknown parameter; expected {', '.join(_SMTP_PARAMS)}", unknown[0])
    recipients = tuple(a.strip() for a in params.get("to", "").split(",") if a.strip())
    if not recipients:
        raise fail("no recipient: add ?to=someone@example.com (several: comma-separated)", "to")
    for address in recipients:
        if not _is_address(address):
            raise fail(f"'{address}' is not an email address", "to")
    username = unquote(parts.username) if parts.username is not None else None
    sender = params.get("from") or (username if username and _is_address(username) else "")
    if not sender:
        raise fail("no sender: add &from=etl@example.com", "from")
    if not _is_address(sender):
        raise fail(f"'{sender}' is not an email address", "from")
    return EmailChannel(
        name=name,
        origin=origin,
        ca_file=_ca_file(params.get("ca_file"), name, origin),
        host=parts.hostname,
        port=port,
        implicit_tls=scheme == "smtps",
        username=username,
        password=unquote(parts.password) if parts.password is not None else None,
        sender=sender,
        recipients=recipients,
    )


def _parse_http(name: str, kind: str, target: str, origin: str) -> HttpChannel:
    parts = _split(target, name, origin)
    if not parts.hostname:
        raise ChannelConfigError(
            f"no host in {kind}+{_mask_unparsed(target)}", channel=name, field="host", origin=origin
        )
    _port(parts, name, origin)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("ca_file", "secret")}
    ca_file = _ca_file(ours.get("ca_file"), name, origin)
    if kind == "webhook":
        kept = urlencode([(k, v) for k, v in query if k not in ours])
        cleaned = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", kept, ""))
        return WebhookChannel(
            name=name,
            origin=origin,
            ca_file=ca_file,
            target_url=cleaned,
            secret=ours.get("secret") or None,
        )
    if len(parts.path.strip("/")) == 0:
        raise ChannelConfigError(
            f"no webhook path in {kind}+{parts.scheme}://{parts.netloc}/ (copy the whole "
            f"incoming-webhook URL)",
            channel=name,
            field="path",
            origin=origin,
        )
    kept = urlencode([(k, v) for k, v in query if k != "ca_file"])
    cleaned = urlunsplit((parts.scheme, parts.netloc, parts.path, kept, ""))
    channel_class = SlackChannel if kind == "slack" else TeamsChannel
    return channel_class(name=name, origin=origin, ca_file=ca_file, target_url=cleaned)


def _split(url: str, name: str, origin: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise ChannelConfigError(
            f"malformed URL {_mask_unparsed(url)} ({exc})", channel=name, field="url", origin=origin
        ) from None


def _port(parts: SplitResult, name: str, origin: str) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise ChannelConfigError(
            "the port is not a number from 1 to 65535", channel=name, field="port", origin=origin
        ) from None


def _ca_file(value: str | None, name: str, origin: str) -> str | None:
    if value is None:
        return None
    if not value or not Path(value).is_file():
        raise ChannelConfigError(
            f"no certificate file at '{value}'", channel=name, field="ca_file", origin=origin
        )
    return value


def _is_address(text: str) -> bool:
    _display, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and " " not in address)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mask_unparsed(url: str) -> str:
    """Mask what may be secret in a URL that did not parse: the password, the path and
    the query (a webhook path and ``secret`` are secrets). A password is taken to
    run to the last ``@`` before the query, so an unencoded ``@`` or ``/`` in it
    does not leak a piece of it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    before_query, question, _query = rest.partition("?")
    prefix = ""
    if "@" in before_query:
        userinfo, _, before_query = before_query.rpartition("@")
        user = userinfo.split(":", 1)[0].split("/", 1)[0]
        prefix = f"{user}:{MASK}@" if ":" in userinfo else f"{user}@"
    netloc, slash, _path = before_query.partition("/")
    tail = f"/{MASK}" if slash or question else ""
    return f"{scheme}://{prefix}{netloc}{tail}"
