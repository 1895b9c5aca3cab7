"""Seed aggregation and the claims table: each paper claim, the paper's figure, ours, the verdict.

The claims are data on the registry's entries (`methods.registry.Claim` in `Method.claims`), read here when a
report is built. Each is decided by the one rule of `bench.verdict`, stated in every report, on equal
terms for both sides:
- accuracy claims on the per-sample scores of the report's finished runs, the same seeds and test samples on
  both sides (a paired bootstrap interval); a missing side is *not measured*, listed with the command that
  makes it;
- size claims on the paper-sized networks, whatever profile the accuracy runs used: exact parameter counts
  of the registry's networks at the paper's widths (`paper_size_mb`);
- speed claims on a stored `bench perf --profile paper --store` result (`bench.store.latest_perf`), the
  paper-sized networks timed on the device and at the resolution the report names; without one they are
  *not measured*, with the command that measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import pandas as pd

from bench import store
from bench.errors import BenchError
from bench.metrics import CLAIMABLE, VOCABULARY, check_claimable, lower_is_better
from bench.report.load import EXTRA_METRICS, METRICS
from bench.verdict import HELD, NOT_HELD, NOT_MEASURED, Judgement, judge, judge_size, judge_speed

if TYPE_CHECKING:
    from bench.store import PerfResult
    from methods.registry import Claim, MethodAPI

__all__ = ["HELD", "NOT_HELD", "NOT_MEASURED", "evaluate_claims", "per_sample", "paper_size_mb"]
PERF_COMMAND = "bench perf --profile paper --store"
# Speed metric -> the key of its timed passes in a stored `bench perf` row, derived from the row schema's
# `bench.store.PERF_TIMES` ("runtime_video_times_s" holds the passes behind "runtime_video_s").
PERF_TIMES = {key.removesuffix("_times_s") + "_s": key for key in store.PERF_TIMES}


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


# The paper's order: Table 1, then Sec. 3.3, then the supplementary material's ablations (others after).
SOURCE_ORDER = ("Table 1", "Sec. 3.3", "supp.")


def registered_claims() -> tuple[list[tuple[str, Claim]], str]:
    """((owner, claim) for every claim of every registered method, in the paper's order; a note).

    Read when a report is built, never at import: a report is built from stored runs, so a registry that does
    not load leaves the claims table empty with the reason in the note, instead of stopping the report. A
    claim on a metric outside the vocabulary (`bench.metrics.check_claimable`) is left out, named in the note.
    """
    try:
        from methods import registry  # late: loads torch, and a registry that fails must not stop the report

        pairs = [(name, claim) for name in registry.names() for claim in registry.get(name).claims]
    except Exception as err:  # noqa: BLE001 - any failure of the registry is reported, not raised
        return [], f"no claims: the methods registry did not load ({type(err).__name__}: {err})"
    kept, refused = [], []
    for owner, claim in pairs:
        try:
            check_claimable(claim.metric, f"{owner}'s claim {claim.text!r}")
            kept.append((owner, claim))
        except BenchError as err:
            refused.append(f"left out: {err}")
    rank = {source: i for i, source in enumerate(SOURCE_ORDER)}
    return sorted(kept, key=lambda p: rank.get(p[1].source, len(SOURCE_ORDER))), "; ".join(refused)


EXTERNAL_SOURCE = "bench score"  # the source of the claims derived for outside methods' predictions


def external_variants(runs: pd.DataFrame) -> list[tuple[str, int]]:
    """(variant, N) of every finished score of an outside method's predictions (`bench score`) in `runs`."""
    done = finished(runs)
    done = done[done["family"] == store.EXTERNAL]
    return sorted(set(zip(done["variant"], done["frames"].astype(int), strict=True)))


def external_claims(runs: pd.DataFrame) -> list[tuple[str, Claim]]:
    """(owner, claim) "ours beats LABEL" for each outside method's scored predictions in `runs`, one per
    per-sample metric with a direction that LABEL has a score in, at LABEL's N: derived from the stored
    runs, never registered, so scoring a new method needs no edit anywhere. None when the registry (which
    defines `Claim`) does not load."""
    pairs = []
    try:
        from methods.registry import Claim  # late: loads torch, and a registry that fails must not stop it
    except Exception:  # noqa: BLE001 - reported by `registered_claims`
        return []
    done = finished(runs)
    for variant, n in external_variants(runs):
        rows = done[(done["variant"] == variant) & (done["frames"] == n)]
        for key in CLAIMABLE:
            if VOCABULARY[key].per_sample and rows[key].notna().any():
                text = f"ours beats {variant} in {METRIC_LABELS[key]} at N={n}"
                pairs.append((variant, Claim(text, EXTERNAL_SOURCE, key, worse=variant, frames=n)))
    return pairs


def registered_methods() -> list[MethodAPI]:
    """The registry's entries in registration order; none when it does not load (see `registered_claims`)."""
    try:
        from methods import registry  # late: loads torch, and a registry that fails must not stop the report

        return [registry.get(name) for name in registry.names()]
    except Exception:  # noqa: BLE001
        return []


def registered_ablations() -> list[str]:
    """The registered ablation variants; none when the registry does not load (see `registered_claims`)."""
    return [m.name for m in registered_methods() if m.family == "ablation"]


# The metrics' short names, from the one vocabulary (`bench.metrics.VOCABULARY`).
METRIC_LABELS = {key: m.label for key, m in VOCABULARY.items()}


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


def _unit(metric: str) -> str:
    unit = VOCABULARY[metric].unit
    return f" {unit}" if unit else ""


def paper_figures(claim: Claim, cells: tuple[tuple[str, int], tuple[str, int]]) -> tuple[float | None, ...]:
    """The paper's figures (better, worse) of a claim: each side's `Method.paper` figure of the claim's metric
    from the claim's source, at that side's N; None where the paper prints none."""
    entries = {m.name: m for m in registered_methods()}
    return tuple(entries[name].published(claim.metric, n, claim.source) if name in entries else None
                 for name, n in cells)


def _paper_text(claim: Claim, cells: tuple[tuple[str, int], tuple[str, int]]) -> str:
    first, second = paper_figures(claim, cells)
    if first is None:
        return "— (supplementary)" if claim.source == "supp." else "—"
    against = f" vs {fmt(second, claim.metric)}" if second is not None else ""
    return fmt(first, claim.metric) + against + _unit(claim.metric)


def per_sample(samples: pd.DataFrame, variant: str, frames: int, metric: str) -> dict[int, dict[str, float]]:
    """seed -> test sample id -> `metric` for the finished runs of (variant, N) in `samples`
    (`bench.report.load.load_samples`); NaN where the metric is undefined for a sample."""
    hit = samples[(samples["variant"] == variant) & (samples["frames"] == frames)]
    return {int(seed): dict(zip(group["sample"], group[metric].astype(float), strict=True))
            for seed, group in hit.groupby("seed")}


def untrained(samples: pd.DataFrame, variant: str) -> bool:
    """True for a stored method without training stages (`blurred`, `gt-static`): one seed stands for all."""
    hit = samples[samples["variant"] == variant]
    return bool(len(hit)) and not bool(hit["trained"].any())


@cache
def paper_size_mb(name: str) -> float:
    """Size in MB (float32, 10^6 bytes) of the networks `name` runs at test time, built at the paper's widths:
    an exact count from the registry, whatever profile the runs used."""
    # late: these load torch, needed only when a claim on size is checked
    from bench.perf import size_mb
    from methods import registry
    from methods.layers import count_params

    method = registry.get(name)
    return size_mb(sum(count_params(c.build(None)) for c in method.components.values() if c.inference))


def _speed(perf: PerfResult | None, better: str, worse: str, metric: str, n: int) -> Judgement:
    """A speed claim on the stored paper-size timing; not measured (with the command) without one."""
    if perf is None:
        return Judgement(NOT_MEASURED, note=f"no stored paper-size timing: run `{PERF_COMMAND}`")
    if metric == "runtime_video_s" and perf.frames != n:
        return Judgement(NOT_MEASURED, note=f"the stored timing has N={perf.frames}: run `{PERF_COMMAND} "
                                            f"--frames {n}`")
    rows = {r["method"]: r for r in perf.rows if not r.get("skipped")}
    absent = [m for m in (better, worse) if m not in rows]
    if absent:
        return Judgement(NOT_MEASURED, note=f"{', '.join(absent)} not in the stored timing: run "
                                            f"`{PERF_COMMAND}`")
    return judge_speed(rows[better][PERF_TIMES[metric]], rows[worse][PERF_TIMES[metric]])


def decide_claim(samples: pd.DataFrame, perf: PerfResult | None, owner: str, claim: Claim,
                 frames: dict[str, int]) -> Judgement:
    """The verdict of one claim by its kind: accuracy (paired bootstrap), size (exact), speed (timed)."""
    (better, nb), (worse, nw) = claim_cells(owner, claim, frames)
    if claim.kind == "size":
        return judge_size(paper_size_mb(better), paper_size_mb(worse))
    if claim.kind == "speed":
        return _speed(perf, better, worse, claim.metric, nw)
    # Sides at different N were scored on different test sets: seeds paired, samples not.
    return judge(per_sample(samples, better, nb, claim.metric), per_sample(samples, worse, nw, claim.metric),
                 lower_is_better(claim.metric), untrained(samples, better), untrained(samples, worse),
                 paired=nb == nw)


def _evidence(claim: Claim, cells: tuple[tuple[str, int], tuple[str, int]], j: Judgement,
              perf: PerfResult | None) -> str:
    """What a verdict stands on, in words, for the table."""
    (better, nb), (worse, nw) = cells
    if claim.kind == "size":
        return f"{better} vs {worse}, the registry's networks at the paper's widths (exact)"
    if claim.kind == "speed":
        return (f"{better} vs {worse}, paper-sized networks, bench perf on {perf.device} at "
                f"{perf.resolution}, N={perf.frames}, medians of {j.samples} timed passes") if perf else ""
    seeds = ",".join(map(str, j.seeds))
    return f"{better}@{nb} vs {worse}@{nw}; seeds {seeds}; {j.samples} test samples per seed"


def evaluate_claim(samples: pd.DataFrame, perf: PerfResult | None, owner: str, claim: Claim,
                   frames: dict[str, int]) -> dict:
    """One claim decided (see `evaluate_claims` for the row's keys)."""
    cells = claim_cells(owner, claim, frames)
    j = decide_claim(samples, perf, owner, claim, frames)
    unit = _unit(claim.metric)
    measured = j.verdict != NOT_MEASURED
    missing = [] if measured or claim.kind != "accuracy" else [
        f"{name}@{n}" for name, n in cells if samples[(samples["variant"] == name)
                                                     & (samples["frames"] == n)].empty]
    return {"claim": claim.text, "source": claim.source, "metric": METRIC_LABELS[claim.metric],
            "kind": claim.kind, "paper": _paper_text(claim, cells),
            "ours": (f"{fmt(j.better, claim.metric)} vs {fmt(j.worse, claim.metric)}{unit}"
                     if measured else "—"),
            "improvement": (f"{fmt(j.gain, claim.metric)} [{fmt(j.ci_low, claim.metric)}, "
                            f"{fmt(j.ci_high, claim.metric)}]") if measured else "—",
            "verdict": j.verdict, "gain": j.gain, "ci_low": j.ci_low, "ci_high": j.ci_high,
            "seeds": ",".join(map(str, j.seeds)), "samples": j.samples,
            "evidence": _evidence(claim, cells, j, perf) if measured else "", "note": j.note,
            "missing": missing}


# The keys of a decided claim (`evaluate_claim`), in the order of claims.csv's columns.
CLAIM_COLUMNS = ("claim", "source", "metric", "kind", "paper", "ours", "improvement", "verdict", "gain",
                 "ci_low", "ci_high", "seeds", "samples", "evidence", "note", "missing")


def evaluate_claims(samples: pd.DataFrame, frames: dict[str, int], perf: PerfResult | None = None,
                    extra: list[tuple[str, Claim]] | None = None) -> list[dict]:
    """Every registered claim decided; `samples` are the per-sample scores of the report's finished runs
    (`load_samples`), `frames` resolves "deblur"/"video"/"ablation" to an N, `perf` is the stored paper-size
    timing (or None).

    Rows: claim, source, metric, kind, paper, ours, improvement, verdict, gain, ci_low, ci_high, seeds,
    samples, evidence, note, missing ("method@N"). `extra` claims (`external_claims`) follow the registered
    ones, decided by the same rule.
    """
    pairs, _note = registered_claims()
    return [evaluate_claim(samples, perf, owner, claim, frames) for owner, claim in [*pairs, *(extra or [])]]
