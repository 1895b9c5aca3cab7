"""Training speed through the training loop's own code: `bench perf --train` and `bench run --dry-run K`.

Both time steps of each stage with `bench.train.StageRun`, the object `train_stage` drives: the same
networks, execution settings (precision, layout, threads, compilation), batch stream (`StageRun.batches`)
and `StageRun.step`, on the profile's data, crop and batch. Nothing is written to the stage cache: the
session has no folder of its own (a scratch folder stands in, deleted afterwards), nothing is saved, and the
networks start from their seeded initialisation, since earlier stages' weights do not change a step's time.

Per stage (`time_stage`), over the timed steps (after `warmup` untimed ones, which absorb allocation,
algorithm selection and compilation):

- `step_s`: median seconds per iteration, the wait for its batch included; `samples_per_s`: batch times
  timed steps over their summed time; `data_wait_share`: the share of that time spent waiting for batches.
- the gap between the loop and its bare step, with `bare=True` (`bench perf --train`): `bare_samples_per_s`,
  the same step over batches made beforehand (`time_bare`); `batch_cpu_s`, the CPU seconds of one thread
  making one batch as the loop's batch thread makes it; `validation_s_per_step` and `checkpoint_s_per_step`,
  one validation score and one checkpoint write amortised over the profile's `val_every` and `ckpt_every`;
  `progress_cpu_share`, the CPU a live progress bar takes per second; and `loop_efficiency`, bare step
  time over the loop's time per iteration (its step and batch wait plus the amortised validation and
  checkpoint), the share of the bare step's speed the loop keeps.
- `peak_mem_mb`: `bench.perf.PeakMemory` over warm-up and timed steps (CUDA: the most allocated above the
  start; CPU: resident memory above the start, sampled), MB = 10^6 bytes.
- `train_macs`: 3 x the forward MACs of one step (backward costs about twice the forward), counted with
  `bench.perf.count_macs` on an eager float32 copy; `mac_rate_fraction`: the achieved MAC rate over the
  dense matmul rate of the device measured in the dtype the step computes in (`matmul_dtype`: bfloat16 under
  bf16 autocast), and `mac_rate_fraction_fp32` over the float32 matmul rate.

`bench run --dry-run K` runs K iterations of every stage (the first untimed when K >= 2) and projects the
profile's full budget: iterations x median step time per stage, summed, plus an evaluation estimate (network
passes on the test split at its resolution; decoding, metrics and PNG writing not included). It is stored
under `runs/dryrun/`, never as a result.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from bench.config import Profile, resolve_profile
from bench.data.manifest import default_data_dir, load_manifest, split_counts
from bench.data.prepare import DATA_SEED, ensure_prepared
from bench.devices import resolve_device
from bench.env import cpu_name
from bench.errors import BenchError
from bench.execution import on_device, one_opencv_thread, resolve_precision, resolve_threads
from bench.fileio import atomic_write_json, stable_hash
from bench.memory import check_training
from bench.perf import PeakMemory, count_macs, device_name, matmul_rate, synchronize, time_calls
from bench.registry import get_method
from bench.store import DRY_RUNS, runs_dir
from bench.train import derive_seed, open_stage, progress_bar, stage_crop, stage_iterations, train_set
from bench.validation import Validation, validation_batch, validation_set
from methods import registry

if TYPE_CHECKING:
    from methods.registry import MethodAPI, Stage

TRAIN_KEYS = ("method", "stage", "samples_per_s", "data_wait_share", "mac_rate_fraction", "device",
              "precision", "threads", "loader", "workers", "crop", "batch", "cpu")  # --train --json keys
NOT_LOADED = "not-loaded"  # the prior-stage keys of a timing session: no earlier weights are read


def matmul_rates(device: torch.device, size: int = 2048, precision: str = "fp32") -> dict[str, float]:
    """Dense matmul rates (MAC/s) of `device` in float32 (key "fp32") and in the dtype a step of
    `precision` computes in ("bf16" or "fp16"), the two a row's MAC-rate shares are taken against. Only
    those: bfloat16 on a CPU without native support is emulated, and a 2048^3 product takes minutes."""
    rates = {"fp32": matmul_rate(device, size)}
    if precision == "bf16":
        rates["bf16"] = matmul_rate(device, size, dtype=torch.bfloat16)
    elif precision == "fp16":
        rates["fp16"] = matmul_rate(device, size, dtype=torch.float16)
    return rates


def forward_macs(method: MethodAPI, stage: Stage, profile: Profile, batch: dict[str, torch.Tensor],
                 device: torch.device) -> int:
    """MACs of one forward pass of the stage's loss on `batch`, on a fresh eager float32 copy of the
    networks (compiled graphs bypass the counting hooks; the count depends on shapes only)."""
    torch.manual_seed(0)
    nets = method.build(asdict(profile.model)).to(device)
    return int(count_macs(lambda: method.stage_loss(stage, nets, on_device(batch, device)),
                          [nets[k] for k in dict.fromkeys((*stage.trains, *stage.uses))]))


def time_stage(method: MethodAPI, stage: Stage, profile: Profile, set_folder: Path, device: torch.device,
               steps: int, warmup: int, rates: dict[str, float], seed: int = 0, trainset: Any = None,
               log: Any = print, bare: bool = False) -> dict[str, Any]:
    """One stage's row: `warmup` untimed then `steps` timed iterations of the training loop's step; with
    `bare`, the gap to the bare step too (`loop_gap`)."""
    own_set = trainset is None
    with tempfile.TemporaryDirectory(prefix="bench-timing-") as scratch:
        run = open_stage(method, stage, profile, set_folder, seed, Path(scratch), device,
                         {name: NOT_LOADED for name in stage.init_from}, log=log)
        run.build_networks()
        trainset = trainset if trainset is not None else train_set(set_folder, profile, stage)
        scaler = run.execution.scaler()
        waits: list[float] = []
        totals: list[float] = []
        with PeakMemory(device) as mem, run.batches(trainset, 0, warmup + steps) as batches:
            for it in range(warmup + steps):
                if it == warmup:
                    cpu_start = time.process_time()
                t0 = time.perf_counter()
                data = next(batches)
                t1 = time.perf_counter()
                if it == 0:
                    first = data  # counted after the timing: a fresh copy of the networks, shapes only
                run.step(it, data, scaler)
                synchronize(device)
                t2 = time.perf_counter()
                if it >= warmup:
                    waits.append(t1 - t0)
                    totals.append(t2 - t0)
            cpu = time.process_time() - cpu_start
        macs = forward_macs(method, stage, profile, first, device)
        gap = loop_gap(run, trainset, warmup, steps, scaler, totals, set_folder if own_set else None) \
            if bare else {}
    row = _row(method, stage, profile, run, device, waits, totals, macs, rates, mem, warmup)
    # CPU seconds of this process (every thread: the step's and the loader's) per timed step: on a machine
    # shared with other jobs, the measure of the work that waiting for a core does not inflate.
    return dict(row, cpu_s_per_step=cpu / len(totals), **gap)


BARE_BATCHES = 8  # distinct batches the bare step cycles over: real data, a few MB


def time_bare(run: Any, trainset: Any, warmup: int, steps: int, scaler: Any
              ) -> tuple[list[float], list[float]]:
    """The stage's step alone, `warmup` untimed then `steps` timed, over `BARE_BATCHES` batches made
    beforehand, and the CPU seconds this thread took to make each of them (OpenCV on one thread, as in
    the loop's batch thread): (step seconds, batch CPU seconds)."""
    planned = run.planned(trainset, 0, warmup + steps)
    one_opencv_thread()
    made, cpu = [], []
    for i in range(min(BARE_BATCHES, len(planned))):
        c0 = time.thread_time()
        made.append(planned[i])
        cpu.append(time.thread_time() - c0)
    totals = []
    for it in range(warmup + steps):
        t0 = time.perf_counter()
        run.step(it, made[it % len(made)], scaler)
        synchronize(run.device)
        if it >= warmup:
            totals.append(time.perf_counter() - t0)
    return totals, cpu


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def progress_cpu_share(seconds: float = 1.0, rate: float = 20.0) -> float:
    """CPU seconds per second that a live progress bar (the loop's, drawn on a terminal) costs this process
    while it is updated `rate` times a second, over the same loop without it."""
    def cpu_of(bar: Any) -> float:
        task = bar.add_task("timing", total=10**9, rate="-", loss="-")
        c0, end = time.process_time(), time.perf_counter() + seconds
        while time.perf_counter() < end:
            bar.update(task, advance=1, rate="1.00", loss="0.1")
            time.sleep(1 / rate)
        return time.process_time() - c0

    with progress_bar(False) as off:
        idle = cpu_of(off)
    with progress_bar(True, Console(file=io.StringIO(), force_terminal=True, width=120)) as on:
        live = cpu_of(on)
    return max(0.0, live - idle) / seconds


def loop_gap(run: Any, trainset: Any, warmup: int, steps: int, scaler: Any, loop: list[float],
             set_folder: Path | None) -> dict[str, Any]:
    """What the loop adds to its bare step (`time_bare`), each cost named; `loop` holds the loop's timed
    iterations (step and batch wait). Validation is scored only on a prepared set (`set_folder`)."""
    t, stage = run.profile.train, run.stage
    bare, batch_cpu = time_bare(run, trainset, warmup, steps, scaler)
    validation = 0.0
    if set_folder is not None and t.val_every:
        fields = stage.objective.fields
        valset = validation_set(set_folder, stage_crop(stage, run.profile), fields)
        run.validation = Validation.of(stage, validation_batch(valset, t.val_samples, fields))
        validation = _timed(lambda: run.validate(1)) / t.val_every
    checkpoint = _timed(lambda: run.save(1)) / t.ckpt_every
    bare_s, loop_s = statistics.fmean(bare), statistics.fmean(loop) + validation + checkpoint
    return {"bare_samples_per_s": run.result.batch / bare_s, "bare_step_s": statistics.median(bare),
            "batch_cpu_s": statistics.median(batch_cpu), "validation_s_per_step": validation,
            "checkpoint_s_per_step": checkpoint,
            "loop_efficiency": bare_s / loop_s}


def step_rates(profile: Profile, device: torch.device, size: int = 2048) -> dict[str, float]:
    """`matmul_rates` measured with the threads and in the precision the profile's training steps use."""
    torch.set_num_threads(resolve_threads(profile.train.threads))
    return matmul_rates(device, size, resolve_precision(profile.train.precision, device))


def time_method(method: MethodAPI, profile: Profile, set_folder: Path, device: torch.device, steps: int,
                warmup: int, rates: dict[str, float], seed: int = 0, log: Any = print, bare: bool = False
                ) -> list[dict]:
    """`time_stage` rows of every stage of `method`, in training order (with `bare`, each with its gap to
    the bare step); batches that cannot fit in memory are refused first."""
    check_training(method, profile, int(load_manifest(set_folder)["frames"]), device)
    rows = []
    for stage in method.stages:
        log(f"timing {method.name} stage {stage.name} on {device_name(device)}: {warmup} untimed and "
            f"{steps} timed steps")
        rows.append(time_stage(method, stage, profile, set_folder, device, steps, warmup, rates, seed=seed,
                               log=log, bare=bare))
    return rows


def _row(method: MethodAPI, stage: Stage, profile: Profile, run: Any, device: torch.device,
         waits: list[float], totals: list[float], macs: int, rates: dict[str, float], mem: PeakMemory,
         warmup: int) -> dict[str, Any]:
    execution = run.execution
    spent = sum(totals)
    train_macs = 3 * macs
    achieved = train_macs * len(totals) / spent if spent > 0 else None
    rate = rates.get(execution.precision, rates["fp32"])
    return {
        "method": method.name, "stage": stage.name, "device": device_name(device), "cpu": cpu_name(),
        **execution.describe(method, stage), "crop": stage_crop(stage, profile), "batch": run.result.batch,
        "iterations": stage_iterations(stage, profile), "steps": len(totals), "warmup": warmup,
        "step_s": statistics.median(totals), "step_s_mean": spent / len(totals),
        "samples_per_s": run.result.batch * len(totals) / spent if spent > 0 else None,
        "data_wait_share": sum(waits) / spent if spent > 0 else None,
        "peak_mem_mb": mem.mb, "peak_mem_how": mem.how,
        "forward_macs": macs, "train_macs": train_macs, "mac_rate": achieved,
        "matmul_dtype": str(execution.dtype).removeprefix("torch."),
        "matmul_rate": rate, "matmul_rate_fp32": rates["fp32"],
        "mac_rate_fraction": achieved / rate if achieved else None,
        "mac_rate_fraction_fp32": achieved / rates["fp32"] if achieved else None,
    }


# --- bench run --dry-run ------------------------------------------------------------------------------------


def eval_estimate(method: MethodAPI, profile: Profile, set_folder: Path, device: torch.device) -> dict:
    """Seconds the evaluation's network passes would take: one video prediction per test sample, plus the
    runtime measurement's passes (`eval.runtime_repeats` + `eval.runtime_warmup`, video and deblurring), at
    the test split's resolution padded to 16, timed here on seeded untrained networks."""
    manifest = load_manifest(set_folder)
    h, w = manifest["resolution"]
    n = int(manifest["frames"])
    count = split_counts(manifest)["test"]
    if profile.data.test_limit:
        count = min(count, profile.data.test_limit)
    torch.manual_seed(derive_seed(0, method.name, "dry-run"))
    nets = method.for_inference(method.build(asdict(profile.model)), device)
    gen = torch.Generator().manual_seed(0)
    blur = torch.rand(1, 3, h + (-h) % 16, w + (-w) % 16, generator=gen).to(device)  # (1, 3, h16, w16)
    center = blur.clone() if method.uses_true_center else None
    video = statistics.median(time_calls(lambda: method.predict(nets, blur, n, center=center), device, 2, 1))
    deblur = statistics.median(time_calls(lambda: method.deblur(nets, blur), device, 2, 1))
    passes = profile.eval.runtime_repeats + profile.eval.runtime_warmup
    return {"eval_estimate_s": video * (count + passes) + deblur * passes, "test_samples": count,
            "eval_video_pass_s": video, "eval_deblur_pass_s": deblur, "eval_resolution": [h, w],
            "eval_how": f"network passes only: {count} test predictions + {passes} video and {passes} "
                        "deblurring passes of the runtime measurement, at the test resolution; image "
                        "decoding, metrics and PNG writing are not included"}


def project(rows: list[dict], evaluation: dict) -> dict:
    """The projected wall time of the full profile: each stage's iterations x its median step time."""
    stages = {r["stage"]: r["iterations"] * r["step_s"] for r in rows}
    train = sum(stages.values())
    return {"projected_stage_s": stages, "projected_train_s": train,
            "projected_total_s": train + evaluation["eval_estimate_s"]}


def dry_run(spec: Any, iterations: int, log: Any = print) -> tuple[dict, Path]:
    """`bench run --dry-run K`: time K iterations of every stage of the run `spec` describes, project the
    full profile and store the record under `<runs>/dryrun/` (never as a result; nothing trained is kept)."""
    method = get_method(spec.method, spec.frames)
    profile = resolve_profile(spec.profile, spec.overrides)
    device = resolve_device(spec.device or profile.train.device)
    set_folder = Path(ensure_prepared(spec.source or profile.data.source, spec.frames, profile,
                                      default_data_dir(spec.data_dir), DATA_SEED, root=spec.root,
                                      progress=spec.progress, log=log))

    check_training(method, profile, spec.frames, device)  # before the matmul rates: seconds, not a minute
    rates = step_rates(profile, device)
    warmup = 1 if iterations >= 2 else 0
    rows = time_method(method, profile, set_folder, device, iterations - warmup, warmup, rates,
                       seed=spec.seed, log=log)
    evaluation = eval_estimate(method, profile, set_folder, device)
    config = {"method": method.name, "profile": asdict(profile), "dataset": set_folder.name,
              "frames": spec.frames, "device": str(device), "iterations": iterations}
    record = {"kind": "dry-run", "note": "timing only: not a result; nothing was trained into the store",
              "method": method.name, "profile": profile.name, "overrides": list(spec.overrides),
              "dataset": set_folder.name, "frames": spec.frames, "device": device_name(device),
              "iterations_run": iterations, "stages": rows, **evaluation, **project(rows, evaluation),
              "matmul_rates": rates, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = runs_dir(spec.runs_dir) / DRY_RUNS / f"{method.name}-{device.type}-{stable_hash(config, 10)}.json"
    atomic_write_json(path, record)
    return record, path


def run_train(methods: list[str], profile_name: str, overrides: list[str], device: str, steps: int,
              warmup: int, frames: int | None, data_dir: str | None, source: str | None, root: str | None,
              matmul_size: int, log: Callable[[str], None] = print) -> list[dict]:
    """`bench perf --train`: `steps` timed training steps of every stage of each method, through the
    training loop's code (`time_stage`) on the profile's data, crop and batch."""
    profile = resolve_profile(profile_name, overrides)
    dev = resolve_device(device)
    for name in methods:
        if name not in registry.names():
            raise BenchError(f"--methods: unknown method {name!r}; known: {', '.join(registry.names())}")
        if not registry.get(name).stages:
            raise BenchError(f"--methods {name}: it has no training stages; name a trained method")
    rates = step_rates(profile, dev, matmul_size)
    rows, folders = [], {}
    for name in methods:
        method = registry.get(name)
        n = frames or (9 if method.frames is None or 9 in method.frames else method.frames[0])
        if n not in folders:  # verified once: verification hashes every file of the set
            folders[n] = ensure_prepared(source, n, profile, data_dir, DATA_SEED, root=root, progress=True,
                                         log=log)
        rows += time_method(method, profile, folders[n], dev, steps, warmup, rates, log=log, bare=True)
    share = progress_cpu_share()  # a property of the machine, not of a stage: measured once
    return [dict(row, progress_cpu_share=share) for row in rows]
