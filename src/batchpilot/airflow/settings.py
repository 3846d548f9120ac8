"""Settings of the Airflow integration, read once at the edge from ``BATCHPILOT_AIRFLOW_*``.

:class:`AirflowSettings` is the client side (the ``batchpilot`` command);
:class:`WorkerSettings` is what a task needs inside Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchpilot.airflow.errors import AirflowConfigError
from batchpilot.connections import ConnectionRegistry
from batchpilot.s3 import S3Endpoint, parse_s3_url
from batchpilot.url_secrets import SplitUrl, mask_url

ENV_URL = "BATCHPILOT_AIRFLOW_URL"
ENV_USERNAME = "BATCHPILOT_AIRFLOW_USERNAME"
ENV_PASSWORD = "BATCHPILOT_AIRFLOW_PASSWORD"
ENV_DAGS_FOLDER = "BATCHPILOT_AIRFLOW_DAGS_FOLDER"
ENV_ARTIFACTS = "BATCHPILOT_AIRFLOW_ARTIFACTS"
ENV_PARSE_TIMEOUT = "BATCHPILOT_AIRFLOW_PARSE_TIMEOUT"

DEFAULT_PARSE_TIMEOUT_S = 120.0
DEFAULT_POLL_S = 1.0
DEFAULT_HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class AirflowSettings:
    """Where the Airflow API is, how to log in, and where its DAGs folder is."""

    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    dags_folder: Path | None = None
    artifacts: str | None = None
    parse_timeout_s: float = DEFAULT_PARSE_TIMEOUT_S
    poll_s: float = DEFAULT_POLL_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AirflowSettings:
        """Read the ``BATCHPILOT_AIRFLOW_*`` variables; raises :class:`AirflowConfigError`
        (also for a URL holding a password or token, shown masked)."""
        env = os.environ if environ is None else environ
        timeout_text = env.get(ENV_PARSE_TIMEOUT)
        try:
            timeout = float(timeout_text) if timeout_text else DEFAULT_PARSE_TIMEOUT_S
        except ValueError:
            raise AirflowConfigError(
                f"{ENV_PARSE_TIMEOUT} must be a number of seconds, got {timeout_text!r}"
            ) from None
        folder = env.get(ENV_DAGS_FOLDER)
        url = (env.get(ENV_URL) or "").rstrip("/") or None
        if url and SplitUrl.of(url) is not None and mask_url(url) != url:
            # the client names its URL in messages; a secret must not ride along
            raise AirflowConfigError(
                f"{ENV_URL} must not hold a password or token (got {mask_url(url)}); "
                f"set {ENV_USERNAME} and {ENV_PASSWORD} instead"
            )
        return cls(
            url=url,
            username=env.get(ENV_USERNAME) or None,
            password=env.get(ENV_PASSWORD) or None,
            dags_folder=Path(folder).expanduser() if folder else None,
            artifacts=env.get(ENV_ARTIFACTS) or None,
            parse_timeout_s=timeout,
        )

    def require_api(self) -> tuple[str, str, str]:
        """Return (url, username, password).

        Raises :class:`AirflowConfigError` naming every variable that is missing.
        """
        missing = [
            name
            for name, value in (
                (ENV_URL, self.url),
                (ENV_USERNAME, self.username),
                (ENV_PASSWORD, self.password),
            )
            if not value
        ]
        if missing:
            raise AirflowConfigError(f"set {', '.join(missing)} to talk to Airflow")
        assert self.url and self.username and self.password
        return self.url, self.username, self.password

    def require_dags_folder(self) -> Path:
        """The DAGs folder to deploy into; raises :class:`AirflowConfigError` if unset or absent."""
        if self.dags_folder is None:
            raise AirflowConfigError(
                f"set {ENV_DAGS_FOLDER} to the DAGs folder of your Airflow deployment"
            )
        if not self.dags_folder.is_dir():
            raise AirflowConfigError(f"{ENV_DAGS_FOLDER}={self.dags_folder} is not a folder")
        return self.dags_folder


@dataclass(frozen=True)
class WorkerSettings:
    """What a batchpilot task running inside Airflow reads from its environment."""

    #: a shared folder, or an ``s3://bucket/prefix`` URL (then reached through ``s3_endpoint``)
    artifacts_root: Path | str
    connections: ConnectionRegistry
    s3_endpoint: S3Endpoint = field(default_factory=S3Endpoint)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, artifacts: str | None = None
    ) -> WorkerSettings:
        """Artifacts go to ``artifacts`` (set at export), else ``$BATCHPILOT_AIRFLOW_ARTIFACTS``,
        else ``$AIRFLOW_HOME/batchpilot-artifacts``; an ``s3://`` URL is reached through
        the AWS variables (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION, and the
        SDK's credentials). Connections are the worker's ``BATCHPILOT_CONN_*`` variables
        and ``$BATCHPILOT_HOME/connections.yaml``. Raises :class:`S3UrlError` for an
        ``s3://`` URL or endpoint that cannot be used."""
        env = os.environ if environ is None else environ
        airflow_home = Path(env.get("AIRFLOW_HOME") or Path.home() / "airflow")
        root = artifacts or env.get(ENV_ARTIFACTS) or str(airflow_home / "batchpilot-artifacts")
        home = Path(env.get("BATCHPILOT_HOME") or Path.home() / ".batchpilot").expanduser()
        connections = ConnectionRegistry.from_sources(env, home)
        if "://" in root:
            variable = "artifacts (set at export)" if artifacts else ENV_ARTIFACTS
            url = parse_s3_url(root, variable=variable)
            return cls(str(url), connections, s3_endpoint=S3Endpoint.from_env(env))
        return cls(artifacts_root=Path(root).expanduser(), connections=connections)
