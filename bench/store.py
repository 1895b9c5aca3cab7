"""The results store: atomic writes, hashing, run and stage folders, locks, output folders (SPEC 8).

Every file the suite writes goes through `atomic_write_bytes` (or its wrappers): the bytes land in a
temporary file in the same folder, are fsynced, and replace the target with `os.replace`, so a crash or a
SIGKILL at any point leaves either the old file or the new one, never a half-written one.

Nothing lost, nothing misplaced:
- Temporaries carry the suite's own tag (`.<name>.bench-<random>.tmp`), and a killed write's leftovers are
  removed only by that exact pattern, only in the folders a verb is about to write (`clean_temporaries`),
  holding that folder's lock; never by a recursive search, so a user's `.session.tmp` or a folder reached
  through a symlink is never touched.
- A verb writing beside the user's files (`bench report --out`, `bench infer --out`) does so through
  `OutputFolder`: `.bench-outputs.json` lists each file it wrote with the sha256 of the bytes; it replaces
  or deletes a file only when that record proves the file is its own, and never writes through a symlink
  or outside the folder.
- A folder that cannot take its lock (read-only, below a file) is a one-line error naming the folder;
  readers never lock, so a read-only store still serves finished runs.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
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


# --- run and stage folders ---------------------------------------------------------------------------------

WEIGHTS_FORMAT = "bmb-weights/1"


def runs_dir(option: str | Path | None = None) -> Path:
    """Where runs live: the option, else `$BENCH_RUNS`, else `./runs` (SPEC 8)."""
    if option:
        return Path(option)
    env = os.environ.get("BENCH_RUNS")
    return Path(env) if env else Path("runs")


def read_json(path: Path | str) -> Any | None:
    """The JSON in `path`, or None when it is missing or unreadable (a run folder being written)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def read_metrics(path: Path | str) -> dict | None:
    """A run's `metrics.json` in the shape every reader assumes: None when missing or unreadable; a
    malformed one (not an object, a non-text status, an aggregate that is not an object) is reported as
    status "malformed" with the reason, so it is never reused and never crashes a table."""
    data = read_json(path)
    if data is None:
        return None
    problem = None
    if not isinstance(data, dict):
        problem = "not a JSON object"
    elif not isinstance(data.get("status", ""), str):
        problem = "status is not text"
    elif not isinstance(data.get("aggregate", {}), dict):
        problem = "aggregate is not an object"
    if problem is None:
        return data
    return {"status": "malformed", "error": f"{path}: {problem}; rerun the bench run command to redo it"}


def iter_runs(runs_dir: Path | str) -> list[dict]:
    """Every run folder under `runs_dir` as `{"path", "config", "metrics"}`; folders without config.json
    (and the shared `stages/` cache) are skipped. `metrics` is None while a run has not finished once."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name == "stages":
            continue
        config = read_json(folder / "config.json")
        if not isinstance(config, dict):
            continue
        out.append({"path": folder, "config": config, "metrics": read_metrics(folder / "metrics.json")})
    return out


def latest_run(runs_dir: Path | str, method: str, frames: int | None = None) -> Path | None:
    """The newest finished run of `method` (by metrics.json's mtime), optionally at `frames`; None if none."""
    best: tuple[float, Path] | None = None
    for run in iter_runs(runs_dir):
        cfg, met = run["config"], run["metrics"]
        if cfg.get("method") != method or not isinstance(met, dict) or met.get("status") != "finished":
            continue
        if frames is not None and cfg.get("frames") != frames:
            continue
        mtime = (run["path"] / "metrics.json").stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, run["path"])
    return best[1] if best else None


def run_id(method: str, resolved: dict) -> str:
    """`<method>-<hash of the resolved config>`: the same command maps to the same folder (SPEC 8)."""
    return f"{method}-{stable_hash(resolved)}"


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


# --- output folders shared with the user's files -----------------------------------------------------------

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


def save_weights(path: Path | str, method: str, frames: int, model: dict, state_dicts: dict) -> Path:
    """Write the portable `weights.pt` (docs/ARCHITECTURE.md): plain state dicts and the config needed to
    rebuild the networks, nothing else, so `torch.load(weights_only=True)` accepts it anywhere."""
    payload = {"format": WEIGHTS_FORMAT, "method": method, "frames": int(frames), "model": dict(model),
               "state_dicts": {k: {n: t.detach().cpu().contiguous() for n, t in sd.items()}
                               for k, sd in state_dicts.items()}}
    return atomic_torch_save(path, payload)


def load_payload(path: Path | str, fix: str, kind: str = "weights", fmt: str | None = None) -> dict:
    """Read a file written by `atomic_torch_save` (a stage checkpoint, a `weights.pt`) with
    `torch.load(weights_only=True)`: plain tensors and builtins only, so a pickled object that would need code
    is refused, never run. Every failure is one BenchError line naming the file and `fix`: missing,
    unreadable, not a dict, or (with `fmt`) of another format."""
    import torch

    from bench.errors import BenchError

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such {kind} file; {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged or unsafe file gets the same one-line answer
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(f"{path}: not a loadable {kind} file ({first[:160]}); {fix}") from None
    if not isinstance(payload, dict) or (fmt is not None and payload.get("format") != fmt):
        raise BenchError(f"{path}: not a {fmt or kind} file; {fix}")
    return payload


def load_weights(path: Path | str) -> dict:
    """Read a portable `weights.pt` (`load_payload` with its format checked)."""
    payload = load_payload(path, "use the weights.pt a finished bench run wrote", fmt=WEIGHTS_FORMAT)
    _check_weights(Path(path), payload)
    return payload


def _check_weights(path: Path, payload: dict) -> None:
    """Every field a reader will use, checked before use: a malformed file is one line, not a TypeError
    deep inside a network's constructor."""
    import torch

    from bench.config import ModelConfig, check_section

    fix = "re-export it with bench run"
    method, frames, model, states = (payload.get(k) for k in ("method", "frames", "model", "state_dicts"))
    if not isinstance(method, str) or not method:
        raise BenchError(f"{path}: malformed weights file (method {method!r} is not a name); {fix}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 3 or frames % 2 == 0:
        raise BenchError(f"{path}: malformed weights file (frames {frames!r} is not an odd N >= 3); {fix}")
    if not isinstance(model, dict):
        raise BenchError(f"{path}: malformed weights file (model is not a mapping of widths); {fix}")
    check_section(ModelConfig, model, "model.", where=f"{path}: ")
    if not isinstance(states, dict) or not all(
            isinstance(sd, dict) and all(isinstance(k, str) and torch.is_tensor(t) for k, t in sd.items())
            for sd in states.values()):
        raise BenchError(f"{path}: malformed weights file (state_dicts is not a map of tensors); {fix}")
