"""Where the secrets are in a connection string, in every form users write one.

A connection string holds secrets in three places:

- the user information of a URL, ``scheme://user:password@host``; the password
  may be percent-encoded (``p%40ss``) or not (``p@ss``: in a server URL the
  credentials end at the *last* ``@`` before the query string, as browsers and
  Python's ``urllib`` read it);
- the query string, ``?password=…&sslpassword=…&api_key=…`` (any key that
  :func:`is_secret_key` recognises);
- a libpq ``key=value`` string, ``host=h user=u password='p w'``.

:func:`mask_url` hides them (it never raises, whatever the text), and
:func:`secret_forms` lists every form in which each of them may later appear in
a message (as written, decoded, and re-encoded the way SQLAlchemy renders a URL
for the driver), so that messages can be scrubbed of all of them.
:func:`parse_url` reads the string into a SQLAlchemy URL, or raises
``ValueError`` with a reason that holds no secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"

#: URL schemes whose "host" part is a file path, which may hold an ``@``
FILE_SCHEMES = ("sqlite", "duckdb")

#: fragments of query-string keys that hold a secret (compared in lower case, ``-`` as ``_``)
SECRET_KEY_FRAGMENTS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "credential",
    "apikey",
    "api_key",
    "access_key",
    "accesskey",
    "private_key",
    "privatekey",
    "signature",
)
#: query-string keys that hold a secret when they are the whole key
SECRET_KEYS = frozenset({"key", "pass", "auth", "authorization", "sig"})

_SCHEME = re.compile(r"^([A-Za-z][\w+.-]*)://")
_KEYWORD_PAIR = re.compile(r"([A-Za-z_][\w-]*)\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s']*)")
_HOST_PORT = re.compile(r"^(?:\[[^\]]*\]|[^/:?]*)(?::(?P<port>[^/?]*))?")
# user information as SQLAlchemy finds it: a user without ':' or '/', then ':password', then '@'
_USER_INFO = re.compile(r"^[^:/]*(?::[^@]*)?@")


def is_secret_key(key: str) -> bool:
    """True for a query-string or libpq key whose value is a secret
    (``password``, ``sslpassword``, ``passwd``, ``pwd``, ``secret``, ``token``, ``api_key``…)."""
    normal = key.strip().lower().replace("-", "_")
    return normal in SECRET_KEYS or any(part in normal for part in SECRET_KEY_FRAGMENTS)


def is_keyword_dsn(text: str) -> bool:
    """True for a libpq ``key=value`` connection string (``host=h dbname=d``), not a URL."""
    return _SCHEME.match(text.strip()) is None and _KEYWORD_PAIR.search(text) is not None


@dataclass(frozen=True)
class SplitUrl:
    """A server URL cut where its secrets are: ``scheme://user:password@rest``.

    ``username`` and ``password`` are as written (still percent-encoded);
    ``password`` is None when the URL has none, ``username`` when it has no
    user information at all.
    """

    scheme: str
    username: str | None
    password: str | None
    rest: str

    @classmethod
    def of(cls, url: str) -> SplitUrl | None:
        """Split ``url``; None if it is not ``scheme://…``."""
        match = _SCHEME.match(url)
        if match is None:
            return None
        scheme, rest = match.group(1), url[match.end() :]
        if scheme.split("+")[0].lower() in FILE_SCHEMES:
            return cls(scheme, None, None, rest)
        user_info = _USER_INFO.match(rest)
        if user_info is None:
            return cls(scheme, None, None, rest)
        first_at = user_info.end() - 1
        query_start = rest.find("?", first_at)
        head = rest if query_start < 0 else rest[:query_start]
        last_at = head.rfind("@")
        credentials, rest = rest[:last_at], rest[last_at + 1 :]
        username, colon, password = credentials.partition(":")
        return cls(scheme, username, password if colon else None, rest)

    @property
    def port_text(self) -> str | None:
        """The port as written (None if the URL names none)."""
        match = _HOST_PORT.match(self.rest)
        return match.group("port") if match else None


@dataclass
class _Masking:
    """The masked text and the secrets, as written, that it hides."""

    text: str
    hidden: list[str] = field(default_factory=list)


