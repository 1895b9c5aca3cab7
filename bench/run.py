"""One run, end to end: resolve the config, find or make its folder, train (or reuse, resume, load),
evaluate, store the results (`config.json`, `metrics.json`, `weights.pt`).

A run is (method, profile with overrides, training set and its content digest, frames, seed, weights file,
the keys of its stages, which follow their code, and the digest of its scoring code: `bench.code_identity`);
its folder is `runs/<method>-<hash of that>`, holding the run record of `bench.store` (config, env, metrics
per sample and aggregate, portable weights, loss curves, a few sample PNGs). A score on another set
(`--eval-data`) goes to `evals/<set>-<digest12>/` of the run. Results are content-addressed: reused only
when every file behind them is intact and they were computed from byte-identical data; a failed, damaged
or pre-digest entry is recomputed, saying why in one line. The training stages live in the shared stage
cache (`runs/stages/`, see bench/train.py), so an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as td

from bench.boards import Boards
from bench.code_identity import run_code
from bench.components import load_components
from bench.config import Profile, resolve_profile, to_dict
from bench.data.manifest import damaged_files, data_digest, default_data_dir, load_manifest, split_counts
from bench.data.prepare import DATA_SEED, ensure_prepared
from bench.devices import resolve_device
from bench.env import environment
from bench.errors import BenchError
from bench.evaluate import evaluate
from bench.execution import resolve_threads
from bench.fileio import FolderLock, atomic_write_json, read_json, sha256_file
from bench.memory import check_run
from bench.registry import get_method
from bench.store import (
    CONFIG,
    CURVES,
    ENV,
    METRICS,
    WEIGHTS,
    RecordError,
    RunConfig,
    RunMetrics,
    checked_name,
    eval_folder_name,
    load_weights,
    read_record,
    run_id,
    run_request,
    runs_dir,
    save_weights,
    scoring_digest,
)
from bench.train import (
    LOCAL,
    Dist,
    StageResult,
    barrier,
    derive_seed,
    stage_keys,
    train_method,
    trained_state_dicts,
)

if TYPE_CHECKING:
    from methods.registry import MethodAPI


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
    verify: str = "fast"  # how the sets read are verified: "fast" (stat record) or "full" (hash every file)
    tensorboard: bool = False  # event files of the trained stages under <run>/tensorboard/ (bench.boards)


@dataclass
class RunOutcome:
    path: Path  # the run folder
    metrics: RunMetrics  # what metrics.json holds
    cached: bool = False  # True when a finished result was reused
    metrics_path: Path = field(default=Path())


@dataclass(frozen=True)
class Identity:
    """What makes a result this result: the run id hashes `resolved`; the evaluation adds its set's digest."""

    resolved: dict  # method, resolved profile, training set name and digest, frames, seed, weights digest
    run_id: str
    data_sha256: str  # the training set's content digest
    eval_dataset: str  # the set scored: the training set, or --eval-data
    eval_sha256: str  # its content digest
    evals_folder: str | None  # `<set>-<digest12>` for --eval-data, None for the run's own test split
    stage_keys: dict = field(default_factory=dict)  # stage name -> its cache key (none with --weights)
    scoring: dict = field(default_factory=dict)  # qualified name -> digest of the code its evaluation runs


def _resolve_set(data_dir: Path, name: str, frames: int) -> Path:
    """A prepared set given by folder name under the data dir, or by path; checks its name and N."""
    folder = Path(name) if Path(name).is_dir() else data_dir / name
    checked_name(folder.name, f"--eval-data {name}: folder name", "pass the prepared set's folder itself")
    manifest = read_json(folder / "manifest.json")
    if not isinstance(manifest, dict):
        raise BenchError(f"--eval-data {name}: no prepared set at {folder} (no readable manifest.json); "
                         "build it with bench prepare")
    if int(manifest.get("frames", frames)) != frames:
        raise BenchError(f"--eval-data {name}: that set has {manifest.get('frames')} frames but the run has "
                         f"{frames}; pass --frames {manifest.get('frames')}")
    return folder


