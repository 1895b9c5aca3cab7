"""Output folders shared with the user's files (docs/DESIGN.md "Output folders"): a verb writing beside the
user's files (`bench report --out`, `bench infer --out`) does so through `OutputFolder`:
`.bench-outputs.json` lists each file it wrote with the sha256 of the bytes; it replaces or deletes a file
only when that record proves the file is its own, and never writes through a symlink or outside the folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from bench.errors import BenchError
from bench.fileio import (
    TMP_SUFFIX,
    FolderLock,
    atomic_write_bytes,
    atomic_write_json,
    clean_temporaries,
    read_json,
    sha256_file,
    temporary_prefix,
)

OUTPUTS = ".bench-outputs.json"  # in an output folder: the files each verb wrote there, with their sha256
OUTPUTS_FORMAT = "bench-outputs/1"


class OutputFolder:
    """A folder a verb writes into beside files that are not its own (`bench report --out`, `bench infer
    --out`): it replaces or deletes only what it can prove it wrote.

    Proof is `.bench-outputs.json`: for each file a verb wrote, the verb and the sha256 of the bytes. A file
    is the verb's when it is listed for that verb and still holds those bytes; a file that is not (the
    user's, another verb's, or one the user edited since) is never replaced (`write` refuses with a one-line
    error) nor deleted (`remove_stale` skips it). Claims are recorded before the bytes are written and keep
    the previous digest, so after a kill between the two the file is provably the verb's either way. Every
    path stays inside the folder: no `..`, no absolute path, no symlink on the way. Used as a context
    manager, it holds the folder's lock and clears the suite's temporaries in each subfolder it writes.
    """

    def __init__(self, folder: Path | str, verb: str, option: str = "--out") -> None:
        self.folder = Path(folder)
        self.verb = verb
        self.option = option
        self._files: dict[str, dict] | None = None  # rel path -> {"verb": str, "sha256": [hex, ...]}
        self._written: set[str] = set()
        self._cleaned: set[Path] = set()
        self._dirty = False
        self._lock = FolderLock(self.folder, hint=f"choose another {option}")

    def __enter__(self) -> OutputFolder:
        if self.folder.exists() and not self.folder.is_dir():
            raise BenchError(f"{self.option} {self.folder}: not a folder; choose another {self.option}")
        self._lock.__enter__()
        self._files = None  # reread under the lock: another process may have written since a `check`
        self.files()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.commit()
        finally:
            self._lock.__exit__()

    def files(self) -> dict[str, dict]:
        """The record: rel path -> {"verb", "sha256": [...]}; empty when the folder holds none."""
        if self._files is None:
            where = self.folder / OUTPUTS
            record = read_json(where) if os.path.lexists(where) else {"format": OUTPUTS_FORMAT, "files": {}}
            files = record.get("files") if isinstance(record, dict) else None
            valid = isinstance(files, dict) and record.get("format") == OUTPUTS_FORMAT and all(
                isinstance(e, dict) and isinstance(e.get("sha256"), list) for e in files.values())
            if not valid:
                raise BenchError(f"{where}: not the suite's record of its outputs; move it away or choose "
                                 f"another {self.option}")
            self._files = files
        return self._files

    def rel(self, path: Path | str) -> str:
        """`path` (built from the folder: `folder / ...`) relative to it, as POSIX text; a path that leads
        out of the folder is a one-line error."""
        try:
            pure = PurePosixPath(Path(path).relative_to(self.folder).as_posix())
        except ValueError:
            raise BenchError(f"{path}: outside the output folder {self.folder}") from None
        if not pure.parts or pure.parts == (".",) or ".." in pure.parts:
            raise BenchError(f"{path}: outside the output folder {self.folder}")
        return pure.as_posix()

    def _target(self, rel: str) -> Path:
        """The file at `rel`; a symlink on the way is refused (it could lead out of the folder)."""
        here = self.folder
        for part in PurePosixPath(rel).parts:
            here = here / part
            if here.is_symlink():
                raise BenchError(f"{here}: a symbolic link inside {self.folder}; bench {self.verb} writes "
                                 f"no file through a link: remove it or choose another {self.option}")
        return here

    def owns(self, path: Path | str) -> bool:
        """True when the file at `path` holds bytes this verb recorded writing there."""
        return self._owns(self.rel(path))

    def _owns(self, rel: str) -> bool:
        entry = self.files().get(rel)
        target = self.folder / rel
        if entry is None or entry.get("verb") != self.verb or not target.is_file() or target.is_symlink():
            return False
        return sha256_file(target) in entry["sha256"]

    def check(self, paths: Iterable[Path | str]) -> None:
        """Refuse, before anything is written, when a target is taken by something that is not this verb's
        file (even with the same bytes: a copy the user keeps there must not become the suite's to delete)."""
        for path in paths:
            rel = self.rel(path)
            target = self._target(rel)
            if not os.path.lexists(target) or self._owns(rel):
                continue
            kind = "a folder" if target.is_dir() else "a file"
            raise BenchError(f"{target}: {kind} that bench {self.verb} did not write (or that was changed "
                             f"since) is in the way; it is kept: move it away or choose another "
                             f"{self.option}")

    def claim(self, items: dict[Path, bytes]) -> None:
        """Record, before writing, that these files are about to hold these bytes (one record write)."""
        data = {self.rel(path): payload for path, payload in items.items()}
        self.check([self.folder / rel for rel in data])
        files = self.files()
        for rel, payload in data.items():
            digest = hashlib.sha256(payload).hexdigest()
            keep = files[rel]["sha256"] if self._owns(rel) else []
            files[rel] = {"verb": self.verb, "sha256": sorted(set(keep) | {digest})}
        self._save()

    def write(self, path: Path | str, data: bytes) -> Path:
        """Write `data` to `path` (inside the folder) atomically, once it is provably free or this verb's."""
        rel = self.rel(path)
        digest = hashlib.sha256(data).hexdigest()
        entry = self.files().get(rel)
        if entry is None or entry.get("verb") != self.verb or digest not in entry["sha256"]:
            self.claim({self.folder / rel: data})
        target = self._target(rel)
        if target.parent not in self._cleaned:
            clean_temporaries(target.parent)  # a known place: a folder this verb writes, under its lock
            self._cleaned.add(target.parent)
        atomic_write_bytes(target, data)
        self.files()[rel] = {"verb": self.verb, "sha256": [digest]}
        self._written.add(rel)
        self._dirty = True
        return target

    def scratch(self, path: Path | str, suffix: str = TMP_SUFFIX) -> Path:
        """A temporary file of the suite beside target `path`, for encoders that can only write to a path
        (OpenCV); the caller removes it, and one a killed process left is cleared by the next write here."""
        target = self._target(self.rel(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=suffix, dir=target.parent)
        os.close(fd)
        return Path(tmp)

    def remove_stale(self, select: Callable[[str], bool]) -> list[Path]:
        """Delete this verb's files that `select(rel)` picks and this session did not write, when their
        bytes still match the record; files changed since are kept and dropped from the record (they are
        the user's now). Folders this emptied go too."""
        removed = []
        files = self.files()
        for rel, entry in sorted(files.items()):
            if entry.get("verb") != self.verb or rel in self._written or not select(rel):
                continue
            try:
                target = self._target(rel)
            except BenchError:  # a link appeared on the way: nothing behind it is ours to delete
                target = None
            if target is not None and self._owns(rel):
                target.unlink()
                removed.append(target)
            del files[rel]
            self._dirty = True
        for parent in sorted({p.parent for p in removed}, key=lambda p: len(p.parts), reverse=True):
            while parent != self.folder and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        self.commit()
        return removed

    def commit(self) -> None:
        """Save the record if this session changed it."""
        if self._dirty:
            self._save()

    def _save(self) -> None:
        atomic_write_json(self.folder / OUTPUTS, {"format": OUTPUTS_FORMAT, "files": self.files()})
        self._dirty = False
