"""`bench ablate`: each design choice the paper argues for, tested as a registered variant of `ours`.

The paper's supplementary material argues for flows over intensities, the recurrent decoder, two-stage
training, the sharp-frame input to the BIE, the 4-scale loss (Eq. 4), the TV term and residual dense blocks
in the DM (Sec. 3.5). Each claim below names the variant that removes the choice and the metric it should
hurt. The claims are data: `bench ablate` loops over them; adding an ablation is one registry entry and one
row here.

A claim *holds* when the variant is worse than `ours` in the claimed direction by more than the seed spread
(the sum of the two sample standard deviations across seeds): the rule of `bench.report.claims.decide`,
shared with the report so the two never disagree. With a single seed the spread is unknown (0), so any
difference in the right direction counts; the table says how many seeds stood behind each row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    variant: str  # registered ablation method
    claim: str  # the paper's claim, in words
    metric: str  # aggregate key of metrics.json that the variant should make worse
    lower_is_better: bool  # direction of `metric`


VIDEO, DEBLUR = "eq6", "deblur_psnr"

CLAIMS: tuple[Claim, ...] = (
    Claim("ours-intensity", "flow prediction beats direct intensity regression", VIDEO, True),
    Claim("ours-nonrecurrent", "the recurrent decoder beats a one-pass decoder", VIDEO, True),
    Claim("ours-joint", "two-stage training beats joint BIE-RVD training from scratch", VIDEO, True),
    Claim("ours-no-sharp", "feeding the sharp central frame helps the BIE", VIDEO, True),
    Claim("ours-single-scale", "the 4-scale loss (Eq. 4) beats a full-resolution-only loss", VIDEO, True),
    Claim("ours-no-tv", "the TV smoothness term on flows helps (mu = 0.02)", VIDEO, True),
    Claim("ours-dm-resblocks", "residual dense blocks beat plain residual blocks in the DM", DEBLUR, False),
)
GROWTH_CLAIM = "the DM's default RDB growth rate beats this one (growth-rate sweep)"


def claim_for(name: str) -> Claim:
    """The claim tested by an ablation variant; growth-rate sweep entries share one claim."""
    for claim in CLAIMS:
        if claim.variant == name:
            return claim
    if "growth" in name:
        return Claim(name, GROWTH_CLAIM, DEBLUR, False)
    raise KeyError(f"ablation {name!r} has no claim in bench.ablate.CLAIMS; add one")


def ablation_names() -> list[str]:
    """Every registered ablation variant, in registry order."""
    from methods import registry

    return registry.names(family="ablation")


def _stat(name: str, metric: str, values: list[float | None]) -> Any:
    from bench.report.claims import Stat

    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return Stat(name, 0, metric, mean, std, len(values), ())


def judge(claim: Claim, ours: list[float | None], variant: list[float | None]) -> dict[str, Any]:
    """One table row: means, spreads and whether the claim held on these per-seed values."""
    from bench.report.claims import HELD, NOT_MEASURED, decide  # the report's rule, imported late: no cycle

    a, b = _stat("ours", claim.metric, ours), _stat(claim.variant, claim.metric, variant)
    verdict, gain, spread = decide(a, b, claim.lower_is_better)
    return {"variant": claim.variant, "claim": claim.claim, "metric": claim.metric,
            "lower_is_better": claim.lower_is_better,
            "ours_mean": a.mean if a else None, "ours_std": a.std if a else 0.0,
            "variant_mean": b.mean if b else None, "variant_std": b.std if b else 0.0,
            "seeds": min(len(ours), len(variant)), "difference": gain, "spread": spread,
            "held": None if verdict == NOT_MEASURED else verdict == HELD, "verdict": verdict}


def table(runs: Iterable[dict], variants: list[str], frames: int, profile: str,
          dataset: str | None = None, seeds: Iterable[int] | None = None) -> list[dict]:
    """Judge each variant against `ours` from stored runs (`bench.store.iter_runs` records).

    Only finished runs without `--set` overrides on the same profile, N and (when given) dataset and seeds
    count, so every row compares runs made on the same data and budget, and `--seeds 0` means seed 0 only
    even when other seeds are stored.
    """
    wanted = None if seeds is None else {int(s) for s in seeds}
    by_method: dict[str, dict[int, dict]] = {}
    for record in runs:
        cfg, metrics = record.get("config") or {}, record.get("metrics") or {}
        if metrics.get("status") != "finished":
            continue
        if cfg.get("frames") != frames or cfg.get("profile") != profile:
            continue
        if dataset is not None and cfg.get("dataset") != dataset:
            continue
        if wanted is not None and cfg.get("seed") not in wanted:
            continue
        if cfg.get("overrides"):
            continue  # a run with overrides is not on the shared budget
        by_method.setdefault(cfg.get("method"), {})[cfg.get("seed")] = metrics.get("aggregate", {})
    rows = []
    for name in variants:
        claim = claim_for(name)
        ours_seeds, var_seeds = by_method.get("ours", {}), by_method.get(name, {})
        common = sorted(set(ours_seeds) & set(var_seeds))
        rows.append(judge(claim, [ours_seeds[s].get(claim.metric) for s in common],
                          [var_seeds[s].get(claim.metric) for s in common]))
    return rows