def identity(spec: RunSpec, method: MethodAPI, profile: Profile, set_folder: Path,
             eval_folder: Path, device: Any) -> Identity:
    """The content-addressed identity of a run and of its evaluation (module docstring): the stages' keys
    (which follow their code) and the digest of the scoring code join the config and the data."""
    digest = data_digest(set_folder)
    eval_digest = data_digest(eval_folder) if spec.eval_data else digest
    keys = {} if spec.weights else {name: key for name, (key, _) in
                                    stage_keys(method, profile, set_folder, spec.seed, device).items()}
    scoring = run_code(method, asdict(profile.model))
    weights_digest = sha256_file(spec.weights) if spec.weights else None
    resolved = run_request(method.name, to_dict(profile), checked_name(set_folder.name, "prepared set"),
                           digest, spec.frames, spec.seed, weights_digest, keys, scoring_digest(scoring))
    evals = eval_folder_name(eval_folder.name, eval_digest) if spec.eval_data else None
    return Identity(resolved, run_id(method.name, resolved), digest, eval_folder.name, eval_digest, evals,
                    keys, scoring)


def execute(spec: RunSpec, dist: Dist = LOCAL, log: Any = print) -> RunOutcome | None:
    """Do one run; returns its outcome on rank 0 (None on the other ranks of a distributed run). Every set
    it reads stays under its shared lock until it returns, so no `bench prepare` changes one meanwhile."""
    with ExitStack() as reading:
        return _execute(spec, dist, log, reading)


def _execute(spec: RunSpec, dist: Dist, log: Any, reading: ExitStack) -> RunOutcome | None:
    """`execute`, with the sets' shared locks handed to `reading`."""
    method = get_method(spec.method, spec.frames)
    profile = resolve_profile(spec.profile, spec.overrides)

    torch.set_num_threads(resolve_threads(profile.train.threads))  # training and scoring alike
    device = resolve_device(spec.device or profile.train.device, dist.local_rank)
    store = runs_dir(spec.runs_dir)
    set_folder, eval_folder = _data(spec, profile, dist, log, reading)
    weights = load_weights(spec.weights) if spec.weights else None
    if weights is not None and weights["method"] != method.name:
        raise BenchError(f"{spec.weights}: holds {weights['method']} weights, not {method.name}; "
                         f"pass --method {weights['method']}")
    ident = identity(spec, method, profile, set_folder, eval_folder, device)
    folder = store / ident.run_id
    out_dir = folder / "evals" / ident.evals_folder if ident.evals_folder else folder
    metrics_path = out_dir / METRICS

    # A read-only store is entered unlocked: it can still serve a finished run (writes are atomic).
    lock = FolderLock(folder, on_wait=lambda p: log(f"waiting for another process using {p.parent}"),
                      places=_places(folder, out_dir), hint="pass a writable --runs-dir", readonly_ok=True)
    if dist.main:
        lock.__enter__()
    try:
        outcome = None
        if dist.main:
            stored = None if spec.fresh else stored_result(spec, folder, out_dir, ident, log)
            if stored is not None:
                outcome = RunOutcome(folder, stored, cached=True, metrics_path=metrics_path)
            else:
                _ready_to_write(lock, store, ident.run_id)
                _clear_way(folder, out_dir)
                _check_inputs(method, profile, set_folder, eval_folder, device, weights)
                _write_config(folder, out_dir, spec, method, profile, ident, device)
        flag = [outcome is not None]
        if dist.active:
            td.broadcast_object_list(flag, 0)
        if flag[0]:
            return outcome if dist.main else None
        return _attempt(spec, method, profile, device, (set_folder, eval_folder), folder, out_dir, ident,
                        weights, dist, log)
    finally:
        if dist.main:
            lock.__exit__(None, None, None)


def _places(folder: Path, out_dir: Path) -> tuple[str, ...]:
    """The subfolders of a run folder that its writes use (where killed writes leave temporaries)."""
    rel = out_dir.relative_to(folder)
    return tuple(dict.fromkeys(p.as_posix() for p in (Path("samples"), rel, rel / "samples")))


