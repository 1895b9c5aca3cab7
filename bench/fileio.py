"""File I/O on the bottom floor of the suite: atomic writes, the suite's temporaries, hashing, JSON reads and
folder locks (docs/DESIGN.md "Store", "Locks and temporaries"). It imports only the standard library and
`bench.errors`, so every room above (data/, the store, reports, infer) can write through it.

Every file the suite writes goes through `atomic_write_bytes` (or its wrappers): the bytes land in a
temporary file in the same folder, are fsynced, and replace the target with `os.replace`, so a crash or a
SIGKILL at any point leaves either the old file or the new one, never a half-written one.

Temporaries carry the suite's own tag (`.<name>.bench-<random>.tmp`), and a killed write's leftovers are
removed only by that exact pattern, only in the folders a verb is about to write (`clean_temporaries`),
holding that folder's lock; never by a recursive search, so a user's `.session.tmp` or a folder reached
through a symlink is never touched. A folder that cannot take its lock (read-only, below a file) is a
one-line error naming the folder; readers never lock, so a read-only store still serves finished runs.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.errors import BenchError

TMP_SUFFIX = ".tmp"  # suffix of in-flight atomic writes: `.<name>.bench-<random>.tmp` beside the target
TMP_TAG = ".bench-"  # between the target's name and the random part: marks the suite's own temporaries
_TEMPORARY = re.compile(r"\..+\.bench-[a-z0-9_]+\.tmp(\.[a-z0-9]+)?")  # what clean_temporaries removes


class WriteFailed(BenchError, OSError):
    """A write that the system refused (full disk, permissions); the previous file is intact."""


def temporary_prefix(path: Path | str) -> str:
    """Name prefix of the suite's temporaries for target `path` (`.<name>.bench-`)."""
    return f".{Path(path).name}{TMP_TAG}"


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename).

    A refused write raises `WriteFailed`, a one-line error naming the file, after removing the temporary.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise _write_failed(path, err) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):
            raise _write_failed(path, err) from None
        raise
    return path


def _write_failed(path: Path, err: OSError) -> WriteFailed:
    reason = err.strerror or str(err) or type(err).__name__
    failure = WriteFailed(f"{path}: cannot write ({reason.lower()}); the previous version is left intact; "
                          "free disk space (or fix permissions) and rerun the same command")
    failure.errno, failure.strerror = err.errno, err.strerror
    return failure


def clean_temporaries(folder: Path | str) -> int:
    """Remove the suite's temporaries (`.<name>.bench-<random>.tmp`) that writes killed mid-way left
    directly in `folder`: not in its subfolders, never through a symlink, never another program's `.tmp`.
    Call it holding the folder's lock, so no live writer owns them; returns how many were removed."""
    folder = Path(folder)
    removed = 0
    try:
        entries = list(os.scandir(folder)) if folder.is_dir() and not folder.is_symlink() else []
    except OSError:
        return 0
    for entry in entries:
        if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> Path:
    """JSON with sorted keys and a trailing newline, so equal content gives equal bytes."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_torch_save(path: Path | str, obj: Any) -> Path:
    """`torch.save` through an in-memory buffer, then an atomic write."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 10) -> str:
    """Short hex digest of a JSON-able object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def read_json(path: Path | str) -> Any | None:
    """The JSON in `path`, or None when it is missing or unreadable (a stage folder being written)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


class FolderLock:
    """An exclusive `fcntl.flock` on `<folder>/.lock`, so two processes on one run (or one cached stage, one
    prepared set, one output folder) take turns instead of interleaving writes. The kernel drops the lock
    when the holder dies (SIGKILL included), so a killed run never leaves a stale lock behind.

    Taking the lock also removes the suite's temporaries that a killed writer left in the folder itself and
    in `places` (subfolders it writes, relative to it; known places only, never a recursive search). A folder
    that cannot hold a lock (read-only, or a path below a file) is a one-line error ending with `hint`; with
    `readonly_ok`, a read-only folder is entered unlocked instead and `held` is False, for callers that only
    read unless they hold it."""

    def __init__(self, folder: Path | str, wait: bool = True, on_wait: Any = None,
                 places: Iterable[str] = (), hint: str = "choose a folder you can write to",
                 readonly_ok: bool = False) -> None:
        self.path = Path(folder) / ".lock"
        self.wait = wait
        self.on_wait = on_wait  # called once with the lock path when another process holds it
        self.places = tuple(places)
        self.hint = hint
        self.readonly_ok = readonly_ok
        self.held = False
        self._fh: Any = None

    def __enter__(self) -> FolderLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")
        except OSError as err:
            if self.readonly_ok and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return self  # readers go on unlocked: writes are atomic, so what they read is whole
            reason = (err.strerror or type(err).__name__).lower()
            raise BenchError(f"{self.path.parent}: cannot lock this folder ({reason}); {self.hint}") from None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                self._fh.close()
                raise BenchError(f"{self.path.parent} is in use by another bench process; wait for it "
                                 "to finish and rerun") from None
            if self.on_wait is not None:
                self.on_wait(self.path)
            fcntl.flock(self._fh, fcntl.LOCK_EX)
        self.held = True
        # Holding the lock, no live writer is in this folder: what a killed one left half-written goes.
        for place in (".", *self.places):
            clean_temporaries(self.path.parent / place)
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        self.held = False
