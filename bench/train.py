"""The one training loop: every stage of every method, driven by the registry's `Stage` data (Sec. 3.1).

A method is a schedule of stages (`ours`: the DM alone; stage 1 RVE-RVD with Eq. 5 on sharp sequences;
stage 2 BIE-RVD with Eq. 6, RVD initialised from stage 1). This module knows nothing about any particular
method: a stage names the components it optimises, their learning rates, the earlier stages it starts from,
which batch size it uses and which profile budgets add up to its iteration count. The method supplies the
loss (`Method.stage_loss`).

Caching and resumption. A stage's result lives in `runs/stages/<key>/` where the key hashes the method's
stage identity (networks, loss, the identities of its `init_from` stages), the code it runs (per class and
function, `bench.code_identity`), the dataset, the training fields that change its weights, the seed and the
keys of its `init_from` stages. Methods that share a stage (`ours`,
`ours-static`, `ours-gt-center`, the ablations) share its folder. A finished stage is reused; an unfinished
one resumes from its last checkpoint. Everything random is derived from (seed, `stream_key`, iteration): the
batch of iteration i is drawn by a generator seeded from those three, and the torch RNG is reseeded with them
before each step. So a run killed at any point and resumed ends with exactly the weights of an uninterrupted
run on CPU; the learning-rate schedule (`lr_factor`) is a function of the iteration for the same reason.
Checkpoints hold CPU tensors only, so a stage checkpointed on a GPU resumes on a CPU and back.

How a step uses the machine (threads, bfloat16 autocast, channels-last, compilation, the thread or processes
that make the next batch) is `bench.execution.Execution`; the fixed validation batch each stage scores as it
trains is `bench.validation`. `bench perf --train` and `bench run --dry-run` time this module's own `step`
(`bench.trainperf`).

Distribution (`bench run --nproc K`, launched by torchrun). Each rank takes a strided share of every
iteration's batch; `StageRun.step` computes the loss through DistributedDataParallel around the
whole step's network calls (`bench.parallel`), so gradients are averaged by DDP's bucketed all-reduce while
the backward pass runs. Rank 0 alone logs and writes checkpoints; all ranks read them on resume (one
machine, or a shared file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as td
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from bench.code_identity import stage_code
from bench.components import load_components
from bench.config import Profile, TrainConfig
from bench.data.loaders import TrainSet, collate
from bench.errors import BenchError
from bench.execution import BatchStream, Execution, on_device, resolve_precision
from bench.fileio import FolderLock, atomic_torch_save, atomic_write_json, read_json, sha256_file, stable_hash
from bench.parallel import data_parallel
from bench.store import load_payload, stage_record_problem
from bench.validation import Validation, validation_batch, validation_set

if TYPE_CHECKING:
    from bench.validation import Validation
    from methods.registry import MethodAPI, Stage

CKPT = "ckpt.pt"
STAGE_JSON = "stage.json"


class TrainingDiverged(BenchError):
    """The loss became NaN or infinite; the stage stopped and kept its last good checkpoint."""


# --- devices and distribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun launch (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


LOCAL = Dist()  # a single process


def dist_from_env(device_name: str = "auto") -> Dist:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not td.is_initialized():
        use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local)
        td.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local)


def barrier(dist: Dist) -> None:
    if dist.active:
        td.barrier()


# --- budgets, keys and the data plan -----------------------------------------------------------------------


def stage_iterations(stage: Stage, profile: Profile) -> int:
    """Iterations of a stage: the sum of the profile's `train` fields it names (fair by construction)."""
    total = 0
    for key in stage.iters_keys:
        if not hasattr(profile.train, key):
            raise BenchError(f"stage {stage.name!r} names unknown budget train.{key}")
        total += int(getattr(profile.train, key))
    return total


def stage_lr_factor(stage: Stage, train: TrainConfig) -> float:
    """The product of the `train` fields a stage names in `lr_keys`: its rates' factor on top of lr_scale."""
    factor = 1.0
    for key in stage.lr_keys:
        if not hasattr(train, key):
            raise BenchError(f"stage {stage.name!r} names unknown rate factor train.{key}")
        factor *= float(getattr(train, key))
    return factor


def stage_crop(stage: Stage, profile: Profile) -> int:
    """Crop of a stage: `crop_deblur` for the deblurring batch when set, else `crop`."""
    return profile.train.crop_of(stage.batch)


