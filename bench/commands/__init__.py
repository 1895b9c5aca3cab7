"""The `bench` verbs, one module each, and the cell formatting and output-path check they share."""

import os
from pathlib import Path

from bench.errors import BenchError


def number(x: float | None, spec: str) -> str:
    """A table cell: `x` formatted with `spec`, or "-" when it could not be measured."""
    return "-" if x is None else format(x, spec)


def percent(share: float | None, spec: str) -> str:
    """A share as a percentage number without the sign ("-" when it could not be measured)."""
    return number(None if share is None else 100 * share, spec)


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> None:
    """Refuse an output path before any work (`bench perf --json` measures for minutes first): the path must
    be a regular file (`folder`: a folder) or not exist yet, and its nearest existing parent a folder this
    user may write to (the writers create the missing ones)."""
    target = Path(path)
    kind = "folder" if folder else "file"
    if target.exists() or target.is_symlink():
        if not (target.is_dir() if folder else target.is_file()):
            raise BenchError(f"{option} {target}: not a {'folder' if folder else 'regular file'}; choose "
                             f"another {kind} path for {option}")
        if folder:
            if not os.access(target, os.W_OK | os.X_OK):
                raise BenchError(f"{option} {target}: this user cannot write into it; choose another folder")
            return
    parent = target.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"{option} {target}: {parent} is not a folder; choose another {kind} path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BenchError(f"{option} {target}: this user cannot write in {parent}; choose another {kind} path")
