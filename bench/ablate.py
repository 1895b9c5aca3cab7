"""`bench ablate`: each design choice the paper argues for, tested as a registered variant of `ours`.

The paper's supplementary material argues for flows over intensities, the recurrent decoder, two-stage
training, the sharp-frame input to the BIE, the 4-scale loss (Eq. 4), the TV term and residual dense blocks
and the growth rate of the DM (Sec. 3.5). Each ablation is one registry entry (`methods/ours.py`) that removes
one choice and carries the claim it tests (`Method.claims`: the metric it should hurt and the method expected
to beat it, `ours`); `bench ablate` and `bench report` read the claims from there, so adding an ablation is
one entry and nothing else.

A claim *holds* when the variant is worse than the claim's winner in the claimed direction by more than the
seed spread: the rule of `bench.report.claims.decide`, shared with the report so the two never disagree. With
a single seed the spread is unknown (0), so any difference in the right direction counts; the table says
how many seeds stood behind each row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.store import RunRecord
    from methods.registry import Claim


def ablation_names() -> list[str]:
    """Every registered ablation variant, in registry order."""
    from methods import registry

    return registry.names(family="ablation")


def claims_of(name: str) -> list[Claim]:
    """The claims an ablation entry carries about itself (the ones it is the losing side of)."""
    from methods import registry

    return [c for c in registry.get(name).claims if c.sides(name)[1] == name]


def plan(variants: Iterable[str]) -> list[str]:
    """The methods `bench ablate` runs for these variants: each claim's expected winner, then the variants,
    each once, in that order (so `ours` is trained first and its stages are reused by the variants)."""
    variants = list(variants)
    winners = [c.better for name in variants for c in claims_of(name)]
    return list(dict.fromkeys([*winners, *variants]))


def _stat(name: str, metric: str, values: list[float | None]) -> Any:
    from bench.report.claims import Stat

    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return Stat(name, 0, metric, mean, std, len(values), ())


def judge(claim: Claim, owner: str, better: list[float | None], worse: list[float | None]) -> dict[str, Any]:
    """One table row: means, spreads and whether `claim` (carried by `owner`) held on these per-seed values
    of its winner (`better`) and loser (`worse`)."""
    from bench.report.claims import HELD, NOT_MEASURED, decide  # the report's rule, imported late: no cycle

    winner, loser = claim.sides(owner)
    a, b = _stat(winner, claim.metric, better), _stat(loser, claim.metric, worse)
    verdict, gain, spread = decide(a, b, claim.lower_is_better)
    return {"variant": loser, "better": winner, "claim": claim.text, "metric": claim.metric,
            "lower_is_better": claim.lower_is_better,
            "better_mean": a.mean if a else None, "better_std": a.std if a else 0.0,
            "variant_mean": b.mean if b else None, "variant_std": b.std if b else 0.0,
            "seeds": min(len(better), len(worse)), "difference": gain, "spread": spread,
            "held": None if verdict == NOT_MEASURED else verdict == HELD, "verdict": verdict}


def _by_method(runs: Iterable[RunRecord], frames: int, profile: str, data_sha256: str | None,
               seeds: Iterable[int] | None) -> dict[str, dict[int, dict]]:
    """method -> seed -> aggregate metrics of the intact finished runs that share the ablations' data (by
    digest) and budget."""
    wanted = None if seeds is None else {int(s) for s in seeds}
    out: dict[str, dict[int, dict]] = {}
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
        out.setdefault(cfg.method, {})[cfg.seed] = record.metrics.aggregate
    return out


def table(runs: Iterable[RunRecord], variants: list[str], frames: int, profile: str,
          data_sha256: str | None = None, seeds: Iterable[int] | None = None) -> list[dict]:
    """Judge each claim of each variant from stored runs (`bench.store.iter_runs` records), one row each.

    Only intact finished runs without `--set` overrides on the same profile, N and (when given) training
    data digest and seeds count, so every row compares runs made on the same data and budget, and
    `--seeds 0` means seed 0 only even when other seeds are stored.
    """
    by_method = _by_method(runs, frames, profile, data_sha256, seeds)
    rows = []
    for name in variants:
        for claim in claims_of(name):
            winner_seeds, loser_seeds = by_method.get(claim.better, {}), by_method.get(name, {})
            common = sorted(set(winner_seeds) & set(loser_seeds))
            rows.append(judge(claim, name, [winner_seeds[s].get(claim.metric) for s in common],
                              [loser_seeds[s].get(claim.metric) for s in common]))
    return rows
