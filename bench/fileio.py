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

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from bench.errors import BenchError

TMP_SUFFIX = ".tmp"  # suffix of in-flight atomic writes: `.<name>.bench-<random>.tmp` beside the target
TMP_TAG = ".bench-"  # between the target's name and the random part: marks the suite's own temporaries
_TEMPORARY = re.compile(r"\..+\.bench-[a-z0-9_]+\.tmp(\.[a-z0-9]+)?")  # what clean_temporaries removes


class WriteFailed(BenchError, OSError):
    """A write that the system refused (full disk, permissions); the previous file is intact."""


class UnreadableFile(BenchError, OSError):
    """A file the suite will not read: missing, not a regular file (a FIFO or device would block or never
    end), over its size limit, or (JSON) not UTF-8, not JSON or nested too deep. `strerror` is the short
    reason, so callers that name an OSError's reason name this one too."""

    def __init__(self, path: Path | str, reason: str, fix: str = "") -> None:
        super().__init__(f"{path}: {reason}" + (f"; {fix}" if fix else ""))
        self.filename, self.strerror, self.reason = str(path), reason, reason


def temporary_prefix(path: Path | str) -> str:
    """Name prefix of the suite's temporaries for target `path` (`.<name>.bench-`)."""
    return f".{Path(path).name}{TMP_TAG}"


# --- file modes --------------------------------------------------------------------------------------------
# A temporary from mkstemp is 0600; left so, every result would be private on a shared filesystem. Each
# written file gets `0o666 & ~umask`, what `open(path, "w")` would give. There is no read-only getter of the
# umask in Python: on Linux /proc/self/status states it, and reading that changes nothing, so a write in one
# thread never races a file another thread creates. Elsewhere the value is read once here at import, with
# os.umask's set-and-restore; importing bench.fileio happens before the suite starts any thread, and the
# momentary umask is 077, so a file some other code created in between would be private, never open.


