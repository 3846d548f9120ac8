"""Real servers on 127.0.0.1 for the notification tests: HTTP (Slack, Teams, webhooks) and SMTP.

The HTTP server checks what it receives the way the real services would
(Slack's Block Kit limits, the Teams Adaptive Card envelope, the webhook
signature) and answers 400 with the reason when a payload is wrong.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SLACK_BLOCK_TYPES = {"header", "section", "actions", "context", "divider"}


def free_port() -> int:
    """A TCP port nobody listens on right now (for a server started later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (cert, key), made by openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def slack_problems(payload: Any) -> list[str]:
    """What Slack would refuse in an incoming-webhook payload (empty when it is valid)."""
    problems = []
    if not isinstance(payload.get("text"), str) or not payload["text"]:
        problems.append("no fallback 'text'")
    blocks = payload.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return [*problems, "'blocks' must be a list of 1 to 50 blocks"]
    for block in blocks:
        kind = block.get("type")
        if kind not in SLACK_BLOCK_TYPES:
            problems.append(f"unknown block type {kind!r}")
        elif kind == "header":
            text = block["text"]
            if text["type"] != "plain_text" or len(text["text"]) > 150:
                problems.append("header must be plain_text of at most 150 characters")
        elif kind == "section":
            if "text" in block and (
                block["text"]["type"] != "mrkdwn" or len(block["text"]["text"]) > 3000
            ):
                problems.append("section text must be mrkdwn of at most 3000 characters")
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                problems.append("a section has at most 10 fields of 2000 characters")
            if "text" not in block and not fields:
                problems.append("a section needs text or fields")
        elif kind == "actions":
            for element in block["elements"]:
                if element["type"] != "button" or len(element["text"]["text"]) > 75:
                    problems.append("actions must be buttons with at most 75 characters")
                if not str(element.get("url", "")).startswith(("http://", "https://")):
                    problems.append("a link button needs an http(s) url")
        elif kind == "context" and not 0 < len(block["elements"]) <= 10:
            problems.append("a context block has 1 to 10 elements")
    return problems


def teams_problems(payload: Any) -> list[str]:
    """What Teams would refuse in an incoming-webhook Adaptive Card message."""
    if payload.get("type") != "message":
        return ["the envelope's type must be 'message'"]
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return ["the envelope needs exactly one attachment"]
    attachment = attachments[0]
    problems = []
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("the attachment's contentType must be the Adaptive Card type")
    card = attachment.get("content") or {}
    if card.get("type") != "AdaptiveCard" or not isinstance(card.get("version"), str):
        problems.append("content must be an AdaptiveCard with a version")
    if "adaptivecards.io/schemas" not in str(card.get("$schema", "")):
        problems.append("content needs the Adaptive Card $schema")
    for element in card.get("body", []):
        if element.get("type") == "TextBlock":
            if not isinstance(element.get("text"), str):
                problems.append("a TextBlock needs text")
        elif element.get("type") == "FactSet":
            for fact in element.get("facts", []):
                if not isinstance(fact.get("title"), str) or not isinstance(fact.get("value"), str):
                    problems.append("a fact needs a string title and value")
        else:
            problems.append(f"unexpected element {element.get('type')!r}")
    for action in card.get("actions", []):
        if action.get("type") != "Action.OpenUrl" or not action.get("url"):
            problems.append("actions must be Action.OpenUrl with a url")
    return problems


@dataclass
class Received:
    """One request the HTTP server received."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    problems: list[str]
    peer: tuple[str, int] = ("", 0)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    """An HTTP/1.1 server on 127.0.0.1 standing in for Slack, Teams and webhook receivers.

    Paths starting with ``/slack`` and ``/teams`` are checked for their shapes,
    ``/hook`` for the signature made with ``secret``. ``statuses[path]`` lists
    answers to give first (then 200); requests to ``/hang`` wait until
    ``release`` is set.
    """

    port: int = field(default_factory=free_port)
    secret: str = "s3cr3t-signing-key"
    statuses: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                server.arrived.set()
                if self.path.startswith("/hang"):
                    server.release.wait(30)
                status, problems = server._judge(self.path, dict(self.headers), body)
                with server._lock:
                    server.received.append(
                        Received(
                            self.path,
                            dict(self.headers),
                            body,
                            status,
                            problems,
                            self.client_address,
                        )
                    )
                answer = ("; ".join(problems) or ("ok" if status < 300 else "error")).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the client is gone (killed, or timed out)
                    self.close_connection = True

            def log_message(self, *_args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _judge(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[str]]:
        problems: list[str] = []
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, ["the body is not JSON"]
        if path.startswith("/slack"):
            problems = slack_problems(payload)
        elif path.startswith("/teams"):
            problems = teams_problems(payload)
        elif path.startswith("/basic"):
            expected = "Basic " + base64.b64encode(b"hooks:pa ss@word").decode()
            if headers.get("Authorization") != expected:
                problems = ["bad or missing basic auth"]
        elif path.startswith("/hook"):
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if headers.get("X-Batchpilot-Signature") != expected:
                problems = ["bad or missing X-Batchpilot-Signature"]
        if "secret=" in path:
            problems.append("the signing secret was sent in the URL")
        if not headers.get("Idempotency-Key"):
            problems.append("no Idempotency-Key header")
        if problems:
            return 400, problems
        with self._lock:
            queued = self.statuses.get(path.split("?")[0], [])
            return (queued.pop(0) if queued else 200), []

    def wait_for_requests(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """The requests received, once there are ``count`` (a handler still running
        may record its request after the client gave up on it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.received)}")

    def accepted(self, path_prefix: str = "/") -> list[Received]:
        """Requests under ``path_prefix`` that were answered 2xx."""
        with self._lock:
            return [r for r in self.received if r.path.startswith(path_prefix) and r.status < 300]


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1 with AUTH (``user``/``password``) and, given a TLS context,
    STARTTLS (or implicit TLS). ``fail_next`` answers that many DATA commands 451."""

    tls: ssl.SSLContext | None = None
    implicit_tls: bool = False
    user: str = "etl"
    password: str = "p@ss w/rd"
    fail_next: int = 0
    port: int = field(default_factory=free_port)
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    _controller: Controller | None = None

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_require_tls": not self.implicit_tls and self.tls is not None,
        }
        if self.implicit_tls:
            kwargs["ssl_context"] = self.tls
        elif self.tls is not None:
            kwargs["tls_context"] = self.tls
            kwargs["require_starttls"] = True
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, _server, _session, _envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if login == self.user and password == self.password:
                self.logins.append(f"{mechanism}:{login}")
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, _server, _session, envelope) -> str:  # type: ignore[no-untyped-def]
        if self.fail_next > 0:
            self.fail_next -= 1
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(_parse(envelope.content))
            return "451 4.3.0 mailbox busy, try again later"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(_parse(envelope.content))
        return "250 OK"


def _parse(content: bytes) -> EmailMessage:
    return email.message_from_bytes(content, policy=email.policy.default)  # type: ignore[return-value]


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of TLS with the test certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
