"""The exceptions batchpilot raises, all under one root.

::

    BatchpilotError
    ├── SpecError                 a pipeline file or object is invalid (CLI exit code 2)
    │   ├── SpecErrors            several SpecErrors found in one file
    │   ├── TemplateRenderError   a config template does not render (``field`` says where)
    │   ├── SlotRangeError        a backfill range that holds no slot, or too many
    │   └── SettingsFileError     the home's settings.yaml is invalid (file, field, value)
    ├── StepError                 a step failed while running
    │   └── PermanentStepError    bad data: retrying cannot help, so it is not retried
    ├── ConnectionError           an unknown or unreachable connection
    ├── StoreError                the state store cannot be read or written
    │   ├── RunNotFound           no run has that id
    │   ├── AlertNotFound         no alert episode has that id
    │   └── RunStateError         the run is in a state that does not allow the action
    │       └── RunTakenOver      another process took over the run this one drove
    ├── ArtifactError             a dataset between steps is missing or unreadable
    ├── S3UrlError                an s3:// URL or an S3 endpoint setting cannot be used
    ├── RemoteLogsError           attempt logs shipped to S3 cannot be read
    ├── NotifyError               notifications: a channel or a message is wrong, or a send failed
    │   ├── ChannelConfigError    a channel URL is malformed, of an unknown kind or lacks a field
    │   ├── UnknownChannel        no channel has that name
    │   ├── InvalidMessage        a notification message lacks what every channel needs
    │   └── DeliveryError         one send failed (``permanent`` when retrying cannot help)
    ├── TokenError                an API token's name, scope or expiry is wrong, or unknown
    ├── ActionUnavailable         this server cannot carry out a dashboard action (no worker pool)
    ├── MonitorError              watching pipelines: statistics, metrics, retention
    │   ├── UnknownPipeline       the state store knows no pipeline of that name
    │   └── RetentionError        a run's files could not be deleted
    ├── AddressInUse              ``serve`` cannot listen: another process holds the port
    ├── WorkerStartError          no worker process could be started for a run
    ├── RunNotFollowed            a run goes on elsewhere (Airflow), no longer followed here
    │                             (``lost``: the place stopped answering, not a Ctrl-C)
    └── RunInterrupted            Ctrl-C or SIGTERM stopped a run; it can be resumed

Every error carries its context as attributes and reads as a sentence a user
can act on; :func:`first_line` gives the one line ``runs show`` and the store's
messages print.
"""

from __future__ import annotations

from pathlib import Path

#: longest one-line reason kept for a task (the attempt's log has the whole text)
MAX_ERROR_CHARS = 500


def first_line(exc: BaseException, *, driver: bool = False, limit: int = MAX_ERROR_CHARS) -> str:
    """The first line of an error's message, at most ``limit`` characters.

    Errors of ours read as a sentence already; any other error is prefixed
    with its type (``KeyError: 'x'``), or is just its type when it has no
    message. With ``driver=True`` (a database driver's error, as the state
    store reports it) the driver's own text is shown, unwrapped from
    SQLAlchemy and without the type.
    """
    text = str((getattr(exc, "orig", None) if driver else None) or exc).strip()
    line = text.splitlines()[0] if text else ""
    if driver:
        return (line or type(exc).__name__)[:limit]
    if not isinstance(exc, BatchpilotError):
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line[:limit]


class BatchpilotError(Exception):
    """Root of every error batchpilot raises on purpose."""


class SpecError(BatchpilotError):
    """A pipeline definition is invalid; names the file, node and field when known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        node_id: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = message
        self.path = str(path) if path is not None else None
        self.node_id = node_id
        self.field = field
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(f"{self.path}:{self.line}" if self.line else self.path)
        if self.node_id:
            where.append(f"node '{self.node_id}'")
        if self.field:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason

    def with_path(self, path: str | Path) -> SpecError:
        """Return the same error located in ``path`` (when it had no file yet)."""
        if self.path is not None:
            return self
        return SpecError(
            self.reason, path=path, node_id=self.node_id, field=self.field, line=self.line
        )


class SpecErrors(SpecError):
    """Several problems found in one pipeline definition; ``errors`` lists them all."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def _render(self) -> str:
        return self.reason


class SettingsFileError(SpecError):
    """``settings.yaml`` in the batchpilot home is invalid; names the file, the field and
    the value (CLI exit code 2, like a pipeline file)."""


class TemplateRenderError(SpecError):
    """A template in a config could not be rendered; ``field`` says where (``sql``,
    ``params.day``…), and the caller adds the file and node."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)

    def _render(self) -> str:
        return self.reason


class SlotRangeError(SpecError):
    """A range of dates that holds no slot of the schedule (or more than allowed);
    ``start``/``end`` name the range as given."""

    def __init__(self, message: str, *, start: str, end: str) -> None:
        self.start = start
        self.end = end
        super().__init__(message)


class StepError(BatchpilotError):
    """A step failed; the engine retries it according to the task's policy."""


class PermanentStepError(StepError):
    """A failure that retrying cannot fix (bad data, a rule violated): never retried."""


class ConnectionError(BatchpilotError):
    """A named connection is unknown, malformed or unreachable."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        self.name = name
        super().__init__(message)


class StoreError(BatchpilotError):
    """The state store cannot be opened, migrated, read or written."""


class RunNotFound(StoreError):
    """No run has the given id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id '{run_id}' (see 'batchpilot runs list')")


