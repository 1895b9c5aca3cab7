"""Seed aggregation and the claims table of SPEC 9: each paper claim, the paper's figure, ours, the verdict.

A claim compares two measured cells (method, N frames, metric), each the mean over the seeds stored for it.
Decision rule, stated in every report: a claim is **held** when the difference goes the claimed way and
exceeds the seed spread, the sum of the two cells' sample standard deviations over seeds (ddof=1; 0 for a
single seed, which the report flags). It is **not held** otherwise, and **not measured** when a cell has no
finished run; the missing runs are listed with the command that makes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.report import paper
from bench.report.load import EXTRA_METRICS, METRICS

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


@dataclass(frozen=True)
class Claim:
    """'a beats b in metric': cells name candidate variants (the first with a finished run is used) and N.

    N may be an int or "deblur" / "ablation" / "video", resolved when the report picks its frame counts.
    """

    text: str
    source: str  # where the paper states it
    metric: str
    lower_is_better: bool
    a: tuple[tuple[str, ...], int | str]
    b: tuple[tuple[str, ...], int | str]
    paper_a: float | None = None
    paper_b: float | None = None
    unit: str = ""


_DM = ("ours", "ours-static")  # the DM's output is `ours`'s deblurred frame, and all `ours-static` shows
_DM_SIZE = ("ours-static",)  # `ours-static` holds only the DM, so its size is the DM's

CLAIMS: tuple[Claim, ...] = (
    Claim("DM beats the blurred input in PSNR", "Table 1", "deblur_psnr", False, (_DM, "deblur"),
          (("blurred",), "deblur"), 30.58, None, "dB"),
    Claim("DM beats the blurred input in SSIM", "Table 1", "deblur_ssim", False, (_DM, "deblur"),
          (("blurred",), "deblur"), 0.941, None),
    Claim("DM beats SRN in PSNR", "Table 1", "deblur_psnr", False, (_DM, "deblur"), (("srn",), "deblur"),
          30.58, 30.10, "dB"),
    Claim("DM beats SRN in SSIM", "Table 1", "deblur_ssim", False, (_DM, "deblur"), (("srn",), "deblur"),
          0.941, 0.933),
    Claim("DM is smaller than SRN", "Table 1", "size_mb", True, (_DM_SIZE, "deblur"), (("srn",), "deblur"),
          paper.SIZE_MB["dm"], paper.SIZE_MB["srn"], "MB"),
    Claim("DM is faster than SRN", "Table 1", "runtime_deblur_s", True, (_DM, "deblur"), (("srn",), "deblur"),
          paper.TIME_DEBLUR_S["dm"], paper.TIME_DEBLUR_S["srn"], "s"),
    Claim("ours beats jin2018 in Eq. 6 at 7 frames", "Sec. 3.3", "eq6", True, (("ours",), 7),
          (("jin2018",), 7), paper.EQ6[("ours", 7)], paper.EQ6[("jin2018", 7)]),
    Claim("ours at 9 frames stays below jin2018 at 7 in Eq. 6", "Sec. 3.3", "eq6", True, (("ours",), 9),
          (("jin2018",), 7), paper.EQ6[("ours", 9)], paper.EQ6[("jin2018", 7)]),
    Claim("ours is smaller than jin2018", "Sec. 3.3", "size_mb", True, (("ours",), 7), (("jin2018",), 7),
          paper.SIZE_MB["ours"], paper.SIZE_MB["jin2018"], "MB"),
    Claim("ours is faster than jin2018 (video)", "Sec. 3.3", "runtime_video_s", True, (("ours",), 7),
          (("jin2018",), 7), paper.TIME_VIDEO_S["ours"], paper.TIME_VIDEO_S["jin2018"], "s"),
    Claim("flow beats intensity (RVD)", "supp.", "eq6", True, (("ours",), "ablation"),
          (("ours-intensity",), "ablation")),
    Claim("recurrent beats non-recurrent decoding", "supp.", "eq6", True, (("ours",), "ablation"),
          (("ours-nonrecurrent",), "ablation")),
    Claim("two-stage training beats joint training", "supp.", "eq6", True, (("ours",), "ablation"),
          (("ours-joint",), "ablation")),
    Claim("the sharp-frame input helps the BIE", "supp.", "eq6", True, (("ours",), "ablation"),
          (("ours-no-sharp",), "ablation")),
    Claim("the 4-scale loss beats a single-scale loss", "supp.", "eq6", True, (("ours",), "ablation"),
          (("ours-single-scale",), "ablation")),
    Claim("the TV term helps", "supp.", "eq6", True, (("ours",), "ablation"), (("ours-no-tv",), "ablation")),
    Claim("RDBs beat plain residual blocks in the DM", "supp.", "deblur_psnr", False, (("ours",), "ablation"),
          (("ours-dm-resblocks",), "ablation"), unit="dB"),
)

METRIC_LABELS = {
    "deblur_psnr": "PSNR", "deblur_ssim": "SSIM", "deblur_lpips": "LPIPS", "eq6": "Eq. 6 error",
    "ppsnr": "pPSNR", "pwpsnr": "PW-PSNR", "mid_psnr": "middle-frame PSNR", "epe": "flow EPE",
    "runtime_deblur_s": "deblurring time", "runtime_video_s": "video time", "params": "parameters",
    "size_mb": "size",
}


def fmt(value: float | None, metric: str = "", std: float | None = None) -> str:
    """A number at the precision its metric deserves; '—' for missing."""
    if value is None or not math.isfinite(value):
        return "—"
    if metric == "params":
        text = f"{value / 1e6:.3g} M"
    elif metric in ("deblur_ssim", "deblur_lpips"):
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


def _pick(summary: pd.DataFrame, cell: tuple[tuple[str, ...], int], metric: str) -> tuple[Stat | None, str]:
    variants, frames = cell
    for variant in variants:
        found = stat(summary, variant, frames, metric)
        if found is not None:
            return found, variant
    return None, variants[0]


def evaluate_claims(summary: pd.DataFrame, frames: dict[str, int]) -> list[dict]:
    """Each claim of `CLAIMS` decided on `summary`; `frames` resolves "deblur"/"ablation" to an N.

    Rows: claim, source, metric, paper, ours, verdict, gain, spread, seeds, missing (list of "method@N").
    """
    rows = []
    for claim in CLAIMS:
        cells = [(c[0], frames.get(c[1], 9) if isinstance(c[1], str) else c[1]) for c in (claim.a, claim.b)]
        (a, name_a), (b, name_b) = (_pick(summary, cell, claim.metric) for cell in cells)
        verdict, gain, spread = decide(a, b, claim.lower_is_better)
        unit = f" {claim.unit}" if claim.unit else ""
        if claim.paper_a is None:
            paper_text = "— (supplementary)" if claim.source == "supp." else "—"
        else:
            paper_text = fmt(claim.paper_a, claim.metric) + (
                f" vs {fmt(claim.paper_b, claim.metric)}" if claim.paper_b is not None else "") + unit
        ours = " vs ".join(
            f"{fmt(s.mean, claim.metric, s.std)}" if s is not None else "—" for s in (a, b)) + unit
        missing = [f"{name}@{n}" for s, name, (_, n) in ((a, name_a, cells[0]), (b, name_b, cells[1]))
                   if s is None]
        note = ""
        if verdict != NOT_MEASURED:
            if min(a.n, b.n) < 2:
                note = "1 seed: no spread"
            ours += f" ({name_a}@{cells[0][1]} vs {name_b}@{cells[1][1]}; n={a.n},{b.n})"
        rows.append({"claim": claim.text, "source": claim.source, "metric": METRIC_LABELS[claim.metric],
                     "paper": paper_text, "ours": ours, "verdict": verdict, "gain": gain, "spread": spread,
                     "note": note, "missing": missing})
    return rows