def _ready_to_write(lock: FolderLock, store: Path, rid: str) -> None:
    """Before anything is trained or written: a read-only store is refused (it can only serve results)."""
    if not lock.held:
        raise BenchError(f"{store}: read-only, and {rid} has no intact finished result to reuse; pass a "
                         "writable --runs-dir to train and store it")


def _clear_way(folder: Path, out_dir: Path) -> None:
    """Before any work: a folder where the run writes one of its files (metrics.json made a folder) is
    removed when empty, so the entry is rebuilt; a non-empty one is refused in one line, as an atomic write
    cannot replace it and what it holds is not the suite's to delete."""
    for path in (folder / CONFIG, folder / WEIGHTS, folder / CURVES, out_dir / ENV, out_dir / METRICS):
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError:
                raise BenchError(f"{path}: a folder where bench run writes a file, and not empty; move it "
                                 "away and rerun") from None


def _check_inputs(method: Any, profile: Profile, set_folder: Path, eval_folder: Path, device: Any,
                  weights: dict | None) -> None:
    """What would otherwise fail only after training: an empty split, or networks or test frames that do
    not fit in memory."""
    training = bool(method.stages) and weights is None
    if training and split_counts(load_manifest(set_folder))["train"] == 0:
        raise BenchError(f"{set_folder}: no training samples (every sequence is in the test split); give the "
                         "footage train/ sequences, or score trained weights on it with --eval-data")
    scored = load_manifest(eval_folder)
    if split_counts(scored)["test"] == 0:
        raise BenchError(f"{eval_folder}: the test split is empty; prepare footage with test/ sequences")
    model = weights["model"] if weights is not None else asdict(profile.model)
    check_run(method, model, scored["frames"], scored["resolution"], device, training, profile.train)


def _data(spec: RunSpec, profile: Profile, dist: Dist, log: Any, reading: ExitStack) -> tuple[Path, Path]:
    """(training set, set scored): rank 0 prepares the training set; the others wait, then find it. Both
    are verified under their shared locks, which `reading` holds from then on."""
    data_dir = default_data_dir(spec.data_dir)
    source = spec.source or profile.data.source

    def prepared() -> Path:
        return Path(ensure_prepared(source, spec.frames, profile, data_dir, DATA_SEED, root=spec.root,
                                    progress=spec.progress and dist.main, log=log, verify=spec.verify,
                                    hold=reading))

    set_folder = prepared() if dist.main else None
    barrier(dist)
    if not dist.main:
        set_folder = prepared()
    if not spec.eval_data:
        return set_folder, set_folder
    return set_folder, _hold_set(_resolve_set(data_dir, spec.eval_data, spec.frames), spec, log, reading)


def _hold_set(folder: Path, spec: RunSpec, log: Any, reading: ExitStack) -> Path:
    """Take the shared lock of a set given by `--eval-data` (held by `reading`), then verify it as
    `bench prepare` would: a damaged set is refused with the command that repairs it."""
    if not folder.is_symlink():  # as bench prepare: never a lock file in someone else's folder
        reading.enter_context(FolderLock(
            folder, shared=True, readonly_ok=True, hint="pass a writable --data-dir",
            on_wait=lambda p: log(f"waiting for a bench prepare writing {p.parent}")))
    bad = damaged_files(folder, load_manifest(folder), full=spec.verify == "full")
    if bad:
        raise BenchError(f"--eval-data {spec.eval_data}: {bad[0][1]}")
    return folder


def stored_result(spec: RunSpec, folder: Path, out_dir: Path, ident: Identity, log: Any) -> RunMetrics | None:
    """The finished result at `out_dir` when every file behind it is intact and it was computed from exactly
    these data; otherwise None, after one line saying why it is recomputed (none when nothing is stored)."""
    path = out_dir / METRICS
    if not path.exists() and not path.is_symlink():
        legacy = legacy_entry(folder.parent, ident)
        if legacy is not None:
            log(f"{legacy}: stored before data digests were recorded; not reused, recomputing as "
                f"{ident.run_id}")
        return None
    try:
        metrics = _check_stored(folder, out_dir, ident)
    except RecordError as err:
        log(f"{ident.run_id}: {err}; recomputing")
        return None
    if metrics.status == "failed":
        log(f"{ident.run_id}: the last attempt failed ({metrics.error}); retrying")
        return None
    return metrics


