"""benchmarks/seed_spread.py: per-run verdicts, motion range and stage-2 curves over one store per setting."""

import importlib.util
import json
import sys
from pathlib import Path

from click.testing import CliRunner
from records import write_run

_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "seed_spread.py"
_spec = importlib.util.spec_from_file_location("seed_spread", _SCRIPT)
seed_spread = importlib.util.module_from_spec(_spec)
sys.modules["seed_spread"] = seed_spread  # its dataclasses look their module up while being made
_spec.loader.exec_module(seed_spread)

JITTER = [0.3, -0.2, 0.1, -0.4, 0.25, -0.05, 0.15, -0.15]  # per-sample spread, so the bootstrap has noise


def _training(threads: int, curve: list[tuple[int, float]]) -> dict:
    execution = {"device": "cpu", "precision": "fp32", "threads": threads, "processor": "Test CPU"}
    validation = {"metric": "loss", "points": [list(p) for p in curve]}
    return {"dm": {"execution": execution}, "bie": {"execution": execution, "validation": validation}}


def _store(root: Path, threads: int, ours: dict[int, tuple[float, float, float]]) -> Path:
    """ours at N = 7 per seed (eq6, ppsnr, motion ratio), its ours-static per seed, one blurred at seed 0."""
    runs = root / f"runs{threads}"
    common = {"frames": 7, "samples": 8, "jitter": JITTER}
    for seed, (eq6, ppsnr, motion) in ours.items():
        write_run(runs, "L", "ours", seed=seed, values={"eq6": eq6, "ppsnr": ppsnr, "motion_ratio": motion,
                                                        "deblur_psnr": 27.3},
                  training=_training(threads, [(0, 0.9), (750, 0.55), (1500, 0.5)]), **common)
        write_run(runs, "L", "ours-static", seed=seed, values={"eq6": 85.0, "ppsnr": 23.8}, **common)
    write_run(runs, "L", "blurred", seed=0, values={"eq6": 82.6, "ppsnr": 23.8}, trained=False, **common)
    return runs


def test_every_seed_is_judged_against_both_floors_with_blurred_standing_for_every_seed(tmp_path):
    runs = _store(tmp_path, 1, {0: (69.8, 24.4, 0.46), 3: (72.0, 23.2, 1.17)})
    rows = seed_spread.spread_rows(runs, "ours")
    assert [(r.frames, r.seed) for r in rows] == [(7, 0), (7, 3)]
    good, flipped = rows
    assert good.clears and not flipped.clears  # seed 3 loses pPSNR to both floors
    assert {f.floor for f in good.floors} == {"blurred", "ours-static"}
    assert all(f.verdict != "not stored" for r in rows for f in r.floors)  # blurred's seed 0 serves seed 3
    lost = [f for f in flipped.floors if f.metric == "ppsnr"]
    assert lost and all(f.gain_low < 0 for f in lost)
    assert good.trained_on == ("Test CPU · fp32 · 1 thread",)
    assert good.curve == ((0, 0.9), (750, 0.55), (1500, 0.5))
    assert good.motion_max > good.motion_ratio  # the jitter spreads samples around the mean


def test_the_summary_counts_only_runs_that_clear_and_keep_the_motion_in_range(tmp_path):
    runs = _store(tmp_path, 1, {0: (69.8, 24.4, 0.46), 1: (69.9, 24.3, 1.3), 3: (72.0, 23.2, 0.5)})
    (line,) = seed_spread.summary(seed_spread.spread_rows(runs, "ours"))
    assert line.startswith("N = 7: 1 of 3 runs clear every floor with motion ratio in [0.3, 1.2]")
    assert "pPSNR 23.20-24.40" in line


def test_the_command_reads_one_store_per_thread_count(tmp_path):
    one = _store(tmp_path, 1, {0: (69.8, 24.4, 0.46)})
    two = _store(tmp_path, 2, {0: (71.6, 24.2, 0.55)})
    both = ["--runs", str(one), "--runs", str(two)]
    result = CliRunner().invoke(seed_spread.main, [*both, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["trained_on"] for r in rows] == [[f"Test CPU · fp32 · {k}"] for k in ("1 thread", "2 threads")]
    table = CliRunner().invoke(seed_spread.main, both).output
    assert "| 7 | 0 | Test CPU · fp32 · 2 threads | 27.30 | 71.60 (82.60 " in table


def test_an_empty_store_or_unknown_method_is_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(seed_spread.main, ["--runs", str(empty)])
    assert result.exit_code != 0 and "no finished run of ours" in result.output
    result = CliRunner().invoke(seed_spread.main, ["--runs", str(empty), "--method", "nope"])
    assert result.exit_code != 0 and "unknown method 'nope'" in result.output
