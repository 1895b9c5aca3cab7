"""One run, end to end: resolve the config, find or make its folder, train (or reuse, resume, load),
evaluate, store the results (`config.json`, `metrics.json`, `weights.pt`).

A run is (method, profile with overrides, dataset, frames, seed, evaluation set); its folder is
`runs/<method>-<hash of that>`. The folder holds `config.json`, `env.json`, `metrics.json` (per sample and
aggregate, `status` finished or failed), `weights.pt` (portable), `curves.json` (loss per stage) and a few
sample PNGs. A finished run is reused; a failed one is retried; the training stages live in the shared stage
cache (`runs/stages/`, see bench/train.py) so an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import Profile, apply_overrides, get_profile, to_dict
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.store import (
    FolderLock,
    atomic_write_json,
    load_weights,
    read_json,
    read_metrics,
    run_id,
    runs_dir,
    save_weights,
    sha256_file,
)
from bench.train import LOCAL, Dist, StageResult, barrier, train_method, trained_state_dicts

if TYPE_CHECKING:
    from methods.registry import MethodAPI

DATA_SEED = 0  # prepared data is fixed across run seeds: seeds vary initialisation and batch order only


@dataclass(frozen=True)
class RunSpec:
    """Everything `bench run` was asked for one (method, frames, seed)."""

    method: str
    profile: str = "quick"
    frames: int = 9
    seed: int = 0
    overrides: tuple[str, ...] = ()
    data_dir: Path | None = None
    runs_dir: Path | None = None
    source: str | None = None  # None = the profile's data.source
    root: Path | None = None  # footage root for --source gopro
    device: str | None = None  # None = the profile's train.device
    weights: Path | None = None  # evaluate this portable weights.pt instead of training
    eval_data: str | None = None  # score on this prepared set's test split instead of the run's own
    fresh: bool = False  # retrain every stage and re-evaluate, ignoring caches
    progress: bool = True


@dataclass
class RunOutcome:
    path: Path  # the run folder
    metrics: dict  # what metrics.json holds
    cached: bool = False  # True when a finished result was reused
    metrics_path: Path = field(default=Path())


def get_method(name: str, frames: int | None = None) -> MethodAPI:
    """The registered method, or a one-line error listing the names; with `frames`, one that can take N."""
    from methods import registry

    try:
        method = registry.get(name)
    except KeyError:
        raise BenchError(f"unknown method {name!r}; choose one of {', '.join(registry.names())} "
                         "(see bench list --methods)") from None
    if frames is not None:
        try:
            method.check_frames(frames)
        except ValueError as err:
            first = (str(err).splitlines() or [f"{name} cannot run N={frames}"])[0]
            raise BenchError(f"--frames {frames}: {first}") from None
    return method


def resolve_profile(spec: RunSpec) -> Profile:
    return apply_overrides(get_profile(spec.profile), list(spec.overrides))


def _resolve_set(data_dir: Path, name: str, frames: int) -> Path:
    """A prepared set given by folder name under the data dir, or by path; checks it holds N frames."""
    folder = Path(name) if Path(name).is_dir() else data_dir / name
    manifest = read_json(folder / "manifest.json")
    if not isinstance(manifest, dict):
        raise BenchError(f"--eval-data {name}: no prepared set at {folder} (no readable manifest.json); "
                         "build it with bench prepare")
    if int(manifest.get("frames", frames)) != frames:
        raise BenchError(f"--eval-data {name}: that set has {manifest.get('frames')} frames but the run has "
                         f"{frames}; pass --frames {manifest.get('frames')}")
    return folder


def execute(spec: RunSpec, dist: Dist = LOCAL, log: Any = print) -> RunOutcome | None:
    """Do one run; returns its outcome on rank 0 (None on the other ranks of a distributed run)."""
    from bench.data.manifest import default_data_dir
    from bench.data.prepare import ensure_prepared

    method = get_method(spec.method, spec.frames)
    profile = resolve_profile(spec)
    if profile.train.threads > 0:
        import torch

        torch.set_num_threads(profile.train.threads)
    device = resolve_device(spec.device or profile.train.device, dist.local_rank)
    data_dir = default_data_dir(spec.data_dir)
    store = runs_dir(spec.runs_dir)
    source = spec.source or profile.data.source

    # Rank 0 prepares; the others wait, then find the finished set.
    def prepared() -> Path:
        return Path(ensure_prepared(source, spec.frames, profile, data_dir, DATA_SEED, root=spec.root,
                                    progress=spec.progress and dist.main, log=log))

    if dist.main:
        set_folder = prepared()
    barrier(dist)
    if not dist.main:
        set_folder = prepared()
    eval_folder = _resolve_set(data_dir, spec.eval_data, spec.frames) if spec.eval_data else set_folder

    weights = load_weights(spec.weights) if spec.weights else None
    if weights is not None and weights["method"] != method.name:
        raise BenchError(f"{spec.weights}: holds {weights['method']} weights, not {method.name}; "
                         f"pass --method {weights['method']}")
    resolved = {"method": method.name, "profile": to_dict(profile), "dataset": set_folder.name,
                "frames": spec.frames, "seed": spec.seed, "eval_set": "test",
                "weights_sha256": sha256_file(spec.weights) if spec.weights else None}
    rid = run_id(method.name, resolved)
    folder = store / rid
    out_dir = folder / "evals" / eval_folder.name if spec.eval_data else folder
    metrics_path = out_dir / "metrics.json"

    # A read-only store is entered unlocked: it can still serve a finished run (writes are atomic).
    lock = FolderLock(folder, on_wait=lambda p: log(f"waiting for another process using {p.parent}"),
                      places=_places(folder, out_dir), hint="pass a writable --runs-dir", readonly_ok=True)
    if dist.main:
        lock.__enter__()
    try:
        if dist.main:
            previous = read_metrics(metrics_path)
            if isinstance(previous, dict) and previous.get("status") == "finished" and not spec.fresh:
                outcome = RunOutcome(folder, previous, cached=True, metrics_path=metrics_path)
            else:
                outcome = None
                _ready_to_write(lock, store, previous, rid, log)
                _check_inputs(method, profile, set_folder, eval_folder, device, weights)
                _write_config(folder, spec, method, profile, resolved, device)
        flag = [outcome is not None] if dist.main else [False]
        if dist.active:
            import torch.distributed as td

            td.broadcast_object_list(flag, 0)
        if flag[0]:
            return outcome if dist.main else None
        try:
            return _train_and_score(spec, method, profile, device, set_folder, eval_folder, folder, out_dir,
                                    weights, dist, log)
        except BenchError as err:
            if dist.main:
                _record_failure(metrics_path, rid, err)
            raise
        except Exception as err:
            if dist.main:
                _record_failure(metrics_path, rid, err)
            raise BenchError(f"{rid} failed: {type(err).__name__}: {err}; recorded in {metrics_path}") \
                from err
    finally:
        if dist.main:
            lock.__exit__(None, None, None)


def _places(folder: Path, out_dir: Path) -> tuple[str, ...]:
    """The subfolders of a run folder that its writes use (where killed writes leave temporaries)."""
    rel = out_dir.relative_to(folder)
    return tuple(dict.fromkeys(p.as_posix() for p in (Path("samples"), rel, rel / "samples")))


def _ready_to_write(lock: FolderLock, store: Path, previous: dict | None, rid: str, log: Any) -> None:
    """Before anything is trained or written: a read-only store is refused, an earlier attempt explained."""
    if not lock.held:
        raise BenchError(f"{store}: read-only, and {rid} has no finished result to reuse; pass a writable "
                         "--runs-dir to train and store it")
    status = previous.get("status") if isinstance(previous, dict) else None
    if status == "failed":
        log(f"{rid}: the last attempt failed ({previous.get('error')}); retrying")
    elif status == "malformed":
        log(f"{rid}: its stored result is malformed ({previous.get('error')}); redoing it")


def _check_inputs(method: Any, profile: Profile, set_folder: Path, eval_folder: Path, device: Any,
                  weights: dict | None) -> None:
    """What would otherwise fail only after training: an empty split, or networks or test frames that do
    not fit in memory."""
    from bench.data.manifest import load_manifest, split_counts
    from bench.memory import check_run

    training = bool(method.stages) and weights is None
    if training and split_counts(load_manifest(set_folder))["train"] == 0:
        raise BenchError(f"{set_folder}: no training samples (every sequence is in the test split); give the "
                         "footage train/ sequences, or score trained weights on it with --eval-data")
    scored = load_manifest(eval_folder)
    if split_counts(scored)["test"] == 0:
        raise BenchError(f"{eval_folder}: the test split is empty; prepare footage with test/ sequences")
    model = weights["model"] if weights is not None else asdict(profile.model)
    check_run(method, model, scored["frames"], scored["resolution"], device, training)


def _record_failure(metrics_path: Path, rid: str, err: BaseException) -> None:
    """A failed run is stored as failed (never as a result) so the next command retries it."""
    reason = f"{type(err).__name__}: {err}".splitlines()[0]
    try:
        atomic_write_json(metrics_path, {"status": "failed", "run_id": rid, "error": reason})
    except OSError as write_err:  # a full disk can refuse the record too; say both, lose nothing more
        raise BenchError(f"{rid} failed ({reason}); could not record it in {metrics_path} "
                         f"({write_err.strerror or write_err}); previous files are intact") from None


def _write_config(folder: Path, spec: RunSpec, method: MethodAPI, profile: Profile, resolved: dict,
                  device: Any) -> None:
    from bench.env import environment

    stages = [{"name": s.name, "trains": list(s.trains), "lr": dict(s.lr), "init_from": list(s.init_from),
               "batch": s.batch, "iters_keys": list(s.iters_keys)} for s in method.stages]
    atomic_write_json(folder / "config.json", {
        "method": method.name, "profile": profile.name, "dataset": resolved["dataset"], "frames": spec.frames,
        "seed": spec.seed, "overrides": list(spec.overrides), "family": method.family,
        "resolved_profile": resolved["profile"], "stages": stages, "run_id": folder.name,
        "weights_file": str(spec.weights) if spec.weights else None,
        "weights_sha256": resolved["weights_sha256"]})
    atomic_write_json(folder / "env.json", environment(str(device)))


def _train_and_score(spec: RunSpec, method: MethodAPI, profile: Profile, device: Any, set_folder: Path,
                     eval_folder: Path, folder: Path, out_dir: Path, weights: dict | None, dist: Dist,
                     log: Any) -> RunOutcome | None:
    import torch

    from bench.evaluate import evaluate
    from bench.train import derive_seed, load_components

    started = time.perf_counter()
    results: list[StageResult] = []
    if weights is not None:
        torch.manual_seed(derive_seed(spec.seed, method.name, "assemble"))
        nets = method.build(weights["model"])
        for name in weights["state_dicts"]:
            if name not in nets:
                raise BenchError(f"{spec.weights}: component {name!r} is not part of {method.name}")
        load_components(nets, weights["state_dicts"], source=spec.weights, fix="re-export it with bench run")
        nets = nets.to(device).eval()
        model = weights["model"]
    else:
        nets, results = train_method(method, profile, set_folder, spec.seed, folder.parent / "stages", device,
                                     dist=dist, progress=spec.progress, fresh=spec.fresh, log=log)
        model = asdict(profile.model)
    if not dist.main:
        return None
    if spec.fresh and (out_dir / "samples").is_dir():
        shutil.rmtree(out_dir / "samples")
    metrics = evaluate(method, nets, eval_folder, profile, device, out_dir=out_dir / "samples",
                       progress=spec.progress)
    metrics = dict(metrics)
    metrics.update({
        "status": "finished", "run_id": folder.name, "method": method.name, "dataset": set_folder.name,
        "eval_dataset": eval_folder.name, "frames": spec.frames, "seed": spec.seed, "profile": profile.name,
        "training": {r.name: r.summary() for r in results},
        "training_time_s": sum(r.time_s for r in results),
        "wall_s": time.perf_counter() - started,
    })
    if weights is None and not spec.eval_data:
        save_weights(folder / "weights.pt", method.name, spec.frames, model,
                     trained_state_dicts(nets, results))
        atomic_write_json(folder / "curves.json", {r.name: r.curve for r in results})
    atomic_write_json(out_dir / "metrics.json", metrics)
    return RunOutcome(folder, metrics, cached=False, metrics_path=out_dir / "metrics.json")
