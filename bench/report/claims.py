"""Seed aggregation and the claims table: each paper claim, the paper's figure, ours, the verdict.

The claims are data on the registry's entries (`methods.registry.Claim` in `Method.claims`), read here when a
report is built. A claim compares two measured cells (method, N frames, metric), each the mean over the seeds
stored for it.
Decision rule, stated in every report: a claim is **held** when the difference goes the claimed way and
exceeds the seed spread, the sum of the two cells' sample standard deviations over seeds (ddof=1; 0 for a
single seed, which the report flags). It is **not held** otherwise, and **not measured** when a cell has no
finished run; the missing runs are listed with the command that makes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from bench.report.load import EXTRA_METRICS, METRICS

if TYPE_CHECKING:
    from methods.registry import Claim

HELD, NOT_HELD, NOT_MEASURED = "held", "not held", "not measured"


@dataclass(frozen=True)
class Stat:
    """One measured cell: mean and spread of a metric over the seeds of (variant, frames)."""

    variant: str
    frames: int
    metric: str
    mean: float
    std: float  # sample std over seeds (ddof=1); 0.0 for one seed
    n: int  # number of seeds (finished runs) pooled
    seeds: tuple[int, ...]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished runs on their own test sets (cross-dataset evaluations excluded)."""
    return runs[(runs["status"] == "finished") & (runs["eval_set"] == "")]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count of every metric per (variant, frames) over finished runs.

    Columns: variant, method, frames, n, seeds, device, then `<metric>` (mean) and `<metric>_std`.
    """
    done = finished(runs)
    rows = []
    for (variant, frames), group in done.groupby(["variant", "frames"], sort=True):
        row = {"variant": variant, "method": group["method"].iloc[0], "frames": int(frames),
               "n": len(group), "seeds": ",".join(str(s) for s in sorted(group["seed"])),
               "device": ", ".join(sorted({d for d in group["device"] if d}))}
        for key in METRICS + EXTRA_METRICS:
            values = group[key].dropna()
            row[key] = float(values.mean()) if len(values) else math.nan
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else
                                                                                    math.nan)
        rows.append(row)
    cols = ["variant", "method", "frames", "n", "seeds", "device"]
    cols += [c for key in METRICS + EXTRA_METRICS for c in (key, f"{key}_std")]
    return pd.DataFrame(rows, columns=cols)


def stat(summary: pd.DataFrame, variant: str, frames: int, metric: str) -> Stat | None:
    """The cell (variant, frames, metric), or None when no finished run measured it."""
    hit = summary[(summary["variant"] == variant) & (summary["frames"] == frames)]
    if hit.empty or pd.isna(hit[metric].iloc[0]):
        return None
    row = hit.iloc[0]
    seeds = tuple(int(s) for s in str(row["seeds"]).split(",") if s not in ("", "-1"))
    return Stat(variant, frames, metric, float(row[metric]), float(row[f"{metric}_std"]), int(row["n"]),
                seeds)


def decide(a: Stat | None, b: Stat | None, lower_is_better: bool) -> tuple[str, float, float]:
    """Verdict on "a beats b": (verdict, improvement of a over b in the claimed direction, seed spread)."""
    if a is None or b is None:
        return NOT_MEASURED, math.nan, math.nan
    gain = (b.mean - a.mean) if lower_is_better else (a.mean - b.mean)
    spread = (a.std if math.isfinite(a.std) else 0.0) + (b.std if math.isfinite(b.std) else 0.0)
    return (HELD if gain > 0 and gain > spread else NOT_HELD), gain, spread


# The paper's order: Table 1, then Sec. 3.3, then the supplementary material's ablations (others after).
SOURCE_ORDER = ("Table 1", "Sec. 3.3", "supp.")


def registered_claims() -> tuple[list[tuple[str, Claim]], str]:
    """((owner, claim) for every claim of every registered method, in the paper's order; a note).

    Read when a report is built, never at import: a report is built from stored runs, so a registry that does
    not load leaves the claims table empty with the reason in the note, instead of stopping the report.
    """
    try:
        from methods import registry

        pairs = [(name, claim) for name in registry.names() for claim in registry.get(name).claims]
    except Exception as err:  # noqa: BLE001 - any failure of the registry is reported, not raised
        return [], f"no claims: the methods registry did not load ({type(err).__name__}: {err})"
    rank = {source: i for i, source in enumerate(SOURCE_ORDER)}
    return sorted(pairs, key=lambda p: rank.get(p[1].source, len(SOURCE_ORDER))), ""


def registered_ablations() -> list[str]:
    """The registered ablation variants; none when the registry does not load (see `registered_claims`)."""
    try:
        from methods import registry

        return registry.names(family="ablation")
    except Exception:  # noqa: BLE001
        return []


METRIC_LABELS = {
    "deblur_psnr": "PSNR", "deblur_ssim": "SSIM", "deblur_lpips": "LPIPS", "eq6": "Eq. 6 error",
    "ppsnr": "pPSNR", "pwpsnr": "PW-PSNR", "mid_psnr": "middle-frame PSNR", "motion_ratio": "motion ratio",
    "epe": "flow EPE",
    "runtime_deblur_s": "deblurring time", "runtime_video_s": "video time", "params": "parameters",
    "size_mb": "size",
}


def fmt(value: float | None, metric: str = "", std: float | None = None) -> str:
    """A number at the precision its metric deserves; '—' for missing."""
    if value is None or not math.isfinite(value):
        return "—"
    if metric == "params":
        text = f"{value / 1e6:.3g} M"
    elif metric in ("deblur_ssim", "deblur_lpips", "motion_ratio"):
        text = f"{value:.3f}"
    elif metric.startswith("runtime") or metric.endswith("_s"):
        text = f"{value:.3g}"
    elif metric == "size_mb":
        text = f"{value:.4g}"
    else:
        text = f"{value:.2f}"
    # Float noise in the std of identical values (sizes, cached stages) is no spread; don't print it.
    if std is not None and math.isfinite(std) and std > 1e-9 * max(1.0, abs(value)):
        text += " ± " + fmt(std, metric)
    return text


def claim_cells(owner: str, claim: Claim, frames: dict[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
    """((better, N), (worse, N)): the two cells a claim compares; `frames` resolves "deblur" etc. to an N."""
    n = claim.frames if isinstance(claim.frames, int) else frames.get(claim.frames, 9)
    better, worse = claim.sides(owner)
    return (better, claim.better_frames or n), (worse, n)


def _paper_text(claim: Claim) -> str:
    first, second = claim.paper
    if first is None:
        return "— (supplementary)" if claim.source == "supp." else "—"
    unit = f" {claim.unit}" if claim.unit else ""
    against = f" vs {fmt(second, claim.metric)}" if second is not None else ""
    return fmt(first, claim.metric) + against + unit


def evaluate_claim(summary: pd.DataFrame, owner: str, claim: Claim, frames: dict[str, int]) -> dict:
    """One claim decided on `summary` (see `evaluate_claims` for the row's keys)."""
    cells = claim_cells(owner, claim, frames)
    (a, b) = (stat(summary, name, n, claim.metric) for name, n in cells)
    verdict, gain, spread = decide(a, b, claim.lower_is_better)
    unit = f" {claim.unit}" if claim.unit else ""
    ours = " vs ".join(f"{fmt(s.mean, claim.metric, s.std)}" if s is not None else "—" for s in (a, b)) + unit
    missing = [f"{name}@{n}" for s, (name, n) in zip((a, b), cells, strict=True) if s is None]
    note = ""
    if verdict != NOT_MEASURED:
        if min(a.n, b.n) < 2:
            note = "1 seed: no spread"
        ours += f" ({cells[0][0]}@{cells[0][1]} vs {cells[1][0]}@{cells[1][1]}; n={a.n},{b.n})"
    return {"claim": claim.text, "source": claim.source, "metric": METRIC_LABELS[claim.metric],
            "kind": claim.kind, "paper": _paper_text(claim), "ours": ours, "verdict": verdict, "gain": gain,
            "spread": spread, "note": note, "missing": missing}


def evaluate_claims(summary: pd.DataFrame, frames: dict[str, int]) -> list[dict]:
    """Every registered claim decided on `summary`; `frames` resolves "deblur"/"video"/"ablation" to an N.

    Rows: claim, source, metric, kind, paper, ours, verdict, gain, spread, note, missing ("method@N").
    """
    pairs, _note = registered_claims()
    return [evaluate_claim(summary, owner, claim, frames) for owner, claim in pairs]
