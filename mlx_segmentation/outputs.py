"""Output files of the command lines, refused before any work when they cannot be written."""

from __future__ import annotations

import os
from pathlib import Path


def check_output_file(path: Path | None) -> None:
    """Refuse, before any work, an output file that cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: the folder {parent} is not writable")
