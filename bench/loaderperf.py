"""`bench perf --loader`: how many training samples per second the data path delivers.

The measurement goes through the training loop's own pieces: `bench.train.PlannedBatches` (each item is a
whole batch, built and stacked in a worker process) and `bench.data.loaders.make_loader` (workers, prefetch,
pinned memory), then moves each batch to the device, as a training step does before its forward pass.
Two batches are measured, as the two kinds of stage read them: the DM batch (`blur` and `center`, the
profile's `batch_deblur`) and the video batch (`blur` and all N `sharp` frames, `batch_video`).

The first batches of each loader (worker start-up, cold page cache) are not timed. Throughput is the
timed batches times the batch size over the wall time between the first and the last timed batch.
`breakdown` splits one process's time per sample into reading the box from the memory map, resizing,
and the flip-and-layout copy, to show what bounds the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.config import Profile, get_profile
from bench.data.loaders import TrainSet, make_loader
from bench.data.prepare import ensure_prepared
from bench.devices import resolve_device
from bench.env import cpu_name
from bench.perf import device_name, synchronize
from bench.train import LOCAL, PlannedBatches

STAGES = {  # stage kind -> (fields read, the TrainConfig field of its batch size)
    "dm": (("blur", "center"), "batch_deblur"),
    "video": (("blur", "sharp"), "batch_video"),
}
ROW_KEYS = ("stage", "workers", "samples_per_s", "batch", "crop", "frames", "resolution", "device", "cpu")


def measure(folder: Path, profile: Profile, stage: str, workers: int, batches: int,
            device: torch.device, seed: int = 0) -> dict:
    """One row: samples per second of `stage`'s batches through a real DataLoader with `workers`."""
    fields, batch_key = STAGES[stage]
    t = profile.train
    batch = int(getattr(t, batch_key))
    crop = t.crop_of(batch_key.removeprefix("batch_"))
    trainset = TrainSet(folder, crop, zoom=(t.zoom_min, t.zoom_max), flip=t.flip, fields=fields)
    warm = workers + 1  # one batch per worker to start them, and one more
    plan = PlannedBatches(trainset, seed, f"perf-loader-{stage}", 0, warm + batches, batch, LOCAL, fields)
    loader = make_loader(plan, workers, device)
    it = iter(loader)
    for _ in range(warm):
        _to(next(it), device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        _to(next(it), device)
    synchronize(device)
    wall = time.perf_counter() - start
    del it, loader  # stops the workers
    h, w = trainset.manifest["resolution"]
    return {"stage": stage, "workers": workers, "samples_per_s": batches * batch / wall,
            "batches_per_s": batches / wall, "batch": batch, "crop": crop, "frames": trainset.frames,
            "resolution": f"{w}x{h}", "device": device_name(device), "cpu": cpu_name() or "unknown",
            "fields": list(fields), "set": folder.name, "samples_in_set": len(trainset), "batches": batches,
            "wall_s": wall, "pin_memory": device.type == "cuda", "zoom": [t.zoom_min, t.zoom_max]}


def _to(data: dict[str, torch.Tensor], device: torch.device) -> None:
    for v in data.values():
        v.to(device, non_blocking=True)


def breakdown(folder: Path, profile: Profile, samples: int = 64, seed: int = 0) -> dict[str, float]:
    """Milliseconds per video sample (blur and N frames) spent in each step of a crop, in this process.

    Steps: `read` (copying the box out of the memory map), `resize` (OpenCV, from the copied box), `layout`
    (flip and HWC -> CHW copy into the output), and `total` (a whole `TrainSet` item, for comparison), all
    wall time; `total_cpu` is the CPU time of the whole item, which on a shared machine is the closer
    measure of what one core can do (wall time includes waiting for a core).
    """
    t = profile.train
    ds = TrainSet(folder, t.crop, zoom=(t.zoom_min, t.zoom_max), flip=t.flip, fields=("blur", "sharp"))
    rng = np.random.default_rng(seed)
    keys = [(int(rng.integers(len(ds))), int(rng.integers(2**31 - 1))) for _ in range(samples)]
    c = ds.crop
    spent = {"read": 0.0, "resize": 0.0, "layout": 0.0, "total": 0.0, "total_cpu": 0.0}
    for index, aug in keys:
        where = ds.samples[index]["packed"]
        rng_item = np.random.default_rng([index, aug])  # the draw of ds[(index, aug)]
        x0, y0, box, flip = ds.transform(tuple(ds.manifest["resolution"]), rng_item)
        frames = ds._array(where["frames"], "images")
        images = [ds._array(where["blur"], "images")[where["index"]]]
        images += list(frames[where["first"]:where["first"] + ds.frames])
        interp = cv2.INTER_AREA if box > c else cv2.INTER_LINEAR
        for image in images:
            t0 = time.perf_counter()
            part = np.array(image[y0:y0 + box, x0:x0 + box])  # (box, box, 3)
            t1 = time.perf_counter()
            if box != c:
                part = cv2.resize(part, (c, c), interpolation=interp)
            t2 = time.perf_counter()
            out = np.empty((3, c, c), np.uint8)
            out[:] = (part[:, ::-1] if flip else part).transpose(2, 0, 1)
            t3 = time.perf_counter()
            spent["read"] += t1 - t0
            spent["resize"] += t2 - t1
            spent["layout"] += t3 - t2
        t0, c0 = time.perf_counter(), time.process_time()
        ds[(index, aug)]
        spent["total"] += time.perf_counter() - t0
        spent["total_cpu"] += time.process_time() - c0
    return {k: 1000 * v / samples for k, v in spent.items()}


def run_loader(source: str | None, root: str | None, data_dir: str, profile_name: str, frames: int,
               workers: list[int], batches: int, device: str, with_breakdown: bool,
               log: Callable[[str], None] = print) -> list[dict]:
    """`bench perf --loader`: prepare (or verify) the set, then measure each stage at each worker count;
    with `with_breakdown`, every row also carries one process's time per video sample by step."""
    profile = get_profile(profile_name)
    dev = resolve_device(device)
    folder = ensure_prepared(source, frames, profile, data_dir, root=root, progress=True, log=log)
    rows = []
    for stage in STAGES:
        for k in workers:
            log(f"measuring the {stage} batch with {k} worker(s) ({batches} batches)")
            rows.append(measure(folder, profile, stage, k, batches, dev))
    parts = breakdown(folder, profile) if with_breakdown else None
    for row in rows:
        row["breakdown_ms_per_video_sample"] = parts
    return rows