def _check_stored(folder: Path, out_dir: Path, ident: Identity) -> RunMetrics:
    """The stored metrics at `out_dir` when the store's one verdict on them (`read_record`, what `list` and
    `report` show too) is finished or failed and they were computed from exactly these data; RecordError
    with the first problem otherwise."""
    record = read_record(folder)
    if record is None:
        raise RecordError(f"{folder / CONFIG}: missing")
    entry = record if out_dir == folder else next((e for e in record.evals if e.path == out_dir), None)
    if entry is None:
        raise RecordError(f"{out_dir}: not a folder")
    if entry.problem:
        raise RecordError(entry.problem, entry.problem_kind)
    metrics = entry.metrics
    if metrics is None:
        raise RecordError(f"{out_dir / METRICS}: missing")
    if metrics.status == "failed":
        return metrics
    if (metrics.data_sha256, metrics.eval_sha256) != (ident.data_sha256, ident.eval_sha256):
        raise RecordError(f"{out_dir / METRICS}: computed from other data than {ident.eval_dataset} as "
                          "prepared now")
    return metrics


def legacy_entry(store: Path, ident: Identity) -> Path | None:
    """A finished run folder written before data digests (config.json without "record") for the same
    method, profile, set name, frames and seed, or None: it is reported, never reused."""
    want = ident.resolved
    for folder in sorted(store.glob(f"{want['method']}-*")):
        config = read_json(folder / CONFIG)
        if not isinstance(config, dict) or "record" in config:
            continue
        same = all(config.get(key) == want[mine] for key, mine in (
            ("method", "method"), ("resolved_profile", "profile"), ("dataset", "dataset"),
            ("frames", "frames"), ("seed", "seed")))
        if same and isinstance(read_json(folder / METRICS), dict):
            return folder
    return None


def _attempt(spec: RunSpec, method: MethodAPI, profile: Profile, device: Any, sets: tuple[Path, Path],
             folder: Path, out_dir: Path, ident: Identity, weights: dict | None, dist: Dist,
             log: Any) -> RunOutcome | None:
    """Train and score; a failure is recorded in metrics.json (so the next command retries) and re-raised as
    a one-line BenchError."""
    metrics_path = out_dir / METRICS
    try:
        return _train_and_score(spec, method, profile, device, sets, folder, out_dir, ident, weights, dist,
                                log)
    except BenchError as err:
        if dist.main:
            _record_failure(metrics_path, ident.run_id, err)
        raise
    except Exception as err:
        if dist.main:
            _record_failure(metrics_path, ident.run_id, err)
        raise BenchError(f"{ident.run_id} failed: {type(err).__name__}: {err}; recorded in {metrics_path}") \
            from err


def _record_failure(metrics_path: Path, rid: str, err: BaseException) -> None:
    """A failed run is stored as failed (never as a result) so the next command retries it."""
    reason = f"{type(err).__name__}: {err}".splitlines()[0]
    try:
        atomic_write_json(metrics_path, RunMetrics("failed", rid, error=reason).to_json())
    except OSError as write_err:  # a full disk can refuse the record too; say both, lose nothing more
        raise BenchError(f"{rid} failed ({reason}); could not record it in {metrics_path} "
                         f"({write_err.strerror or write_err}); previous files are intact") from None


