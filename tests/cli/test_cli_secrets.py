"""A connection's secrets never appear anywhere, whatever form its URL takes.

For each form in ``FORMS`` the connection is listed, tested, validated and used
by a real run whose tasks fail with it (wrong password, missing database or
role, unreachable host) against the test PostgreSQL and a SQLite file; then
every output (stdout, stderr, ``runs show`` text and JSON, ``logs``) and every
byte of every file under the home (the state database and its WAL, each run's
artifacts and attempt logs) is searched for the secret. Malformed URLs are
refused with exit 2, naming the connection, before any run exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from batchpilot.connections import Connection
from tests.cli_runner import Cli

#: a role that must give its password, added to the test server for this module
PASSWORD_ROLE = "bp_secret_role"
PASSWORD_ROLE_PASSWORD = "Right@pw/x:y+z 'q"

PIPELINE = """
name: secrets_probe
default_args: {retries: 0}
nodes:
  - {id: extract, type: extract.csv, config: {path: "{{ pipeline_dir }}/in.csv"}}
  - {id: load_pg, type: load.postgres, config: {connection: dwh, table: t}, depends_on: [extract]}
  - {id: load_sql, type: load.sql, config: {connection: dwh, table: t}, depends_on: [extract]}
  - {id: script, type: sql, config: {connection: dwh, sql: "SELECT 1"}}
