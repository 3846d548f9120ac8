"""Where a step may write: a rendered output path must resolve under an allowed root.

The roots are the pipeline's folder, the batchpilot home and the folders named
by ``BATCHPILOT_OUTPUT_ROOTS`` (read at the edge by :mod:`batchpilot.settings`).
Symbolic links are resolved before the check, so a link inside a root that
points elsewhere does not open a way out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: the environment variable holding extra output roots, separated by :data:`os.pathsep`
OUTPUT_ROOTS_VARIABLE = "BATCHPILOT_OUTPUT_ROOTS"


class OutputPathError(ValueError):
    """A path resolves outside every allowed output root; the message names both."""


def check_output_path(path: str, roots: Sequence[Path]) -> Path:
    """Return ``path`` resolved (symlinks followed, relative to the working folder).

    Raises :class:`OutputPathError` naming the resolved path and the roots when it
    lies under none of ``roots``.
    """
    resolved = Path(os.path.realpath(path))
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    if any(resolved == root or resolved.is_relative_to(root) for root in real_roots):
        return resolved
    allowed = ", ".join(str(root) for root in real_roots) or "none"
    raise OutputPathError(
        f"writes to {resolved}, which is outside the folders a pipeline may write to "
        f"({allowed}); write under one of them, or add a folder to {OUTPUT_ROOTS_VARIABLE} "
        f"(folders separated by '{os.pathsep}')"
    )