def _write_config(folder: Path, out_dir: Path, spec: RunSpec, method: MethodAPI, profile: Profile,
                  ident: Identity, device: Any) -> None:
    """The run's config.json, and env.json beside the result about to be computed (an evaluation's own, so
    a later `--eval-data` never rewrites the environment of the run's own result)."""
    stages = tuple({"name": s.name, "trains": list(s.trains), "lr": dict(s.lr),
                    "init_from": list(s.init_from), "batch": s.batch, "iters_keys": list(s.iters_keys),
                    "lr_keys": list(s.lr_keys)}
                   for s in method.stages)
    config = RunConfig(run_id=folder.name, method=method.name, family=method.family, profile=profile.name,
                       overrides=tuple(spec.overrides), resolved_profile=ident.resolved["profile"],
                       dataset=ident.resolved["dataset"], data_sha256=ident.data_sha256, frames=spec.frames,
                       seed=spec.seed, stages=stages,
                       weights_from=str(spec.weights) if spec.weights else None,
                       weights_from_sha256=ident.resolved["weights_sha256"],
                       stage_keys=ident.resolved["stage_keys"], scoring_code=ident.resolved["scoring_code"])
    atomic_write_json(folder / CONFIG, config.to_json())
    atomic_write_json(out_dir / ENV, environment(str(device)))


def _train_and_score(spec: RunSpec, method: MethodAPI, profile: Profile, device: Any, sets: tuple[Path, Path],
                     folder: Path, out_dir: Path, ident: Identity, weights: dict | None, dist: Dist,
                     log: Any) -> RunOutcome | None:
    started = time.perf_counter()
    results: list[StageResult] = []
    if weights is not None:
        nets, model = _assemble(spec, method, weights, device), weights["model"]
    else:
        with _boards(spec, folder, profile, dist) as boards:
            nets, results = train_method(method, profile, sets[0], spec.seed, folder.parent / "stages",
                                         device, dist=dist, progress=spec.progress, fresh=spec.fresh, log=log,
                                         boards=boards)
        model = asdict(profile.model)
    if not dist.main:
        return None
    if spec.fresh and (out_dir / "samples").is_dir():
        shutil.rmtree(out_dir / "samples")
    scored = evaluate(method, nets, sets[1], profile, device, out_dir=out_dir / "samples",
                      progress=spec.progress)
    stored_weights = None
    if weights is None and not spec.eval_data:
        stored_weights = save_weights(folder / WEIGHTS, method.name, spec.frames, model,
                                      trained_state_dicts(nets, results))
        atomic_write_json(folder / "curves.json", {r.name: r.curve for r in results})
    metrics = RunMetrics(
        "finished", folder.name, method=method.name, profile=profile.name, dataset=sets[0].name,
        data_sha256=ident.data_sha256, eval_dataset=ident.eval_dataset, eval_sha256=ident.eval_sha256,
        frames=spec.frames, seed=spec.seed, aggregate=scored["aggregate"], samples=tuple(scored["samples"]),
        metric_definitions=scored["metric_definitions"], training={r.name: r.summary() for r in results},
        training_time_s=sum(r.time_s for r in results), wall_s=time.perf_counter() - started,
        weights_sha256=sha256_file(stored_weights) if stored_weights else None,
        weights_bytes=stored_weights.stat().st_size if stored_weights else None)
    atomic_write_json(out_dir / METRICS, metrics.to_json())
    return RunOutcome(folder, metrics, cached=False, metrics_path=out_dir / METRICS)


def _boards(spec: RunSpec, folder: Path, profile: Profile, dist: Dist) -> Any:
    """The run's TensorBoard event folders with --tensorboard, on rank 0 (a context giving None otherwise)."""
    if spec.tensorboard and dist.main:
        return Boards(folder, profile.train.log_every)
    return nullcontext()


def _assemble(spec: RunSpec, method: MethodAPI, weights: dict, device: Any) -> Any:
    """The method's networks holding a `--weights` file's state dicts, on `device`, in eval mode."""
    torch.manual_seed(derive_seed(spec.seed, method.name, "assemble"))
    nets = method.build(weights["model"])
    for name in weights["state_dicts"]:
        if name not in nets:
            raise BenchError(f"{spec.weights}: component {name!r} is not part of {method.name}")
    load_components(nets, weights["state_dicts"], source=spec.weights, fix="re-export it with bench run")
    return nets.to(device).eval()
