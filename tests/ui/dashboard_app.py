"""A small server hosting the dashboard for the tests, as ``serve`` will host it.

``python -m tests.ui.dashboard_app PORT PIPELINES_DIR`` (settings from
``BATCHPILOT_*``) serves the dashboard on 127.0.0.1:PORT with uvicorn. Runs the
dashboard hands over (a retry, a triggered run) execute in worker processes
``python -m batchpilot.scheduler.worker RUN_ID``, each in its own process
group, as serve's supervisor starts them; this server's process group is
killed by the tests, workers included via their recorded pids.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from batchpilot.engine import RunService
from batchpilot.errors import ActionUnavailable
from batchpilot.scheduler.catalog import CatalogEntry, PipelineCatalog
from batchpilot.scheduler.supervisor import WORKER_MODULE
from batchpilot.settings import Settings
from batchpilot.store import RunStore
from batchpilot.ui import DashboardContext, DashboardSettings, mount_dashboard
from batchpilot.ui.actions import RunAction


class WorkerDispatch:
    """Starts a worker process per run handed over; records their pids in ``pid_file``."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    def __call__(self, action: RunAction, run_id: str) -> None:
        if action not in (RunAction.RETRY, RunAction.RESUME, RunAction.EXECUTE):
            raise ActionUnavailable(
                f"the test server cannot {action.value} in a worker", action=action, run_id=run_id
            )
        process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, run_id],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self.pid_file.open("a") as pids:
            pids.write(f"{process.pid}\n")


def build_app(settings: Settings, pipelines: Path, pid_file: Path) -> FastAPI:
    """The dashboard at ``/`` over the home's store and the pipelines under ``pipelines``."""
    store = RunStore.for_home(settings.home, settings.database_url)
    catalog = PipelineCatalog(pipelines, settings=settings)

    def entries() -> list[CatalogEntry]:
        catalog.refresh()
        return catalog.entries()

    context = DashboardContext(
        store=store,
        service=RunService(settings=settings, store=store),
        settings=DashboardSettings.from_env(),
        pipelines=entries,
        dispatch=WorkerDispatch(pid_file),
    )
    app = FastAPI()
    mount_dashboard(app, context)
    return app


def main() -> None:
    port, pipelines = int(sys.argv[1]), Path(sys.argv[2])
    settings = Settings.from_env()
    app = build_app(settings, pipelines, settings.home / "test-worker-pids")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