def mask_url(text: str) -> str:
    """``text`` (a URL or a libpq ``key=value`` string) with every secret replaced by
    ``***``. Never raises: text that is neither (``postgres:/u:p@h``) is hidden whole."""
    try:
        return _mask(text).text
    except Exception:  # a mask must never be the thing that fails
        match = _SCHEME.match(text) if isinstance(text, str) else None
        return f"{match.group(1)}://{MASK}" if match else MASK


def secret_forms(text: str) -> set[str]:
    """Every form in which a secret of ``text`` may appear in a message: as written,
    percent-decoded, and encoded as SQLAlchemy renders it for the driver."""
    try:
        hidden = _mask(text).hidden
    except Exception:  # unreadable: the whole text is the secret
        return {text} if isinstance(text, str) and text else set()
    forms: set[str] = set()
    for secret in hidden:
        decoded = {unquote(secret), unquote_plus(secret), _unescape_libpq(secret)}
        forms |= {secret} | decoded
        for value in decoded:
            forms |= {quote(value, safe=" +"), quote(value, safe=""), quote_plus(value)}
            forms.add(value.replace("\\", "\\\\").replace("'", "\\'"))  # libpq-quoted
    return {form for form in forms if form}


def parse_url(url: str) -> URL:
    """Read ``url`` into a SQLAlchemy URL, credentials decoded.

    Raises ``ValueError`` with a reason that holds no secret: a libpq
    ``key=value`` string, a non-numeric or out-of-range port, text that is not a URL.
    """
    text = url.strip()
    if is_keyword_dsn(text):
        raise ValueError(
            "this is a libpq key=value string, not a URL; write it as "
            "postgresql://user:password@host:port/dbname (percent-encode special characters)"
        )
    split = SplitUrl.of(text)
    if split is None:
        raise ValueError("not a database URL; expected dialect://user:password@host:port/database")
    port = split.port_text
    if port:
        if not port.isdigit():
            raise ValueError(f"the port '{port}' is not a number")
        if not 0 < int(port) < 65536:
            raise ValueError(f"the port {port} is out of range (1-65535)")
    try:
        parsed = make_url(f"{split.scheme}://{split.rest}")
    except (ArgumentError, ValueError):
        raise ValueError(
            "not a database URL; expected dialect://user:password@host:port/database"
        ) from None
    if split.username is None:
        return parsed
    password = None if split.password is None else unquote(split.password)
    return parsed.set(username=unquote(split.username), password=password)


def _mask(text: str) -> _Masking:
    text = text.strip()  # as parse_url reads it
    split = SplitUrl.of(text)
    if split is None:
        if is_keyword_dsn(text):
            return _mask_keyword_pairs(text)
        # neither a URL nor key=value pairs: no telling where a password is in it
        return _Masking(MASK, [text])
    masking = _Masking(f"{split.scheme}://")
    if split.username is not None:
        masking.text += split.username
        if split.password is not None:
            masking.text += f":{MASK}"
            masking.hidden.append(split.password)
        masking.text += "@"
    location, question, query = split.rest.partition("?")
    masking.text += location
    if question:
        masked_query = _mask_query(query)
        masking.text += "?" + masked_query.text
        masking.hidden += masked_query.hidden
    return masking


def _mask_query(query: str) -> _Masking:
    masking = _Masking("")
    pieces = []
    for piece in re.split(r"(&)", query):  # as parse_qsl (and so SQLAlchemy) splits it
        key, equals, value = piece.partition("=")
        if equals and value and is_secret_key(unquote_plus(key)):
            masking.hidden.append(value)
            piece = f"{key}={MASK}"
        pieces.append(piece)
    masking.text = "".join(pieces)
    return masking


def _mask_keyword_pairs(text: str) -> _Masking:
    masking = _Masking("")

    def hide(match: re.Match[str]) -> str:
        key, value = match.group(1), match.group(2)
        if not is_secret_key(key) or not value:
            return match.group(0)
        masking.hidden.append(value)
        if value.startswith("'"):
            masking.hidden.append(value.strip("'"))
        return f"{key}={MASK}"

    masking.text = _KEYWORD_PAIR.sub(hide, text)
    return masking


def _unescape_libpq(value: str) -> str:
    """A libpq value as the server sees it: quotes removed, ``\\'`` and ``\\\\`` unescaped."""
    if value.startswith("'"):
        value = value[1:-1] if value.endswith("'") and len(value) > 1 else value[1:]
    return re.sub(r"\\(.)", r"\1", value)
