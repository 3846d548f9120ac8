"""Channel URLs: what each form means, what a bad one says, and that secrets never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpilot.errors import ChannelConfigError, NotifyError, UnknownChannel
from batchpilot.notify import (
    ChannelRegistry,
    EmailChannel,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
    parse_channel,
)

SLACK_PATH = "/services/T0ABCDEF12/B0GHIJKL34/x9Yz8WvU7tS6rQ5pO4nM3lK2"
TEAMS_URL = (
    "https://contoso.webhook.office.com/webhookb2/0f1e2d3c-aaaa-bbbb-cccc-111122223333@"
    "44445555-dddd-eeee-ffff-666677778888/IncomingWebhook/9a8b7c6d5e4f3a2b1c0d/"
    "12345678-90ab-cdef-1234-567890abcdef"
)


def test_an_smtp_url_names_host_port_login_sender_and_recipients():
    channel = parse_channel(
        "oncall",
        "smtp://etl:pa%24%24word@mail.example.com:587?from=etl@example.com"
        "&to=a@example.com,b@example.com",
    )
    assert isinstance(channel, EmailChannel)
    assert (channel.host, channel.port, channel.implicit_tls) == ("mail.example.com", 587, False)
    assert (channel.username, channel.password) == ("etl", "pa$$word")
    assert channel.sender == "etl@example.com"
    assert channel.recipients == ("a@example.com", "b@example.com")


def test_smtps_is_implicit_tls_on_port_465_and_the_sender_defaults_to_an_address_login():
    channel = parse_channel("mail", "smtps://etl%40example.com:pw@smtp.example.com?to=a@x.org")
    assert isinstance(channel, EmailChannel)
    assert (channel.port, channel.implicit_tls) == (465, True)
    assert channel.sender == "etl@example.com"


def test_slack_teams_and_webhook_urls_post_to_the_url_after_the_prefix():
    slack = parse_channel("s", f"slack+https://hooks.slack.com{SLACK_PATH}")
    teams = parse_channel("t", f"teams+{TEAMS_URL}")
    hook = parse_channel("w", "webhook+https://ops.example.com/in?team=data&secret=k3y")
    assert isinstance(slack, SlackChannel)
    assert slack.target_url == f"https://hooks.slack.com{SLACK_PATH}"
    assert isinstance(teams, TeamsChannel) and teams.target_url == TEAMS_URL
    assert isinstance(hook, WebhookChannel)
    assert hook.target_url == "https://ops.example.com/in?team=data"  # the secret is not sent
    assert hook.secret == "k3y"


def test_http_targets_are_accepted_for_local_receivers():
    channel = parse_channel("local", "webhook+http://127.0.0.1:8080/hook")
    assert isinstance(channel, WebhookChannel)
    assert channel.target_url == "http://127.0.0.1:8080/hook" and channel.secret is None


@pytest.mark.parametrize(
    ("url", "field", "says"),
    [
        ("ftp://files.example.com/x", "scheme", "unknown scheme 'ftp'"),
        ("https://hooks.slack.com/services/T1/B2/C3", "scheme", "prefix an HTTP URL with slack+"),
        ("hooks.slack.com/services", "scheme", "unknown scheme '(none)'"),
        ("smtp://mail.example.com:587?from=a@example.com", "to", "no recipient"),
        ("smtp://mail.example.com?from=a@example.com&to=not-an-address", "to", "not an email"),
        ("smtp://mail.example.com?to=a@example.com", "from", "no sender"),
        ("smtp://mail.example.com:99999?from=a@x.org&to=b@x.org", "port", "port"),
        ("smtp://mail.example.com:abc?from=a@x.org&to=b@x.org", "port", "port"),
        ("smtp://:587?from=a@x.org&to=b@x.org", "host", "no host"),
        ("smtp://h?from=a@x.org&to=b@x.org&cc=c@x.org", "cc", "unknown parameter"),
        ("slack+https://hooks.slack.com/", "path", "no webhook path"),
        ("webhook+https:///path", "host", "no host"),
        ("webhook+https://h/p?ca_file=/no/such/ca.pem", "ca_file", "no certificate file"),
        ("", "url", "empty"),
    ],
)
def test_a_bad_url_is_a_channel_config_error_naming_the_channel_and_field(url, field, says):
    with pytest.raises(ChannelConfigError) as caught:
        parse_channel("oncall", url, origin="notifications.yaml")
    error = caught.value
    assert (error.channel, error.field) == ("oncall", field)
    assert str(error).startswith(f"channel 'oncall' (notifications.yaml), field '{field}': ")
    assert says in str(error)


SECRETS = ["hunter2-pw", "x9Yz8WvU7tS6rQ5pO4nM3lK2", "9a8b7c6d5e4f3a2b1c0d", "k3y-SIGN"]
SECRET_URLS = {
    "mail": "smtp://etl:hunter2-pw@mail.example.com:587?from=etl@example.com&to=a@example.com",
    "slack": f"slack+https://hooks.slack.com{SLACK_PATH}",
    "teams": f"teams+{TEAMS_URL}",
    "hook": "webhook+https://ops.example.com/in?secret=k3y-SIGN",
}


@pytest.mark.parametrize("name", sorted(SECRET_URLS))
def test_no_secret_shows_in_the_repr_str_or_masked_url(name):
    channel = parse_channel(name, SECRET_URLS[name])
    shown = " ".join([repr(channel), str(channel), channel.masked_url])
    assert "***" in channel.masked_url
    for secret in SECRETS:
        assert secret not in shown
    registry = ChannelRegistry([channel])
    assert all(secret not in repr(registry) for secret in SECRETS)


def test_masked_urls_keep_what_helps_find_the_channel():
    mail = parse_channel("mail", SECRET_URLS["mail"])
    assert mail.masked_url == (
        "smtp://etl:***@mail.example.com:587?from=etl@example.com&to=a@example.com"
    )
    assert (
        parse_channel("s", SECRET_URLS["slack"]).masked_url == "slack+https://hooks.slack.com/***"
    )
    assert parse_channel("w", SECRET_URLS["hook"]).masked_url == (
        "webhook+https://ops.example.com/in?secret=***"
    )


@pytest.mark.parametrize(
    "url",
    [
        "smtp://etl:hunter2-pw@mail.example.com:notaport?to=a@example.com",
        "smtp://etl:hunter2-pw@mail.example.com:587?from=etl@example.com",
        "slack+ftp://hooks.slack.com/services/T0ABCDEF12/B0GHIJKL34/x9Yz8WvU7tS6rQ5pO4nM3lK2",
        "webhook+https://ops.example.com/in?secret=k3y-SIGN&ca_file=/nope",
        "https://hooks.slack.com/services/T0ABCDEF12/B0GHIJKL34/x9Yz8WvU7tS6rQ5pO4nM3lK2",
        "gopher://etl:hun@ter2/-pw@mail.example.com/x",
        "smtp://etl:hunter2-pw@/?to=a@example.com",
    ],
)
def test_errors_about_a_url_never_show_its_secrets(url):
    with pytest.raises(ChannelConfigError) as caught:
        parse_channel("oncall", url)
    for secret in [*SECRETS, "ter2"]:  # "hun@ter2/-pw": a password with an unencoded @ and /
        assert secret not in str(caught.value)


def test_the_registry_reads_the_home_file_then_the_environment_which_wins(tmp_path: Path):
    (tmp_path / "notifications.yaml").write_text(
        "oncall: smtp://mail.example.com?from=etl@example.com&to=oncall@example.com\n"
        "data-team: webhook+http://127.0.0.1:1/file\n"
    )
    environ = {
        "BATCHPILOT_NOTIFY_DATA_TEAM": "webhook+http://127.0.0.1:1/env",
        "BATCHPILOT_NOTIFY_SLACK": f"slack+https://hooks.slack.com{SLACK_PATH}",
        "BATCHPILOT_OTHER": "ignored",
    }
    registry = ChannelRegistry.from_sources(environ, tmp_path)
    assert registry.names() == ["data_team", "oncall", "slack"]
    data_team = registry.get("data-team")
    assert isinstance(data_team, WebhookChannel)
    assert (
        data_team.target_url.endswith("/env") and data_team.origin == "$BATCHPILOT_NOTIFY_DATA_TEAM"
    )
    assert registry.get("ONCALL").origin == str(tmp_path / "notifications.yaml")


def test_an_unknown_channel_lists_the_known_ones_and_how_to_define_it():
    registry = ChannelRegistry([parse_channel("oncall", "webhook+http://127.0.0.1:1/x")])
    with pytest.raises(
        UnknownChannel, match=r"unknown notification channel 'pager' \(known: oncall\)"
    ):
        registry.get("pager")
    with pytest.raises(UnknownChannel, match="BATCHPILOT_NOTIFY_PAGER=<url>"):
        registry.get("pager")


def test_a_bad_url_in_the_environment_names_the_variable():
    with pytest.raises(ChannelConfigError, match=r"channel 'pager' \(\$BATCHPILOT_NOTIFY_PAGER\)"):
        ChannelRegistry.from_sources({"BATCHPILOT_NOTIFY_PAGER": "gopher://x"})


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("oncall: [unclosed", "invalid YAML"),
        ("- smtp://x", "expected a mapping of channel name to URL"),
        ("oncall: 42", "channel 'oncall' needs a URL"),
    ],
)
def test_a_bad_notifications_file_says_what_is_wrong(tmp_path: Path, content, says):
    (tmp_path / "notifications.yaml").write_text(content)
    with pytest.raises(NotifyError, match=says) as caught:
        ChannelRegistry.from_sources({}, tmp_path)
    assert str(tmp_path / "notifications.yaml") in str(caught.value)


def test_the_file_may_nest_channels_and_give_each_a_url_key(tmp_path: Path):
    (tmp_path / "notifications.yaml").write_text(
        "channels:\n  ops:\n    url: teams+" + TEAMS_URL + "\n"
    )
    assert isinstance(ChannelRegistry.from_sources({}, tmp_path).get("ops"), TeamsChannel)


def test_redact_scrubs_every_channels_secrets_from_text():
    registry = ChannelRegistry(parse_channel(n, u) for n, u in SECRET_URLS.items())
    text = "failed: " + " ".join(SECRETS)
    scrubbed = registry.redact(text)
    assert all(secret not in scrubbed for secret in SECRETS)


def test_a_login_in_a_chat_webhook_url_is_masked_too():
    channel = parse_channel("t", "teams+https://bot:pw-Zq81xk@contoso.example.com/hook/abc")
    assert channel.masked_url == "teams+https://contoso.example.com/***"
    assert channel.redact("refused pw-Zq81xk") == "refused ***"
