"""``batchpilot notify list`` and ``notify test CHANNEL``, against a real HTTP server on
127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tests.cli_runner import Cli
from tests.notify.servers import SmtpServer, WebhookServer, free_port
from tests.notify.test_email_delivery import smtp_url

SLACK_PATH = "/slack/services/T0ABCDEF12/B0GHIJKL34/x9Yz8WvU7tS6rQ5pO4nM3lK2"
SLACK_SECRET = "x9Yz8WvU7tS6rQ5pO4nM3lK2"
SMTP_PASSWORD = "hunter2-app-password"


def test_notify_test_signs_and_sends_a_webhook_message_and_prints_the_masked_url(
    cli: Cli, webhook_server: WebhookServer
):
    url = f"webhook+{webhook_server.url('/hook/in')}?secret={webhook_server.secret}"
    cli.env["BATCHPILOT_NOTIFY_PAGER"] = url
    result = cli("notify", "test", "pager")
    assert result.code == 0, result.stderr
    assert "ok: test message sent to channel 'pager'" in result.stdout
    assert f"127.0.0.1:{webhook_server.port}/hook/in" in result.stdout
    assert webhook_server.secret not in result.stdout + result.stderr
    (request,) = webhook_server.wait_for_requests(1)
    assert request.status == 200 and request.problems == []  # signature checked by the server
    assert request.json["title"] == "batchpilot test message for channel 'pager'"


def test_notify_test_sends_slack_its_block_kit_shape(
    cli_in_process: Cli, webhook_server: WebhookServer
):
    cli_in_process.env["BATCHPILOT_NOTIFY_DATA_TEAM"] = f"slack+{webhook_server.url(SLACK_PATH)}"
    result = cli_in_process("notify", "test", "data-team", "-o", "json")
    assert result.code == 0, result.stderr
    printed = result.json()
    assert printed["ok"] is True and printed["kind"] == "slack" and printed["error"] is None
    assert SLACK_SECRET not in result.stdout
    (request,) = webhook_server.wait_for_requests(1)
    assert request.path == SLACK_PATH and request.problems == []


def test_notify_test_emails_over_starttls_with_login_and_masks_the_password(
    cli_in_process: Cli, smtp_server: SmtpServer, certificate: tuple[Path, Path]
):
    cli_in_process.env["BATCHPILOT_NOTIFY_ONCALL"] = smtp_url(smtp_server, certificate[0])
    sent = cli_in_process("notify", "test", "oncall")
    assert sent.code == 0, sent.stderr
    assert f"smtp://etl:***@127.0.0.1:{smtp_server.port}" in sent.stdout
    (email,) = smtp_server.messages
    assert email["Subject"].endswith("batchpilot test message for channel 'oncall'")
    cli_in_process.env["BATCHPILOT_NOTIFY_ONCALL"] = smtp_url(
        smtp_server, certificate[0], password="wrong-password-42"
    )
    refused = cli_in_process("notify", "test", "oncall")
    assert refused.code == 1 and "test message not sent: channel 'oncall'" in refused.stderr
    for result in (sent, refused):
        assert smtp_server.password not in result.stdout + result.stderr
        assert "wrong-password-42" not in result.stdout + result.stderr


def test_a_failed_send_exits_1_with_the_reason_and_no_secret(
    cli_in_process: Cli, webhook_server: WebhookServer
):
    webhook_server.statuses[SLACK_PATH] = [500]
    cli_in_process.env["BATCHPILOT_NOTIFY_ANSWERS_500"] = f"slack+{webhook_server.url(SLACK_PATH)}"
    cli_in_process.env["BATCHPILOT_NOTIFY_NOBODY_HOME"] = (
        f"webhook+http://127.0.0.1:{free_port()}/hook?secret=do-not-print-me"
    )
    answered_500 = cli_in_process("notify", "test", "answers_500")
    assert answered_500.code == 1
    assert "test message not sent: channel 'answers_500'" in answered_500.stderr
    assert "answered HTTP 500" in answered_500.stderr and SLACK_SECRET not in answered_500.stderr
    refused = cli_in_process("notify", "test", "nobody_home")
    assert refused.code == 1 and "could not be reached" in refused.stderr
    assert "do-not-print-me" not in refused.stderr
    for result in (answered_500, refused):
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_unknown_channel_exits_2_naming_the_known_ones(cli_in_process: Cli):
    cli_in_process.env["BATCHPILOT_NOTIFY_ONCALL"] = "webhook+http://127.0.0.1:9/hook"
    result = cli_in_process("notify", "test", "nope")
    assert result.code == 2
    assert "unknown notification channel 'nope' (known: oncall)" in result.stderr
    assert "BATCHPILOT_NOTIFY_NOPE" in result.stderr


def test_a_malformed_url_exits_2_naming_channel_and_field_with_the_password_masked(
    cli_in_process: Cli,
):
    cli_in_process.env["BATCHPILOT_NOTIFY_ONCALL"] = (
        f"smtp://etl:{SMTP_PASSWORD}@mail.example.com:587?from=etl@example.com"  # no recipient
    )
    for args in (("notify", "test", "oncall"), ("notify", "list")):
        result = cli_in_process(*args)
        assert result.code == 2, args
        assert "channel 'oncall'" in result.stderr and "$BATCHPILOT_NOTIFY_ONCALL" in result.stderr
        assert SMTP_PASSWORD not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_notify_list_shows_file_and_environment_channels_masked(
    cli_in_process: Cli, home: Path, webhook_server: WebhookServer
):
    home.mkdir(parents=True, exist_ok=True)
    (home / "notifications.yaml").write_text(
        f"oncall: smtp://etl:{SMTP_PASSWORD}@mail.example.com:587"
        "?from=etl@example.com&to=a@example.com\n"
        f"data-team: slack+{webhook_server.url(SLACK_PATH)}\n"
    )
    cli_in_process.env["BATCHPILOT_NOTIFY_PAGER"] = (
        "webhook+https://alerts.example.com/in?secret=k3y"
    )
    listed = cli_in_process("notify", "list", "-o", "json")
    assert listed.code == 0, listed.stderr
    rows = {row["name"]: row for row in listed.json()}
    assert sorted(rows) == ["data-team", "oncall", "pager"]
    assert rows["oncall"]["kind"] == "email" and rows["oncall"]["source"].endswith(
        "notifications.yaml"
    )
    assert rows["pager"]["source"] == "$BATCHPILOT_NOTIFY_PAGER"
    text = cli_in_process("notify", "list")
    assert text.code == 0 and "oncall" in text.stdout and "pager" in text.stdout
    for output in (listed.stdout, text.stdout):
        assert SMTP_PASSWORD not in output and SLACK_SECRET not in output and "k3y" not in output


def test_notify_list_with_no_channels_says_how_to_define_one(cli_in_process: Cli):
    result = cli_in_process("notify", "list")
    assert result.code == 0 and "BATCHPILOT_NOTIFY_<NAME>" in result.stdout
    assert cli_in_process("notify", "list", "-o", "json").json() == []
