"""Pipelines and Python steps the live API tests run under a real ``serve``."""

from __future__ import annotations

from pathlib import Path

HELPERS = '''
import time
from pathlib import Path


def fail_once(params):
    """Fails the first time (a marker file remembers), succeeds after."""
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("the first attempt fails on purpose")


def chatty(log):
    """Logs a line a second, three times."""
    for i in range(3):
        log.info("chatty line %d", i)
        time.sleep(1)


def slow_once(params):
    """Sleeps a minute the first time (a marker remembers), returns at once after."""
    marker = Path(params["marker"])
    if marker.exists():
        return None
    marker.write_text("started")
    time.sleep(60)


def noop():
    return None


def boom():
    raise RuntimeError("boom")


def undo(params):
    Path(params["marker"]).write_text("undone")
'''

MARKER = "params:\n  marker: {type: string, default: ''}\n"

PIPELINES = {
    "hello": """\
name: hello
params:
  n: {type: integer, default: 1}
nodes:
  - {id: a, type: empty}
  - {id: b, type: empty, depends_on: [a]}
""",
    "flaky": f"""\
name: flaky
{MARKER}nodes:
  - {{id: first, type: empty}}
  - {{id: shaky, type: python, depends_on: [first], config: {{callable: "helpers:fail_once"}}}}
""",
    "chatty": """\
name: chatty
nodes:
  - {id: talk, type: python, config: {callable: "helpers:chatty"}}
""",
    "slow": f"""\
name: slow
{MARKER}nodes:
  - {{id: nap, type: python, config: {{callable: "helpers:slow_once"}}}}
""",
    "saga": f"""\
name: saga
compensation: manual
{MARKER}nodes:
  - id: done
    type: python
    config: {{callable: "helpers:noop"}}
    compensate: {{type: python, config: {{callable: "helpers:undo"}}}}
  - {{id: fails, type: python, depends_on: [done], config: {{callable: "helpers:boom"}}}}
""",
    "yearly": """\
name: yearly
schedule: {cron: "0 0 1 1 *", timezone: UTC, catchup: none}
nodes:
  - {id: a, type: empty}
""",
    "sleepy_sql": """\
name: sleepy_sql
nodes:
  - {id: sleep, type: sql, config: {connection: dwh, sql: "SELECT pg_sleep(60)"}}
""",
}


def write_pipelines(folder: Path, *names: str) -> Path:
    """Write the named pipelines (all by default) and their helpers under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "helpers.py").write_text(HELPERS)
    for name in names or PIPELINES:
        (folder / f"{name}.yaml").write_text(PIPELINES[name])
    return folder
