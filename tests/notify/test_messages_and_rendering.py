"""The message model and what each channel's renderer makes of it (pure functions)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from batchpilot.errors import InvalidMessage
from batchpilot.notify import Fact, Message, RetryPolicy, Severity, alert_facts
from batchpilot.notify.email_render import build_email, message_id_for, render_email
from batchpilot.notify.render import json_body, render_slack, render_teams, render_webhook
from tests.notify.servers import slack_problems, teams_problems

SLOW = Message(
    title="daily_etl ran 2.6x slower than usual",
    summary="Run 20260301T020000-ab12cd took 41 min; the last 10 good runs took 16 min on average.",
    idempotency_key="alert:daily_etl:slow:20260301T020000-ab12cd",
    severity=Severity.WARNING,
    facts=alert_facts(
        pipeline="daily_etl",
        run_id="20260301T020000-ab12cd",
        rule="slow",
        observed="41 min",
        baseline="16 min (mean of 10 runs)",
        threshold="2x baseline = 32 min",
    ),
    link="http://batchpilot.local/runs/20260301T020000-ab12cd",
)


def test_alert_facts_come_in_the_order_a_person_reads_them_and_skip_absent_ones():
    assert [f.label for f in SLOW.facts] == [
        "Pipeline",
        "Run",
        "Rule",
        "Observed",
        "Baseline",
        "Threshold",
    ]
    assert alert_facts(pipeline="p", task="load") == (Fact("Pipeline", "p"), Fact("Task", "load"))


def test_a_message_survives_its_stored_form_unchanged():
    assert Message.from_dict(json.loads(json.dumps(SLOW.to_dict()))) == SLOW


@pytest.mark.parametrize(
    ("title", "key"),
    [("", "k"), ("  ", "k"), ("t", ""), ("t", "x" * 301), ("t", "line\nbreak"), ("t", "clé")],
)
def test_a_message_needs_a_title_and_a_printable_key(title, key):
    with pytest.raises(InvalidMessage):
        Message(title=title, summary="", idempotency_key=key)


@pytest.mark.parametrize("link", ["javascript:alert(1)", "runs/r1", ""])
def test_a_message_link_must_be_a_web_address(link):
    with pytest.raises(InvalidMessage, match="link must be an http"):
        Message(title="t", summary="", idempotency_key="k", link=link)


def test_the_slack_message_has_a_header_the_summary_the_facts_and_a_link_button():
    payload = render_slack(SLOW)
    assert slack_problems(payload) == []
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "section", "actions", "context"]
    assert payload["blocks"][0]["text"]["text"] == f":warning: {SLOW.title}"
    fields = payload["blocks"][2]["fields"]
    assert fields[0]["text"] == "*Pipeline*\ndaily_etl"
    assert fields[4]["text"] == "*Baseline*\n16 min (mean of 10 runs)"
    assert payload["blocks"][3]["elements"][0]["url"] == SLOW.link
    assert payload["text"].startswith("[WARNING] daily_etl ran 2.6x slower")


def test_slack_limits_hold_for_long_titles_many_facts_and_markup_characters():
    message = Message(
        title="x" * 400,
        summary="<!channel> & rows > 5 " + "y" * 4000,
        idempotency_key="k",
        facts=tuple(Fact(f"f{i}", "v" * 2500) for i in range(23)),
    )
    payload = render_slack(message)
    assert slack_problems(payload) == []
    assert payload["blocks"][1]["text"]["text"].startswith("&lt;!channel&gt; &amp; rows &gt; 5")
    assert [len(b.get("fields", ())) for b in payload["blocks"]] == [0, 0, 10, 10, 3, 0]


def test_the_teams_message_is_an_adaptive_card_in_the_webhook_envelope():
    payload = render_teams(SLOW)
    assert teams_problems(payload) == []
    card = payload["attachments"][0]["content"]
    assert card["body"][0]["text"] == "[WARNING] daily_etl ran 2.6x slower than usual"
    assert card["body"][2]["facts"][3] == {"title": "Observed", "value": "41 min"}
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open in batchpilot", "url": SLOW.link}
    ]


def test_a_recovery_is_green_in_teams_and_ticked_in_slack():
    recovered = Message(
        title="daily_etl is back to normal",
        summary="",
        idempotency_key="r",
        severity=Severity.RESOLVED,
    )
    assert render_teams(recovered)["attachments"][0]["content"]["body"][0]["color"] == "Good"
    assert render_slack(recovered)["blocks"][0]["text"]["text"].startswith(":white_check_mark:")


def test_the_webhook_body_is_the_whole_message_as_compact_json():
    body = json_body(render_webhook(SLOW))
    data = json.loads(body)
    assert data["type"] == "batchpilot.notification" and data["version"] == 1
    assert data["idempotency_key"] == SLOW.idempotency_key
    assert data["facts"][2] == {"label": "Rule", "value": "slow"}
    assert b": " not in body  # compact: the bytes signed are the bytes sent


def test_the_email_has_aligned_text_facts_and_an_escaped_html_part():
    hostile = Message(
        title="<script>alert(1)</script> failed",
        summary="rows & <b>bold</b>",
        idempotency_key="k",
        facts=(Fact("Pipeline", "<p>"), Fact("Observed", "7")),
        link="http://x/?a=1&b=2",
    )
    rendered = render_email(hostile)
    assert "Pipeline: <p>\nObserved: 7\n" in rendered.text
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "rows &amp; &lt;b&gt;bold&lt;/b&gt;" in rendered.html
    assert 'href="http://x/?a=1&amp;b=2"' in rendered.html


def test_the_email_message_id_follows_the_idempotency_key():
    date = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    first = build_email(SLOW, sender="etl@example.com", recipients=("a@example.com",), date=date)
    again = build_email(SLOW, sender="etl@example.com", recipients=("a@example.com",), date=date)
    other = Message(title="t", summary="", idempotency_key="other")
    assert first["Message-ID"] == again["Message-ID"] == message_id_for(SLOW, "etl@example.com")
    assert first["Message-ID"].endswith("@example.com>")
    assert message_id_for(other, "etl@example.com") != first["Message-ID"]
    assert first["Subject"] == "[WARNING] daily_etl ran 2.6x slower than usual"
    assert [p.get_content_type() for p in first.iter_parts()] == ["text/plain", "text/html"]


T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_backoff_doubles_from_the_base_with_jitter_below_the_cap():
    policy = RetryPolicy(base_s=10, cap_s=300, jitter=0.5)
    rng = random.Random(7)
    for failures, ceiling in [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (60, 300)]:
        delays = [policy.delay_s(failures, rng) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_retries_stop_after_max_age_and_the_last_one_lands_on_the_deadline():
    policy = RetryPolicy(base_s=600, cap_s=3600, max_age=timedelta(hours=24))
    rng = random.Random(1)
    nearly = T0 + timedelta(hours=23, minutes=59)
    last = policy.next_attempt_at(failures=40, enqueued_at=T0, now=nearly, permanent=False, rng=rng)
    assert last == T0 + timedelta(hours=24)
    assert (
        policy.next_attempt_at(failures=41, enqueued_at=T0, now=last, permanent=False, rng=rng)
        is None
    )


def test_a_permanent_error_is_never_retried():
    assert (
        RetryPolicy().next_attempt_at(
            failures=1, enqueued_at=T0, now=T0, permanent=True, rng=random.Random()
        )
        is None
    )
