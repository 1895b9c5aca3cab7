"""The one decision rule of every claim: the report's claims and ablation tables and `bench ablate` all call
`judge` (accuracy), `judge_speed` or `judge_size`.

Accuracy: both methods on the same seeds and the same test samples. The per-sample difference, signed so that
> 0 favours the claim, forms a seeds x samples grid; its interval comes from a crossed paired bootstrap that
resamples seeds and test samples independently, with replacement (test images are shared by every seed, so
images and seeds are the two sources of noise), `RESAMPLES` times with numpy's `default_rng(RNG_SEED)`, and
takes the percentiles of the resampled mean at (1 -+ LEVEL) / 2. A claim is *held* when the whole interval is
above zero, *not held* otherwise, *not measured* when one side has no finished run (or no seed or sample in
common). A method without training (`blurred`, `gt-static`) gives the same output for every seed, so its
one stored seed stands for every seed of the other side. Sides scored on different test sets (different N:
"ours at 9 frames against jin2018 at 7") share seeds but not samples: the seeds are paired, each side's
samples are resampled on their own, and the statistic is the difference of the two means.

Speed: timed passes of `bench perf` are not paired; the interval is that of the difference of the two
medians, each side's passes resampled on its own, with the same parameters. Size: parameter counts are
exact, so the interval is the difference itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

HELD, NOT_HELD, NOT_MEASURED = "held", "not held", "not measured"
RESAMPLES = 10_000  # bootstrap resamples per claim
RNG_SEED = 0  # numpy default_rng seed: the same store gives the same intervals
LEVEL = 0.95  # two-sided percentile interval
_CHUNK = 500  # resamples per block, so memory stays ~ 500 x samples floats whatever the test set's size

RULE = (f"A claim is *held* when the {LEVEL:.0%} interval of its improvement lies above zero: for accuracy, "
        "a paired bootstrap over test samples x seeds of the per-sample difference (both sides on the same "
        "seeds and samples, seeds and samples resampled independently with replacement; a method without "
        f"training counts its one seed for every seed), {RESAMPLES:,} resamples, numpy default_rng("
        f"{RNG_SEED}), percentile interval; for speed, the same on the difference of the medians of the "
        "timed passes of `bench perf --profile paper`; sizes are exact parameter counts at the paper's "
        "widths.")

Values = Mapping[int, Mapping[str, float]]  # seed -> sample id -> the metric's value (NaN: undefined)


@dataclass(frozen=True)
class Judgement:
    """A claim decided: the two sides' means on the paired data, the improvement and its interval."""

    verdict: str  # HELD | NOT_HELD | NOT_MEASURED
    better: float = math.nan  # mean of the side claimed better, over the paired seeds and samples
    worse: float = math.nan
    gain: float = math.nan  # improvement in the claimed direction (> 0 favours the claim)
    ci_low: float = math.nan
    ci_high: float = math.nan
    seeds: tuple[int, ...] = ()  # the seeds paired (empty for exact or timed claims)
    samples: int = 0  # test samples per seed (timed passes for speed)
    note: str = ""  # why it is not measured, or what the numbers are