def stage_batch(stage: Stage, profile: Profile) -> int:
    """Batch size of a stage: `batch_video` or `batch_deblur` of the profile."""
    return int(getattr(profile.train, f"batch_{stage.batch}"))


def dataset_fingerprint(set_folder: Path) -> str:
    """Name plus the hash of the manifest, so re-prepared data with other content never reuses a stage."""
    manifest = Path(set_folder) / "manifest.json"
    digest = sha256_file(manifest)[:12] if manifest.is_file() else "none"
    return f"{Path(set_folder).name}:{digest}"


def stage_key(method: MethodAPI, stage: Stage, profile: Profile, dataset: str, seed: int,
              prior_keys: dict[str, str], precision: str = "fp32") -> tuple[str, dict]:
    """(key, identity): the cache key of one stage and the JSON it hashes; `precision` is the resolved
    autocast precision it trains in (`bench.execution.resolve_precision`)."""
    t, model = profile.train, asdict(profile.model)
    identity = {
        "stage": method.stage_identity(stage.name, model),
        "dataset": dataset,
        "seed": int(seed),
        "init_from": {name: prior_keys[name] for name in stage.init_from},
        # The code the stage runs, per class and function (bench/code_identity.py): an edited network or
        # loss never loads a stale checkpoint, and an edit elsewhere in methods/ retrains nothing.
        "code": stage_code(method, stage, model),
        # Only fields that change the weights; logging, checkpoint spacing, workers and device do not.
        "train": {"crop": stage_crop(stage, profile), "zoom": [t.zoom_min, t.zoom_max], "flip": t.flip,
                  "batch": stage_batch(stage, profile), "iters": stage_iterations(stage, profile),
                  "lr_scale": t.lr_scale, "grad_clip": t.grad_clip},
        **_later_settings(t, precision, stage_lr_factor(stage, t)),
    }
    return f"{stage.name}-{stable_hash(identity, 12)}", identity


LATER_SETTINGS = ("precision", "schedule", "stage_lr")  # identity entries present only when they change
#                                                           the weights


def _later_settings(t: TrainConfig, precision: str, lr_factor: float = 1.0) -> dict:
    """Settings that change the weights, added after stages were first cached: each joins the identity only
    when it differs from the behaviour before it existed (float32, a constant rate without warm-up, no
    per-stage rate factor), so a stage trained before keeps its key."""
    extra: dict[str, Any] = {}
    if precision != "fp32":
        extra["precision"] = precision
    if lr_factor != 1.0:
        extra["stage_lr"] = lr_factor
    if t.lr_schedule != "constant" or t.warmup_iters > 0:
        extra["schedule"] = {"lr_schedule": t.lr_schedule, "warmup_iters": t.warmup_iters,
                             "min_lr_ratio": t.min_lr_ratio if t.lr_schedule == "cosine" else None}
    return extra


