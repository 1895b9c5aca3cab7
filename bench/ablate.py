"""`bench ablate`: each design choice the paper argues for, tested as a registered variant of `ours`.

The paper's supplementary material argues for flows over intensities, the recurrent decoder, two-stage
training, the sharp-frame input to the BIE, the 4-scale loss (Eq. 4), the TV term and residual dense blocks
and the growth rate of the DM (Sec. 3.5). Each ablation is one registry entry (`methods/ours.py`) that removes
one choice and carries the claim it tests (`Method.claims`: the metric it should hurt and the method expected
to beat it, `ours`); `bench ablate` and `bench report` read the claims from there, so adding an ablation is
one entry and nothing else.

A claim *holds* when the 95% paired-bootstrap interval of the winner's per-sample improvement over the
variant, on the same seeds and test samples, lies above zero: the rule of `bench.verdict.judge`,
shared with the report so the two never disagree; the table gives the interval and how many seeds and samples
stood behind each row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bench.metrics import check_claimable, lower_is_better
from bench.verdict import HELD, NOT_MEASURED
from bench.verdict import judge as decide  # the one rule of claims, shared with the report
from methods import registry

if TYPE_CHECKING:
    from bench.store import RunRecord
    from methods.registry import Claim


def ablation_names() -> list[str]:
    """Every registered ablation variant, in registry order."""
    return registry.names(family="ablation")


def claims_of(name: str) -> list[Claim]:
    """The claims an ablation entry carries about itself (the ones it is the losing side of); a BenchError
    when one names a metric outside the vocabulary (`bench.metrics.check_claimable`)."""
    claims = [c for c in registry.get(name).claims if c.sides(name)[1] == name]
    for claim in claims:
        check_claimable(claim.metric, f"{name}'s claim {claim.text!r} (methods registry)")
    return claims


def plan(variants: Iterable[str]) -> list[str]:
    """The methods `bench ablate` runs for these variants: each claim's expected winner, then the variants,
    each once, in that order (so `ours` is trained first and its stages are reused by the variants)."""
    variants = list(variants)
    winners = [c.better for name in variants for c in claims_of(name)]
    return list(dict.fromkeys([*winners, *variants]))


Values = dict[int, dict[str, float]]  # seed -> test sample id -> value (NaN: undefined for that sample)


def judge(claim: Claim, owner: str, better: Values, worse: Values, better_fixed: bool = False,
          worse_fixed: bool = False) -> dict[str, Any]:
    """One table row: whether `claim` (carried by `owner`) held on the per-sample values of its winner
    (`better`) and loser (`worse`); `*_fixed` marks a side without training (one seed stands for all)."""
    winner, loser = claim.sides(owner)
    j = decide(better, worse, lower_is_better(claim.metric), better_fixed, worse_fixed)
    measured = j.verdict != NOT_MEASURED
    return {"variant": loser, "better": winner, "claim": claim.text, "metric": claim.metric,
            "lower_is_better": lower_is_better(claim.metric), "better_mean": j.better if measured else None,
            "variant_mean": j.worse if measured else None, "seeds": len(j.seeds), "samples": j.samples,
            "difference": j.gain, "ci_low": j.ci_low, "ci_high": j.ci_high,
            "held": None if not measured else j.verdict == HELD, "verdict": j.verdict, "note": j.note}


def sample_values(by_seed: dict[int, Any], metric: str) -> Values:
    """seed -> sample id -> `metric` from stored `RunMetrics` (null, an undefined value, becomes NaN)."""
    return {seed: {s["id"]: math.nan if s[metric] is None else float(s[metric]) for s in metrics.samples}
            for seed, metrics in by_seed.items()}


def _by_method(runs: Iterable[RunRecord], frames: int, profile: str, data_sha256: str | None,
               seeds: Iterable[int] | None) -> tuple[dict[str, dict[int, Any]], dict[str, bool]]:
    """(method -> seed -> RunMetrics, method -> trained) of the intact finished runs that share the
    ablations' data (by digest) and budget."""
    wanted = None if seeds is None else {int(s) for s in seeds}
    out: dict[str, dict[int, Any]] = {}
    trained: dict[str, bool] = {}
    for record in runs:
        if record.status != "finished":
            continue
        cfg = record.config
        if cfg.frames != frames or cfg.profile != profile or cfg.overrides:
            continue  # a run with overrides is not on the shared budget
        if data_sha256 is not None and cfg.data_sha256 != data_sha256:
            continue
        if wanted is not None and cfg.seed not in wanted:
            continue
        out.setdefault(cfg.method, {})[cfg.seed] = record.metrics
        trained[cfg.method] = bool(cfg.stages)
    return out, trained


def table(runs: Iterable[RunRecord], variants: list[str], frames: int, profile: str,
          data_sha256: str | None = None, seeds: Iterable[int] | None = None) -> list[dict]:
    """Judge each claim of each variant from stored runs (`bench.store.iter_runs` records), one row each.

    Only intact finished runs without `--set` overrides on the same profile, N and (when given) training
    data digest and seeds count, so every row compares runs made on the same data and budget, and
    `--seeds 0` means seed 0 only even when other seeds are stored.
    """
    by_method, trained = _by_method(runs, frames, profile, data_sha256, seeds)
    rows = []
    for name in variants:
        for claim in claims_of(name):
            winner = claim.better
            rows.append(judge(claim, name, sample_values(by_method.get(winner, {}), claim.metric),
                              sample_values(by_method.get(name, {}), claim.metric),
                              not trained.get(winner, True), not trained.get(name, True)))
    return rows
