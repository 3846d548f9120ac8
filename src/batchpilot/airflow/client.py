"""A small client for the Airflow 3 REST API (``/api/v2``, bearer token from ``/auth/token``).

Standard library only (``urllib``): batchpilot needs a dozen calls, not an
HTTP framework. Every failure becomes an :class:`AirflowError` whose message
names the URL and never the password.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpilot.airflow.errors import (
    AirflowApiError,
    AirflowAuthError,
    AirflowNotFound,
    AirflowUnreachable,
)
from batchpilot.airflow.settings import DEFAULT_HTTP_TIMEOUT_S

PAGE_SIZE = 100


@dataclass(frozen=True)
class TaskInstance:
    """One task instance of a DAG run, as the API reports it."""

    task_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    duration_s: float | None


class AirflowClient:
    """Talks to one Airflow deployment; logs in lazily and again when the token expires."""

    def __init__(
        self, url: str, username: str, password: str, *, timeout_s: float = DEFAULT_HTTP_TIMEOUT_S
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"AirflowClient({self.url!r}, username={self.username!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def login(self) -> None:
        """Get a token; raises :class:`AirflowAuthError` or :class:`AirflowUnreachable`."""
        status, body = self._send(
            "POST", "/auth/token", {"username": self.username, "password": self._password}, None
        )
        if status in (401, 403):
            raise AirflowAuthError(self.url, self.username, status)
        if status >= 400:
            raise AirflowApiError("POST", "/auth/token", status, _detail(body))
        token = (json.loads(body or b"{}") or {}).get("access_token")
        if not token:
            raise AirflowApiError("POST", "/auth/token", status, "no access_token in the answer")
        self._token = token

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``/api/v2{path}`` and return the decoded JSON answer (None for 204).

        Raises :class:`AirflowNotFound` for 404, :class:`AirflowApiError` for
        other error statuses, :class:`AirflowUnreachable` when nothing answers.
        """
        if self._token is None:
            self.login()
        full = "/api/v2" + path
        if query:
            full += "?" + urllib.parse.urlencode(query, doseq=True)
        status, raw = self._send(method, full, body, self._token)
        if status == 401:  # the token expired: log in once more
            self.login()
            status, raw = self._send(method, full, body, self._token)
        if status == 404:
            raise AirflowNotFound(method, path, status, _detail(raw))
        if status in (401, 403):
            raise AirflowAuthError(self.url, self.username, status)
        if status >= 400:
            raise AirflowApiError(method, path, status, _detail(raw))
        return json.loads(raw) if raw else None

    def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None, token: str | None
    ) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except urllib.error.URLError as exc:
            raise AirflowUnreachable(self.url, _reason(exc.reason)) from None
        except TimeoutError:
            raise AirflowUnreachable(self.url, f"no answer within {self.timeout_s:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise AirflowUnreachable(self.url, _reason(exc)) from None

    # -- the calls batchpilot needs -----------------------------------------------------------

    def version(self) -> str:
        """Airflow's version string."""
        return str(self.request("GET", "/version").get("version"))

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as Airflow knows it (``is_paused``, ``last_parsed_time``…), or None."""
        try:
            return self.request("GET", f"/dags/{_q(dag_id)}")
        except AirflowNotFound:
            return None

    def get_dag_details(self, dag_id: str) -> dict[str, Any]:
        """The DAG's details (``file_token``, ``last_parsed``…); raises :class:`AirflowNotFound`."""
        return self.request("GET", f"/dags/{_q(dag_id)}/details")

    def request_reparse(self, file_token: str) -> None:
        """Ask the DAG processor to parse a DAG's file again soon."""
        self.request("PUT", f"/parseDagFile/{_q(file_token)}")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG."""
        self.request("PATCH", f"/dags/{_q(dag_id)}", {"is_paused": paused})

    def import_errors(self, file_name: str) -> list[dict[str, Any]]:
        """Import errors of DAG files whose name contains ``file_name``, newest first."""
        answer = self.request(
            "GET",
            "/importErrors",
            query={"filename_pattern": file_name, "limit": PAGE_SIZE, "order_by": "-timestamp"},
        )
        return list(answer.get("import_errors") or [])

    def trigger(
        self,
        dag_id: str,
        *,
        run_id: str,
        conf: Mapping[str, Any],
        logical_date: str | None = None,
    ) -> dict[str, Any]:
        """Start a DAG run with this id and conf; returns the DAG run."""
        return self.request(
            "POST",
            f"/dags/{_q(dag_id)}/dagRuns",
            {"dag_run_id": run_id, "logical_date": logical_date, "conf": dict(conf)},
        )

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run (``state``, ``start_date``, ``end_date``…)."""
        return self.request("GET", f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def set_dag_run_state(self, dag_id: str, run_id: str, state: str) -> dict[str, Any]:
        """Mark a DAG run ``failed``, ``success`` or ``queued`` (cancel = failed)."""
        return self.request("PATCH", f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}", {"state": state})

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """Every task instance of a DAG run (paged by 100)."""
        found: list[TaskInstance] = []
        offset = 0
        while True:
            answer = self.request(
                "GET",
                f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances",
                query={"limit": PAGE_SIZE, "offset": offset},
            )
            page = answer.get("task_instances") or []
            for item in page:
                found.append(
                    TaskInstance(
                        task_id=item["task_id"],
                        state=item.get("state"),
                        try_number=int(item.get("try_number") or 0),
                        start_date=_date(item.get("start_date")),
                        end_date=_date(item.get("end_date")),
                        duration_s=item.get("duration"),
                    )
                )
            offset += len(page)
            if not page or offset >= int(answer.get("total_entries") or 0):
                return found

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (None if it has none)."""
        try:
            answer = self.request(
                "GET",
                f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
                f"/xcomEntries/{_q(key)}",
                query={"deserialize": "true", "stringify": "false"},
            )
        except AirflowNotFound:
            return None
        return answer.get("value")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
        """The lines of one try's log, as Airflow's log reader renders them."""
        lines: list[str] = []
        token: str | None = None
        for _ in range(100):  # a log arrives in chunks; stop on the last one
            query: dict[str, Any] = {"full_content": "true"}
            if token:
                query["token"] = token
            answer = self.request(
                "GET",
                f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
                f"/logs/{try_number}",
                query=query,
            )
            lines.extend(_log_line(item) for item in answer.get("content") or [])
            next_token = answer.get("continuation_token")
            if not next_token or next_token == token:
                break
            token = next_token
        return lines


def _log_line(item: Any) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, Mapping):
        return str(item)
    parts = [str(item[k]) for k in ("timestamp", "level") if item.get(k)]
    event = str(item.get("event", ""))
    line = " ".join([*parts, event])
    extra = item.get("error_detail")
    if extra:
        line += "\n" + json.dumps(extra, indent=1, default=str)
    return line


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _date(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _detail(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300] or "no details"
    detail = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(detail, list | dict):
        detail = json.dumps(detail)
    return str(detail)[:300]


def _reason(reason: object) -> str:
    text = str(getattr(reason, "strerror", None) or reason)
    return text.strip() or type(reason).__name__