class AlertNotFound(StoreError):
    """No alert episode has the given id."""

    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(f"no alert with id {alert_id} (see 'batchpilot alerts list')")


class RunStateError(StoreError):
    """The run's state does not allow what was asked (resume a running run, say)."""

    def __init__(self, message: str, *, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(message)


class RunTakenOver(RunStateError):
    """Another process took the run over while this one drove it (its heartbeat had
    gone stale, e.g. the process was paused): this one must stop and record nothing."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id} was taken over by another process while this one was paused or cut "
            "off from the state store; this process stopped its tasks and left the run to it",
            run_id=run_id,
        )


class ArtifactError(BatchpilotError):
    """A dataset passed between steps is missing or cannot be read."""


class S3UrlError(BatchpilotError):
    """An ``s3://`` URL or an S3 endpoint in ``variable`` cannot be used (``value`` is
    shown with any secret masked)."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        self.variable = variable
        self.value = value
        super().__init__(f"{variable}={value!r} {problem}")


class RemoteLogsError(BatchpilotError):
    """Attempt logs shipped to S3-compatible storage cannot be read (the storage is
    unreachable or refuses)."""


class RunInterrupted(BatchpilotError):
    """The run was stopped by a signal; it can be resumed."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} was interrupted; continue it with: batchpilot resume {run_id}"
        )


class RunNotFollowed(BatchpilotError):
    """A run that executes elsewhere (on Airflow) goes on there, but this process stopped
    following it: on request (Ctrl-C, SIGTERM), or ``lost`` (the place stopped answering,
    refused the login, or no longer knows the run). Subclassed by each remote executor."""

    #: True when following failed (Airflow unreachable…), False when it was stopped on request
    lost: bool = False

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(message)


class MonitorError(BatchpilotError):
    """Statistics, metrics or retention cannot do what was asked."""


class UnknownPipeline(MonitorError):
    """No run or schedule of that pipeline is in the state store."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        super().__init__(
            f"unknown pipeline '{name}': the state store has no run of it"
            + (f" (pipelines with runs: {listed})" if known else " (it holds no runs yet)")
        )


class RetentionError(MonitorError):
    """Deleting an old run's files failed; its rows are kept, so cleaning again retries."""

    def __init__(self, message: str, *, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(message)


class NotifyError(BatchpilotError):
    """A notification channel or message is wrong, or a message could not be sent.

    Messages never carry a password, a webhook secret or a secret webhook path.
    """

    def __init__(self, message: str, *, channel: str | None = None) -> None:
        self.channel = channel
        super().__init__(message)


class ChannelConfigError(NotifyError):
    """A channel URL is malformed, has an unknown scheme or lacks a field (``field``)."""

    def __init__(
        self, message: str, *, channel: str, field: str | None = None, origin: str | None = None
    ) -> None:
        self.field = field
        self.origin = origin
        where = f"channel '{channel}'" + (f" ({origin})" if origin else "")
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}", channel=channel)


class UnknownChannel(NotifyError):
    """No channel has the given name."""


class InvalidMessage(NotifyError):
    """A notification message lacks what every channel needs (a title, a key)."""


class DeliveryError(NotifyError):
    """One attempt to send a message failed.

    ``permanent`` is True when sending the same message again cannot succeed
    (the server refused it: an HTTP 4xx, an SMTP 5xx); ``unreachable`` is True
    when the channel could not be reached at all (refused, timed out), so the
    deliverer stops trying that channel for the round.
    """

    def __init__(
        self, message: str, *, channel: str, permanent: bool = False, unreachable: bool = False
    ) -> None:
        self.permanent = permanent
        self.unreachable = unreachable
        super().__init__(message, channel=channel)


class TokenError(BatchpilotError):
    """An API token's name, scope or expiry is wrong, its name is taken, or no token has it."""


class ActionUnavailable(BatchpilotError):
    """The server hosting the dashboard has no way to carry out an action (no worker pool
    to run a retry in, say): the message says what to use instead."""

    def __init__(self, message: str, *, action: str, run_id: str) -> None:
        self.action = action
        self.run_id = run_id
        super().__init__(message)


class AddressInUse(BatchpilotError):
    """``serve``'s HTTP address is taken (or cannot be bound); names host and port."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        super().__init__(f"cannot serve HTTP on {host}:{port}: {reason} (pick another with --port)")


class WorkerStartError(BatchpilotError):
    """A run's worker process could not be started (its fork server is gone and did not
    start again); the run stays queued."""

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"cannot start a worker process for run {run_id}: {reason}; the run stays queued "
            "and is tried again (check the machine's free memory and process limit)"
        )


__all__ = [
    "ActionUnavailable",
    "AddressInUse",
    "AlertNotFound",
    "ArtifactError",
    "BatchpilotError",
    "ChannelConfigError",
    "ConnectionError",
    "DeliveryError",
    "InvalidMessage",
    "NotifyError",
    "PermanentStepError",
    "RunInterrupted",
    "RunNotFollowed",
    "RunNotFound",
    "RunStateError",
    "RunTakenOver",
    "SlotRangeError",
    "SpecError",
    "SpecErrors",
    "StepError",
    "StoreError",
    "TemplateRenderError",
    "TokenError",
    "UnknownChannel",
    "WorkerStartError",
    "first_line",
]
