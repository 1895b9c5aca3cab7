"""`bench run --nproc 2`: two CPU processes under torchrun (gloo) train one smoke run together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_two_processes_write_one_checkpoint_per_stage_and_one_metrics_file(smoke_data, tmp_path):
    runs = tmp_path / "runs"
    cmd = [str(Path(sys.executable).parent / "bench"), "run", "--method", "ours-static", "--profile", "smoke",
           "--nproc", "2", "--device", "cpu", "--no-floor", "--data-dir", str(smoke_data),
           "--runs-dir", str(runs)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    stages = [p for p in (runs / "stages").iterdir() if p.is_dir()]
    assert len(stages) == 1  # ours-static trains the DM stage only
    for stage in stages:
        files = sorted(p.name for p in stage.iterdir() if not p.name.startswith("."))
        assert files == ["ckpt.pt", "stage.json"]
        assert json.loads((stage / "stage.json").read_text())["status"] == "finished"
    metrics = list(runs.glob("*/metrics.json"))
    assert len(metrics) == 1 and json.loads(metrics[0].read_text())["status"] == "finished"
    # Rank 0 alone reports: the table is printed once.
    assert out.stdout.count("deblur_psnr") == 1
