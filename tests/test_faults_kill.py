"""Kill at any point: SIGKILL `bench prepare`, `bench run`, `bench ablate` and `bench report` at
several points each, during writes included, rerun the same command, and check that it completes, that
every file it left verifies, and that the final results equal an uninterrupted run's.

Each command gets one *kill chain*: the same command started again and again, each start killed at another
point (mid-write through `faults.BOOTSTRAP`, or on a disk condition after a seeded random delay), then run to
the end. After every kill the store and the prepared sets must still verify (manifest digests, JSON,
checkpoints with `weights_only=True`) and no killed run may be reported as finished. The chains run once per
module (fixtures); the tests below read their outcome.

Reference results come from one uninterrupted `bench ablate --only ours-no-tv` (which also runs `ours`), so
`bench run --method ours` and `bench ablate` share it; the run chain's finished store seeds the ablate chain,
whose kills then land in the variant's own stages.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import faults
import pytest

from bench.data.manifest import STAT_RECORD

pytestmark = pytest.mark.slow


@dataclass
class Chain:
    """What one kill chain did: the kills that landed, the final run, and the temporaries left behind."""

    kills: list[str] = field(default_factory=list)
    final: subprocess.CompletedProcess | None = None
    strays_after_kills: list[list[Path]] = field(default_factory=list)
    strays_final: list[Path] = field(default_factory=list)


def run_chain(args: list[str], root: Path, points: list[tuple[str, object, float]],
              after_kill: object = None) -> Chain:
    """Start `bench ARGS` once per kill point, kill it there, check `root`; then run it to completion.

    A point is ("write", spec, 0) for a mid-write kill or ("when", predicate, delay) for a timed one."""
    chain = Chain()
    for kind, spec, delay in points:
        if kind == "write":
            proc = faults.start_bench(args, kill_at_write=spec)  # type: ignore[arg-type]
            code, err = faults.wait_killed(proc)
            assert code == -9 and "FAULT: killed while writing" in err, (spec, code, err[-2000:])
            chain.kills.append(err.split("FAULT: killed while writing ", 1)[1].splitlines()[0])
        else:
            proc = faults.start_bench(args)
            assert faults.kill_when(proc, spec, delay), f"{args[0]} finished before the timed kill"  # type: ignore[arg-type]
            chain.kills.append(f"timed kill after {delay:.2f} s")
        faults.verify_tree(root)  # raises on any file that does not verify
        if after_kill is not None:
            after_kill()  # type: ignore[operator]
        chain.strays_after_kills.append(faults.stray_temporaries(root))
    chain.final = faults.run_bench(args)
    assert chain.final.returncode == 0, chain.final.stderr[-3000:]
    chain.strays_final = faults.stray_temporaries(root)
    return chain


STRAYS_BUG = ("a SIGKILL during an atomic write leaves its `.<name>.*.tmp` behind and nothing removes it "
              "on the rerun ({}); the rerun should remove it")


def no_finished_run_of(runs: Path, *methods: str) -> None:
    """After a kill, none of these methods may have a finished result (nothing trusted that should not be)."""
    if runs.is_dir():
        done = faults.finished_metrics(runs)
        assert not set(methods) & set(done), sorted(done)


# --- prepare ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepare_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, Path]:
    data = tmp_path_factory.mktemp("kill-prepare")
    args = ["prepare", "--profile", "smoke", "--data-dir", str(data), "--workers", "1"]
    delay = faults.rng(10).uniform(0.0, 0.2)

    def pngs_written() -> bool:
        return sum(1 for _ in data.rglob("*.png")) >= 30

    points = [("write", 7, 0.0), ("when", pngs_written, delay), ("write", "manifest.json", 0.0)]
    return run_chain(args, data, points), data


def files_of(root: Path) -> dict[str, bytes]:
    """Every file's bytes, less the stat records (a machine-local cache of inodes and mtimes, not data)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != STAT_RECORD}


def test_prepare_killed_four_ways_ends_byte_identical(prepare_chain: tuple[Chain, Path],
                                                      smoke_data: Path) -> None:
    chain, data = prepare_chain
    assert len(chain.kills) == 3 and "manifest.json" in chain.kills[-1]
    # The mid-write kills left half-written temporaries behind; the rerun must have cleaned them.
    assert chain.strays_after_kills[0], "the mid-write kill left no temporary: the fault was not injected"
    assert chain.strays_final == []
    counts = faults.verify_tree(data)
    assert counts["sets"] == 2
    tree, ref = files_of(data), files_of(smoke_data)
    assert tree.keys() == ref.keys()
    assert tree == ref  # byte-identical to the uninterrupted build of the session fixture


