"""Run folders written through the run record of `bench.store`, as `bench run` writes them, for tests that
need a store of known contents without training (report, list, ablate, infer)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.code_identity import run_code, stage_code
from bench.errors import BenchError
from bench.fileio import atomic_write_bytes, atomic_write_json, read_json, stable_hash
from bench.metrics import COST_METRICS, SAMPLE_METRICS
from bench.registry import get_method
from bench.store import (
    CONFIG,
    CURVES,
    ENV,
    METRICS,
    WEIGHTS,
    RunConfig,
    RunMetrics,
    config_run_id,
    eval_folder_name,
    read_config,
    scoring_digest,
)
from bench.train import STAGE_JSON

DIGEST = "d" * 64  # the content digest of the crafted runs' training set


def env(commit: str = "abc1234", dirty: bool = False, date: str = "2026-01-01T00:00:00") -> dict:
    return {"git_commit": commit, "git_dirty": dirty, "device": "cpu", "device_name": "CPU: test",
            "python": "3.11", "platform": "test", "date": date, "packages": {}}


def scores(values: dict, offset: float = 0.0) -> dict:
    """Every per-sample metric key: the given values (shifted by `offset`), None for the rest."""
    return {k: (None if values.get(k) is None else values[k] + offset) for k in SAMPLE_METRICS}


def metrics(run_id: str, method: str, frames: int, seed: int, values: dict, *, profile: str = "smoke",
            dataset: str = "", digest: str = DIGEST, eval_dataset: str = "", eval_digest: str = "",
            weights: bytes | None = None, samples: int = 2, jitter: Sequence[float] | None = None,
            training_time_s: float = 12.5, training: dict | None = None) -> RunMetrics:
    """A finished RunMetrics whose `samples` average to `values`: sample i is offset by `jitter[i]` (made
    zero-mean; default +-0.5 in turn)."""
    dataset = dataset or f"synthetic-{profile}-{frames}f"
    aggregate = dict(scores(values), **{k: values.get(k) for k in COST_METRICS}, device="CPU: test")
    aggregate.update({k: v for k, v in values.items() if k not in aggregate})
    offsets = list(jitter) if jitter is not None else [0.5 if i % 2 else -0.5 for i in range(samples)]
    offsets = [o - sum(offsets) / len(offsets) for o in offsets] if len(offsets) > 1 else [0.0]
    rows = tuple({"id": f"s{i}", **scores(values, offset)} for i, offset in enumerate(offsets))
    return RunMetrics("finished", run_id, method=method, profile=profile, dataset=dataset, data_sha256=digest,
                      eval_dataset=eval_dataset or dataset, eval_sha256=eval_digest or digest, frames=frames,
                      seed=seed, aggregate=aggregate, samples=rows, metric_definitions={},
                      training=training or {}, training_time_s=training_time_s, wall_s=1.0,
                      weights_sha256=hashlib.sha256(weights).hexdigest() if weights is not None else None,
                      weights_bytes=len(weights) if weights is not None else None)


def current_code(runs: Path, method: str, frames: int, trained: bool) -> tuple[str, dict[str, str]]:
    """(scoring code digest, {stage: key}) of a crafted run, as this checkout's code gives them for a
    registered method (`bench.report.currency` then finds the run current): one trained stage, its first,
    recorded in the stage cache with its code. An unregistered name keeps placeholders (a "dm" stage)."""
    digests = _digests(method, frames)
    if digests is None:
        return "c" * 16, {"dm": "dm-000000000000"} if trained else {}
    scoring, stage = digests
    if not trained or stage is None:
        return scoring, {}
    name, code = stage
    key = f"{name}-{stable_hash(code, 12)}"
    atomic_write_json(runs / "stages" / key / STAGE_JSON, {"identity": {"code": code}})
    return scoring, {name: key}


@functools.cache
def _digests(method: str, frames: int) -> tuple[str, tuple[str, dict] | None] | None:
    """A registered method's scoring digest and (first stage, its code); None for an unregistered name."""
    try:
        api = get_method(method, frames)
    except BenchError:
        return None
    first = (api.stages[0].name, stage_code(api, api.stages[0], None)) if api.stages else None
    return scoring_digest(run_code(api, None)), first


