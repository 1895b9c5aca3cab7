"""`bench prepare` end to end: idempotent, byte-identical, resumable after SIGKILL, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.cli import main
from bench.data.images import read_image
from bench.data.manifest import STAT_RECORD, load_manifest

BENCH = Path(sys.executable).parent / "bench"


def run_bench(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run the real entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def tree(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, less the stat records (a machine-local cache of inodes and mtimes, not data)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STAT_RECORD}


def test_same_command_twice_is_byte_identical_and_the_second_does_nothing(smoke_data, tmp_path, capsys,
                                                                           monkeypatch) -> None:
    args = ["prepare", "--profile", "smoke", "--data-dir", str(tmp_path), "--workers", "2"]
    code, out, _ = run_bench(args, capsys, monkeypatch)
    assert code == 0 and "wrote" in out.strip().splitlines()[-1] and str(tmp_path) in out
    # Two workers here, one in the fixture: the bytes must not depend on the worker count.
    assert tree(tmp_path) == tree(smoke_data)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code, out, _ = run_bench(args, capsys, monkeypatch)
    assert code == 0 and "nothing to do" in out.strip().splitlines()[-1]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamps


def test_damaged_set_is_repaired_and_other_settings_need_fresh(tmp_path, capsys, monkeypatch) -> None:
    args = ["prepare", "--profile", "smoke", "--frames", "7", "--data-dir", str(tmp_path), "--workers", "1"]
    assert run_bench(args, capsys, monkeypatch)[0] == 0
    folder = tmp_path / "synthetic-smoke-7f"
    victim = folder / load_manifest(folder)["samples"][0]["blur"]
    victim.write_bytes(b"broken")
    code, out, err = run_bench(args, capsys, monkeypatch)
    assert code == 0 and "repairing" in err and "wrote 1 files" in out
    load_manifest(folder, verify=True)
    code, _, err = run_bench([*args, "--seed", "1"], capsys, monkeypatch)
    assert code == 2 and "--fresh" in err and len(err.strip().splitlines()) == 1
    assert run_bench([*args, "--seed", "1", "--fresh"], capsys, monkeypatch)[0] == 0
    assert load_manifest(folder, verify=True)["seed"] == 1


def test_sigkill_mid_prepare_then_rerun_completes(smoke_data, tmp_path, capsys, monkeypatch) -> None:
    proc = subprocess.Popen([str(BENCH), "prepare", "--profile", "smoke", "--data-dir", str(tmp_path),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(1 for _ in tmp_path.rglob("*.png")) >= 3:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    manifests = list(tmp_path.rglob("manifest.json"))
    assert len(manifests) < 2, "the run finished before the kill; nothing was interrupted"
    # Atomic writes: whatever is in place is a whole file.
    for png in tmp_path.rglob("*.png"):
        read_image(png)
    code, out, _ = run_bench(["prepare", "--profile", "smoke", "--data-dir", str(tmp_path), "--workers", "1"],
                             capsys, monkeypatch)
    assert code == 0 and "already in place" in out
    assert not list(tmp_path.rglob("*.tmp"))
    for n in (7, 9):
        load_manifest(tmp_path / f"synthetic-smoke-{n}f", verify=True)
    assert tree(tmp_path) == tree(smoke_data)


def _frames(folder: Path, count: int, h: int = 8, w: int = 12) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for t in range(count):
        cv2.imwrite(str(folder / f"{t:04d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _bad_root(kind: str, tmp: Path) -> tuple[list[str], str]:
    """A broken input and a fragment its error message must contain."""
    root = tmp / "root"
    if kind == "missing-root":
        return ["--source", "gopro", "--root", str(tmp / "nowhere")], "no such folder"
    if kind == "empty-root":
        root.mkdir()
        return ["--source", "gopro", "--root", str(root)], "empty root"
    _frames(root / "seq", 6)
    if kind == "short-sequence":
        return ["--source", "gopro", "--root", str(root), "--frames", "7"], "fewer than N=7"
    if kind == "mixed-resolution":
        cv2.imwrite(str(root / "seq" / "0003.png"), np.zeros((10, 12, 3), np.uint8))
        return ["--source", "gopro", "--root", str(root), "--frames", "3"], "mixed resolutions"
    if kind == "unreadable-image":
        (root / "seq" / "0002.png").write_bytes(b"this is not an image")
        return ["--source", "gopro", "--root", str(root), "--frames", "3"], "0002.png"
    if kind == "truncated-image":
        data = (root / "seq" / "0004.png").read_bytes()
        (root / "seq" / "0004.png").write_bytes(data[: len(data) // 2])
        return ["--source", "gopro", "--root", str(root), "--frames", "3"], "truncated"
    if kind == "even-n":
        return ["--frames", "8"], "odd"
    if kind == "n-below-3":
        return ["--frames", "1"], "at least 3"
    if kind == "root-with-synthetic":
        return ["--source", "synthetic", "--root", str(root)], "drop --root"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing-root", "empty-root", "short-sequence", "mixed-resolution",
                                  "unreadable-image", "truncated-image", "even-n", "n-below-3",
                                  "root-with-synthetic"])
def test_bad_input_gives_one_line_error_and_nonzero_exit(kind, tmp_path, capsys, monkeypatch) -> None:
    args, fragment = _bad_root(kind, tmp_path)
    code, _, err = run_bench(["prepare", "--profile", "smoke", "--data-dir", str(tmp_path / "data"),
                              "--workers", "1", *args], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0] and "Traceback" not in err
    assert not list((tmp_path / "data").rglob("manifest.json"))
