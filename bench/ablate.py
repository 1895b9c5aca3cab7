"""`bench ablate`: each design choice the paper argues for, tested as a registered variant of `ours`.

The paper's supplementary material argues for flows over intensities, the recurrent decoder, two-stage
training, the sharp-frame input to the BIE, the 4-scale loss (Eq. 4), the TV term and residual dense blocks
in the DM (Sec. 3.5). Each claim below names the variant that removes the choice and the metric it should
hurt. The claims are data: `bench ablate` loops over them; adding an ablation is one registry entry and one
row here.

A claim *holds* when the variant is worse than `ours` in the claimed direction by more than the seed spread
(the sum of the two sample standard deviations across seeds). With a single seed the spread is unknown
(0), so any difference in the right direction counts; the table says how many seeds stood behind each row.
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
    kind: str = "hurts"  # "hurts": removing the choice must hurt; "not_better": the variant must not beat ours


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
GROWTH_CLAIM = "the paper's DM growth rate is not beaten by another growth rate"


def claim_for(name: str) -> Claim:
    """The claim tested by an ablation variant; growth-rate sweep entries share one claim."""
    for claim in CLAIMS:
        if claim.variant == name:
            return claim
    if "growth" in name:
        return Claim(name, GROWTH_CLAIM, DEBLUR, False, kind="not_better")
    raise KeyError(f"ablation {name!r} has no claim in bench.ablate.CLAIMS; add one")


def ablation_names() -> list[str]:
    """Every registered ablation variant, in registry order."""
    from methods import registry

    return registry.names(family="ablation")


def _stats(values: list[float]) -> tuple[float | None, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, 0.0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def judge(claim: Claim, ours: list[float], variant: list[float]) -> dict[str, Any]:
    """One table row: means, spreads and whether the claim held on these per-seed values."""
    ours_mean, ours_std = _stats(ours)
    var_mean, var_std = _stats(variant)
    row: dict[str, Any] = {"variant": claim.variant, "claim": claim.claim, "metric": claim.metric,
                           "lower_is_better": claim.lower_is_better, "ours_mean": ours_mean,
                           "ours_std": ours_std, "variant_mean": var_mean, "variant_std": var_std,
                           "seeds": min(len(ours), len(variant)), "held": None, "verdict": "not measured"}
    if ours_mean is None or var_mean is None:
        return row
    # Positive `worse_by` means the variant is worse than ours in the claim's metric.
    worse_by = (var_mean - ours_mean) if claim.lower_is_better else (ours_mean - var_mean)
    spread = ours_std + var_std
    row["difference"] = worse_by
    row["spread"] = spread
    if claim.kind == "hurts":
        held = worse_by > spread
    else:  # not_better: the variant may tie, but must not beat ours beyond the spread
        held = -worse_by <= spread
    row["held"] = held
    row["verdict"] = "held" if held else "not held"
    return row


def table(runs: Iterable[dict], variants: list[str], frames: int, profile: str,
          dataset: str | None = None) -> list[dict]:
    """Judge each variant against `ours` from stored runs (`bench.store.iter_runs` records).

    Only finished runs without `--set` overrides on the same profile, N and (when given) dataset count,
    so every row compares runs made on the same data and budget.
    """
    by_method: dict[str, dict[int, dict]] = {}
    for record in runs:
        cfg, metrics = record.get("config") or {}, record.get("metrics") or {}
        if metrics.get("status") != "finished" or cfg.get("frames") != frames or cfg.get("profile") != profile:
            continue
        if dataset is not None and cfg.get("dataset") != dataset:
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
