"""Delivering through the outbox to Slack, Teams and webhooks on a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
from datetime import timedelta

import pytest

from batchpilot.clock import FakeClock
from batchpilot.notify import (
    ChannelRegistry,
    Message,
    RetryPolicy,
    Severity,
    alert_facts,
    deliver_due,
    enqueue,
    parse_channel,
    send_test_message,
)
from batchpilot.store import RunStore
from batchpilot.store.outbox import OutboxState
from tests.notify.servers import WebhookServer, free_port

SLACK_PATH = "/slack/services/T0ABCDEF12/B0GHIJKL34/x9Yz8WvU7tS6rQ5pO4nM3lK2"
TEAMS_PATH = "/teams/webhookb2/0f1e2d3c-aaaa-bbbb-cccc-111122223333/IncomingWebhook/9a8b7c6d5e4f"


def alert(key: str = "alert:daily_etl:failure:r1") -> Message:
    return Message(
        title="daily_etl failed",
        summary="Task load_dwh failed after 3 attempts: connection refused by dwh:5432.",
        idempotency_key=key,
        severity=Severity.CRITICAL,
        facts=alert_facts(pipeline="daily_etl", run_id="r1", rule="failure", observed="failed"),
        link="http://batchpilot.local/runs/r1",
    )


def registry_for(server: WebhookServer, **extra: str) -> ChannelRegistry:
    urls = {
        "slack": f"slack+{server.url(SLACK_PATH)}",
        "teams": f"teams+{server.url(TEAMS_PATH)}",
        "hook": f"webhook+{server.url('/hook/in')}?secret={server.secret}",
        **extra,
    }
    return ChannelRegistry(parse_channel(name, url) for name, url in urls.items())


def test_one_alert_reaches_slack_teams_and_the_webhook_in_their_own_shapes(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    message = alert()
    assert enqueue(store, message, ["slack", "teams", "hook"], clock) == ["slack", "teams", "hook"]
    report = deliver_due(store, registry_for(webhook_server), clock)
    assert (report.claimed, report.delivered, report.failures) == (3, 3, ())
    assert [r.problems for r in webhook_server.received] == [[], [], []]
    by_path = {r.path.split("/")[1]: r for r in webhook_server.received}
    assert by_path["slack"].json["blocks"][0]["text"]["text"] == ":red_circle: daily_etl failed"
    assert by_path["teams"].json["attachments"][0]["content"]["type"] == "AdaptiveCard"
    assert by_path["hook"].json["facts"][0] == {"label": "Pipeline", "value": "daily_etl"}
    assert {r.headers["Idempotency-Key"] for r in webhook_server.received} == {
        message.idempotency_key
    }
    assert store.outbox_backlog() == 0
    assert store.outbox_counts()[OutboxState.DELIVERED] == 3


def test_the_webhook_signature_is_the_hmac_of_the_exact_body_and_the_secret_stays_home(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    enqueue(store, alert(), ["hook"], clock)
    deliver_due(store, registry_for(webhook_server), clock)
    (request,) = webhook_server.received
    digest = hmac.new(webhook_server.secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Batchpilot-Signature"] == f"sha256={digest}"
    assert request.path == "/hook/in"  # no ?secret=
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"


def test_enqueuing_the_same_key_twice_delivers_once(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    assert enqueue(store, alert(), ["hook"], clock) == ["hook"]
    assert enqueue(store, alert(), ["hook"], clock) == []
    deliver_due(store, registry_for(webhook_server), clock)
    enqueue(store, alert(), ["hook"], clock)  # after delivery too
    assert deliver_due(store, registry_for(webhook_server), clock).claimed == 0
    assert len(webhook_server.accepted("/hook")) == 1


def test_an_endpoint_down_for_30_s_then_up_gets_the_message_exactly_once(
    store: RunStore, clock: FakeClock
):
    server = WebhookServer(port=free_port())  # not started: the port refuses connections
    channels = registry_for(server)
    enqueue(store, alert(), ["hook"], clock)
    first = deliver_due(store, channels, clock, rng=random.Random(3))
    assert (first.delivered, first.retrying) == (0, 1)
    (failure,) = first.failures
    assert "could not be reached" in failure.error
    assert failure.retry_at is not None
    # Due again within the backoff, not at once: an immediate round sends nothing.
    assert deliver_due(store, channels, clock).claimed == 0
    clock.advance(30)
    server.start()
    try:
        rounds = []
        while store.outbox_backlog():
            clock.set(max(clock.now(), store.list_notifications()[0].next_attempt_at))
            rounds.append(deliver_due(store, channels, clock))
            assert len(rounds) < 10
        assert sum(r.delivered for r in rounds) == 1
        assert len(server.accepted("/hook")) == 1
        (record,) = store.list_notifications()
        assert record.state is OutboxState.DELIVERED and record.attempts >= 2
        assert "could not be reached" in (record.last_error or "")
    finally:
        server.stop()


def test_a_server_error_is_retried_and_the_redelivery_carries_the_same_idempotency_key(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    webhook_server.statuses[TEAMS_PATH] = [503, 429]
    enqueue(store, alert(), ["teams"], clock)
    channels = registry_for(webhook_server)
    for _ in range(3):
        clock.advance(3600)
        deliver_due(store, channels, clock)
    statuses = [r.status for r in webhook_server.received]
    assert statuses == [503, 429, 200]
    assert {r.headers["Idempotency-Key"] for r in webhook_server.received} == {
        alert().idempotency_key
    }
    (record,) = store.list_notifications()
    assert (record.state, record.attempts) == (OutboxState.DELIVERED, 3)
    assert "answered HTTP 429" in (record.last_error or "")


def test_a_refused_payload_is_dead_at_once_with_the_answer_and_no_secret(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    webhook_server.statuses[SLACK_PATH] = [404]
    enqueue(store, alert(), ["slack"], clock)
    report = deliver_due(store, registry_for(webhook_server), clock)
    assert (report.dead, report.retrying) == (1, 0)
    (record,) = store.list_notifications(states=[OutboxState.DEAD])
    assert record.last_error is not None and "answered HTTP 404" in record.last_error
    assert "x9Yz8WvU7tS6rQ5pO4nM3lK2" not in record.last_error
    assert "slack+http://127.0.0.1" in record.last_error and "/***" in record.last_error


def test_a_channel_that_is_down_costs_one_attempt_and_does_not_hold_up_the_others(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    down = f"webhook+http://127.0.0.1:{free_port()}/hook"
    channels = registry_for(webhook_server, down=down)
    for i in range(5):
        enqueue(store, alert(f"k{i}"), ["down", "slack"], clock)
    report = deliver_due(store, channels, clock)
    assert (report.claimed, report.delivered, report.retrying, report.released) == (10, 5, 1, 4)
    assert len(webhook_server.accepted("/slack")) == 5
    waiting = store.list_notifications(channel="down")
    assert [r.attempts for r in waiting] == [1, 0, 0, 0, 0]
    assert len({r.next_attempt_at for r in waiting}) == 1  # all due with the failed one
    assert all("unreachable" in (r.last_error or "") for r in waiting[1:])


def test_a_channel_that_hangs_times_out_while_the_others_are_delivered(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    channels = registry_for(webhook_server, stuck=f"webhook+{webhook_server.url('/hang')}")
    for i in range(3):
        enqueue(store, alert(f"k{i}"), ["stuck", "teams"], clock)
    report = deliver_due(store, channels, clock, timeout_s=0.5)
    assert report.delivered == 3 and len(webhook_server.accepted("/teams")) == 3
    assert (report.retrying, report.released) == (1, 2)
    assert "timed out" in report.failures[0].error


def test_a_message_for_an_undefined_channel_waits_until_the_channel_is_defined(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    enqueue(store, alert(), ["pager"], clock)
    report = deliver_due(store, registry_for(webhook_server), clock)
    assert report.retrying == 1
    assert "unknown notification channel 'pager'" in report.failures[0].error
    clock.advance(3600)
    defined = registry_for(webhook_server, pager=f"webhook+{webhook_server.url('/pager')}")
    assert deliver_due(store, defined, clock).delivered == 1


def test_after_24_hours_of_failures_the_message_is_dead_with_the_last_error(
    store: RunStore, clock: FakeClock
):
    channels = registry_for(WebhookServer(port=free_port()))
    enqueue(store, alert(), ["hook"], clock)
    policy = RetryPolicy(base_s=60, cap_s=3600)
    for _ in range(200):
        if not store.outbox_backlog():
            break
        clock.set(max(clock.now(), store.list_notifications()[0].next_attempt_at))
        deliver_due(store, channels, clock, policy=policy)
    (record,) = store.list_notifications()
    assert record.state is OutboxState.DEAD
    assert record.created_at + timedelta(hours=24) == clock.now()
    assert 24 < record.attempts < 60  # exponential, capped at an hour
    assert "could not be reached" in (record.last_error or "")


def test_failures_are_logged_without_secrets(
    store: RunStore,
    clock: FakeClock,
    webhook_server: WebhookServer,
    caplog: pytest.LogCaptureFixture,
):
    webhook_server.statuses[SLACK_PATH] = [400]
    enqueue(store, alert(), ["slack", "hook"], clock)
    channels = registry_for(WebhookServer(port=free_port()))  # the webhook is down
    channels = ChannelRegistry([registry_for(webhook_server).get("slack"), channels.get("hook")])
    with caplog.at_level(logging.DEBUG, logger="batchpilot"):
        report = deliver_due(store, channels, clock)
    assert (report.dead, report.retrying) == (1, 1)
    shown = caplog.text + repr(report) + repr(channels)
    shown += " ".join(r.last_error or "" for r in store.list_notifications())
    for secret in ("x9Yz8WvU7tS6rQ5pO4nM3lK2", webhook_server.secret):
        assert secret not in shown
    assert "answered HTTP 400" in caplog.text


def test_the_test_message_reports_success_or_the_masked_failure(webhook_server: WebhookServer):
    channels = registry_for(webhook_server)
    ok = send_test_message(channels.get("slack"))
    assert ok.ok and ok.error is None and ok.masked_url.endswith("/***")
    (request,) = webhook_server.received
    assert "test message for channel 'slack'" in request.json["blocks"][0]["text"]["text"]
    assert request.headers["Idempotency-Key"] == ok.idempotency_key
    down = parse_channel("down", f"slack+http://127.0.0.1:{free_port()}{SLACK_PATH}")
    failed = send_test_message(down, timeout_s=1.0)
    assert not failed.ok and failed.error is not None
    assert "could not be reached" in failed.error
    assert "x9Yz8WvU7tS6rQ5pO4nM3lK2" not in repr(failed)


def test_a_webhook_gets_messages_over_several_connections_but_each_group_in_order(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    for i in range(24):
        message = Message(
            title=f"step {i}", summary="", idempotency_key=f"k{i:02d}", group=f"episode-{i % 3}"
        )
        enqueue(store, message, ["hook"], clock)
    report = deliver_due(store, registry_for(webhook_server), clock)
    assert report.delivered == 24
    order: dict[str, list[int]] = {}
    for request in webhook_server.received:
        body = request.json
        order.setdefault(body["group"], []).append(int(body["idempotency_key"][1:]))
    assert sorted(order) == ["episode-0", "episode-1", "episode-2"]
    for group, steps in order.items():
        assert steps == sorted(steps) and len(steps) == 8, group
    assert len({r.headers.get("Idempotency-Key") for r in webhook_server.received}) == 24
    # the first message alone, then the groups over two of the four lanes
    assert len({r.peer for r in webhook_server.received}) == 3


def test_a_webhook_url_with_a_login_sends_http_basic_auth_and_masks_the_password(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    url = f"webhook+http://hooks:pa%20ss%40word@127.0.0.1:{webhook_server.port}/basic"
    channel = parse_channel("basic", url)
    assert channel.masked_url == f"webhook+http://hooks:***@127.0.0.1:{webhook_server.port}/basic"
    enqueue(store, alert(), ["basic"], clock)
    assert deliver_due(store, ChannelRegistry([channel]), clock).delivered == 1
    (request,) = webhook_server.received
    assert request.problems == [] and request.status == 200
    assert channel.redact("said pa ss@word and pa%20ss%40word") == "said *** and ***"


@pytest.mark.postgres
def test_on_a_postgresql_store_the_same_delivery_holds(
    pg_url: str, clock: FakeClock, webhook_server: WebhookServer
):
    store = RunStore(pg_url)
    try:
        webhook_server.statuses["/hook/in"] = [502]
        assert enqueue(store, alert(), ["slack", "hook"], clock) == ["slack", "hook"]
        assert enqueue(store, alert(), ["slack", "hook"], clock) == []
        first = deliver_due(store, registry_for(webhook_server), clock)
        assert (first.delivered, first.retrying) == (1, 1)
        clock.advance(3600)
        assert deliver_due(store, registry_for(webhook_server), clock).delivered == 1
        assert store.outbox_counts()[OutboxState.DELIVERED] == 2
        assert [r.status for r in webhook_server.received if r.path == "/hook/in"] == [502, 200]
    finally:
        store.dispose()


def test_a_round_out_of_lease_time_gives_its_messages_back_unsent(
    store: RunStore, clock: FakeClock, webhook_server: WebhookServer
):
    for i in range(3):
        enqueue(store, alert(f"k{i}"), ["hook"], clock)
    report = deliver_due(store, registry_for(webhook_server), clock, lease_s=0.0)
    assert (report.claimed, report.delivered, report.released) == (3, 0, 3)
    assert webhook_server.received == []
    assert [r.attempts for r in store.list_notifications()] == [0, 0, 0]
    assert deliver_due(store, registry_for(webhook_server), clock).delivered == 3