def stream_key(identity: dict) -> str:
    """The name of a stage's random streams: its name, resolved config and seed, without the data digest,
    the code hash or the keys of earlier stages (which hold both), so a refactor that leaves the computation
    unchanged, or re-prepared identical data, draws the same batches and initial weights. Precision and the
    rate schedule are left out too: two runs that differ only there start from the same weights and see the
    same batches, so their comparison isolates the setting."""
    left_out = ("code", "dataset", "init_from", *LATER_SETTINGS)
    config = {k: v for k, v in identity.items() if k not in left_out}
    return f"{identity['stage']['stage']}-{stable_hash(config, 12)}"


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts (stable across processes and machines)."""
    return int(stable_hash(list(parts), 15), 16)


def lr_factor(t: TrainConfig, iteration: int, total: int) -> float:
    """The multiplier of a stage's learning rates at `iteration` (0-based) of `total`: a linear warm-up over
    `warmup_iters`, then constant or a cosine from 1 at the end of the warm-up to `min_lr_ratio` at the last
    iteration. A function of the iteration alone, so a resumed stage continues on the same curve."""
    if iteration < t.warmup_iters:
        return (iteration + 1) / t.warmup_iters
    if t.lr_schedule == "constant":
        return 1.0
    span = total - 1 - t.warmup_iters
    progress = min(1.0, (iteration - t.warmup_iters) / span) if span > 0 else 1.0
    return t.min_lr_ratio + (1.0 - t.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_plan(seed: int, key: str, iteration: int, batch: int, n_items: int) -> list[tuple[int, int]]:
    """The (index, aug_seed) pairs of one iteration: a pure function of (seed, stage key, iteration)."""
    g = torch.Generator().manual_seed(derive_seed(seed, key, iteration, "batch"))
    idx = torch.randint(n_items, (batch,), generator=g)
    aug = torch.randint(2**31 - 1, (batch,), generator=g)
    return list(zip(idx.tolist(), aug.tolist(), strict=True))


class PlannedBatches(torch.utils.data.Dataset):
    """Item i is the stacked batch of iteration `start + i` (this rank's share), so a DataLoader with
    workers prefetches batches while the order stays a function of the iteration alone."""

    def __init__(self, trainset: Any, seed: int, key: str, start: int, total: int, batch: int,
                 dist: Dist, fields: tuple[str, ...]) -> None:
        self.trainset, self.seed, self.key = trainset, seed, key
        self.start, self.total, self.batch, self.dist, self.fields = start, total, batch, dist, fields

    def __len__(self) -> int:
        return self.total - self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        plan = batch_plan(self.seed, self.key, self.start + i, self.batch, len(self.trainset))
        mine = plan[self.dist.rank::self.dist.world]  # strided shard, as DistributedSampler
        return collate(self.trainset, mine, self.fields)  # the objective's fields, uint8 images


PROBE_SAMPLES = 16  # at least this many samples in the probe batch, so one odd crop cannot decide


def probe_batch(trainset: Any, seed: int, key: str, batch: int, fields: tuple[str, ...]
                ) -> dict[str, torch.Tensor]:
    """One fixed batch per stage, drawn apart from the training plan, to score the loss before and after.

    Window means of the training curve mix the model's progress with which crops each window drew (with
    batches of 2 that noise hides the trend); the same batch scored twice isolates the progress.
    """
    size = max(batch, PROBE_SAMPLES)
    return PlannedBatches(trainset, seed, f"{key}:probe", 0, 1, size, LOCAL, fields)[0]


def probe_loss(method: MethodAPI, stage: Stage, nets: nn.ModuleDict, data: dict[str, torch.Tensor],
               device: torch.device, seed: int, key: str) -> float:
    """The stage's loss on a fixed batch (the probe, the validation batch), in float32, without gradients
    and without touching the training RNG."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, key, "probe"))
        with torch.no_grad():
            loss, _parts = method.stage_loss(stage, nets, on_device(data, device))
    return float(loss)


def _on_cpu(value: Any) -> Any:
    """Every tensor in a (nested) state dict moved to the CPU: checkpoints load on any device."""
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_on_cpu(v) for v in value]
    return value


# --- checkpoints -------------------------------------------------------------------------------------------

CKPT_FIX = "delete the stage folder or rerun with --fresh"  # what to do about an unusable stage checkpoint


CKPT_KEYS = ("iteration", "curve", "window", "time_s", "state_dicts", "optimizer", "digest")


