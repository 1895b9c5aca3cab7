"""benchmarks/gpu_check.sh: what can be checked without a GPU: its arguments and the one-line refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_without_a_cuda_device_it_stops_with_one_line_before_any_work(tmp_path):
    done = run("--iters", "5", tmp_path=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA device visible to torch (python: ")
    assert "NVIDIA GPU" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing rendered, prepared or written


@pytest.mark.parametrize(("args", "message"), [
    (["--iters", "0"], "error: --iters takes a positive whole number, e.g. --iters 100"),
    (["--iters", "ten"], "error: --iters takes a positive whole number, e.g. --iters 100"),
    (["--iters"], "error: --iters takes a positive whole number, e.g. --iters 100"),
    (["--root"], "error: --root needs a folder, e.g. --root /data/GOPRO_Large_all"),
    (["--frames", "7"], "error: unknown argument '--frames'; usage: bash benchmarks/gpu_check.sh "
                        "[--root GOPRO_ROOT] [--iters K] [--work DIR]"),
])
def test_bad_arguments_are_one_line_naming_the_option_and_the_fix(tmp_path, args, message):
    done = run(*args, tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == message


def test_help_prints_the_usage(tmp_path):
    done = run("--help", tmp_path=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: bash benchmarks/gpu_check.sh")