def _interval(stats: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(stats, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(low), float(high)


def crossed_bootstrap(better: np.ndarray, worse: np.ndarray, sign: float, paired: bool = True
                      ) -> tuple[float, float]:
    """The interval of sign * (mean(better) - mean(worse)) over (seeds, samples) grids with the same seeds:
    seeds resampled together for both sides and samples independently of seeds; `paired` samples (the same
    test set) share their draws, unpaired ones are drawn per side."""
    s = better.shape[0]
    rng = np.random.default_rng(RNG_SEED)
    stats = []
    for start in range(0, RESAMPLES, _CHUNK):
        b = min(_CHUNK, RESAMPLES - start)
        seeds = rng.multinomial(s, np.full(s, 1.0 / s), size=b)  # (b, s) draw counts, shared by both sides
        draws = []
        for grid in (better, worse):
            n = grid.shape[1]
            if not paired or not draws:
                counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b)  # (b, n)
            draws.append(np.einsum("bs,sn,bn->b", seeds, grid, counts) / (s * n))
        stats.append(sign * (draws[0] - draws[1]))
    return _interval(np.concatenate(stats))


def pair(better: Values, worse: Values, better_fixed: bool = False, worse_fixed: bool = False,
         paired: bool = True) -> tuple[tuple[int, ...], np.ndarray, np.ndarray] | str:
    """(seeds, better (seeds, samples), worse (seeds, samples)) on the seeds both sides have (a `fixed` side,
    without training, repeats its lowest seed for every seed of the other) and, when `paired`, the test
    samples both have; each side keeps only samples finite in every seed. Else why not."""
    if not better or not worse:
        return "no finished run"
    if better_fixed and worse_fixed:
        seeds = (min(better),)
    elif better_fixed or worse_fixed:
        seeds = tuple(sorted(worse if better_fixed else better))
    else:
        seeds = tuple(sorted(set(better) & set(worse)))
        if not seeds:
            return f"no seed in common (seeds {sorted(better)} vs {sorted(worse)})"
    rows_b = [better[min(better)] if better_fixed else better[s] for s in seeds]
    rows_w = [worse[min(worse)] if worse_fixed else worse[s] for s in seeds]
    grids = []
    for rows in (rows_b, rows_w):
        scope = rows_b + rows_w if paired else rows  # the rows whose samples must all be there
        ids = set.intersection(*(set(r) for r in scope))
        ids = sorted(i for i in ids if all(math.isfinite(r[i]) for r in scope))
        if not ids:
            return "no test sample with a finite value on both sides"
        grids.append(np.asarray([[row[i] for i in ids] for row in rows], np.float64))
    return seeds, grids[0], grids[1]


def judge(better: Values, worse: Values, lower_is_better: bool, better_fixed: bool = False,
          worse_fixed: bool = False, paired: bool = True) -> Judgement:
    """Decide 'better beats worse' on per-sample values (module docstring); `paired` when both sides were
    scored on the same test set."""
    found = pair(better, worse, better_fixed, worse_fixed, paired)
    if isinstance(found, str):
        return Judgement(NOT_MEASURED, note=found)
    seeds, b, w = found
    sign = -1.0 if lower_is_better else 1.0  # > 0 favours the claim
    low, high = crossed_bootstrap(b, w, sign, paired)
    gain = sign * (float(b.mean()) - float(w.mean()))
    return Judgement(HELD if low > 0 else NOT_HELD, float(b.mean()), float(w.mean()), gain, low, high, seeds,
                     min(b.shape[1], w.shape[1]))


def judge_speed(better_times: Sequence[float], worse_times: Sequence[float]) -> Judgement:
    """Decide 'better is faster' from timed passes: the interval of median(worse) - median(better)."""
    if not better_times or not worse_times:
        return Judgement(NOT_MEASURED, note="no timed passes")
    b, w = np.asarray(better_times, np.float64), np.asarray(worse_times, np.float64)
    rng = np.random.default_rng(RNG_SEED)
    stats = np.median(w[rng.integers(0, len(w), (RESAMPLES, len(w)))], axis=1) - \
        np.median(b[rng.integers(0, len(b), (RESAMPLES, len(b)))], axis=1)
    low, high = _interval(stats)
    mb, mw = float(np.median(b)), float(np.median(w))
    return Judgement(HELD if low > 0 else NOT_HELD, mb, mw, mw - mb, low, high, (), min(len(b), len(w)))


def judge_size(better: float, worse: float) -> Judgement:
    """Decide 'better is smaller' on exact sizes: held when strictly smaller."""
    gain = worse - better
    return Judgement(HELD if gain > 0 else NOT_HELD, better, worse, gain, gain, gain)
