"""Shared helpers of the fault-injection tests: run `bench` as a subprocess or in-process, kill it
at chosen points, verify every file a store or a prepared set holds, and build hostile inputs.

Kill points come in two kinds:
- *timed*: SIGKILL when a condition on the disk becomes true (k checkpoints exist, a file appeared), after a
  short delay drawn from a seeded RNG, so the kill lands at a reproducible-ish but not hand-picked moment;
- *mid-write*: the process is started through `BOOTSTRAP`, which wraps `bench.fileio.atomic_write_bytes`
  so that its k-th call writes half of the bytes into the temporary file and then SIGKILLs its own process:
  exactly the state a power cut or the OOM killer leaves during a write, made deterministic.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics import SAMPLE_METRICS

BENCH = str(Path(sys.executable).parent / "bench")
PYTHON = sys.executable

# Thread oversubscription on a shared 2-core machine slows the tiny smoke networks down by 10-30x (measured:
# 0.15 against 5.2 samples/s); one thread per process keeps the subprocesses fast and their numbers stable.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# `python -c BOOTSTRAP <bench args>` behaves like `.venv/bin/bench <bench args>`, except that with
# BENCH_FAULT_KILL_AT_WRITE set, one atomic write leaves a half-written temporary file and SIGKILLs the
# process before the rename (bench.fileio's own cleanup never runs, as with a real kill). The value picks
# the write:
# `k` = the k-th write of any file, `NAME` = the first write of a file named NAME, `NAME:k` = its k-th write.
BOOTSTRAP = """
import os, signal, sys, time
from pathlib import Path
import bench.fileio as fileio
_spec = os.environ.get("BENCH_FAULT_KILL_AT_WRITE") or os.environ.get("BENCH_FAULT_PAUSE_AT_WRITE", "")
_release = os.environ.get("BENCH_FAULT_RELEASE")
_name, _, _k = _spec.rpartition(":") if ":" in _spec else ("", "", _spec)
if not _k.isdigit():
    _name, _k = _spec, "1"