def write_run(runs: Path, label: str, method: str, frames: int = 9, seed: int = 0,
              values: dict | None = None, *, status: str = "finished", profile: str = "smoke",
              overrides: tuple[str, ...] = (),
              dataset: str = "", digest: str = DIGEST, weights: bytes | None = b"weights",
              curves: dict | None = None, commit: str = "abc1234", dirty: bool = False,
              date: str = "2026-01-01T00:00:00", error: str = "boom: out of memory",
              samples: int = 2, jitter: Sequence[float] | None = None, trained: bool = True,
              training: dict | None = None) -> Path:
    """One run folder: config, env, and a finished (or failed) metrics.json, weights.pt and curves.json;
    `trained` False stores no training stages (a floor such as `blurred`); `training` is metrics.json's
    per-stage summary; `weights` None: scored from a `--weights` file, so it wrote none.

    The folder is named by the run id its config hashes to, as `bench run` names it (the store serves no
    other); `label` goes into the resolved profile, so runs of different labels are different runs, and
    `find(runs, label)` finds the folder again."""
    dataset = dataset or f"synthetic-{profile}-{frames}f"
    weights_from = None if weights is not None else "scored.pt"
    scoring, stage_keys = current_code(runs, method, frames, trained)
    config = RunConfig(run_id="", method=method, family="paper", profile=profile, overrides=overrides,
                       resolved_profile={"name": profile, "label": label}, dataset=dataset,
                       data_sha256=digest, frames=frames, seed=seed,
                       stages=tuple({"name": name} for name in stage_keys), weights_from=weights_from,
                       weights_from_sha256="e" * 64 if weights_from else None,
                       stage_keys=stage_keys, scoring_code=scoring)
    run_id = config_run_id(config)
    config = replace(config, run_id=run_id)
    folder = runs / run_id
    atomic_write_json(folder / CONFIG, config.to_json())
    atomic_write_json(folder / ENV, env(commit, dirty, date))
    if status == "failed":
        atomic_write_json(folder / METRICS, RunMetrics("failed", run_id, error=error).to_json())
        return folder
    if status != "finished":  # incomplete: configured, never scored
        return folder
    if weights is not None:
        atomic_write_bytes(folder / WEIGHTS, weights)
    atomic_write_json(folder / CURVES, curves if curves is not None else {})
    record = metrics(run_id, method, frames, seed, values or {}, profile=profile, dataset=dataset,
                     digest=digest, weights=weights, samples=samples, jitter=jitter, training=training)
    atomic_write_json(folder / METRICS, record.to_json())
    return folder


def write_eval(run: Path, set_name: str, digest: str, values: dict, commit: str = "abc1234") -> Path:
    """A finished cross-dataset evaluation of `run` on the set `set_name` with content `digest`."""
    folder = run / "evals" / eval_folder_name(set_name, digest)
    atomic_write_json(folder / ENV, env(commit))
    config = read_config(run)
    record = metrics(run.name, config.method, config.frames, config.seed, values, profile=config.profile,
                     dataset=config.dataset, digest=config.data_sha256, eval_dataset=set_name,
                     eval_digest=digest)
    atomic_write_json(folder / METRICS, record.to_json())
    return folder


def label_of(folder: Path) -> str | None:
    """The label `write_run` gave the run in `folder` (None for another folder)."""
    config = read_json(Path(folder) / CONFIG)
    profile = config.get("resolved_profile") if isinstance(config, dict) else None
    return profile.get("label") if isinstance(profile, dict) else None


def find(runs: Path, label: str) -> Path:
    """The folder of the run `write_run` wrote with `label`."""
    (folder,) = [p for p in Path(runs).iterdir() if label_of(p) == label]
    return folder


# Two iterations per stage and one timed pass: real smoke runs in seconds, for tests not judging learning.
TINY_TRAINING = ("train.iters_dm=2", "train.iters_autoencoder=2", "train.iters_bie=2", "train.log_every=1",
                 "eval.runtime_repeats=1")


def tiny_smoke_runs(methods: Sequence[str], frames: str, data: Path, store: Path) -> Path:
    """Real `bench run --profile smoke` runs of `methods` at `frames` (each also scores `blurred`) on the CPU,
    with `TINY_TRAINING`, into `store`; fails the test with bench's output when one fails."""
    # late: the command line loads torch, which the tests of crafted stores do not need
    from click.testing import CliRunner

    from bench.cli import cli

    tiny = [x for item in TINY_TRAINING for x in ("--set", item)]
    for method in methods:
        args = ["run", "--method", method, "--profile", "smoke", "--frames", frames, "--data-dir", str(data),
                "--runs-dir", str(store), "--device", "cpu", *tiny]
        result = CliRunner().invoke(cli, args, catch_exceptions=True)
        assert result.exit_code == 0, f"bench {' '.join(args)}: {result.output} {result.exception!r}"
    return store
