"""Email through a real SMTP server (aiosmtpd on 127.0.0.1) with AUTH and TLS."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from batchpilot.clock import FakeClock
from batchpilot.errors import DeliveryError
from batchpilot.notify import ChannelRegistry, deliver_due, enqueue, parse_channel, send_message
from batchpilot.notify.email_render import message_id_for
from batchpilot.store import RunStore
from batchpilot.store.outbox import OutboxState
from tests.notify.servers import SmtpServer, server_tls_context
from tests.notify.test_http_delivery import alert


def smtp_url(server: SmtpServer, ca_file: Path | None, *, scheme: str = "smtp", password=None):
    password = server.password if password is None else password
    url = (
        f"{scheme}://{server.user}:{quote(password, safe='')}@127.0.0.1:{server.port}"
        "?from=etl@example.com&to=oncall@example.com,lead@example.com"
    )
    return url + (f"&ca_file={ca_file}" if ca_file else "")


def test_an_alert_arrives_over_starttls_after_login_with_text_and_html_parts(
    store: RunStore, clock: FakeClock, smtp_server: SmtpServer, certificate: tuple[Path, Path]
):
    channels = ChannelRegistry([parse_channel("mail", smtp_url(smtp_server, certificate[0]))])
    enqueue(store, alert(), ["mail"], clock)
    report = deliver_due(store, channels, clock)
    assert (report.delivered, report.failures) == (1, ())
    assert smtp_server.logins == ["PLAIN:etl"] or smtp_server.logins == ["LOGIN:etl"]
    assert smtp_server.envelopes == [
        ("etl@example.com", ["oncall@example.com", "lead@example.com"])
    ]
    (email,) = smtp_server.messages
    assert email["Subject"] == "[CRITICAL] daily_etl failed"
    assert email["Message-ID"] == message_id_for(alert(), "etl@example.com")
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert "Task load_dwh failed after 3 attempts" in text and "Pipeline: daily_etl" in text
    assert "<th" in html and "daily_etl" in html


def test_smtps_delivers_over_implicit_tls(clock: FakeClock, certificate: tuple[Path, Path]):
    server = SmtpServer(tls=server_tls_context(*certificate), implicit_tls=True).start()
    try:
        channel = parse_channel("mail", smtp_url(server, certificate[0], scheme="smtps"))
        send_message(channel, alert(), now=clock.now())
        assert len(server.messages) == 1 and server.logins
    finally:
        server.stop()


def test_a_server_certificate_nobody_trusts_is_refused_by_default(
    clock: FakeClock, smtp_server: SmtpServer
):
    channel = parse_channel("mail", smtp_url(smtp_server, None))
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        send_message(channel, alert(), now=clock.now())
    assert smtp_server.password not in str(caught.value)
    assert smtp_server.messages == []


def test_a_wrong_password_is_permanent_and_never_shown(
    store: RunStore, clock: FakeClock, smtp_server: SmtpServer, certificate: tuple[Path, Path]
):
    url = smtp_url(smtp_server, certificate[0], password="wrong-Pa55word")
    channels = ChannelRegistry([parse_channel("mail", url)])
    enqueue(store, alert(), ["mail"], clock)
    report = deliver_due(store, channels, clock)
    assert report.dead == 1
    (record,) = store.list_notifications()
    assert record.state is OutboxState.DEAD and "535" in (record.last_error or "")
    assert "wrong-Pa55word" not in (record.last_error or "") + repr(report) + repr(channels)


def test_the_password_is_not_sent_to_a_server_without_starttls(clock: FakeClock):
    server = SmtpServer(tls=None).start()  # AUTH offered in clear text
    try:
        channel = parse_channel("mail", smtp_url(server, None))
        with pytest.raises(DeliveryError, match="offers no STARTTLS") as caught:
            send_message(channel, alert(), now=clock.now())
        assert caught.value.permanent
        assert server.logins == [] and server.messages == []
    finally:
        server.stop()


def test_without_a_login_a_plain_relay_is_fine(clock: FakeClock):
    server = SmtpServer(tls=None).start()
    try:
        channel = parse_channel(
            "relay", f"smtp://127.0.0.1:{server.port}?from=etl@example.com&to=a@example.com"
        )
        send_message(channel, alert(), now=clock.now())
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_a_busy_mailbox_is_retried_and_the_redelivery_has_the_same_message_id(
    store: RunStore, clock: FakeClock, smtp_server: SmtpServer, certificate: tuple[Path, Path]
):
    smtp_server.fail_next = 1
    channels = ChannelRegistry([parse_channel("mail", smtp_url(smtp_server, certificate[0]))])
    enqueue(store, alert(), ["mail"], clock)
    first = deliver_due(store, channels, clock)
    assert first.retrying == 1 and "451" in first.failures[0].error
    clock.advance(3600)
    assert deliver_due(store, channels, clock).delivered == 1
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert store.list_notifications()[0].state is OutboxState.DELIVERED


def test_an_smtp_server_that_is_down_is_unreachable_not_dead(
    store: RunStore, clock: FakeClock, certificate: tuple[Path, Path]
):
    server = SmtpServer()  # never started
    channels = ChannelRegistry([parse_channel("mail", smtp_url(server, certificate[0]))])
    enqueue(store, alert(), ["mail"], clock)
    report = deliver_due(store, channels, clock, timeout_s=1.0)
    assert report.retrying == 1 and "could not be reached" in report.failures[0].error
    assert server.password not in report.failures[0].error


def test_a_burst_of_alerts_is_sent_over_one_connection_and_one_login(
    store: RunStore, clock: FakeClock, smtp_server: SmtpServer, certificate: tuple[Path, Path]
):
    channels = ChannelRegistry([parse_channel("mail", smtp_url(smtp_server, certificate[0]))])
    for i in range(5):
        enqueue(store, alert(f"k{i}"), ["mail"], clock)
    report = deliver_due(store, channels, clock)
    assert report.delivered == 5
    assert len(smtp_server.logins) == 1
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(set(ids)) == 5
