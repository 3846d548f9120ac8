"""``batchpilot tokens``: the secret is printed once, lists never show it, bad input exits 2."""

from __future__ import annotations

from tests.cli_runner import Cli


def test_create_prints_the_secret_once_and_list_never_shows_it(cli_in_process: Cli):
    created = cli_in_process("tokens", "create", "ci-job", "--scope", "run", "--expires", "90d")
    assert created.code == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("bp_") and "shown only now" in created.stderr
    listed = cli_in_process("tokens", "list", "-o", "json")
    assert listed.code == 0
    [token] = listed.json()
    assert token["name"] == "ci-job" and token["scope"] == "run" and token["state"] == "active"
    assert token["expires_at"] is not None and secret not in listed.stdout
    assert secret not in cli_in_process("tokens", "list").stdout


def test_revoke_marks_the_token_revoked(cli_in_process: Cli):
    assert cli_in_process("tokens", "create", "old").code == 0
    revoked = cli_in_process("tokens", "revoke", "old", "-o", "json")
    assert revoked.code == 0 and revoked.json()["state"] == "revoked"


def test_bad_input_exits_2_naming_what_to_fix(cli_in_process: Cli):
    assert cli_in_process("tokens", "create", "dup").code == 0
    cases = {
        ("tokens", "create", "dup"): "exists already",
        ("tokens", "create", "x", "--scope", "root"): "use one of read, run, admin",
        ("tokens", "create", "bad name"): "invalid token name",
        ("tokens", "create", "x", "--expires", "soon"): "--expires",
        ("tokens", "create", "x", "--expires", "0s"): "not in the future",
        ("tokens", "create", "x", "--expires", "99999d"): "--expires",
        ("tokens", "revoke", "nope"): "no token named 'nope'",
    }
    for args, message in cases.items():
        result = cli_in_process(*args)
        assert result.code == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