def checkpoint_digest(payload: dict) -> str:
    """The sha256 of a checkpoint's content (every key but "digest"; tensors by dtype, shape and bytes),
    stored in the checkpoint itself: a bit flipped anywhere in its tensors or fields no longer matches,
    where `torch.load` alone would hand back the flipped numbers."""
    h = hashlib.sha256()
    _digest_into(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def _digest_into(h: Any, value: Any) -> None:
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        h.update(b"{")
        for key, item in sorted(value.items(), key=lambda kv: repr(kv[0])):
            h.update(repr(key).encode() + b":")
            _digest_into(h, item)
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _digest_into(h, item)
        h.update(b"]")
    else:
        h.update(repr(value).encode() + b";")


def checkpoint_problem(path: Path, trains: Iterable[str]) -> str | None:
    """Why the stage checkpoint at `path` cannot be used, in one line, or None: unloadable (truncated,
    unsafe), without the digest of its content or with another one (bit flips; checkpoints from before
    the digest), or holding other components than the stage's `trains` (another stage's checkpoint)."""
    fix = "the stage is retrained"
    try:
        payload = load_payload(path, fix, kind="checkpoint")
    except BenchError as err:
        return str(err).removesuffix(f"; {fix}")
    missing = [k for k in CKPT_KEYS if k not in payload]
    if missing:
        return f"{path}: not a stage checkpoint of this version (no {', '.join(missing)})"
    if payload["digest"] != checkpoint_digest(payload):
        return f"{path}: its content differs from its recorded digest (corrupted)"
    held, wanted = payload["state_dicts"], sorted(set(trains))
    if not isinstance(held, dict) or sorted(held) != wanted:
        return f"{path}: holds the components {sorted(held) if isinstance(held, dict) else held}, " \
               f"not the stage's {wanted}"
    return None


def stage_weights(folder: Path) -> dict[str, dict]:
    """The trained components' state dicts of a stage folder's checkpoint."""
    return load_payload(Path(folder) / CKPT, CKPT_FIX)["state_dicts"]


# --- the loop ----------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """What one stage produced, for run.py and the stored metrics (the report shows time per stage)."""

    name: str
    key: str
    folder: Path
    trains: tuple[str, ...]
    iterations: int
    batch: int
    status: str = "finished"
    reused: bool = False
    time_s: float = 0.0  # training wall time summed over all sessions of this stage
    samples_per_s: float | None = None  # this session's throughput (None when reused)
    data_wait_share: float | None = None  # share of step time spent waiting for batches
    curve: list[list[float]] = field(default_factory=list)  # [iteration, mean loss over the log window]
    probe_loss: list[float] | None = None  # [before, after] training, on one fixed batch (`probe_batch`)
    validation: dict | None = None  # the validation curve (`bench.validation.Validation.summary`)
    execution: dict | None = None  # precision, threads, loader, layout of the session that finished it

    def summary(self) -> dict:
        return {"key": self.key, "trains": list(self.trains), "iterations": self.iterations,
                "batch": self.batch, "status": self.status, "reused": self.reused, "time_s": self.time_s,
                "samples_per_s": self.samples_per_s, "data_wait_share": self.data_wait_share,
                "probe_loss": self.probe_loss, "validation": self.validation, "execution": self.execution}


def progress_bar(enabled: bool, console: Any = None) -> Any:
    """The training loop's progress bar (rich `Progress`; `console`: where it draws, default the terminal)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]} it/s  loss {task.fields[loss]}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled, transient=False,
                    console=console)


@dataclass
class StageRun:
    """One training session of one stage: what it trains, with what, where, and how far it has got.

    `train_stage` drives it through its steps: `reuse` (a finished folder), `build` (networks and Adam),
    `resume` (the last checkpoint, or the start), `train` (the iterations, each one `step`), `finish`.
    `bench perf --train` and `bench run --dry-run` time `step` on `batches` without a folder
    (`bench.trainperf`).
    """

    method: MethodAPI
    stage: Stage
    profile: Profile
    folder: Path  # runs/stages/<key>/
    identity: dict  # what the key hashes (written to stage.json)
    stream: str  # name of the random streams (`stream_key`)
    seed: int
    device: torch.device
    dist: Dist
    log: Any  # print-like
    result: StageResult
    execution: Execution  # precision, layout, threads, loader (bench/execution.py)
    nets: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    optimizer: Any = None  # torch.optim.Adam over the trained components, one group each
    params: list[nn.Parameter] = field(default_factory=list)  # in optimizer order (the all-reduce's order)
    parallel: Any = None  # the step's networks in DDP (`stage_loss` makes it at its first call)
    monitor: Any = None  # receives training and validation points as they happen (bench.boards.StageBoard)
    base_lrs: list[float] = field(default_factory=list)  # each group's rate before the schedule's factor
    start: int = 0  # first iteration of this session
    curve: list[list[float]] = field(default_factory=list)  # [iteration, window mean loss]
    window: list = field(default_factory=lambda: [0.0, 0])  # [loss sum, count] since the last curve point
    elapsed: float = 0.0  # step time over all sessions
    probe: dict[str, torch.Tensor] | None = None  # the fixed probe batch (main rank only)
    probe_start: float | None = None  # probe loss before training (None in pre-probe checkpoints)
    validation: Validation | None = None  # the validation batch and curve (main rank only)

    @property
    def total(self) -> int:
        return self.result.iterations

    def write_status(self, status: str, **extra: Any) -> None:
        if self.dist.main:
            atomic_write_json(self.folder / STAGE_JSON, {"status": status, "identity": self.identity,
                                                         "iterations": self.total, "method": self.method.name,
                                                         **extra})

    def reuse(self, fresh: bool) -> bool:
        """Take a finished folder's results (True), or clear it for a fresh start when asked; damage is
        cleared first (`repair`), so what is reused or resumed is intact."""
        barrier(self.dist)
        if self.dist.main:
            if fresh and read_json(self.folder / STAGE_JSON):
                (self.folder / CKPT).unlink(missing_ok=True)
            else:
                self.repair()
        barrier(self.dist)
        info = read_json(self.folder / STAGE_JSON)
        info = info if isinstance(info, dict) else {}
        if info.get("status") != "finished" or not (self.folder / CKPT).is_file():
            return False
        result = self.result
        result.reused, result.time_s = True, float(info.get("time_s", 0.0))
        result.curve, result.probe_loss = info.get("curve", []), info.get("probe_loss")
        result.validation, result.execution = info.get("validation"), info.get("execution")
        return True

    def repair(self) -> None:
        """Main rank, holding the stage's lock: a damaged checkpoint is deleted, so the stage retrains from
        the start; a finished stage.json that cannot be served (`record_problem`) is deleted, so the stage
        is rebuilt from its checkpoint (the remaining iterations, often none). One line each."""
        ckpt, record = self.folder / CKPT, self.folder / STAGE_JSON
        problem = checkpoint_problem(ckpt, self.stage.trains) if os.path.lexists(ckpt) else None
        if problem:
            self.log(f"stage {self.stage.name}: {problem}; retraining it from the start")
            if ckpt.is_dir() and not ckpt.is_symlink():
                raise BenchError(f"{ckpt}: a folder where the stage's checkpoint belongs; move it away and "
                                 "rerun")
            ckpt.unlink()
            record.unlink(missing_ok=True)
            return
        info = read_json(record)
        if not isinstance(info, dict) or info.get("status") != "finished":
            return
        problem = self.record_problem(info) if ckpt.is_file() else f"{record}: finished, but no {CKPT}"
        if problem:
            then = "rebuilding it from its checkpoint" if ckpt.is_file() else "retraining it"
            self.log(f"stage {self.stage.name}: {problem}; {then}")
            record.unlink()

    def record_problem(self, info: dict) -> str | None:
        """Why a finished stage.json cannot be served (None when it can): it names another stage, or a
        field would make the run's metrics.json or curves.json unreadable (`stage_record_problem`)."""
        path = self.folder / STAGE_JSON
        if stable_hash(info.get("identity"), 64) != stable_hash(self.identity, 64) or \
                info.get("iterations") != self.total:
            return f"{path}: records another stage than {self.folder.name}"
        summary = {"time_s": info.get("time_s", 0.0), "probe_loss": info.get("probe_loss"),
                   "validation": info.get("validation"), "execution": info.get("execution")}
        return stage_record_problem(self.stage.name, summary, info.get("curve", []), path)

    def build(self, prior: dict[str, StageResult]) -> None:
        """Fresh networks and Adam (`build_networks`), then the `init_from` stages' weights."""
        self.build_networks()
        for name in self.stage.init_from:
            load_components(self.nets, stage_weights(prior[name].folder), prior[name].trains,
                            source=prior[name].folder / CKPT, fix=CKPT_FIX)

    def build_networks(self) -> None:
        """Networks seeded by the stream, on the device in the execution's layout, and Adam per component."""
        torch.manual_seed(derive_seed(self.seed, self.stream, "init"))
        self.nets = self.method.build(asdict(self.profile.model)).to(self.device)
        self.execution.prepare(self.nets, self.method, self.stage)
        for name, net in self.nets.items():
            trained = name in self.stage.trains
            net.train(trained)
            net.requires_grad_(trained)
        # One Adam parameter group per component: the paper's per-network rates (Sec. 3.1, RVD 2e-5).
        scale = self.profile.train.lr_scale * stage_lr_factor(self.stage, self.profile.train)
        groups = [{"params": list(self.nets[c].parameters()), "lr": self.stage.lr[c] * scale, "name": c}
                  for c in self.stage.trains]
        self.params = [p for g in groups for p in g["params"]]
        self.base_lrs = [g["lr"] for g in groups]
        # foreach: one multi-tensor kernel per Adam operation instead of one per parameter (the CPU default
        # is per parameter); the same weights bit for bit, measured, and 2% off a quick DM step.
        self.optimizer = torch.optim.Adam(groups, foreach=True)

    def resume(self) -> None:
        """Continue from the folder's checkpoint, or start at 0 (ranks made equal, the probe scored)."""
        ckpt = self.folder / CKPT
        if ckpt.is_file():
            problem = checkpoint_problem(ckpt, self.stage.trains)  # `repair` removed damage; not since?
            if problem:
                raise BenchError(f"{problem}; {CKPT_FIX}")
            state = load_payload(ckpt, CKPT_FIX)
            load_components(self.nets, state["state_dicts"], self.stage.trains, source=ckpt, fix=CKPT_FIX)
            self.optimizer.load_state_dict(state["optimizer"])  # Adam's moments follow the weights
            self.start, self.curve, self.window = state["iteration"], state["curve"], state["window"]
            self.elapsed = state["time_s"]
            self.probe_start = state.get("probe_start")  # None in checkpoints made before the probe existed
            if self.validation is not None:
                self.validation.points = state.get("validation", [])
            if self.dist.main:
                self.log(f"resuming stage {self.stage.name} at iteration {self.start}/{self.total} "
                         f"from {ckpt}")
        if self.start == 0 and self.dist.main:  # ranks hold identical weights: one score is enough
            self.probe_start = self.probe_score()
            self.validate(0)
        self.write_status("running", done=self.start)

    def probe_score(self) -> float:
        return probe_loss(self.method, self.stage, self.nets, self.probe, self.device, self.seed, self.stream)

    def validate(self, iteration: int) -> None:
        """Score the validation batch (main rank; no-op without one) and add the point to the curve."""
        if self.validation is None:
            return
        def stage_loss(data: dict[str, torch.Tensor]) -> float:
            return probe_loss(self.method, self.stage, self.nets, data, self.device, self.seed,
                              f"{self.stream}:validation")

        self.validation.record(iteration, self.validation.score(self.method, self.stage, self.nets,
                                                                self.device, stage_loss))
        if self.monitor is not None:
            self.monitor.validation(iteration, self.validation, self.method, self.stage, self.nets,
                                    self.device)

    def save(self, iteration: int) -> None:
        """The checkpoint, every tensor on the CPU, so it resumes on any device (Adam's moments move back to
        the parameters' device on load)."""
        if self.dist.main:
            payload = {
                "iteration": iteration, "curve": self.curve, "window": self.window, "time_s": self.elapsed,
                "probe_start": self.probe_start,
                "validation": self.validation.points if self.validation is not None else [],
                "state_dicts": {c: _on_cpu(self.nets[c].state_dict()) for c in self.stage.trains},
                "optimizer": _on_cpu(self.optimizer.state_dict())}
            atomic_torch_save(self.folder / CKPT, dict(payload, digest=checkpoint_digest(payload)))
        barrier(self.dist)

    def step(self, it: int, data: dict[str, torch.Tensor], scaler: Any) -> float:
        """One iteration on this rank's batch: the schedule's rates, loss under the execution's autocast,
        divergence check, backward, clip, Adam. Under torchrun the loss runs through DDP (`bench.parallel`),
        whose all-reduce averages the gradients during backward, and the loss checked is the mean over
        ranks, so every rank takes the same divergence decision."""
        data = on_device(data, self.device)
        factor = lr_factor(self.profile.train, it, self.total)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        torch.manual_seed(derive_seed(self.seed, self.stream, it, "step"))
        with self.execution.autocast():
            loss, _parts = self.stage_loss(data)
        value = loss.detach().float()
        if self.dist.active:
            td.all_reduce(value)
            value /= self.dist.world
        value = float(value)
        if not math.isfinite(value):
            self.diverged(it, value)
        self.optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.profile.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.profile.train.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        return value

    def stage_loss(self, data: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """The stage's loss on this rank's batch: the method's objective, through DDP when distributed (made
        at the first call: a collective, every rank reaches it at the same iteration)."""
        if self.dist.active and self.parallel is None:
            self.parallel = data_parallel(self.method, self.stage, self.nets, self.device)
        if self.parallel is not None:
            return self.parallel(data)
        return self.method.stage_loss(self.stage, self.nets, data)

    def diverged(self, it: int, value: float) -> None:
        """Stop: the weights are still those before this step and the last checkpoint is kept untouched."""
        kept = (f"last good checkpoint kept in {self.folder}" if (self.folder / CKPT).is_file()
                else "no checkpoint yet, so the stage restarts from iteration 0")
        msg = (f"stage {self.stage.name} of {self.method.name} diverged at iteration {it} (loss {value}); "
               f"{kept}; lower --set train.lr_scale and rerun")
        self.write_status("failed", error=msg, done=it)
        raise TrainingDiverged(msg)

    def planned(self, trainset: Any, start: int, total: int) -> PlannedBatches:
        """The batches of iterations `start` .. `total` - 1 (this rank's share), each made when indexed."""
        return PlannedBatches(trainset, self.seed, self.stream, start, total, self.result.batch, self.dist,
                              self.stage.objective.fields)

    def batches(self, trainset: Any, start: int, total: int) -> BatchStream:
        """`planned`'s batches, made ahead as the execution says."""
        return BatchStream(self.planned(trainset, start, total), self.execution)

    def train(self, trainset: Any, progress: bool) -> tuple[float, float]:
        """Iterations `start` .. `total`, checkpointed, logged and validated; returns (data wait, step time),
        seconds."""
        t = self.profile.train
        scaler = self.execution.scaler()
        wait_s, step_s, session_start = 0.0, 0.0, time.perf_counter()
        with self.batches(trainset, self.start, self.total) as batches, \
                progress_bar(progress and self.dist.main) as bar:
            task = bar.add_task(f"{self.method.name}: {self.stage.name}", total=self.total,
                                completed=self.start, rate="-", loss="-")
            for it in range(self.start, self.total):
                t0 = time.perf_counter()
                data = next(batches)
                t1 = time.perf_counter()
                value = self.step(it, data, scaler)
                t2 = time.perf_counter()
                wait_s, step_s = wait_s + (t1 - t0), step_s + (t2 - t0)
                self.elapsed += t2 - t0
                if self.monitor is not None:
                    self.monitor.step(it + 1, value, t1 - t0, t2 - t0, self.optimizer.param_groups)
                self.window = [self.window[0] + value, self.window[1] + 1]
                done = it + 1
                if done % t.log_every == 0 or done == self.total:
                    self.curve.append([done, self.window[0] / self.window[1]])
                    self.window = [0.0, 0]
                if t.val_every and (done % t.val_every == 0 or done == self.total):
                    self.validate(done)
                if done % t.ckpt_every == 0 or done == self.total:
                    self.save(done)
                rate = (done - self.start) / max(time.perf_counter() - session_start, 1e-9)
                bar.update(task, completed=done, rate=f"{rate:.2f}", loss=f"{value:.4g}")
        if self.total == 0:
            self.save(0)  # a zero-iteration stage still leaves weights (its init_from's) for later stages
        return wait_s, step_s

    def finish(self, wait_s: float, step_s: float) -> StageResult:
        """Score the probe again, report throughput, mark the folder finished."""
        result, ran = self.result, self.total - self.start
        result.time_s, result.curve = self.elapsed, self.curve
        result.execution = self.execution.describe(self.method, self.stage)
        if self.validation is not None:
            result.validation = self.validation.summary()
        if self.probe is not None and self.probe_start is not None:
            result.probe_loss = [self.probe_start, self.probe_score()]
        if ran > 0 and step_s > 0:
            result.samples_per_s = ran * result.batch / step_s
            result.data_wait_share = wait_s / step_s
            if self.dist.main:
                learnt = (f"; loss on a fixed batch {result.probe_loss[0]:.4g} -> {result.probe_loss[1]:.4g}"
                          if result.probe_loss else "")
                self.log(f"{self.method.name}: {self.stage.name}: {ran} iterations, "
                         f"{result.samples_per_s:.1f} samples/s, "
                         f"{100 * result.data_wait_share:.1f}% of step time waiting for data{learnt}")
        self.write_status("finished", done=self.total, time_s=self.elapsed, curve=self.curve,
                          probe_loss=result.probe_loss, validation=result.validation,
                          execution=result.execution)
        barrier(self.dist)
        return result


def stage_keys(method: MethodAPI, profile: Profile, set_folder: Path, seed: int, device: Any
               ) -> dict[str, tuple[str, dict]]:
    """{stage name: (key, identity)} of every stage of `method`, as `bench.train.open_stage` makes them
    (the same precision, data fingerprint and chain of `init_from` keys), without touching any folder."""
    precision = resolve_precision(profile.train.precision, device)
    fingerprint = dataset_fingerprint(set_folder)
    keys: dict[str, tuple[str, dict]] = {}
    for stage in method.stages:
        prior = {name: keys[name][0] for name in stage.init_from}
        keys[stage.name] = stage_key(method, stage, profile, fingerprint, seed, prior, precision=precision)
    return keys


def open_stage(method: MethodAPI, stage: Stage, profile: Profile, set_folder: Path, seed: int,
               stages_dir: Path, device: torch.device, prior_keys: dict[str, str], dist: Dist = LOCAL,
               log: Any = print) -> StageRun:
    """A stage's session, not yet built: its key (from the `init_from` stages' keys), folder and execution
    settings (threads applied)."""
    execution = Execution.of(profile.train, device)
    execution.apply_threads()
    key, identity = stage_key(method, stage, profile, dataset_fingerprint(set_folder), seed, prior_keys,
                              precision=execution.precision)
    folder = Path(stages_dir) / key
    result = StageResult(stage.name, key, folder, tuple(stage.trains), stage_iterations(stage, profile),
                         stage_batch(stage, profile))
    if result.batch < dist.world:
        raise BenchError(f"batch {result.batch} of stage {stage.name} is smaller than --nproc {dist.world}")
    return StageRun(method, stage, profile, folder, identity, stream_key(identity), seed, device, dist, log,
                    result, execution)


def train_set(set_folder: Path, profile: Profile, stage: Stage) -> Any:
    """The prepared set's training split with the profile's augmentation, reading the stage's fields."""
    t = profile.train
    return TrainSet(set_folder, stage_crop(stage, profile), zoom=(t.zoom_min, t.zoom_max), flip=t.flip,
                    fields=stage.objective.fields)


def train_stage(method: MethodAPI, stage: Stage, profile: Profile, set_folder: Path, seed: int,
                stages_dir: Path, device: torch.device, prior: dict[str, StageResult], dist: Dist = LOCAL,
                progress: bool = True, fresh: bool = False, log: Any = print,
                trainset: Any = None, valset: Any = None, boards: Any = None) -> StageResult:
    """Train one stage (or reuse / resume its cached folder) and return where its weights are.

    `trainset` replaces the set folder's `TrainSet` (tests): anything indexable by (index, aug_seed) that
    returns the objective's fields; `valset` then replaces the validation split (None: no validation curve).
    `boards` (`bench.boards.Boards`, `bench run --tensorboard`) receives the stage's progress on rank 0.
    """
    run = open_stage(method, stage, profile, set_folder, seed, stages_dir, device,
                     {k: v.key for k, v in prior.items()}, dist, log)
    lock = (FolderLock(run.folder, on_wait=lambda p: log(f"waiting for another process training {p.parent}"))
            if dist.main else contextlib.nullcontext())
    with lock:
        if run.reuse(fresh):
            return run.result
        run.build(prior)
        t = profile.train
        if trainset is None:
            trainset = train_set(set_folder, profile, stage)
            crop = stage_crop(stage, profile)
            valset = validation_set(set_folder, crop, stage.objective.fields) if t.val_every else None
        if dist.main:
            run.probe = probe_batch(trainset, seed, run.stream, run.result.batch, stage.objective.fields)
            if valset is not None and t.val_every:
                run.validation = Validation.of(stage, validation_batch(valset, t.val_samples,
                                                                       stage.objective.fields))
            if boards is not None:
                run.monitor = boards.stage(stage, run.result.batch, run.total)
        run.resume()
        return run.finish(*run.train(trainset, progress))


def train_method(method: MethodAPI, profile: Profile, set_folder: Path, seed: int, stages_dir: Path,
                 device: torch.device, dist: Dist = LOCAL, progress: bool = True, fresh: bool = False,
                 log: Any = print, trainset: Any = None, valset: Any = None, boards: Any = None
                 ) -> tuple[nn.ModuleDict, list[StageResult]]:
    """Run every stage of `method` in order and return its networks with the trained weights loaded."""
    results: dict[str, StageResult] = {}
    for stage in method.stages:
        prior = {name: results[name] for name in stage.init_from}
        results[stage.name] = train_stage(method, stage, profile, set_folder, seed, stages_dir, device, prior,
                                          dist=dist, progress=progress, fresh=fresh, log=log,
                                          trainset=trainset, valset=valset, boards=boards)
    nets = assemble(method, profile, seed, list(results.values()))
    return nets.to(device), list(results.values())


def assemble(method: MethodAPI, profile: Profile, seed: int, results: list[StageResult]) -> nn.ModuleDict:
    """The method's networks with each stage's trained components loaded, later stages winning."""
    torch.manual_seed(derive_seed(seed, method.name, "assemble"))
    nets = method.build(asdict(profile.model))
    for res in results:
        load_components(nets, stage_weights(res.folder), res.trains, source=res.folder / CKPT, fix=CKPT_FIX)
    return nets.eval()


def trained_state_dicts(nets: nn.ModuleDict, results: list[StageResult]) -> dict[str, dict]:
    """State dicts of every component some stage trained (what weights.pt carries)."""
    names = sorted({c for r in results for c in r.trains})
    return {c: nets[c].state_dict() for c in names}