# --- run and ablate ----------------------------------------------------------------------------------------

RUN_ARGS = ["--profile", "smoke", "--frames", "7", "--device", "cpu"]


@pytest.fixture(scope="module")
def reference(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Uninterrupted `bench ablate --only ours-no-tv` on the smoke profile: ours's and the variant's."""
    runs = tmp_path_factory.mktemp("kill-reference")
    out = faults.run_bench(["ablate", "--only", "ours-no-tv", "--seeds", "0", *RUN_ARGS,
                            "--data-dir", str(smoke_data), "--runs-dir", str(runs)])
    assert out.returncode == 0, out.stderr[-3000:]
    done = faults.finished_metrics(runs)
    assert set(done) == {"ours", "ours-no-tv"}
    return {"runs": runs, "output": out.stdout, **done}  # type: ignore[dict-item]


def _stage_ckpt(runs: Path, prefix: str, exclude: frozenset[str] | set[str] = frozenset()) -> bool:
    """True once a stage folder named `prefix*` (and not in `exclude`) holds a checkpoint."""
    stages = runs / "stages"
    return stages.is_dir() and any(p.name.startswith(prefix) and p.name not in exclude
                                   and (p / "ckpt.pt").is_file() for p in stages.iterdir())


@pytest.fixture(scope="module")
def run_chain_result(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, Path]:
    runs = tmp_path_factory.mktemp("kill-run") / "runs"
    args = ["run", "--method", "ours", "--no-floor", *RUN_ARGS, "--data-dir", str(smoke_data),
            "--runs-dir", str(runs)]
    delay = faults.rng(11).uniform(0.0, 0.5)
    points = [
        ("write", "ckpt.pt:2", 0.0),  # mid-write of the DM stage's second checkpoint
        ("when", lambda: _stage_ckpt(runs, "autoencoder-"), delay),  # somewhere in stage 1 (RVE-RVD)
        ("write", "metrics.json", 0.0),  # everything trained and scored, killed writing the result
    ]
    return run_chain(args, runs, points, after_kill=lambda: no_finished_run_of(runs, "ours")), runs


def test_run_killed_three_times_finishes_with_the_uninterrupted_metrics(
        run_chain_result: tuple[Chain, Path], reference: dict, smoke_data: Path) -> None:
    chain, runs = run_chain_result
    assert "ckpt.pt" in chain.kills[0] and "metrics.json" in chain.kills[2]
    counts = faults.verify_tree(runs)
    assert counts["checkpoints"] >= 4  # three stage checkpoints and weights.pt
    assert faults.verify_tree(smoke_data)["sets"] == 2  # the prepared sets it read are untouched
    got = faults.finished_metrics(runs)["ours"]
    assert faults.quality(got) == faults.quality(reference["ours"])


def test_run_kills_leave_no_temporary_files(run_chain_result: tuple[Chain, Path]) -> None:
    chain, _ = run_chain_result
    assert chain.strays_after_kills[0], "the mid-write kill left no temporary: the fault was not injected"
    assert chain.strays_final == [], chain.strays_final


@pytest.fixture(scope="module")
def ablate_chain(run_chain_result: tuple[Chain, Path], smoke_data: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, Path]:
    # Start from the finished `ours` store, so the kills land in the variant's own stages.
    runs = tmp_path_factory.mktemp("kill-ablate") / "runs"
    shutil.copytree(run_chain_result[1], runs)
    for stray in faults.stray_temporaries(runs):
        stray.unlink()  # measured by the run tests; here only the ablate's own leftovers count
    ours_stages = {p.name for p in (runs / "stages").iterdir()}
    args = ["ablate", "--only", "ours-no-tv", "--seeds", "0", *RUN_ARGS, "--data-dir", str(smoke_data),
            "--runs-dir", str(runs)]
    delay = faults.rng(12).uniform(0.0, 0.5)
    points = [
        ("when", lambda: _stage_ckpt(runs, "autoencoder-", ours_stages), delay),
        ("write", "ckpt.pt:2", 0.0),
    ]
    return run_chain(args, runs, points, after_kill=lambda: no_finished_run_of(runs, "ours-no-tv")), runs


def test_ablate_killed_twice_finishes_with_the_uninterrupted_verdict(ablate_chain: tuple[Chain, Path],
                                                                    reference: dict) -> None:
    chain, runs = ablate_chain
    faults.verify_tree(runs)
    got = faults.finished_metrics(runs)
    for method in ("ours", "ours-no-tv"):
        assert faults.quality(got[method]) == faults.quality(reference[method]), method
    # The verdict row of the table (progress lines carry timings and differ).
    verdict = [line for line in chain.final.stdout.splitlines() if line.startswith("│ ours-no-tv")]
    assert verdict and verdict == [line for line in reference["output"].splitlines()
                                   if line.startswith("│ ours-no-tv")]


def test_ablate_kills_leave_no_temporary_files(ablate_chain: tuple[Chain, Path]) -> None:
    chain, _ = ablate_chain
    assert chain.strays_after_kills[1], "the mid-write kill left no temporary: the fault was not injected"
    assert chain.strays_final == [], chain.strays_final


# --- report ------------------------------------------------------------------------------------------------

REPORT_FORMATS = "md,csv,tex,png"


@pytest.fixture(scope="module")
def report_chain(reference: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, Path, Path]:
    base = tmp_path_factory.mktemp("kill-report")
    ref_out, out = base / "reference", base / "killed"
    common = ["report", "--runs-dir", str(reference["runs"]), "--format", REPORT_FORMATS,
              "--profile", "smoke"]
    done = faults.run_bench([*common, "--out", str(ref_out)])
    assert done.returncode == 0, done.stderr[-3000:]
    delay = faults.rng(13).uniform(0.0, 0.15)
    points = [
        ("write", 3, 0.0),  # mid-write of one of the first tables
        ("when", lambda: (out / "figures").is_dir(), delay),  # while the figures are drawn
    ]
    return run_chain([*common, "--out", str(out)], out, points), ref_out, out


def test_report_killed_twice_ends_with_the_uninterrupted_tables(
        report_chain: tuple[Chain, Path, Path]) -> None:
    chain, ref_out, out = report_chain
    faults.verify_tree(out)
    ref_files = {str(p.relative_to(ref_out)) for p in ref_out.rglob("*") if p.is_file()}
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p not in chain.strays_final}
    assert files == ref_files
    for rel in sorted(ref_files):
        if rel.startswith("tables/"):
            assert (out / rel).read_bytes() == (ref_out / rel).read_bytes(), rel


def test_report_kills_leave_no_temporary_files(report_chain: tuple[Chain, Path, Path]) -> None:
    chain, _, _ = report_chain
    assert chain.strays_after_kills[0], "the mid-write kill left no temporary: the fault was not injected"
    assert chain.strays_final == [], chain.strays_final


# --- prepare's worker processes die with it -------------------------------------------------------


def write_clip(path: Path, count: int, seed: int, h: int = 96, w: int = 128) -> None:
    """`count` frames of a smooth random texture sliding right one pixel a frame, as an MP4."""
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 240.0, (w, h))
    base = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 256, (h, w + count, 3), dtype=np.uint8),
                            (5, 5), 0)
    for t in range(count):
        writer.write(np.ascontiguousarray(base[:, t:t + w]))
    writer.release()


def live_members(group: int) -> list[int]:
    """Pids of the processes of process group `group` that are not zombies (read from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == group:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
def test_kill_9_of_a_video_prepare_takes_its_workers_along_and_the_rerun_succeeds(tmp_path: Path) -> None:
    import os
    import signal
    import time

    from bench.data.manifest import load_manifest

    root, data = tmp_path / "clips", tmp_path / "data"
    for i in range(4):
        write_clip(root / f"clip{i}.mp4", 400, seed=i)  # seconds of work per clip: killed mid-clip
    args = ["prepare", "--source", "video", "--root", str(root), "--data-dir", str(data), "--frames", "3",
            "--workers", "2"]
    proc = faults.start_bench(args)  # its own process group: the workers are in it, nothing else is
    group = proc.proc.pid

    def writing() -> bool:
        return sum(1 for _ in data.rglob("*.png")) >= 5 and len(live_members(group)) >= 3

    deadline = time.monotonic() + 120
    while not writing():
        assert proc.proc.poll() is None and time.monotonic() < deadline, proc.text[-2000:]
        time.sleep(0.02)
    os.kill(proc.proc.pid, signal.SIGKILL)  # the parent only, as a user's kill -9 or the OOM killer
    proc.proc.wait(timeout=60)  # not `finish`: its output pumps would wait for the workers to close the pipes
    deadline = time.monotonic() + 3
    while live_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = live_members(group)
    for pid in left:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], "workers outlived their killed parent"
    proc.finish(timeout=60)
    started = time.monotonic()
    out = faults.run_bench(args, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.monotonic() - started < 60  # at once: nothing to wait for
    assert len(load_manifest(data / "video-3f", verify=True)["clips"]) == 4
