"""POSTing JSON to Slack, Teams and webhooks, with bounded timeouts and kept-alive connections."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.client
import socket
import ssl
from urllib.parse import unquote, urlsplit

from batchpilot.errors import DeliveryError
from batchpilot.notify.channels import HttpChannel, WebhookChannel

#: Seconds to wait for a connection, and then for each read of the answer.
DEFAULT_TIMEOUT_S = 5.0
SIGNATURE_HEADER = "X-Batchpilot-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "batchpilot-notify/1"
_RETRYABLE_STATUSES = {408, 425, 429}
_MAX_ANSWER_BYTES = 65536


@functools.lru_cache(maxsize=16)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying TLS context: the system's certificates, or only those in ``ca_file``."""
    return ssl.create_default_context(cafile=ca_file)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Batchpilot-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _OneWrite:
    """Send a request in one write, without Nagle's delay.

    http.client writes the headers and the body separately; on a busy machine each
    write costs a context switch, and with Nagle and the server's delayed ACK the
    body can wait ~40 ms. One ``sendall`` of headers and body avoids both.
    """

    sock: socket.socket
    _buffer: list[bytes]

    def _send_output(self, message_body: object = None, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", b""))
            request = b"\r\n".join(self._buffer) + message_body
            del self._buffer[:]
            self.send(request)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection(_OneWrite, http.client.HTTPConnection):
    """Plain HTTP, one write per request."""


class _TlsConnection(_OneWrite, http.client.HTTPSConnection):
    """HTTPS, one write per request."""


class HttpPoster:
    """POSTs bodies, keeping one connection per server open between messages.

    One poster serves one thread (the deliverer gives each channel its own).
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._connections: dict[tuple[str, str, int, str | None], http.client.HTTPConnection] = {}

    def post(
        self, url: str, body: bytes, headers: dict[str, str], *, ca_file: str | None = None
    ) -> tuple[int, bytes]:
        """POST ``body``; returns the status and the start of the answer.

        Raises ``OSError`` or ``http.client.HTTPException`` when the server
        cannot be reached or breaks off. A kept-alive connection the server
        closed meanwhile is reopened once.
        """
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        key = (parts.scheme, parts.hostname or "", parts.port or 0, ca_file)
        for attempt in (1, 2):
            conn = self._connection(key)
            reused = conn.sock is not None
            try:
                conn.request("POST", target, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read(_MAX_ANSWER_BYTES)
                if not response.isclosed():
                    conn.close()  # an answer too long to read whole: do not reuse
                return response.status, answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if not reused or attempt == 2:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, key: tuple[str, str, int, str | None]) -> http.client.HTTPConnection:
        conn = self._connections.get(key)
        if conn is None:
            scheme, host, port, ca_file = key
            if scheme == "https":
                conn = _TlsConnection(
                    host, port or None, timeout=self.timeout_s, context=tls_context(ca_file)
                )
            else:
                conn = _Connection(host, port or None, timeout=self.timeout_s)
            self._connections[key] = conn
        return conn

    def close(self) -> None:
        """Close every kept-alive connection."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def __enter__(self) -> HttpPoster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def post_payload(
    poster: HttpPoster, channel: HttpChannel, body: bytes, *, idempotency_key: str
) -> None:
    """Send one rendered body to the channel; raises :class:`DeliveryError`.

    A refused or timed-out connection is ``unreachable``; HTTP 408, 425, 429
    and 5xx are worth retrying; any other status outside 2xx is ``permanent``.
    """
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        IDEMPOTENCY_HEADER: idempotency_key,
    }
    if isinstance(channel, WebhookChannel) and channel.secret:
        headers[SIGNATURE_HEADER] = signature(channel.secret, body)
    parts = urlsplit(channel.target_url)
    if parts.username is not None:  # https://user:pass@host/… is HTTP basic auth
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode("utf-8")).decode()
    try:
        status, answer = poster.post(channel.target_url, body, headers, ca_file=channel.ca_file)
    except (OSError, http.client.HTTPException) as exc:
        reason = channel.redact(str(exc) or type(exc).__name__)
        raise DeliveryError(
            f"channel '{channel.name}' ({channel.masked_url}) could not be reached: {reason}",
            channel=channel.name,
            unreachable=True,
        ) from None
    if 200 <= status < 300:
        return
    said = channel.redact(answer[:200].decode("utf-8", "replace").strip())
    retryable = status in _RETRYABLE_STATUSES or status >= 500
    raise DeliveryError(
        f"channel '{channel.name}' ({channel.masked_url}) answered HTTP {status}"
        + (f": {said}" if said else ""),
        channel=channel.name,
        permanent=not retryable,
    )
