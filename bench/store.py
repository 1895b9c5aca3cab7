"""The results store: atomic writes, hashing, run and stage folders, locks, output folders (docs/DESIGN.md
"Store", "Locks and temporaries", "Output folders").

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
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bench.errors import BenchError
from bench.metrics import COST_METRICS, SAMPLE_METRICS

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


# --- names and data digests ---------------------------------------------------------------------------------


def checked_name(name: str, what: str, fix: str = "rename it") -> str:
    """`name` when it can name one folder or file inside another: not empty, not `.` or `..`, without path
    separators, NUL or surrounding spaces; else a one-line BenchError saying `what` it is and the `fix`.
    Every name derived from a user's path goes through here before it joins a path, so `--eval-data
    <set>/x/..` (folder name `..`) can never land a result on another file."""
    bad = (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
           or "\x00" in name or name != name.strip())
    if bad:
        raise BenchError(f"{what} {name!r}: not usable as a folder or file name (empty, '.', '..', a path "
                         f"separator or surrounding spaces); {fix}")
    return name


def data_digest(set_folder: Path | str) -> str:
    """The content digest of a prepared set: the sha256 of its manifest.json, which pins every file of the
    set by its own sha256. Results are reused only for the same digest, that is byte-identical data."""
    from bench.data.manifest import MANIFEST  # late: bench.data imports this module

    path = Path(set_folder) / MANIFEST
    try:
        return sha256_file(path)
    except OSError as err:
        raise BenchError(f"{path}: cannot read ({err.strerror or err}); prepare the set with bench prepare") \
            from None


def eval_folder_name(set_name: str, digest: str) -> str:
    """`<set>-<digest12>`: an evaluation's folder under `runs/<run-id>/evals/`, one per exact data."""
    return f"{checked_name(set_name, 'set name')}-{digest[:12]}"


# --- run and stage folders ---------------------------------------------------------------------------------

WEIGHTS_FORMAT = "bmb-weights/1"


def runs_dir(option: str | Path | None = None) -> Path:
    """Where runs live: the option, else `$BENCH_RUNS`, else `./runs`."""
    if option:
        return Path(option)
    env = os.environ.get("BENCH_RUNS")
    return Path(env) if env else Path("runs")


def read_json(path: Path | str) -> Any | None:
    """The JSON in `path`, or None when it is missing or unreadable (a stage folder being written)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def iter_runs(runs_dir: Path | str) -> list[RunRecord]:
    """Every run folder under `runs_dir` (those holding a config.json), read and checked as `RunRecord`s;
    a damaged or pre-digest entry comes back with its `problem`, never raises."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    records = []
    for folder in sorted(root.iterdir()):
        if folder.name in STORE_FOLDERS or not folder.is_dir():
            continue
        record = read_record(folder)
        if record is not None:
            records.append(record)
    return records


def latest_run(runs_dir: Path | str, method: str, frames: int | None = None,
               with_weights: bool = False) -> Path | None:
    """The newest intact finished run of `method` (by metrics.json's mtime), optionally at `frames` and only
    among runs that wrote a weights.pt (`with_weights`, what `bench infer` needs); None if none."""
    best: tuple[float, Path] | None = None
    for record in iter_runs(runs_dir):
        if record.status != "finished" or record.config.method != method:
            continue
        if frames is not None and record.config.frames != frames:
            continue
        if with_weights and record.metrics.weights_sha256 is None:
            continue
        mtime = (record.path / METRICS).stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, record.path)
    return best[1] if best else None


def run_id(method: str, resolved: dict) -> str:
    """`<method>-<hash of the resolved config>`: the same command maps to the same folder."""
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
    """Write the portable `weights.pt` (docs/DESIGN.md "Store"): plain state dicts and the config needed to
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
# --- the run record ----------------------------------------------------------------------------------------
# One schema for what a run folder holds, written by `bench run` and read, checked, by every reader (`list`,
# `report`, `infer`, `ablate`, the reuse check). Layout:
#   runs/<run-id>/config.json                     RunConfig: the run's identity
#   runs/<run-id>/env.json                        RunEnv of the run's own result: packages, commit, device
#   runs/<run-id>/metrics.json                    RunMetrics: finished (results) or failed (the reason)
#   runs/<run-id>/curves.json                     {stage: [[iteration, loss], ...]} of the stages trained
#   runs/<run-id>/weights.pt                      portable weights (WEIGHTS_FORMAT), digest in metrics.json
#   runs/<run-id>/samples/<id>_<role>[<n>].png    roles blur, deblurred, frame<n>, truth<n> (n = 1..N)
#   runs/<run-id>/evals/<set>-<digest12>/         metrics.json, env.json (and samples/) of a score on
#                                                 another set
#   runs/dryrun/<method>-<device>-<hash>.json      a `bench run --dry-run` timing (not a run)

DRY_RUNS = "dryrun"  # `bench run --dry-run` timings (bench/trainperf.py), never results
RECORD_VERSION = 2  # config.json "record"; entries without it predate data digests and are never reused
CONFIG, ENV, METRICS, CURVES, WEIGHTS = "config.json", "env.json", "metrics.json", "curves.json", "weights.pt"
STORE_FOLDERS = ("stages", "perf", DRY_RUNS)  # folders of the store that hold no run: the stage cache,
#   bench perf, bench run --dry-run
SAMPLE_ROLES = ("blur", "deblurred", "frame", "truth")  # frame and truth carry a 1-based frame number


class RecordError(BenchError):
    """A store file that does not follow the run record; `kind` is "damaged" or "legacy" (pre-digest)."""

    def __init__(self, message: str, kind: str = "damaged") -> None:
        super().__init__(message)
        self.kind = kind


_KINDS = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list, "number": (int, float)}


def _get(data: dict, key: str, kind: str, path: Path) -> Any:
    """`data[key]` checked against `kind`, a `_KINDS` name with `?` when null is allowed; else RecordError."""
    if key not in data:
        raise RecordError(f"{path}: no {key!r}")
    value, base = data[key], kind.rstrip("?")
    if value is None and kind.endswith("?"):
        return None
    ok = isinstance(value, _KINDS[base]) and (base == "bool" or not isinstance(value, bool))
    if not ok or (base == "number" and not math.isfinite(value)):
        raise RecordError(f"{path}: {key!r} is {type(value).__name__}, not {kind.replace('?', ' or null')}")
    return value


def _get_all(data: dict, kinds: dict[str, str], path: Path) -> dict[str, Any]:
    return {key: _get(data, key, kind, path) for key, kind in kinds.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load_object(path: Path) -> dict:
    """The JSON object in `path`; RecordError when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: unreadable ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: holds a {type(data).__name__}, not a JSON object")
    return data


@dataclass(frozen=True)
class RunConfig:
    """config.json: what the run was asked; the run id hashes these (with the resolved profile)."""

    run_id: str  # `<method>-<hash>`, the folder's name
    method: str  # registry name
    family: str  # "paper" | "ablation" | "baseline"
    profile: str  # profile name (smoke, quick, paper)
    overrides: tuple[str, ...]  # the `--set KEY=VALUE` items, as given
    resolved_profile: dict  # every profile field after the overrides
    dataset: str  # the training set's folder name
    data_sha256: str  # the training set's content digest (`data_digest`)
    frames: int  # N
    seed: int  # initialisation and batch order (the data are fixed across seeds)
    stages: tuple[dict, ...]  # the training schedule: name, trains, lr, init_from, batch, iters_keys
    weights_from: str | None  # `--weights FILE` scored instead of training, else None
    weights_from_sha256: str | None  # that file's sha256

    def to_json(self) -> dict:
        return dict(asdict(self), record=RECORD_VERSION, overrides=list(self.overrides),
                    stages=list(self.stages))

    @classmethod
    def from_json(cls, data: dict, path: Path) -> RunConfig:
        if data.get("record") != RECORD_VERSION:
            raise RecordError(f"{path}: stored before data digests were recorded (no record "
                              f"{RECORD_VERSION}); it is never reused: rerun its bench run command", "legacy")
        values = _get_all(data, _CONFIG_KINDS, path)
        if not all(isinstance(o, str) for o in values["overrides"]) or \
                not all(isinstance(s, dict) for s in values["stages"]):
            raise RecordError(f"{path}: 'overrides' must list strings and 'stages' objects")
        return cls(**dict(values, overrides=tuple(values["overrides"]), stages=tuple(values["stages"])))


_CONFIG_KINDS = {"run_id": "str", "method": "str", "family": "str", "profile": "str", "overrides": "list",
                 "resolved_profile": "dict", "dataset": "str", "data_sha256": "str", "frames": "int",
                 "seed": "int", "stages": "list", "weights_from": "str?", "weights_from_sha256": "str?"}


@dataclass(frozen=True)
class RunEnv:
    """env.json: where and from what code the numbers came (`bench.env.environment`)."""

    git_commit: str | None  # None outside a git checkout
    git_dirty: bool | None  # tracked files differed from the commit
    device: str  # the torch device string the run used
    device_name: str  # its human name (GPU model, CPU model and threads)
    python: str
    platform: str
    date: str  # UTC, ISO 8601, when the run was configured
    packages: dict  # package -> version (None when not installed)

    @classmethod
    def from_json(cls, data: dict, path: Path) -> RunEnv:
        return cls(**_get_all(data, {"git_commit": "str?", "git_dirty": "bool?", "device": "str",
                                     "device_name": "str", "python": "str", "platform": "str", "date": "str",
                                     "packages": "dict"}, path))

    @property
    def commit_text(self) -> str:
        """The commit, with `+dirty` when uncommitted changes made the numbers; "" when unknown."""
        return (self.git_commit or "") + ("+dirty" if self.git_commit and self.git_dirty else "")


@dataclass(frozen=True)
class RunMetrics:
    """metrics.json: a finished result (scores per sample and aggregate) or a failure and its reason."""

    status: str  # "finished" | "failed"
    run_id: str
    error: str | None = None  # failed: the reason, one line
    method: str = ""
    profile: str = ""
    dataset: str = ""  # the training set's folder name ...
    data_sha256: str = ""  # ... and digest
    eval_dataset: str = ""  # the set scored (the training set unless --eval-data) ...
    eval_sha256: str = ""  # ... and its digest
    frames: int = 0
    seed: int = 0
    aggregate: dict = field(default_factory=dict)  # metrics.SAMPLE_METRICS (means), COST_METRICS, device
    samples: tuple[dict, ...] = ()  # per test sample: "id" and metrics.SAMPLE_METRICS
    metric_definitions: dict = field(default_factory=dict)  # metric -> the one-line definition used
    training: dict = field(default_factory=dict)  # per stage: key, iterations, time_s, probe_loss, the
    #   validation curve ("validation": metric, reference, points [[iteration, score or null], ...]; null for
    #   stages trained before it existed), execution (precision, threads, loader, layout), ...
    training_time_s: float = 0.0  # stages summed (reused stages count their original time)
    wall_s: float = 0.0  # this command's wall time
    weights_sha256: str | None = None  # the weights.pt this run wrote; None when it wrote none
    weights_bytes: int | None = None  # its size, so a truncated file shows without hashing it

    def to_json(self) -> dict:
        if self.status == "failed":
            return {"status": "failed", "run_id": self.run_id, "error": self.error}
        return dict(asdict(self), samples=list(self.samples))

    @classmethod
    def from_json(cls, data: dict, path: Path) -> RunMetrics:
        status = _get(data, "status", "str", path)
        if status == "failed":
            return cls("failed", _get(data, "run_id", "str", path), error=_get(data, "error", "str", path))
        if status != "finished":
            raise RecordError(f"{path}: status {status!r} is neither finished nor failed")
        values = _get_all(data, _METRICS_KINDS, path)
        _check_scores(values["aggregate"], path, "aggregate", COST_METRICS)
        _get(values["aggregate"], "device", "str", path)
        for i, sample in enumerate(values["samples"]):
            if not isinstance(sample, dict) or not isinstance(sample.get("id"), str):
                raise RecordError(f"{path}: samples[{i}] is not an object with a string 'id'")
            _check_scores(sample, path, f"samples[{i}]")
        _check_validation(values["training"], path)
        return cls(status, **dict(values, samples=tuple(values["samples"]),
                                  training_time_s=float(values["training_time_s"]),
                                  wall_s=float(values["wall_s"])))


_METRICS_KINDS = {"run_id": "str", "method": "str", "profile": "str", "dataset": "str", "data_sha256": "str",
                  "eval_dataset": "str", "eval_sha256": "str", "frames": "int", "seed": "int",
                  "aggregate": "dict", "samples": "list", "metric_definitions": "dict", "training": "dict",
                  "training_time_s": "number", "wall_s": "number", "weights_sha256": "str?",
                  "weights_bytes": "int?"}


def _check_validation(training: dict, path: Path) -> None:
    """Each stage's validation curve, where there is one: a metric name and [iteration, score or null]
    points (what `bench report` plots)."""
    for stage, info in training.items():
        curve = info.get("validation") if isinstance(info, dict) else None
        if curve is None:
            continue
        points = curve.get("points") if isinstance(curve, dict) else None
        if not _is_curve(points, null_scores=True) or not isinstance(curve.get("metric"), str):
            raise RecordError(f"{path}: training[{stage!r}]['validation'] is not a metric with "
                              "[iteration, score] points")


def _is_curve(points: Any, null_scores: bool = False) -> bool:
    """A list of [iteration, score] pairs of numbers (scores may be null where `null_scores`)."""
    return isinstance(points, list) and all(
        isinstance(p, list) and len(p) == 2 and _is_number(p[0])
        and (_is_number(p[1]) or (null_scores and p[1] is None)) for p in points)


def _check_scores(scores: dict, path: Path, where: str, extra: tuple[str, ...] = ()) -> None:
    """Every per-sample metric key (and `extra`) present, each a finite number or null."""
    for key in (*SAMPLE_METRICS, *extra):
        if key not in scores:
            raise RecordError(f"{path}: {where} has no {key!r}")
        if scores[key] is not None and not _is_number(scores[key]):
            raise RecordError(f"{path}: {where}[{key!r}] is {scores[key]!r}, not a number or null")


def read_config(folder: Path | str) -> RunConfig:
    """The checked config.json of the run in `folder`; RecordError when missing, damaged or pre-digest."""
    return RunConfig.from_json(_load_object(Path(folder) / CONFIG), Path(folder) / CONFIG)


def read_env(folder: Path | str) -> RunEnv:
    """The checked env.json of the run in `folder`; RecordError when missing or damaged."""
    return RunEnv.from_json(_load_object(Path(folder) / ENV), Path(folder) / ENV)


def read_metrics(path: Path | str) -> RunMetrics | None:
    """The checked metrics.json at `path`; None when there is none yet; RecordError when damaged."""
    path = Path(path)
    if not path.is_file() and not path.is_symlink():
        if path.exists():  # a folder or a special file where the result belongs
            raise RecordError(f"{path}: not a file")
        return None
    return RunMetrics.from_json(_load_object(path), path)


def read_curves(folder: Path | str) -> dict[str, list[tuple[float, float]]]:
    """curves.json of a run: stage -> [(iteration, loss), ...]; {} when the run wrote none (no training)."""
    path = Path(folder) / CURVES
    if not path.is_file():
        return {}
    curves = {}
    for stage, points in _load_object(path).items():
        if not _is_curve(points):
            raise RecordError(f"{path}: stage {stage!r} is not a list of [iteration, loss] pairs")
        curves[stage] = [(float(i), float(v)) for i, v in points]
    return curves


_SAMPLE_PNG = re.compile(r"^(?P<sid>.+)_(?:(?P<image>blur|deblurred)|(?P<role>frame|truth)(?P<n>[1-9]\d*))"
                         r"\.png$")


def sample_image_name(sample_id: str, role: str, n: int | None = None) -> str:
    """The file name of one stored sample image: `<id>_blur.png`, `<id>_deblurred.png`, `<id>_frame<n>.png`,
    `<id>_truth<n>.png` (n = 1..N); the id is made file-safe."""
    if role not in SAMPLE_ROLES or (n is None) != (role in ("blur", "deblurred")):
        raise ValueError(f"sample image role {role!r} with frame {n!r}")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample_id)).strip(".") or "sample"
    return f"{safe}_{role}{'' if n is None else n}.png"


def read_sample_images(folder: Path | str) -> dict[str, dict[str, Any]]:
    """The sample images in `folder` (a run's or evaluation's `samples/`), by sample id:
    {"blur": Path, "deblurred": Path, "frame": [Path by n], "truth": [Path by n]}; other files ignored."""
    found: dict[str, dict[str, Any]] = {}
    root = Path(folder)
    if not root.is_dir():
        return found
    for png in sorted(root.iterdir()):
        m = _SAMPLE_PNG.match(png.name)
        if m is None or not png.is_file():
            continue
        entry = found.setdefault(m["sid"], {"frame": {}, "truth": {}})
        if m["image"]:
            entry[m["image"]] = png
        else:
            entry[m["role"]][int(m["n"])] = png
    for entry in found.values():
        for role in ("frame", "truth"):
            entry[role] = [entry[role][k] for k in sorted(entry[role])]
    return found


@dataclass(frozen=True)
class EvalRecord:
    """One cross-dataset evaluation of a run: `runs/<run-id>/evals/<set>-<digest12>/`."""

    path: Path
    metrics: RunMetrics | None  # None while unfinished or when `problem` is set
    problem: str | None = None  # one line: why it cannot be used
    problem_kind: str = ""  # "damaged" | "legacy"
    env: RunEnv | None = None  # where and from what code it was scored (beside its metrics.json)

    @property
    def status(self) -> str:
        """finished | failed | incomplete | damaged | legacy, as `RunRecord.status`."""
        if self.problem:
            return self.problem_kind
        return self.metrics.status if self.metrics is not None else "incomplete"


@dataclass(frozen=True)
class RunRecord:
    """A run folder, read and checked: its config, env and metrics, or the one-line `problem` that makes
    it unusable (`problem_kind` "damaged" or "legacy"; the parts read before the problem are kept, for
    display). An unusable entry is recomputed, never reused; readers check `status` first."""

    path: Path
    config: RunConfig | None
    env: RunEnv | None
    metrics: RunMetrics | None  # None while the run has not finished once
    problem: str | None = None
    problem_kind: str = ""
    evals: tuple[EvalRecord, ...] = ()

    @property
    def status(self) -> str:
        """finished | failed | incomplete (no metrics.json yet) | damaged | legacy."""
        if self.problem:
            return self.problem_kind
        return self.metrics.status if self.metrics is not None else "incomplete"


def read_record(folder: Path | str) -> RunRecord | None:
    """The run in `folder` as a RunRecord (None when the folder holds no config.json: not a run)."""
    folder = Path(folder)
    if not (folder / CONFIG).exists() and not (folder / CONFIG).is_symlink():
        return None
    places = sorted(p for p in (folder / "evals").iterdir() if p.is_dir() and not p.is_symlink()) \
        if (folder / "evals").is_dir() else []
    env = metrics = None
    try:
        config = read_config(folder)
    except RecordError as err:  # the evaluations of a pre-digest or unreadable run share its problem
        evals = tuple(EvalRecord(p, None, str(err), err.kind) for p in places)
        return RunRecord(folder, None, None, None, str(err), err.kind, evals)
    evals = tuple(_agreeing_eval(e, config) for e in map(_read_eval, places))
    try:
        if config.run_id != folder.name:
            raise RecordError(f"{folder / CONFIG}: run_id {config.run_id!r} is not the folder's name")
        check_config_identity(config, folder / CONFIG)
        metrics = read_metrics(folder / METRICS)
        env = read_env(folder) if metrics is not None else None  # the environment of the result
        if metrics is not None and metrics.run_id != folder.name:
            raise RecordError(f"{folder / METRICS}: run_id {metrics.run_id!r} is not the folder's name")
        if metrics is not None and metrics.status == "finished":
            check_metrics_agree(metrics, config, folder / METRICS, own=True)
        if metrics is not None and metrics.weights_sha256 is not None:
            _check_weights_size(folder / WEIGHTS, metrics.weights_bytes)
            _raise_problem(verify_weights(folder, metrics))  # every reader, every time: one verdict
        if metrics is not None and metrics.status == "finished":
            read_curves(folder)
    except RecordError as err:
        return RunRecord(folder, config, env, metrics, str(err), err.kind, evals)
    return RunRecord(folder, config, env, metrics, evals=evals)


def _read_eval(folder: Path) -> EvalRecord:
    try:
        metrics = read_metrics(folder / METRICS)
        env = read_env(folder) if metrics is not None else None
        if metrics is not None and metrics.status == "finished" and \
                folder.name != f"{metrics.eval_dataset}-{metrics.eval_sha256[:12]}":
            raise RecordError(f"{folder / METRICS}: scored {metrics.eval_dataset} "
                              f"({metrics.eval_sha256[:12]}), which this folder's name does not say")
    except RecordError as err:
        return EvalRecord(folder, None, str(err), err.kind)
    return EvalRecord(folder, metrics, env=env)


def _check_weights_size(path: Path, size: int | None) -> None:
    try:
        actual = path.stat().st_size
    except OSError:
        raise RecordError(f"{path}: missing; the run's metrics.json says it wrote one") from None
    if size is not None and actual != size:
        raise RecordError(f"{path}: {actual} bytes, not the {size} the run wrote (truncated or replaced)")


def verify_weights(folder: Path | str, metrics: RunMetrics) -> str | None:
    """None when the run's weights.pt is the file it wrote (sha256 as recorded); else the one-line reason."""
    if metrics.weights_sha256 is None:
        return None
    path = Path(folder) / WEIGHTS
    try:
        digest = sha256_file(path)
    except OSError as err:
        return f"{path}: unreadable ({err.strerror or err})"
    return None if digest == metrics.weights_sha256 else f"{path}: its sha256 differs from the one recorded"


def run_request(method: str, profile: dict, dataset: str, data_sha256: str, frames: int, seed: int,
                weights_sha256: str | None) -> dict:
    """What a run id hashes (`run_id`): the request, resolved. `bench.run.identity` builds a new run's id
    from it and `check_config_identity` a stored one's, so both follow the same definition."""
    return {"method": method, "profile": profile, "dataset": dataset, "data_sha256": data_sha256,
            "frames": frames, "seed": seed, "eval_set": "test", "weights_sha256": weights_sha256}


def config_run_id(config: RunConfig) -> str:
    """The run id that a config.json's own fields give."""
    return run_id(config.method, run_request(config.method, config.resolved_profile, config.dataset,
                                             config.data_sha256, config.frames, config.seed,
                                             config.weights_from_sha256))


def check_config_identity(config: RunConfig, path: Path) -> None:
    """RecordError unless config.json hashes to its own run id and names the profile it resolved: a config
    edited to another method, profile, set, N or seed (or copied from another run) never passes as this
    run."""
    derived = config_run_id(config)
    if derived != config.run_id:
        raise RecordError(f"{path}: its fields give run id {derived}, not {config.run_id} (edited, or copied "
                          "from another run)")
    if config.resolved_profile.get("name") != config.profile:
        raise RecordError(f"{path}: profile {config.profile!r} is not the one it resolved "
                          f"({config.resolved_profile.get('name')!r})")


def check_metrics_agree(metrics: RunMetrics, config: RunConfig, path: Path, own: bool) -> None:
    """RecordError unless a finished metrics.json names the run of `config`: its id, method, profile,
    training set and digest, N and seed; the run's own result (`own`) also scored that set, and records its
    weights.pt unless the run scored a `--weights` file."""
    fields = ("run_id", "method", "profile", "dataset", "data_sha256", "frames", "seed")
    for name in fields:
        if getattr(metrics, name) != getattr(config, name):
            raise RecordError(f"{path}: {name} {getattr(metrics, name)!r} is not the run's "
                              f"{getattr(config, name)!r} (config.json)")
    if not own:
        return
    if (metrics.eval_dataset, metrics.eval_sha256) != (config.dataset, config.data_sha256):
        raise RecordError(f"{path}: scored {metrics.eval_dataset}, not the run's own set {config.dataset}")
    if config.weights_from is None and metrics.weights_sha256 is None:
        raise RecordError(f"{path}: records no weights.pt for a trained run")


def _agreeing_eval(evaluation: EvalRecord, config: RunConfig) -> EvalRecord:
    """`evaluation`, or the same marked damaged when its finished metrics.json names another run."""
    metrics = evaluation.metrics
    if evaluation.problem or metrics is None or metrics.status != "finished":
        return evaluation
    try:
        check_metrics_agree(metrics, config, evaluation.path / METRICS, own=False)
    except RecordError as err:
        return EvalRecord(evaluation.path, None, str(err), err.kind)
    return evaluation


def _raise_problem(problem: str | None) -> None:
    if problem:
        raise RecordError(problem)


def stage_record_problem(stage: str, summary: dict, curve: Any, path: Path) -> str | None:
    """Why a stage's stored summary and loss curve (its stage.json) cannot go into a run's metrics.json and
    curves.json, or None when they can: the checks `read_metrics` and `read_curves` make, made before they
    are copied, so a damaged stage.json never yields a record that the next run rejects."""
    try:
        _check_validation({stage: summary}, path)
    except RecordError as err:
        return str(err)
    if not _is_curve(curve):
        return f"{path}: 'curve' is not a list of [iteration, loss] pairs"
    if not _is_number(summary.get("time_s")):
        return f"{path}: 'time_s' is {summary.get('time_s')!r}, not a number"
    probe = summary.get("probe_loss")
    if probe is not None and not (isinstance(probe, list) and len(probe) == 2
                                  and all(map(_is_number, probe))):
        return f"{path}: 'probe_loss' is not a [before, after] pair of numbers"
    if summary.get("execution") is not None and not isinstance(summary["execution"], dict):
        return f"{path}: 'execution' is not an object"
    return None


# --- stored bench perf results -----------------------------------------------------------------------------

PERF_TIMES = ("runtime_deblur_times_s", "runtime_video_times_s")  # every timed pass of a perf row


@dataclass(frozen=True)
class PerfResult:
    """`runs/perf/<profile>-<N>f-<resolution>-<device>.json`: one `bench perf --store` measurement, read by
    the report's size and speed claims (untrained, seeded networks at the widths of `profile`)."""

    profile: str  # whose widths were built: "paper" = the paper-sized networks
    frames: int  # N of the video predictions timed
    resolution: str  # WIDTHxHEIGHT of the blurred input
    device: str  # the device's human name
    repeats: int  # timed passes per figure, after `warmup` untimed ones
    warmup: int
    env: RunEnv  # packages, commit, date of the measurement
    rows: tuple[dict, ...]  # `bench perf` rows: method, params, size_mb, runtime_*_s, PERF_TIMES, ...

    def to_json(self) -> dict:
        return dict(asdict(self), rows=list(self.rows))

    @classmethod
    def from_json(cls, data: dict, path: Path) -> PerfResult:
        values = _get_all(data, {"profile": "str", "frames": "int", "resolution": "str", "device": "str",
                                 "repeats": "int", "warmup": "int", "env": "dict", "rows": "list"}, path)
        for i, row in enumerate(values["rows"]):
            if not isinstance(row, dict) or not isinstance(row.get("method"), str):
                raise RecordError(f"{path}: rows[{i}] is not an object with a string 'method'")
            if row.get("skipped") is None and not all(
                    isinstance(row.get(k), list) and row[k] and all(_is_number(t) for t in row[k])
                    for k in PERF_TIMES):
                raise RecordError(f"{path}: rows[{i}] ({row['method']}) lacks its timed passes")
        return cls(**dict(values, env=RunEnv.from_json(values["env"], path), rows=tuple(values["rows"])))

    def file_name(self) -> str:
        device = re.sub(r"[^A-Za-z0-9]+", "-", self.device).strip("-")[:60] or "device"
        return f"{self.profile}-{self.frames}f-{self.resolution}-{device}.json"


def store_perf(runs_dir: Path | str, result: PerfResult) -> Path:
    """Write `result` under `<runs_dir>/perf/` (one file per profile, N, resolution and device)."""
    return atomic_write_json(Path(runs_dir) / "perf" / result.file_name(), result.to_json())


def latest_perf(runs_dir: Path | str, profile: str = "paper") -> tuple[PerfResult | None, list[str]]:
    """The newest stored perf result of `profile` (by file mtime), and one line per damaged file skipped."""
    folder = Path(runs_dir) / "perf"
    found: list[tuple[float, PerfResult]] = []
    problems = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            result = PerfResult.from_json(_load_object(path), path)
        except RecordError as err:
            problems.append(str(err))
            continue
        if result.profile == profile:
            found.append((path.stat().st_mtime, result))
    return (max(found, key=lambda f: f[0])[1] if found else None), problems
