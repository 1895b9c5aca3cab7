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


# --- a prepared set is locked while it is read ----------------------------------------------------


def own_set(smoke_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the smoke 7-frame set in a data home of its own, verified once so that its stat record
    holds the copy's inodes (later verifications then write nothing): (data home, set folder)."""
    import shutil

    from bench.data.manifest import damaged_files, load_manifest

    data = tmp_path / "data"
    shutil.copytree(smoke_data / "synthetic-smoke-7f", data / "synthetic-smoke-7f")
    folder = data / "synthetic-smoke-7f"
    assert damaged_files(folder, load_manifest(folder)) == []
    return data, folder


PREPARE_7 = ["prepare", "--profile", "smoke", "--frames", "7", "--workers", "1"]


def test_prepare_fresh_waits_for_a_reader_and_touches_nothing_until_it_lets_go(smoke_data: Path,
                                                                                tmp_path: Path) -> None:
    import time

    from bench.data.manifest import load_manifest
    from bench.fileio import FolderLock

    data, folder = own_set(smoke_data, tmp_path)
    before = snapshot(folder)
    with FolderLock(folder, shared=True):  # what a run holds while it trains and scores on the set
        fresh = faults.start_bench([*PREPARE_7, "--data-dir", str(data), "--fresh"])
        try:
            fresh.wait_for(f"waiting for the runs reading {folder}")
            time.sleep(1.0)  # time enough to delete files, were it not waiting
            assert fresh.proc.poll() is None and snapshot(folder) == before
        except BaseException:
            faults.kill_group(fresh)
            raise
    assert fresh.finish() == 0, fresh.text[-3000:]
    assert "wrote" in fresh.text and snapshot(folder) != before  # rebuilt once the reader let go
    load_manifest(folder, verify=True)


def test_prepare_fresh_no_wait_refuses_in_one_line_while_a_reader_holds_the_set(smoke_data: Path,
                                                                                tmp_path: Path) -> None:
    from bench.fileio import FolderLock

    data, folder = own_set(smoke_data, tmp_path)
    before = snapshot(folder)
    with FolderLock(folder, shared=True):
        out = faults.run_bench([*PREPARE_7, "--data-dir", str(data), "--fresh", "--no-wait"], timeout=60)
        faults.assert_one_line_error(out.returncode, out.stderr, str(folder), "in use")
        # Another reader is no writer: a plain prepare verifies beside the reader without waiting.
        plain = faults.run_bench([*PREPARE_7, "--data-dir", str(data), "--no-wait"], timeout=60)
        assert plain.returncode == 0 and "nothing to do" in plain.stdout, plain.stderr[-2000:]
    assert snapshot(folder) == before


def test_a_run_holds_its_set_through_training_so_prepare_fresh_cannot_replace_it(smoke_data: Path,
                                                                                  tmp_path: Path) -> None:
    data, folder = own_set(smoke_data, tmp_path)
    runs, release = tmp_path / "runs", tmp_path / "release"
    before = snapshot(folder)
    a = faults.start_bench(run_args(data, runs), pause_at_write="ckpt.pt:2", release=release)
    try:
        a.wait_for("FAULT: paused before writing")  # mid-training: the DM stage's second checkpoint
        out = faults.run_bench([*PREPARE_7, "--data-dir", str(data), "--fresh", "--no-wait"], timeout=60)
        faults.assert_one_line_error(out.returncode, out.stderr, str(folder), "in use")
        assert snapshot(folder) == before
    finally:
        release.touch()
    assert a.finish() == 0, a.text[-3000:]
    # Released with the run: now the same command may rebuild the set.
    out = faults.run_bench([*PREPARE_7, "--data-dir", str(data), "--fresh", "--no-wait"], timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