"""


@dataclass(frozen=True)
class SecretForm:
    """A connection URL (a template over the test server's socket, port and database),
    the fragments of its secret that must never appear, and whether it is malformed."""

    id: str
    url: str
    secrets: tuple[str, ...]
    reason: str = ""  # what the failed task's error says (not malformed forms)
    malformed: bool = False


SERVER = "host={sock}&port={port}"
FORMS = [
    SecretForm(
        "userinfo_missing_database",
        "postgresql://postgres:Pw01Secret@/no_such_db?" + SERVER,
        ("Pw01Secret",),
        'database "no_such_db" does not exist',
    ),
    SecretForm(
        "userinfo_unreachable_host",
        "postgresql://etl:Pw02Secret@127.0.0.1:1/dwh?connect_timeout=2",
        ("Pw02Secret",),
        "Connection refused",
    ),
    SecretForm(
        "userinfo_wrong_password",
        f"postgresql://{PASSWORD_ROLE}:Pw03Secret@/{{db}}?" + SERVER,
        ("Pw03Secret",),
        "password authentication failed",
    ),
    SecretForm(
        "query_password",
        f"postgresql://{PASSWORD_ROLE}@/{{db}}?{SERVER}&password=Pw04Secret",
        ("Pw04Secret",),
        "password authentication failed",
    ),
    SecretForm(
        "query_password_percent_encoded",
        f"postgresql://{PASSWORD_ROLE}@/{{db}}?{SERVER}&password=Pw05%26Secret%2B",
        ("Pw05", "Secret%2B", "Secret+"),
        "password authentication failed",
    ),
    SecretForm(
        "query_sslpassword",
        "postgresql://postgres@/no_such_db?" + SERVER + "&sslpassword=Pw06Secret",
        ("Pw06Secret",),
        'database "no_such_db" does not exist',
    ),
    SecretForm(
        "query_api_key_and_token",
        "postgresql://postgres@/{db}?" + SERVER + "&api_key=Pw07Secret&token=Tk07Secret",
        ("Pw07Secret", "Tk07Secret"),
        '"api_key"',  # libpq refuses the option, naming only its key
    ),
    SecretForm(
        "libpq_key_value",
        "host={sock} port={port} user=postgres password=Pw08Secret dbname={db}",
        ("Pw08Secret",),
        malformed=True,
    ),
    SecretForm(
        "libpq_key_value_quoted",
        "host={sock} port={port} password='Pw09 Sec\\'ret' dbname={db}",
        ("Pw09", "Sec\\'ret", "Sec'ret"),
        malformed=True,
    ),
    SecretForm(
        "unencoded_at_in_password",
        f"postgresql://{PASSWORD_ROLE}:Head10@Tail10@/{{db}}?" + SERVER,
        ("Head10", "Tail10"),
        "password authentication failed",
    ),
    SecretForm(
        "unencoded_at_slash_colon_in_password",
        f"postgresql://{PASSWORD_ROLE}:Head11@mid/dle:Tail11@/{{db}}?" + SERVER,
        ("Head11", "mid/dle", "Tail11"),
        "password authentication failed",
    ),
    SecretForm(
        "percent_encoded_password",
        f"postgresql://{PASSWORD_ROLE}:Head12%40Tail12%2F@/{{db}}?" + SERVER,
        ("Head12", "Tail12"),
        "password authentication failed",
    ),
    SecretForm(
        "percent_encoded_space_and_plus",
        f"postgresql://{PASSWORD_ROLE}:Head13%20Mid13+Tail13@/{{db}}?" + SERVER,
        ("Head13", "Mid13", "Tail13"),
        "password authentication failed",
    ),
    SecretForm(
        "non_numeric_port",
        "postgresql://etl:Pw14Secret@127.0.0.1:notaport/dwh",
        ("Pw14Secret",),
        malformed=True,
    ),
    SecretForm(
        "port_out_of_range",
        "postgresql://etl:Pw15Secret@127.0.0.1:99999/dwh",
        ("Pw15Secret",),
        malformed=True,
    ),
    SecretForm(
        "not_a_url",
        "postgres:/etl:Pw16Secret@127.0.0.1/dwh",
        ("Pw16Secret",),
        malformed=True,
    ),
    SecretForm(
        "user_with_at_sign",
        "postgresql://etl@server:Pw17Secret@127.0.0.1:1/dwh?connect_timeout=2",
        ("Pw17Secret",),
        "Connection refused",
    ),
    SecretForm(
        "driver_in_scheme",
        f"postgresql+psycopg://{PASSWORD_ROLE}:Pw18Secret@/{{db}}?" + SERVER,
        ("Pw18Secret",),
        "password authentication failed",
    ),
    SecretForm(
        "sqlite_query_secret",
        "sqlite:////proc/no_such_folder/x.db?secret=Pw19Secret",
        ("Pw19Secret",),
        "No such file or directory",
    ),
]


@pytest.fixture(scope="module")
def password_role(pg_server_dsn: str) -> Iterator[None]:
    """Make the test server check :data:`PASSWORD_ROLE`'s password (scram), whatever its
    other rules (the embedded server trusts everyone); restored afterwards."""
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        hba_file = conn.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
        original = conn.execute("SELECT pg_read_file(%s)", (hba_file,)).fetchone()[0]  # type: ignore[index]
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(PASSWORD_ROLE)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(PASSWORD_ROLE), sql.Literal(PASSWORD_ROLE_PASSWORD)
            )
        )
        rules = "".join(
            f"{kind} all {PASSWORD_ROLE} {where}scram-sha-256\n"
            for kind, where in (("local", ""), ("host", "all "))
        )
        _write_server_file(conn, hba_file, rules + original)
        _wait_until_password_is_checked(pg_server_dsn)
        yield
        _write_server_file(conn, hba_file, original)
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(PASSWORD_ROLE)))


def _write_server_file(conn: psycopg.Connection, path: str, text: str) -> None:
    oid = conn.execute("SELECT lo_from_bytea(0, convert_to(%s, 'UTF8'))", (text,)).fetchone()[0]  # type: ignore[index]
    conn.execute("SELECT lo_export(%s, %s)", (oid, path))
    conn.execute("SELECT lo_unlink(%s)", (oid,))
    conn.execute("SELECT pg_reload_conf()")


def _wait_until_password_is_checked(dsn: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.update(user=PASSWORD_ROLE, password="wrong")
    for _ in range(100):
        try:
            psycopg.connect(**info).close()  # type: ignore[arg-type]
        except psycopg.OperationalError:
            return
        time.sleep(0.05)
    raise AssertionError("the server kept trusting the password role after a reload")


def _server_parts(pg_dsn: str) -> dict[str, str]:
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    port = str(info.get("port", "5432"))
    return {"sock": str(info["host"]), "port": port, "db": str(info["dbname"])}


def _every_file_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.id)
def test_a_secret_never_appears_in_output_store_logs_or_artifacts(
    form: SecretForm,
    password_role: None,
    pg_dsn: str,
    cli: Cli,
    cli_in_process: Cli,
    home: Path,
    tmp_path: Path,
):
    url = form.url.format(**_server_parts(pg_dsn))
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "in.csv").write_text("id,name\n1,a\n")
    (pipeline / "p.yaml").write_text(PIPELINE)
    for runner in (cli, cli_in_process):
        runner.env["BATCHPILOT_CONN_DWH"] = url
    outputs = []

    def call(runner: Cli, *args: str) -> int:
        result = runner(*args)
        outputs.append(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}")
        return result.code

    listed = cli_in_process("connections", "list", "-o", "json")
    outputs.append(listed.stdout + listed.stderr)
    assert [c["name"] for c in listed.json()] == ["dwh"]
    assert call(cli_in_process, "connections", "list") == listed.code
    tested = call(cli_in_process, "connections", "test", "dwh")
    validated = call(cli_in_process, "validate", str(pipeline / "p.yaml"))
    ran = call(cli, "run", str(pipeline / "p.yaml"), "-o", "json")
    runs = cli_in_process("runs", "list", "-o", "json").json()

    if form.malformed:
        assert (listed.code, tested, validated, ran) == (2, 2, 2, 2)
        refusal = "connection 'dwh' ($BATCHPILOT_CONN_DWH) is not a valid database URL"
        assert refusal in listed.stderr
        assert runs == []
    else:
        assert (listed.code, tested, validated, ran) == (0, 1, 0, 1)
        [run] = runs
        shown = cli_in_process("runs", "show", run["run_id"], "-o", "json").json()
        assert shown["tasks"]["extract"]["state"] == "success"
        for task in ("load_pg", "load_sql", "script"):
            assert shown["tasks"][task]["state"] == "failed", shown
        for task in ("load_pg", "load_sql", "script"):
            if task == "load_pg" and form.url.startswith("sqlite"):
                continue  # refused as "not PostgreSQL" before connecting
            assert form.reason in shown["tasks"][task]["error"], shown["tasks"][task]
        for args in (("runs", "show"), ("logs",)):
            for output in ("text", "json"):
                assert call(cli_in_process, *args, run["run_id"], "-o", output) == 0

    everything = "\n".join(outputs)
    files = _every_file_under(home)
    assert any(p.name == "state.db" for p in files)
    for secret in form.secrets:
        assert secret not in everything, everything
        for path, data in files.items():
            assert secret.encode() not in data, f"{secret!r} found in {path}"


@pytest.mark.parametrize(
    "credentials",
    [
        f"{PASSWORD_ROLE}:Right@pw/x:y+z 'q@",
        f"{PASSWORD_ROLE}:Right%40pw%2Fx%3Ay%2Bz%20%27q@",
        f"{PASSWORD_ROLE}@",
    ],
    ids=["unencoded", "percent_encoded", "in_the_query"],
)
def test_a_password_with_special_characters_reaches_the_server_as_written(
    credentials: str, password_role: None, pg_dsn: str, cli_in_process: Cli
):
    parts = _server_parts(pg_dsn)
    url = f"postgresql://{credentials}/{parts['db']}?host={parts['sock']}&port={parts['port']}"
    if "Right" not in credentials:
        url += "&password=Right%40pw%2Fx%3Ay%2Bz%20%27q"
    cli_in_process.env["BATCHPILOT_CONN_DWH"] = url
    result = cli_in_process("connections", "test", "dwh")  # through SQLAlchemy
    assert result.code == 0, result.stderr
    assert "Right" not in result.stdout
    with psycopg.connect(Connection("dwh", url).libpq_dsn()) as conn:  # as load.postgres does
        assert conn.execute("SELECT current_user").fetchone() == (PASSWORD_ROLE,)
