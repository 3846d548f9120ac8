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
    """Runs ``python -m batchpilot`` with this test's BATCHPILOT_* environment."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHPILOT_")}
        self.env["BATCHPILOT_HOME"] = str(home)
        self.cwd = cwd

    def __call__(self, *args: str, timeout: float = 120) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "batchpilot", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
