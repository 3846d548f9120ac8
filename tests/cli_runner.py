"""Drive the real ``batchpilot`` command in a subprocess (the ``cli`` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``python -m batchpilot`` with this test's BATCHPILOT_* environment.

    ``in_process=True`` calls the same Typer app inside the test process (no
    interpreter start-up, ~1.5 s saved per call) for tests of argument and
    input handling; runs, kills and signals always use a real subprocess.
    """

    def __init__(self, home: Path, cwd: Path, *, in_process: bool = False) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
        self.env["BATCHPILOT_HOME"] = str(home)
        self.cwd = cwd
        self.in_process = in_process

    def in_process_twin(self) -> Cli:
        """The same commands with this one's environment (its home, its connections),
        called in the test process: for polls while a real ``batchpilot`` process runs,
        which need no interpreter start-up each."""
        twin = Cli(Path(self.env["BATCHPILOT_HOME"]), self.cwd, in_process=True)
        twin.env = self.env
        return twin

    def __call__(self, *args: str, timeout: float = 120) -> CliResult:
        if self.in_process:
            return self._invoke(args)
        proc = subprocess.run(
            [sys.executable, "-m", "batchpilot", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def _invoke(self, args: tuple[str, ...]) -> CliResult:
        from typer.testing import CliRunner

        from batchpilot.cli.app import app

        env = {k: None for k in os.environ if k.startswith("BATCHPILOT_")}
        env.update({k: v for k, v in self.env.items() if k.startswith("BATCHPILOT_")})
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)