def _umask_at_import() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_at_import()
_PROC_STATUS = "/proc/self/status"


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file now: 0o666 less the process's umask."""
    try:
        with open(_PROC_STATUS, "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o666 & ~_IMPORT_UMASK


# --- atomic writes -----------------------------------------------------------------------------------------


class AtomicFile:
    """One file written atomically, in one piece or streamed in many: the bytes go to a temporary of the
    suite beside `path`, and `commit()` sets its mode (`file_mode`), fsyncs it and puts it in place with
    `os.replace`, so a crash or a SIGKILL at any point leaves either the old file or the new one.

    The one writer of the suite: `atomic_write_bytes` is this with a single `write`, a streamed array
    (`bench.data.packed.NpyStream`) writes frame by frame and `overwrite`s its header at the end. Any refused
    write raises `WriteFailed`, a one-line error naming `path`, after removing the temporary; so does an
    exception, a `discard()` or dropping the object unfinished. As a context manager it commits on a normal
    exit and discards on an exception (KeyboardInterrupt included)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(self.path), suffix=TMP_SUFFIX,
                                       dir=self.path.parent)
        except OSError as err:
            raise _write_failed(self.path, err) from None
        self.temporary = Path(tmp)
        self._cleanup = weakref.finalize(self, _remove, tmp)
        try:
            self._fh = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self._cleanup()
            raise

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind: type | None, *exc: Any) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def write(self, data: bytes | memoryview) -> None:
        with self._failing():
            self._fh.write(data)

    def overwrite(self, offset: int, data: bytes) -> None:
        """Replace bytes already written at `offset` (a header completed at the end), then carry on."""
        with self._failing():
            end = self._fh.tell()
            self._fh.seek(offset)
            self._fh.write(data)
            self._fh.seek(end)

    def complete(self) -> Path:
        """Make the temporary whole (mode, flush, fsync, close) without putting it in place; returns it, for
        a caller that compares it with the file in place first (then `commit()` or `discard()`)."""
        if not self._fh.closed:
            with self._failing():
                os.fchmod(self._fh.fileno(), file_mode())
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
        return self.temporary

    def commit(self) -> Path:
        """Put the completed temporary in place of `path`."""
        self.complete()
        with self._failing():
            os.replace(self.temporary, self.path)
        self._cleanup.detach()
        return self.path

    def discard(self) -> None:
        """Drop the temporary; the file in place (if any) is untouched."""
        try:
            if not self._fh.closed:
                self._fh.close()
        except OSError:
            pass  # a full disk refusing the flush of bytes that are being thrown away
        finally:
            self._cleanup()

    def failed(self, err: OSError) -> WriteFailed:
        """The one-line error for `err` met while writing this file, the temporary removed."""
        self.discard()
        return _write_failed(self.path, err)

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            raise self.failed(err) from None
        except BaseException:
            self.discard()
            raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically (an `AtomicFile` with one write).

    A refused write raises `WriteFailed`, a one-line error naming the file, after removing the temporary.
    """
    with AtomicFile(path) as out:
        out.write(data)
    return Path(path)


def _write_failed(path: Path, err: OSError) -> WriteFailed:
    if isinstance(err, WriteFailed):
        return err
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
    import torch  # late: this floor imports no torch, so `bench --help` starts without it

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


# --- reading: regular files only, within limits ------------------------------------------------------------

MAX_HASH_BYTES = 1 << 40  # 1 TiB: far above any file of the suite (a 720p packed sequence of 1000 frames is
#   2.8 GB), so only a file that is not the suite's meets it, and hashing it is refused instead of running on
MAX_JSON_BYTES = 64 << 20  # 64 MiB: a GoPro manifest is a few MB, every other record a few kB
MAX_JSON_DEPTH = 64  # nesting levels: the records use under 10; Python's parser recurses once per level


def open_regular(path: Path | str, limit: int) -> BinaryIO:
    """`path` opened for reading, when it is a regular file (a symlink to one counts) of at
    most `limit` bytes; else `UnreadableFile` at once. A FIFO is opened without blocking, and a device (a
    link to /dev/zero) is refused before a byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UnreadableFile(path, "missing") from None
    except OSError as err:
        raise UnreadableFile(path, f"unreadable ({(err.strerror or type(err).__name__).lower()})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(path, f"not a regular file ({_kind(info.st_mode)})")
    if info.st_size > limit:
        raise UnreadableFile(path, f"{info.st_size} bytes, over the limit of {limit} for a file of the suite")
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def sha256_file(path: Path | str, chunk: int = 1 << 20, limit: int = MAX_HASH_BYTES) -> str:
    """The sha256 of the regular file at `path` (`open_regular`: `UnreadableFile`, an OSError, otherwise);
    a file that grows past `limit` while being read is refused too."""
    h = hashlib.sha256()
    seen = 0
    fh = open_regular(path, limit)
    with fh:
        while block := fh.read(chunk):
            seen += len(block)
            if seen > limit:
                raise UnreadableFile(path, f"grew over the limit of {limit} bytes while being hashed")
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 10) -> str:
    """Short hex digest of a JSON-able object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads(text)`, refused with a ValueError when arrays and objects nest deeper than `max_depth`:
    counted before parsing, so neither the parser nor any reader that walks the result can recurse
    without end (RecursionError)."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > max_depth:
        raise ValueError(f"nested {deepest} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(text)
    except RecursionError:  # malformed text the count above misread: refused all the same
        raise ValueError(f"nested over the limit of {max_depth} levels") from None


def load_json(path: Path | str, limit: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON in the regular file `path`, read within a size and a nesting limit; `UnreadableFile` with
    the reason (missing, not a regular file, too large, not UTF-8, not JSON, too deep) otherwise."""
    fh = open_regular(path, limit)
    try:
        with fh:
            raw = fh.read(limit + 1)
        if len(raw) > limit:
            raise UnreadableFile(path, f"grew over the limit of {limit} bytes while being read")
        return parse_json(raw.decode("utf-8"), max_depth)
    except UnreadableFile:
        raise
    except UnicodeDecodeError:
        raise UnreadableFile(path, "unreadable (not UTF-8 text)") from None
    except ValueError as err:  # json.JSONDecodeError included
        raise UnreadableFile(path, f"unreadable ({type(err).__name__}: {str(err)[:80]})") from None
    except OSError as err:
        raise UnreadableFile(path, f"unreadable ({(err.strerror or type(err).__name__).lower()})") from None


def read_json(path: Path | str) -> Any | None:
    """The JSON in `path` (`load_json`), or None when it is missing or unreadable (a stage folder being
    written, a damaged record)."""
    try:
        return load_json(path)
    except UnreadableFile:
        return None


class FolderLock:
    """An exclusive `fcntl.flock` on `<folder>/.lock`, so two processes on one run (or one cached stage, one
    prepared set, one output folder) take turns instead of interleaving writes. The kernel drops the lock
    when the holder dies (SIGKILL included), so a killed run never leaves a stale lock behind.

    Taking the lock also removes the suite's temporaries that a killed writer left in the folder itself and
    in `places` (subfolders it writes, relative to it; known places only, never a recursive search). A folder
    that cannot hold a lock (read-only, or a path below a file) is a one-line error ending with `hint`; with
    `readonly_ok`, a read-only folder is entered unlocked instead and `held` is False, for callers that only
    read unless they hold it.

    With `shared`, the lock is `LOCK_SH` instead: any number of readers hold it at once (a run reading a
    prepared set), and a writer's exclusive lock waits until they all let go. A shared holder removes no
    temporaries: it writes nothing the cleanup would concern."""

    def __init__(self, folder: Path | str, wait: bool = True, on_wait: Any = None,
                 places: Iterable[str] = (), hint: str = "choose a folder you can write to",
                 readonly_ok: bool = False, shared: bool = False) -> None:
        self.path = Path(folder) / ".lock"
        self.wait = wait
        self.on_wait = on_wait  # called once with the lock path when another process holds it
        self.places = tuple(places)
        self.hint = hint
        self.readonly_ok = readonly_ok
        self.shared = shared
        self.held = False
        self._fh: Any = None

    def __enter__(self) -> FolderLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")
        except OSError as err:
            if self.readonly_ok and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return self  # readers go on unlocked: writes are atomic, so what they read is whole
            reason = (err.strerror or type(err).__name__).lower()
            raise BenchError(f"{self.path.parent}: cannot lock this folder ({reason}); {self.hint}") from None
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self._fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                self._fh.close()
                raise BenchError(f"{self.path.parent} is in use by another bench process; wait for it "
                                 "to finish and rerun") from None
            if self.on_wait is not None:
                self.on_wait(self.path)
            fcntl.flock(self._fh, mode)
        self.held = True
        if self.shared:
            return self
        # Holding the lock, no live writer is in this folder: what a killed one left half-written goes.
        for place in (".", *self.places):
            clean_temporaries(self.path.parent / place)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        self.held = False
