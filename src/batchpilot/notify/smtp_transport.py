"""Sending one email over SMTP: STARTTLS when offered, implicit TLS for ``smtps``."""

from __future__ import annotations

import smtplib
from datetime import datetime

from batchpilot.errors import DeliveryError
from batchpilot.notify.channels import EmailChannel
from batchpilot.notify.email_render import build_email
from batchpilot.notify.http_transport import DEFAULT_TIMEOUT_S, tls_context
from batchpilot.notify.message import Message


def send_email(
    channel: EmailChannel,
    message: Message,
    *,
    now: datetime,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Send ``message`` to the channel's recipients; raises :class:`DeliveryError`.

    The password is sent only over TLS: a server that offers no STARTTLS to
    a channel with a password is refused (permanent: use ``smtps://``).
    SMTP 5xx answers are permanent, 4xx answers and broken connections are
    worth retrying.
    """
    email = build_email(message, sender=channel.sender, recipients=channel.recipients, date=now)
    try:
        with _open(channel, timeout_s) as client:
            if channel.username is not None and channel.password is not None:
                client.login(channel.username, channel.password)
            # Recipients refused while others accepted count as sent: sending again
            # would give the others a second copy.
            client.send_message(email, from_addr=channel.sender, to_addrs=list(channel.recipients))
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
