"""Named database connections: ``BATCHPILOT_CONN_<NAME>`` variables and a connections file.

Passwords never leave this module unmasked except to the driver itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from batchpilot.errors import ConnectionError
from batchpilot.url_secrets import MASK, mask_url, parse_url, secret_forms

__all__ = ["CONNECTIONS_FILE", "ENV_PREFIX", "Connection", "ConnectionRegistry", "mask_url"]

ENV_PREFIX = "BATCHPILOT_CONN_"
CONNECTIONS_FILE = "connections.yaml"


@dataclass(frozen=True)
class Connection:
    """A named database URL (SQLAlchemy or libpq ``postgres://`` form).

    The password may sit in the user information (percent-encoded or not) or in
    the query string (``?password=…``); see :mod:`batchpilot.url_secrets`.
    """

    name: str
    url: str
    origin: str = "unknown"

    @property
    def _parsed(self) -> URL:
        try:
            return parse_url(self.url)
        except ValueError as exc:
            raise ConnectionError(
                f"connection '{self.name}' ({self.origin}) is not a valid database URL: "
                f"{exc} (got {self.masked_url})",
                name=self.name,
            ) from None

    def check(self) -> None:
        """Raise :class:`ConnectionError` (naming the connection, its secrets masked) if
        the URL cannot be read or SQLAlchemy cannot build an engine from it (an unknown
        dialect, a driver that is not installed, a query argument of the wrong type).
        Connects to nothing."""
        problem = _engine_problem(self.sqlalchemy_url())
        if problem is not None:
            for secret in sorted(self.secrets, key=len, reverse=True):
                problem = problem.replace(secret, MASK)
            raise ConnectionError(
                f"connection '{self.name}' ({self.origin}) cannot be used: {problem} "
                f"(got {self.masked_url})",
                name=self.name,
            )

    @property
    def dialect(self) -> str:
        """The database kind: ``postgresql``, ``sqlite``, ``mysql``…"""
        return self._parsed.get_backend_name()

    @property
    def is_postgres(self) -> bool:
        """True for a PostgreSQL connection."""
        return self.dialect in {"postgresql", "postgres"}

    def sqlalchemy_url(self) -> URL:
        """The URL for SQLAlchemy; PostgreSQL goes through psycopg 3."""
        url = self._parsed
        if url.get_backend_name() in {"postgresql", "postgres"}:
            url = url.set(drivername="postgresql+psycopg")
        return url

    def libpq_dsn(self) -> str:
        """A libpq ``key=value`` connection string for psycopg (PostgreSQL only).

        Built from the decoded parts, each quoted as libpq wants: a URL rendered back
        would leave a space of the password unencoded, which libpq refuses.
        """
        from psycopg.conninfo import make_conninfo

        if not self.is_postgres:
            raise ConnectionError(
                f"connection '{self.name}' is {self.dialect}, not PostgreSQL", name=self.name
            )
        url = self._parsed
        parts: dict[str, object] = {
            "host": url.host,
            "port": url.port,
            "dbname": url.database,
            "user": url.username,
            "password": url.password,
        }
        params = {key: str(value) for key, value in parts.items() if value not in (None, "")}
        for key, value in url.query.items():  # ?host=/socket&port=… win, as in libpq
            params[key] = ",".join(value) if isinstance(value, tuple) else value
        return make_conninfo(**params)

    @property
    def masked_url(self) -> str:
        """The URL with every secret (password, ``?password=``, ``sslpassword``, tokens…)
        replaced by ``***``; never raises."""
        return mask_url(self.url)

    @property
    def password(self) -> str | None:
        """The password SQLAlchemy will use (decoded), or None; never raises."""
        try:
            return self._parsed.password  # type: ignore[return-value]
        except ConnectionError:
            return None

    @property
    def secrets(self) -> set[str]:
        """Every form in which this URL's secrets may appear in a message (to redact them)."""
        return secret_forms(self.url)


@lru_cache(maxsize=64)
def _engine_problem(url: URL) -> str | None:
    """Why SQLAlchemy cannot make an engine of ``url`` (it connects lazily, so this
    imports the driver and reads the arguments but opens nothing), or None."""
    try:
        with warnings.catch_warnings():  # e.g. ignored query arguments: said when it runs
            warnings.simplefilter("ignore")
            create_engine(url, poolclass=NullPool).dispose()
    except Exception as exc:  # any failure here is a problem of the URL
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return None


class ConnectionRegistry:
    """Connections by name; the only place steps look them up."""

    def __init__(self, connections: Iterable[Connection] = ()) -> None:
        self._by_name = {c.name.lower(): c for c in connections}
        self._secrets: list[str] | None = None

    def get(self, name: str) -> Connection:
        """Return the connection; raises :class:`ConnectionError` listing the known names."""
        try:
            return self._by_name[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none defined"
            raise ConnectionError(
                f"unknown connection '{name}' (known: {known}); define it with "
                f"{ENV_PREFIX}{name.upper()}=<url> or in {CONNECTIONS_FILE}",
                name=name,
            ) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._by_name.values(), key=lambda c: c.name))

    def with_defaults(self, defaults: Iterable[Connection]) -> ConnectionRegistry:
        """A registry that also knows ``defaults``, except names it already has."""
        merged = {c.name.lower(): c for c in defaults}
        merged.update(self._by_name)
        return ConnectionRegistry(merged.values())

    def secrets(self) -> list[str]:
        """Every secret known, in every form it may take, longest first, so that
        messages can be scrubbed of them."""
        if self._secrets is None:
            found: set[str] = set()
            for connection in self._by_name.values():
                found |= connection.secrets
            self._secrets = sorted(found, key=lambda s: (-len(s), s))
        return self._secrets

    def redact(self, text: str) -> str:
        """Replace every known secret in ``text`` by ``***``."""
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    @classmethod
    def from_sources(
        cls, environ: Mapping[str, str], home: Path | None = None
    ) -> ConnectionRegistry:
        """Read the connections file in ``home`` then ``BATCHPILOT_CONN_*`` (which win)."""
        connections: dict[str, Connection] = {}
        if home is not None:
            for conn in _read_connections_file(home / CONNECTIONS_FILE):
                connections[conn.name.lower()] = conn
        for key, value in environ.items():
            if key.startswith(ENV_PREFIX) and value:
                name = key[len(ENV_PREFIX) :].lower()
                connections[name] = Connection(name=name, url=value, origin=f"${key}")
        return cls(connections.values())


def _read_connections_file(path: Path) -> list[Connection]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        # the parser's message quotes the offending line, which may hold a password
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConnectionError(f"{path}: invalid YAML{where}: {problem}") from None
    if isinstance(data, dict) and "connections" in data:
        data = data["connections"]
    if not isinstance(data, dict):
        raise ConnectionError(f"{path}: expected a mapping of connection name to URL")
    out = []
    for name, value in data.items():
        url = value.get("url") if isinstance(value, dict) else value
        if not isinstance(url, str):
            raise ConnectionError(f"{path}: connection '{name}' needs a 'url'", name=str(name))
        out.append(Connection(name=str(name).lower(), url=url, origin=str(path)))
    return out
