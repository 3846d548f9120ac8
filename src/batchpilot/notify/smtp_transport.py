"""Sending one email over SMTP: STARTTLS when offered, implicit TLS for ``smtps``."""

from __future__ import annotations

import smtplib
from datetime import datetime
from email.message import EmailMessage

from batchpilot.errors import DeliveryError
from batchpilot.notify.channels import EmailChannel
from batchpilot.notify.email_render import build_email
from batchpilot.notify.http_transport import DEFAULT_TIMEOUT_S, tls_context
from batchpilot.notify.message import Message


class SmtpSessions:
    """Keeps one logged-in SMTP connection per channel open between messages (one
    per deliverer lane), so a burst of alerts costs one TLS handshake and login."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[str, smtplib.SMTP] = {}

    def send(self, channel: EmailChannel, email: EmailMessage) -> None:
        """Send ``email``; raises smtplib's and the socket's errors. A kept connection
        the server closed meanwhile is reopened once."""
        for attempt in (1, 2):
            client = self._clients.get(channel.name)
            reused = client is not None
            if client is None:
                client = _open_logged_in(channel, self.timeout_s)
                self._clients[channel.name] = client
            try:
                # Recipients refused while others accepted count as sent: sending
                # again would give the others a second copy.
                client.send_message(
                    email, from_addr=channel.sender, to_addrs=list(channel.recipients)
                )
                return
            except smtplib.SMTPServerDisconnected:
                self._drop(channel.name)
                if not reused or attempt == 2:
                    raise
            except BaseException:
                self._drop(channel.name)
                raise

    def _drop(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        """Say goodbye to every server (QUIT) and close the connections."""
        for client in self._clients.values():
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        self._clients.clear()

    def __enter__(self) -> SmtpSessions:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def send_email(
    channel: EmailChannel,
    message: Message,
    *,
    now: datetime,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    sessions: SmtpSessions | None = None,
) -> None:
    """Send ``message`` to the channel's recipients; raises :class:`DeliveryError`.

    The password is sent only over TLS: a server that offers no STARTTLS to
    a channel with a password is refused (permanent: use ``smtps://``).
    SMTP 5xx answers are permanent, 4xx answers and broken connections are
    worth retrying. ``sessions`` keeps the connection open for the next
    message; without it the connection is closed after this one.
    """
    email = build_email(message, sender=channel.sender, recipients=channel.recipients, date=now)
    try:
        if sessions is not None:
            sessions.send(channel, email)
        else:
            with SmtpSessions(timeout_s) as own:
                own.send(channel, email)
    except DeliveryError:
        raise
    except smtplib.SMTPNotSupportedError as exc:
        raise _error(channel, f"the server does not support it: {exc}", [500]) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _text in exc.recipients.values()]
        what = f"every recipient was refused: {_refusals(exc.recipients)}"
        raise _error(channel, what, codes) from None
    except smtplib.SMTPResponseException as exc:
        text = (
            exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
        )
        what = f"the server answered {exc.smtp_code} {text}".strip()
        raise _error(channel, what, [exc.smtp_code]) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(
            f"channel '{channel.name}' ({channel.masked_url}) could not be reached: "
            f"{channel.redact(str(exc) or type(exc).__name__)}",
            channel=channel.name,
            unreachable=True,
        ) from None


def _open_logged_in(channel: EmailChannel, timeout_s: float) -> smtplib.SMTP:
    client = _open(channel, timeout_s)
    try:
        if channel.username is not None and channel.password is not None:
            client.login(channel.username, channel.password)
    except BaseException:
        client.close()
        raise
    return client


def _open(channel: EmailChannel, timeout_s: float) -> smtplib.SMTP:
    context = tls_context(channel.ca_file)
    if channel.implicit_tls:
        return smtplib.SMTP_SSL(channel.host, channel.port, timeout=timeout_s, context=context)
    client = smtplib.SMTP(channel.host, channel.port, timeout=timeout_s)
    try:
        client.ehlo()
        if client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        elif channel.password is not None:
            raise DeliveryError(
                f"channel '{channel.name}' ({channel.masked_url}): the server at "
                f"{channel.host}:{channel.port} offers no STARTTLS, and the password is never "
                "sent in clear text; use smtps:// or a server that offers STARTTLS",
                channel=channel.name,
                permanent=True,
            )
    except BaseException:
        client.close()
        raise
    return client


def _error(channel: EmailChannel, what: str, codes: list[int]) -> DeliveryError:
    permanent = bool(codes) and all(500 <= code < 600 for code in codes)
    return DeliveryError(
        f"channel '{channel.name}' ({channel.masked_url}): {channel.redact(what)}",
        channel=channel.name,
        permanent=permanent,
    )


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {text.decode('utf-8', 'replace')})"
        for address, (code, text) in recipients.items()
    )
