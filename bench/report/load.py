"""Reading the results store into pandas frames for the report: the run records of `bench.store`, checked
on read (`bench.store.iter_runs`), nothing recomputed and no key guessed.

One row per run folder and one per cross-dataset evaluation (`eval_set` is its folder, `<set>-<digest12>`;
empty for the run's own test split). Failed, unfinished, damaged and pre-digest (legacy) entries stay in the
frame with their status and one-line reason, so the report lists them instead of dropping them silently.

Each metrics.json is parsed once per report, here: the row keeps the parsed record (`PARSED`), and the
per-sample scores and stage summaries are read from it, never from the file again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import store
from bench.metrics import COST_METRICS, SAMPLE_METRICS
from bench.store import EvalRecord, RunMetrics, RunRecord

# The aggregate keys of metrics.json, in the order tables print them.
METRICS: tuple[str, ...] = SAMPLE_METRICS + COST_METRICS
# Further numeric columns: the training wall time of `bench run` (metrics.json "training_time_s").
EXTRA_METRICS: tuple[str, ...] = ("train_time_s",)
PARSED = "parsed_metrics"  # the column holding the row's parsed metrics.json (RunMetrics, or None)

COLUMNS: tuple[str, ...] = (
    "run_id", "path", "method", "family", "variant", "profile", "dataset", "data_sha256", "source", "frames",
    "seed", "overrides", "trained", "status", "error", "eval_set", "device", "trained_on", "commit", "date",
    "lpips_note",
) + METRICS + EXTRA_METRICS + (PARSED,)


def _source(dataset: str) -> str:
    """`synthetic-quick-9f` -> `synthetic-quick`, `gopro-9f` -> `gopro`: the data family without N."""
    return re.sub(r"-\d+f$", "", dataset)


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


def _row(record: RunRecord, path: Path, eval_set: str, evaluation: EvalRecord | None = None) -> dict:
    """One frame row: the run's identity and environment, the scores of its own test split or (with
    `evaluation`) of another set's, and the status with the one-line problem of an unusable entry."""
    cfg = record.config
    entry: RunRecord | EvalRecord = evaluation if evaluation is not None else record
    metrics, problem, status, env = entry.metrics, entry.problem, entry.status, entry.env
    method = cfg.method if cfg else ""
    overrides = ",".join(cfg.overrides) if cfg else ""
    finished = status == "finished"
    agg = metrics.aggregate if finished else {}
    row = {
        "run_id": record.path.name, "path": str(path), "method": method,
        "family": cfg.family if cfg else "",  # store.EXTERNAL: another method's files (bench score)
        # Runs with overrides are a different experiment from the method's default; never pool them.
        "variant": f"{method} [{overrides}]" if overrides else method,
        "profile": cfg.profile if cfg else "", "dataset": cfg.dataset if cfg else "",
        "data_sha256": cfg.data_sha256 if cfg else "", "source": _source(cfg.dataset) if cfg else "",
        "frames": cfg.frames if cfg else -1, "seed": cfg.seed if cfg else -1, "overrides": overrides,
        # A method without training stages gives the same output for every seed (a floor).
        "trained": bool(cfg.stages) if cfg else False,
        "status": status, "error": problem or (metrics.error if metrics and metrics.error else ""),
        "eval_set": eval_set, "device": agg.get("device", ""),
        # where its stages were trained (chip, precision, threads): "" for an untrained method
        "trained_on": "; ".join(metrics.trained_on) if finished else "",
        "commit": env.commit_text if env else "",
        "date": env.date if env else "", "lpips_note": agg.get("deblur_lpips_note", ""),
    }
    row.update({key: _number(agg.get(key)) for key in METRICS})
    row["train_time_s"] = metrics.training_time_s if finished else np.nan
    row[PARSED] = metrics if finished else None
    return row


def load_runs(runs_dir: Path | str) -> pd.DataFrame:
    """Every run and cross-dataset evaluation in `runs_dir` as one frame with `COLUMNS`."""
    rows: list[dict] = []
    for record in store.iter_runs(runs_dir):
        rows.append(_row(record, record.path, ""))
        for evaluation in record.evals:
            rows.append(_row(record, evaluation.path, evaluation.path.name, evaluation))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values(["method", "frames", "seed", "run_id", "eval_set"], kind="stable",
                             ignore_index=True)


SAMPLE_COLUMNS = ("run_id", "method", "variant", "frames", "seed", "trained", "sample", *SAMPLE_METRICS)


def load_samples(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-test-sample metrics (`metrics.json` "samples") of the given finished runs; one row per (run,
    sample), NaN where a metric is undefined for that sample; read from the records `load_runs` parsed."""
    rows = []
    for run, metrics in zip(runs.itertuples(index=False), runs[PARSED], strict=True):
        for sample in metrics.samples if metrics is not None else ():
            row = {"run_id": run.run_id, "method": run.method, "variant": run.variant, "frames": run.frames,
                   "seed": run.seed, "trained": run.trained, "sample": sample["id"]}
            row.update({key: _number(sample[key]) for key in SAMPLE_METRICS})
            rows.append(row)
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def load_curves(run_path: Path | str) -> dict[str, tuple[list[float], list[float]]]:
    """Loss curves of a run's training stages, stage -> (iterations, losses); {} for an untrained method."""
    return {stage: ([i for i, _ in points], [v for _, v in points])
            for stage, points in store.read_curves(run_path).items() if points}


def load_stage_summaries(metrics: RunMetrics | None) -> dict[str, dict]:
    """Per training stage, the summary `bench run` stored (metrics.json "training", as `load_runs` parsed it
    into the run's row: key, iterations, probe loss, and under "validation" the curve on fixed test-split
    crops); {} for an untrained method."""
    training = metrics.training if metrics is not None else {}
    return {str(stage): info for stage, info in training.items() if isinstance(info, dict)}


def load_sample_images(run_path: Path | str) -> dict[str, dict[str, Any]]:
    """The stored sample PNGs of a run, by sample id: {"blur": Path, "deblurred": Path, "frame": [Path by
    frame], "truth": [Path by frame]} (`bench.store.read_sample_images`)."""
    return store.read_sample_images(Path(run_path) / "samples")
