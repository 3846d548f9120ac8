"""Every CLI command is documented in the README and has help text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from batchpilot.cli.app import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def command_paths(command: Any, prefix: str = "batchpilot") -> list[str]:
    if getattr(command, "commands", None):
        paths = []
        for name, sub in command.commands.items():
            paths += command_paths(sub, f"{prefix} {name}")
        return paths
    return [prefix]


def test_every_command_is_in_the_readme_and_has_help():
    root = typer.main.get_command(app)
    paths = command_paths(root)
    assert len(paths) >= 12
    missing = [p for p in paths if p not in README]
    assert missing == []
    for path in paths:
        command = root
        for part in path.split()[1:]:
            command = command.commands[part]
        assert (command.help or "").strip(), f"{path} has no help text"
