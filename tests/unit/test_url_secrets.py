"""Secrets are found and masked in every form of connection string, and masking never fails."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpilot.airflow.errors import AirflowConfigError
from batchpilot.airflow.settings import AirflowSettings
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.errors import ConnectionError
from batchpilot.url_secrets import mask_url, parse_url, secret_forms

MASKED = [
    ("postgresql://etl:hunter2@db:5432/dwh", "postgresql://etl:***@db:5432/dwh"),
    ("postgresql://etl@db/dwh?password=hunter2", "postgresql://etl@db/dwh?password=***"),
    (
        "postgresql://etl@db/dwh?sslmode=require&sslpassword=hunter2",
        "postgresql://etl@db/dwh?sslmode=require&sslpassword=***",
    ),
    (
        "postgresql://etl@db/dwh?PWD=a&passwd=b&Secret=c&token=d&api_key=e&access_key=f&app=x",
        "postgresql://etl@db/dwh?PWD=***&passwd=***&Secret=***&token=***&api_key=***"
        "&access_key=***&app=x",
    ),
    ("host=db user=etl password=hunter2 dbname=dwh", "host=db user=etl password=*** dbname=dwh"),
    ("host=db password = 'hunt er\\'2' dbname=dwh", "host=db password=*** dbname=dwh"),
    ("postgresql://etl:hun@ter2@db/dwh", "postgresql://etl:***@db/dwh"),
    (
        "postgresql://etl:h@u/n:t@db/dwh?application_name=a@b",
        "postgresql://etl:***@db/dwh?application_name=a@b",
    ),
    ("postgresql://etl:hun%40ter2@db/dwh", "postgresql://etl:***@db/dwh"),
    ("postgresql://etl:hunter2@db:notaport/dwh", "postgresql://etl:***@db:notaport/dwh"),
    ("postgresql://etl@server:hunter2@db/dwh", "postgresql://etl@server:***@db/dwh"),
    ("sqlite:////tmp/a@b.db", "sqlite:////tmp/a@b.db"),
    ("postgres:/etl:hunter2@db/dwh", "***"),
    ("", "***"),
]


@pytest.mark.parametrize(("url", "masked"), MASKED)
def test_every_form_of_secret_is_masked(url: str, masked: str):
    assert mask_url(url) == masked


DECODED = [
    ("postgresql://etl:hun@ter2@db/dwh", "hun@ter2", "db"),
    ("postgresql://etl:h@u/n:t@db/dwh", "h@u/n:t", "db"),
    ("postgresql://etl:hun%40ter%2F2@db/dwh", "hun@ter/2", "db"),
    ("postgresql://etl:pa?ss@db/dwh", "pa?ss", "db"),
]


@pytest.mark.parametrize(("url", "password", "host"), DECODED)
def test_the_credentials_end_at_the_last_at_sign(url: str, password: str, host: str):
    parsed = parse_url(url)
    assert (parsed.username, parsed.password, parsed.host) == ("etl", password, host)


def test_the_registry_redacts_the_decoded_and_encoded_forms():
    registry = ConnectionRegistry(
        [
            Connection("a", "postgresql://etl:p%40ss%20word@db/dwh"),
            Connection("b", "postgresql://etl@db/dwh?password=q%26rst"),
            Connection("c", "host=db password='s p\\'w'"),
        ]
    )
    text = "p@ss word | p%40ss%20word | p%40ss word | q&rst | q%26rst | s p'w | end"
    assert registry.redact(text) == "*** | *** | *** | *** | *** | *** | end"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://etl:hunter2@db:notaport/dwh", "the port 'notaport' is not a number"),
        ("postgresql://etl:hunter2@db:70000/dwh", "the port 70000 is out of range"),
        ("host=db password=hunter2", "libpq key=value string, not a URL"),
        ("postgres:/etl:hunter2@db", "not a database URL"),
        ("postgress://etl:hunter2@db/dwh", "cannot be used: NoSuchModuleError"),
        ("postgresql://etl:hunter2@db/dwh?port=abc", "non-integer port"),
        ("sqlite:////tmp/x.db?timeout=soon", "could not convert string to float: 'soon'"),
    ],
)
def test_a_malformed_url_is_a_connection_error_naming_it_without_the_password(
    url: str, reason: str
):
    connection = Connection("dwh", url, origin="$BATCHPILOT_CONN_DWH")
    with pytest.raises(ConnectionError) as caught:
        connection.check()
    message = str(caught.value)
    assert message.startswith("connection 'dwh' ($BATCHPILOT_CONN_DWH) ")
    assert reason in message and "hunter2" not in message


# printable ASCII; a password holding '?' and then '@' must be percent-encoded (the '?'
# could as well start the query string), '%' starts an escape and quotes end a libpq value
password_characters = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\\'?%"),
    min_size=6,
    max_size=20,
)


@given(password=password_characters, text=st.text(max_size=60))
def test_masking_never_raises_and_never_shows_the_password(password: str, text: str):
    assert isinstance(mask_url(text), str)
    for url in (
        f"postgresql://etl:{password}@db.example/dwh",
        f"postgresql://etl@db.example/dwh?password={password.replace('&', '%26')}",
        f"host=db.example password='{password}'",
    ):
        assert password not in mask_url(url)
        assert password in secret_forms(url)


def test_an_airflow_url_holding_a_password_is_refused_masked():
    with pytest.raises(AirflowConfigError) as caught:
        AirflowSettings.from_env({"BATCHPILOT_AIRFLOW_URL": "http://admin:hunter2@airflow:8080"})
    assert "hunter2" not in str(caught.value)
    assert "http://admin:***@airflow:8080" in str(caught.value)
    plain = AirflowSettings.from_env({"BATCHPILOT_AIRFLOW_URL": "http://airflow:8080/"})
    assert plain.url == "http://airflow:8080"


def test_an_unreadable_connections_file_is_named_without_quoting_its_lines(tmp_path):
    (tmp_path / "connections.yaml").write_text("dwh: postgresql://etl:hunter2@db/dwh\n  bad: [\n")
    with pytest.raises(ConnectionError) as caught:
        ConnectionRegistry.from_sources({}, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'connections.yaml'}: invalid YAML at line 2")
    assert "hunter2" not in message