_k, _seen = int(_k), [0]
_orig = fileio.atomic_write_bytes
def _faulty(path, data):
    path = Path(path)
    if not _name or path.name == _name:
        _seen[0] += 1
        if _seen[0] == _k and _release:
            print(f"FAULT: paused before writing {path}", file=sys.stderr, flush=True)
            while not os.path.exists(_release):
                time.sleep(0.02)
        elif _seen[0] == _k:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f"{fileio.temporary_prefix(path)}fault{fileio.TMP_SUFFIX}"  # the suite's tag
            with open(tmp, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            print(f"FAULT: killed while writing {path}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return _orig(path, data)
fileio.atomic_write_bytes = _faulty
from bench.cli import main
sys.argv = ["bench", *sys.argv[1:]]
main()
"""


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.update(THREAD_ENV)
    for key in ("BENCH_FAULT_KILL_AT_WRITE", "BENCH_FAULT_PAUSE_AT_WRITE", "BENCH_FAULT_RELEASE"):
        out.pop(key, None)
    out.update(extra)
    return out


def run_bench(args: list[str], timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """Run `.venv/bin/bench ARGS` to completion and return the finished process (text output)."""
    return subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=env(**extra_env))


def start_bench(args: list[str], kill_at_write: int | str = 0, pause_at_write: str = "",
                release: Path | None = None) -> Watched:
    """Start `bench ARGS` in its own process group (so a kill reaches its worker processes too);
    `kill_at_write` selects a write to die in, `pause_at_write` one to wait before until `release` exists
    (see BOOTSTRAP). Output is unbuffered so a watcher sees each line as it is printed."""
    extra = {"PYTHONUNBUFFERED": "1"}
    if kill_at_write:
        cmd = [PYTHON, "-c", BOOTSTRAP, *args]
        extra["BENCH_FAULT_KILL_AT_WRITE"] = str(kill_at_write)
    elif pause_at_write:
        cmd = [PYTHON, "-c", BOOTSTRAP, *args]
        extra.update(BENCH_FAULT_PAUSE_AT_WRITE=pause_at_write, BENCH_FAULT_RELEASE=str(release))
    else:
        cmd = [BENCH, *args]
    return Watched(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env(**extra), start_new_session=True))


class Watched:
    """A started process whose stdout and stderr are collected line by line by two threads, so a test can
    wait for a line while the process runs."""

    def __init__(self, proc: subprocess.Popen) -> None:
        import threading

        self.proc = proc
        self.lines: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(stream,), daemon=True)
                         for stream in (proc.stdout, proc.stderr)]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # let the pumps drain
                if needle in self.text:
                    return
                raise AssertionError(f"never printed {needle!r}; exit {self.proc.poll()}:\n"
                                     f"{self.text[-3000:]}")
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return code


def kill_group(watched: Watched) -> None:
    """SIGKILL the process and every process it started (dataloader or pool workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(watched.proc.pid, signal.SIGKILL)
    watched.finish(timeout=60)


def kill_when(watched: Watched, ready: Callable[[], bool], delay: float = 0.0, timeout: float = 300) -> bool:
    """Wait until `ready()` holds, sleep `delay` seconds, then SIGKILL the group.

    Returns True when the kill landed on a live process, False when it had already exited (the caller
    decides whether that is acceptable)."""
    deadline = time.monotonic() + timeout
    while watched.proc.poll() is None and not ready():
        if time.monotonic() > deadline:
            kill_group(watched)
            raise AssertionError("the kill condition never became true")
        time.sleep(0.02)
    if delay:
        time.sleep(delay)
    alive = watched.proc.poll() is None
    kill_group(watched)
    return alive


def wait_killed(watched: Watched, timeout: float = 300) -> tuple[int, str]:
    """Wait for a process started with `kill_at_write`; returns (returncode, its output)."""
    code = watched.finish(timeout=timeout)
    # The whole group goes, so no worker outlives the faulted parent.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(watched.proc.pid, signal.SIGKILL)
    return code, watched.text


def rng(seed: int) -> random.Random:
    """The seeded RNG of the timed kill points."""
    return random.Random(seed)


# --- what "nothing lost" means -----------------------------------------------------------------------------


def stray_temporaries(root: Path) -> list[Path]:
    """Temporary files of atomic writes (`.<name>.bench-*.tmp`, and any other `.*.tmp*`) present as real
    files under `root`."""
    return sorted(p for p in Path(root).rglob(".*.tmp*") if p.is_file() and not p.is_symlink())


def verify_tree(root: Path) -> dict[str, int]:
    """Check every file under `root` that the suite could trust later; raise AssertionError on the first bad
    one. Prepared sets verify against their manifests; every JSON parses; every `.pt` loads with
    `weights_only=True`. Temporary files are ignored here (see `stray_temporaries`). Returns counts."""
    import torch

    from bench.data.manifest import load_manifest

    counts = {"sets": 0, "json": 0, "checkpoints": 0}
    root = Path(root)
    for manifest in root.rglob("manifest.json"):
        if manifest.name.startswith("."):
            continue
        load_manifest(manifest.parent, verify=True)
        counts["sets"] += 1
    for path in root.rglob("*.json"):
        if path.name.startswith("."):
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise AssertionError(f"{path}: does not parse ({err})") from None
        counts["json"] += 1
    for path in root.rglob("*.pt"):
        if path.name.startswith("."):
            continue
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure is a lost checkpoint
            raise AssertionError(f"{path}: does not load with weights_only=True ({err})") from None
        counts["checkpoints"] += 1
    return counts


def finished_metrics(runs: Path) -> dict[str, dict]:
    """method -> metrics.json of each finished run folder under `runs` (one run per method expected)."""
    out: dict[str, dict] = {}
    for folder in sorted(Path(runs).iterdir()):
        metrics, config = folder / "metrics.json", folder / "config.json"
        if folder.name == "stages" or not metrics.is_file() or not config.is_file():
            continue
        data = json.loads(metrics.read_text())
        if data.get("status") == "finished":
            method = json.loads(config.read_text())["method"]
            assert method not in out, f"two finished runs of {method} under {runs}"
            out[method] = data
    return out


QUALITY = SAMPLE_METRICS  # every per-sample score, from the metric vocabulary (a new metric joins by itself)


def quality(metrics: dict) -> dict:
    """What must reproduce exactly after an interruption (timings are measurements, not results)."""
    return {"aggregate": {k: metrics["aggregate"].get(k) for k in QUALITY},
            "samples": [{k: s.get(k) for k in ("id", *QUALITY)} for s in metrics["samples"]],
            "training": {name: t["iterations"] for name, t in metrics.get("training", {}).items()}}


# --- in-process entry point --------------------------------------------------------------------------------


def invoke(args: list[str]) -> tuple[int, str, str]:
    """Run the real entry point (`bench.cli.main`) in this process; returns (exit code, stdout, stderr).

    An exception escaping `main` is what a user would see as a traceback: it is returned as exit code -1
    with the formatted traceback in stderr, so tests can assert it never happens."""
    import traceback

    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["bench", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # noqa: BLE001 - the traceback a user would have seen
                code = -1
                err.write(traceback.format_exc())
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """A clean refusal: exit status 2, no traceback, and one `error:` line that mentions every needle."""
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines, err
    for needle in needles:
        assert any(needle in line for line in lines), (needle, err)
    return lines[-1]


# --- hostile files -----------------------------------------------------------------------------------------


class Payload:
    """Pickled, this object calls `open(marker, 'w')` when unpickled: the code a stranger's checkpoint could
    carry. `torch.load(weights_only=True)` must refuse it without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def write_payload_checkpoint(path: Path, marker: Path, like: dict | None = None) -> Path:
    """A `.pt` file shaped like `like` (a real checkpoint's dict) with a code payload added."""
    import torch

    obj = dict(like or {})
    obj["extra"] = Payload(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_header(width: int, height: int, rows: int = 4) -> bytes:
    """A structurally complete PNG (IHDR, IDAT, IEND) whose header claims `width` x `height`, while its data
    holds only a few zero rows: a few hundred bytes that would ask a naive decoder for w*h*3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    raw = zlib.compress(b"\x00" * min(rows * (1 + 3 * max(width, 1)), 1 << 20))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def jpeg_with_header(width: int, height: int) -> bytes:
    """A JPEG whose SOF0 claims `width` x `height` (up to 65535 each), then ends: header only."""
    good = encode_small_jpeg()
    i = good.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    return good[:i + 5] + struct.pack(">HH", height, width) + good[i + 9:]


def encode_small_jpeg() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


def small_png(seed: int = 0, size: tuple[int, int] = (16, 16)) -> bytes:
    """A valid 8-bit RGB PNG of random pixels."""
    from bench.data.images import encode_png

    g = np.random.default_rng(seed)
    return encode_png(g.integers(0, 256, (*size, 3), dtype=np.uint8))
