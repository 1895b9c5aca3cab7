"""The results store: atomic writes, hashing, run and stage folders, locks (SPEC 8).

Every file the suite writes goes through `atomic_write_bytes` (or its wrappers): the bytes land in a
temporary file in the same folder, are fsynced, and replace the target with `os.replace`, so a crash or a
SIGKILL at any point leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import BenchError

TMP_SUFFIX = ".tmp"  # suffix of in-flight atomic writes: `.<name>.<random>.tmp` beside the target


class WriteFailed(BenchError, OSError):
    """A write that the system refused (full disk, permissions); the previous file is intact."""


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename).

    A refused write raises `WriteFailed`, a one-line error naming the file, after removing the temporary.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
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
    failure = WriteFailed(f"{path}: cannot write ({err.strerror or err}); the previous version is left "
                          "intact; free disk space (or fix permissions) and rerun the same command")
    failure.errno = err.errno
    return failure


def clean_temporaries(folder: Path | str) -> int:
    """Remove the temporaries that writes killed mid-way left under `folder` (call it holding the folder's
    lock, so no live writer owns them); returns how many were removed."""
    removed = 0
    for tmp in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
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
    except (OSError, ValueError):
        return None


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
        out.append({"path": folder, "config": config, "metrics": read_json(folder / "metrics.json")})
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
    """An exclusive `fcntl.flock` on `<folder>/.lock`, so two processes on one run (or one cached stage)
    take turns instead of interleaving writes. The kernel drops the lock when the holder dies (SIGKILL
    included), so a killed run never leaves a stale lock behind."""

    def __init__(self, folder: Path | str, wait: bool = True, on_wait: Any = None) -> None:
        self.path = Path(folder) / ".lock"
        self.wait = wait
        self.on_wait = on_wait  # called once with the lock path when another process holds it
        self._fh: Any = None

    def __enter__(self) -> FolderLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
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
        # Holding the lock, no live writer is in this folder: what a killed one left half-written goes.
        clean_temporaries(self.path.parent)
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


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
    return load_payload(path, "use the weights.pt a finished bench run wrote", fmt=WEIGHTS_FORMAT)
