"""Reading the results store (SPEC 8) into one pandas frame: stored runs only, nothing recomputed.

One row per run folder `runs/<run-id>/` and one per cross-dataset evaluation `runs/<run-id>/evals/<set>/`
(column `eval_set`; empty for the run's own test set). Failed and unfinished runs stay in the frame with
their status so the report can list them instead of silently dropping them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# SPEC 8 aggregate keys, in the order tables print them.
METRICS: tuple[str, ...] = (
    "deblur_psnr", "deblur_ssim", "deblur_lpips", "eq6", "ppsnr", "pwpsnr", "mid_psnr", "epe",
    "runtime_deblur_s", "runtime_video_s", "params", "size_mb",
)
# Further numeric columns: the training wall time of `bench run` (metrics.json "training_time_s").
EXTRA_METRICS: tuple[str, ...] = ("train_time_s",)

COLUMNS: tuple[str, ...] = (
    "run_id", "path", "method", "variant", "profile", "dataset", "source", "frames", "seed", "overrides",
    "status", "error", "eval_set", "device", "commit", "date", "lpips_note",
) + METRICS + EXTRA_METRICS


def _read_json(path: Path) -> Any:
    """A JSON file, or None when absent or unreadable (a half-made run must not break the report)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _first(d: dict | None, *keys: str) -> Any:
    """The first present, non-empty value among `keys` of `d` (env.json naming is not pinned down)."""
    if not isinstance(d, dict):
        return None
    for key in keys:
        value = d.get(key)
        if value not in (None, "", {}):
            return value
    return None


