"""The claims' decision rule (bench/verdict.py): a paired bootstrap over test samples x seeds, the
same seeds on both sides, floors standing for every seed; speed from timed passes, sizes exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.verdict import (
    HELD,
    NOT_HELD,
    NOT_MEASURED,
    RESAMPLES,
    judge,
    judge_size,
    judge_speed,
    pair,
)


def values(grid: np.ndarray, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[int, dict[str, float]]:
    """seed -> sample id -> value, from a (seeds, samples) array."""
    return {s: {f"s{i}": float(v) for i, v in enumerate(row)} for s, row in zip(seeds, grid, strict=True)}


RNG = np.random.default_rng(7)
DIFFICULTY = RNG.uniform(20.0, 40.0, size=40)  # per-image error: far larger than any method's effect


def test_a_clear_difference_is_held_with_its_interval() -> None:
    ours = DIFFICULTY + RNG.normal(0, 0.3, (3, 40))  # (seeds, samples)
    theirs = ours + 1.0 + RNG.normal(0, 0.3, (3, 40))  # worse by 1 everywhere, give or take noise
    j = judge(values(ours), values(theirs), lower_is_better=True)
    assert j.verdict == HELD and j.seeds == (0, 1, 2) and j.samples == 40
    assert 0 < j.ci_low < j.gain < j.ci_high and j.gain == pytest.approx(1.0, abs=0.15)
    assert j.better == pytest.approx(ours.mean()) and j.worse == pytest.approx(theirs.mean())
    # The claimed direction matters: "theirs beats ours" is not held on the same data.
    assert judge(values(theirs), values(ours), lower_is_better=True).verdict == NOT_HELD
    # Deterministic: the same data give the same interval.
    again = judge(values(ours), values(theirs), lower_is_better=True)
    assert (again.ci_low, again.ci_high) == (j.ci_low, j.ci_high)


def test_a_difference_inside_the_noise_is_not_held() -> None:
    ours = DIFFICULTY + RNG.normal(0, 1.0, (3, 40))
    theirs = DIFFICULTY + 0.05 + RNG.normal(0, 1.0, (3, 40))
    j = judge(values(ours), values(theirs), lower_is_better=True)
    assert j.verdict == NOT_HELD and j.ci_low < 0 < j.ci_high and math.isfinite(j.gain)


def test_pairing_removes_what_both_sides_share() -> None:
    """Seed and image effects common to both sides cancel in the paired difference: a 0.2 improvement
    in every pair is held although each side spreads by 10 over seeds and 20 over images."""
    seed_effect = np.array([0.0, 10.0, -10.0])[:, None]
    ours = DIFFICULTY + seed_effect
    theirs = ours + 0.2
    j = judge(values(ours), values(theirs), lower_is_better=True)
    assert j.verdict == HELD and j.ci_low == pytest.approx(0.2) and j.ci_high == pytest.approx(0.2)
    # Pairing is by seed: the variant's seeds 0 and 1 meet ours's seeds 0 and 1 only (not seed 2).
    partial = judge(values(ours), values(theirs[:2], seeds=(0, 1)), lower_is_better=True)
    assert partial.seeds == (0, 1) and partial.better == pytest.approx(ours[:2].mean())
    shifted = judge(values(ours), values(theirs[:2], seeds=(5, 6)), lower_is_better=True)
    assert shifted.verdict == NOT_MEASURED and "no seed in common" in shifted.note


def test_a_floor_counts_as_one_value_for_every_seed() -> None:
    ours = DIFFICULTY + 1.0 + RNG.normal(0, 0.2, (3, 40))  # PSNR-like: higher is better
    floor = values(DIFFICULTY[None], seeds=(0,))  # `blurred`: one stored seed, the same for all
    j = judge(values(ours), floor, lower_is_better=False, worse_fixed=True)
    assert j.verdict == HELD and j.seeds == (0, 1, 2) and j.worse == pytest.approx(DIFFICULTY.mean())
    assert judge(values(ours), floor, lower_is_better=False).seeds == (0,)  # a trained side: seed 0 only
    both = judge(floor, floor, lower_is_better=False, better_fixed=True, worse_fixed=True)
    assert both.verdict == NOT_HELD and both.seeds == (0,) and both.gain == 0.0


def test_sides_on_different_test_sets_pair_seeds_not_samples() -> None:
    """"ours at 9 frames against jin2018 at 7": other windows, other ids; each side resampled on its own."""
    nine = {s: {f"w9-{i}": 40.0 + RNG.normal(0, 1.0) for i in range(30)} for s in (0, 1, 2)}
    seven = {s: {f"w7-{i}": 45.0 + RNG.normal(0, 1.0) for i in range(20)} for s in (0, 1, 3)}
    assert judge(nine, seven, lower_is_better=True).verdict == NOT_MEASURED  # paired: no sample in common
    j = judge(nine, seven, lower_is_better=True, paired=False)
    assert j.verdict == HELD and j.seeds == (0, 1) and j.samples == 20
    assert j.gain == pytest.approx(np.mean([list(seven[s].values()) for s in (0, 1)])
                                   - np.mean([list(nine[s].values()) for s in (0, 1)]))
    assert 0 < j.ci_low < j.gain < j.ci_high
    close = {s: {k: v + 4.9 for k, v in row.items()} for s, row in nine.items()}  # 0.1 apart: noise
    assert judge(close, seven, lower_is_better=True, paired=False).verdict == NOT_HELD


def test_pair_keeps_common_finite_samples_and_says_why_not() -> None:
    a = {0: {"x": 1.0, "y": 2.0, "z": math.nan}}
    b = {0: {"x": 3.0, "y": 4.0, "z": 5.0, "w": 1.0}}
    seeds, left, right = pair(a, b)
    assert seeds == (0,) and left.tolist() == [[1.0, 2.0]] and right.tolist() == [[3.0, 4.0]]
    assert pair({}, b) == "no finished run"
    assert "no test sample" in pair({0: {"q": 1.0}}, b)


def test_speed_from_timed_passes_and_exact_sizes() -> None:
    fast, slow = [0.10, 0.11, 0.12, 0.10, 0.13], [0.40, 0.42, 0.39, 0.45, 0.41]
    j = judge_speed(fast, slow)
    assert j.verdict == HELD and j.gain == pytest.approx(0.41 - 0.11) and 0 < j.ci_low <= j.ci_high
    close = judge_speed([0.10, 0.20, 0.15, 0.12], [0.11, 0.19, 0.16, 0.13])
    assert close.verdict == NOT_HELD and close.ci_low <= 0
    assert judge_speed([], slow).verdict == NOT_MEASURED
    size = judge_size(17.1, 32.2)
    assert size.verdict == HELD and size.gain == pytest.approx(15.1) and size.ci_low == size.ci_high
    assert judge_size(27.6, 27.6).verdict == NOT_HELD
    assert RESAMPLES == 10_000
