"""Concurrency: two `bench run` processes on the same run wait on its lock and never interleave
writes; runs that only share a training stage take turns on the stage; independent runs both finish.

To make the interleaving deterministic rather than a race, the first process (A) is started through
`faults.BOOTSTRAP` with a pause *before* its second checkpoint write: it then holds the run lock and the DM
stage lock for as long as the test wants. While A is paused:
- B, the same command, must announce that it waits and write nothing;
- C, a different run sharing A's DM stage (only an evaluation setting differs), must wait on the stage;
- D, an independent run (another seed), must finish on its own.
Then A is released; A, B and C finish, B reusing A's result and C reusing A's stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import faults
import pytest

pytestmark = pytest.mark.slow


def run_args(data: Path, runs: Path, *extra: str) -> list[str]:
    args = ["run", "--method", "ours-static", "--profile", "smoke", "--frames", "7", "--device", "cpu",
            "--no-floor", "--data-dir", str(data), "--runs-dir", str(runs)]
    for item in ("train.iters_dm=4", "train.ckpt_every=2", "eval.runtime_warmup=0"):
        args += ["--set", item]
    return args + list(extra)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under `folder`, the lock files excepted."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_same_run_waits_shared_stage_takes_turns_independent_run_finishes(smoke_data: Path,
                                                                          tmp_path: Path) -> None:
    runs, release = tmp_path / "runs", tmp_path / "release"
    same = run_args(smoke_data, runs, "--set", "eval.runtime_repeats=1")
    shares_stage = run_args(smoke_data, runs, "--set", "eval.runtime_repeats=2")
    independent = run_args(smoke_data, runs, "--set", "eval.runtime_repeats=1", "--seeds", "1")
    a = faults.start_bench(same, pause_at_write="ckpt.pt:2", release=release)
    others: list[faults.Watched] = []
    try:
        a.wait_for("FAULT: paused before writing")
        before = snapshot(runs)
        b = faults.start_bench(same)
        c = faults.start_bench(shares_stage)
        d = faults.start_bench(independent)
        others = [b, c, d]
        b.wait_for("waiting for another process using")
        c.wait_for("waiting for another process training")
        assert d.finish() == 0, d.text[-3000:]
        # While A held the locks, B and C wrote nothing into A's run or its stage (D has its own folders).
        a_folders = {"/".join(Path(k).parts[:2 if k.startswith("stages/") else 1]) for k in before}
        assert len(a_folders) == 2, a_folders  # A's run folder and its DM stage folder
        after = snapshot(runs)
        assert {k: v for k, v in after.items() if k.startswith(tuple(f + "/" for f in a_folders))} == before
        assert b.proc.poll() is None and c.proc.poll() is None  # still waiting, not failed
    finally:
        release.touch()
    assert a.finish() == 0, a.text[-3000:]
    assert b.finish() == 0, b.text[-3000:]
    assert c.finish() == 0, c.text[-3000:]
    for other in others:
        assert "Traceback" not in other.text

    assert "reused the finished run" in b.text  # B waited, then found A's finished result
    faults.verify_tree(runs)
    assert faults.stray_temporaries(runs) == []
    by_run: dict[str, dict] = {}
    for folder in runs.iterdir():
        if folder.name != "stages":
            by_run[folder.name] = json.loads((folder / "metrics.json").read_text())
    assert len(by_run) == 3 and all(m["status"] == "finished" for m in by_run.values())
    seeds = sorted(m["seed"] for m in by_run.values())
    assert seeds == [0, 0, 1]
    # A and C share one DM stage: trained once (by A), reused by C, so their weights and scores agree.
    stages = [p for p in (runs / "stages").iterdir() if p.is_dir()]
    assert len(stages) == 2  # seed 0 (shared by A and C) and seed 1 (D)
    seed0 = [m for m in by_run.values() if m["seed"] == 0]
    assert sorted(m["training"]["dm"]["reused"] for m in seed0) == [False, True]
    assert faults.quality(seed0[0]) == faults.quality(seed0[1])