def _overrides_text(overrides: Any) -> str:
    if not overrides:
        return ""
    if isinstance(overrides, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    if isinstance(overrides, (list, tuple)):
        return ",".join(str(x) for x in overrides)
    return str(overrides)


def _source(dataset: str) -> str:
    """`synthetic-quick-9f` -> `synthetic-quick`, `gopro-9f` -> `gopro`: the data family without N."""
    return re.sub(r"-\d+f$", "", dataset or "")


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _iter_run_folders(runs_dir: Path) -> list[dict]:
    """Run folders as `{"path", "config", "metrics"}`; `bench.store.iter_runs` when it exists."""
    try:
        from bench.store import iter_runs  # the store's own reader, same semantics as below
    except ImportError:
        iter_runs = None
    if iter_runs is not None:
        return [dict(r, path=Path(r["path"])) for r in iter_runs(runs_dir)]
    runs = []
    for folder in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        config = _read_json(folder / "config.json")
        if not isinstance(config, dict):
            continue  # not a run (runs/stages/, a stray folder)
        runs.append({"path": folder, "config": config, "metrics": _read_json(folder / "metrics.json")})
    return runs


def _row(run_id: str, path: Path, config: dict, env: dict | None, metrics: dict | None,
         eval_set: str) -> dict:
    metrics = metrics if isinstance(metrics, dict) else {}
    agg = metrics.get("aggregate") if isinstance(metrics.get("aggregate"), dict) else {}
    method = str(config.get("method", "?"))
    overrides = _overrides_text(config.get("overrides"))
    dataset = str(config.get("dataset") or "")
    device = agg.get("device") or _first(env, "device_name", "device", "gpu")
    commit = str(_first(env, "git_commit", "commit", "git") or "")
    if commit and isinstance(env, dict) and env.get("git_dirty"):
        commit += "+dirty"  # uncommitted changes: the commit alone does not reproduce the number
    row = {
        "run_id": run_id,
        "path": str(path),
        "method": method,
        # Runs with overrides are a different experiment from the method's default; never pool them.
        "variant": f"{method} [{overrides}]" if overrides else method,
        "profile": str(config.get("profile") or ""),
        "dataset": dataset,
        "source": _source(dataset),
        "frames": int(config["frames"]) if isinstance(config.get("frames"), int) else -1,
        "seed": int(config["seed"]) if isinstance(config.get("seed"), int) else -1,
        "overrides": overrides,
        # A folder without metrics.json is a run still going or killed before scoring.
        "status": str(metrics.get("status") or "incomplete"),
        "error": str(metrics.get("error") or ""),
        "eval_set": eval_set,
        "device": str(device or ""),
        "commit": commit,
        "date": str(_first(env, "date", "created", "time", "timestamp") or ""),
        "lpips_note": str(agg.get("deblur_lpips_note") or metrics.get("deblur_lpips_note") or ""),
    }
    for key in METRICS:
        row[key] = _number(agg.get(key))
    # bench run stores the training wall time (stages summed, cached stages counted) at the top level.
    row["train_time_s"] = _number(metrics.get("training_time_s", metrics.get("train_time_s")))
    return row


def load_runs(runs_dir: Path | str) -> pd.DataFrame:
    """Every run and cross-dataset evaluation in `runs_dir` as one frame with `COLUMNS` (SPEC 8)."""
    runs_dir = Path(runs_dir)
    rows: list[dict] = []
    if runs_dir.is_dir():
        for run in _iter_run_folders(runs_dir):
            path: Path = run["path"]
            config = run.get("config") or {}
            env = _read_json(path / "env.json")
            rows.append(_row(path.name, path, config, env, run.get("metrics"), ""))
            evals = path / "evals"
            if evals.is_dir():
                for folder in sorted(p for p in evals.iterdir() if p.is_dir()):
                    rows.append(_row(path.name, folder, config, env, _read_json(folder / "metrics.json"),
                                     folder.name))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values(["method", "frames", "seed", "run_id", "eval_set"], kind="stable",
                             ignore_index=True)


def load_samples(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-test-sample metrics (`metrics.json` "samples") of the given runs; one row per (run, sample)."""
    rows = []
    for run in runs.itertuples(index=False):
        metrics = _read_json(Path(run.path) / "metrics.json")
        samples = metrics.get("samples") if isinstance(metrics, dict) else None
        for sample in samples if isinstance(samples, list) else []:
            if not isinstance(sample, dict):
                continue
            row = {"run_id": run.run_id, "method": run.method, "variant": run.variant,
                   "frames": run.frames, "seed": run.seed, "sample": str(sample.get("id", ""))}
            row.update({key: _number(sample.get(key)) for key in METRICS})
            rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "method", "variant", "frames", "seed", "sample",
                                       *METRICS])


def _curve(points: Any) -> tuple[list[float], list[float]] | None:
    """One stage's loss curve in any of the plausible layouts, as (iterations, losses)."""
    if isinstance(points, dict) and "curve" in points:  # a stage summary holding [[iter, loss], ...]
        return _curve(points["curve"])
    if isinstance(points, dict):
        its = points.get("iter", points.get("iters", points.get("step", points.get("steps"))))
        loss = points.get("loss", points.get("losses", points.get("total")))
        if isinstance(loss, list) and its is None:
            its = list(range(len(loss)))
        if isinstance(its, list) and isinstance(loss, list) and len(its) == len(loss):
            return [float(i) for i in its], [float(v) for v in loss]
        return None
    if isinstance(points, list) and points:
        if all(isinstance(p, dict) for p in points):
            its = [p.get("iter", p.get("step", i)) for i, p in enumerate(points)]
            loss = [p.get("loss", p.get("total")) for p in points]
        elif all(isinstance(p, (list, tuple)) and len(p) >= 2 for p in points):
            its, loss = [p[0] for p in points], [p[1] for p in points]
        else:
            its, loss = list(range(len(points))), list(points)
        pairs = [(float(i), float(v)) for i, v in zip(its, loss, strict=True)
                 if isinstance(v, (int, float)) and isinstance(i, (int, float))]
        return ([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None
    return None


def load_curves(run_path: Path | str) -> dict[str, tuple[list[float], list[float]]]:
    """Loss curves of a run's training stages from `curves.json` ({} when absent or unreadable)."""
    data = _read_json(Path(run_path) / "curves.json")
    if isinstance(data, dict) and isinstance(data.get("stages"), (dict, list)):
        data = data["stages"]
    if isinstance(data, list):  # [{"stage": name, "iter": [...], "loss": [...]}, ...]
        data = {str(d.get("stage", d.get("name", i))): d for i, d in enumerate(data) if isinstance(d, dict)}
    curves = {}
    for stage, points in (data or {}).items() if isinstance(data, dict) else []:
        curve = _curve(points)
        if curve is not None and curve[0]:
            curves[str(stage)] = curve
    return curves


_ROLE = re.compile(
    r"^(?P<sid>.*?)[_\-./]*(?P<role>deblurred|deblur|blurred|blur|input|pred|predicted|frame|out|output|"
    r"gt|sharp|truth|true|target)[_\-.]*(?P<idx>\d+)?$"
)
_ROLE_MAP = {"deblurred": "deblurred", "deblur": "deblurred", "blurred": "blur", "blur": "blur",
             "input": "blur", "pred": "pred", "predicted": "pred", "frame": "pred", "out": "pred",
             "output": "pred", "gt": "gt", "sharp": "gt", "truth": "gt", "true": "gt", "target": "gt"}


def load_sample_images(run_path: Path | str) -> dict[str, dict[str, Any]]:
    """The stored sample PNGs of a run, by sample id: {"blur": Path, "deblurred": Path,
    "pred": [Path by frame], "gt": [Path by frame]}. Names are parsed leniently
    (`<id>_blur.png`, `<id>/pred_03.png`, `<id>-gt-1.png`, ...); files that fit no role are ignored."""
    root = Path(run_path) / "samples"
    found: dict[str, dict[str, Any]] = {}
    if not root.is_dir():
        return found
    for png in sorted(root.rglob("*.png")):
        stem = png.relative_to(root).with_suffix("").as_posix()
        m = _ROLE.match(stem)
        if m is None:
            continue
        sid = m.group("sid").strip("_-./") or "sample"
        role = _ROLE_MAP[m.group("role")]
        entry = found.setdefault(sid, {"pred": {}, "gt": {}})
        if role in ("pred", "gt"):
            if m.group("idx") is not None:
                entry[role][int(m.group("idx"))] = png
        else:
            entry[role] = png
    for entry in found.values():
        for role in ("pred", "gt"):
            entry[role] = [entry[role][k] for k in sorted(entry[role])]
    return found
