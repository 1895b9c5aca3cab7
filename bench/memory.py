"""Memory estimates, made before the allocation they predict, so a size that cannot fit is a one-line error
with the numbers instead of a 40 GB allocation, an OOM kill or a machine swapping for an hour.

- `available_memory(device)`: free memory where the tensors will live (CUDA: free device memory; else free
  RAM from /proc/meminfo).
- `parameter_bytes(method, model)`: the exact size of a method's networks at a profile's widths, counted on
  PyTorch's meta device (nothing is allocated, so even absurd widths cost nothing to count).
- `forward_bytes_per_pixel(method, nets, frames, device)`: activation memory per input pixel of one forward
  pass, measured on a small probe (`bench infer` tiles with it, `bench perf` and `bench run` refuse with it).
- `require(need, have, what, fix)`: the one refusal format.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from bench.errors import BenchError

MIN_SIDE = 16  # the networks halve a frame four times (bench.data.video refuses smaller sets when preparing)
PROBE = 32  # side of the probe image; per-pixel memory measured at 32, 64 and 128 agrees exactly
ACTIVATION_FACTOR = 6  # live tensors at the peak, in units of the largest (inputs + output) of one layer
TRAINING_COPIES = 4  # weights, gradients and Adam's two moments: bytes of training per parameter byte
BACKWARD_FACTOR = 2  # a training step keeps its forward activations for the backward pass and adds their
#                      gradients: twice the inference estimate per pixel (low on purpose: the check is for
#                      batches off by orders of magnitude, and must never refuse a size that trains)
BATCHES_IN_FLIGHT = 3  # the batch in the step, the one prefetched and the one being assembled


def available_memory(device: Any = None) -> int:
    """Bytes free for tensors on `device` (CUDA: free device memory; else free RAM)."""
    if getattr(device, "type", str(device)) == "cuda":
        # late: bench.config reads this module, and `bench VERB --help` must not load torch
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # unknown platform: assume a modest 8 GiB


def require(need: float, have: float, what: str, fix: str) -> None:
    """Refuse `what` when it needs more than `have` bytes: `<what> needs about X GiB, more than the Y GiB
    free; <fix>`."""
    if need > have:
        raise BenchError(f"{what} needs about {need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB "
                         f"free; {fix}")


def parameter_bytes(method: Any, model: dict | None) -> int:
    """Bytes of float32 parameters of `method`'s networks at the widths in `model`, counted on the meta
    device (no memory is allocated)."""
    import torch  # late (see available_memory)

    with torch.device("meta"):
        nets = method.build(model)
    return sum(p.numel() for p in nets.parameters()) * 4


def forward_bytes_per_pixel(method: Any, nets: Any, frames: int, device: Any) -> int:
    """Bytes of activation memory per input pixel at the peak of one forward pass.

    A 32x32 probe runs with hooks on every leaf layer; the largest `inputs + output` of one layer (dense
    blocks concatenate, so a layer's input can be far wider than its output) times ACTIVATION_FACTOR stands
    for the tensors alive at once (skip connections, recurrent state), plus the N output frames and flows.
    Conservative on purpose: an overestimate only tiles (or refuses) earlier, an underestimate can kill the
    process.
    """
    import torch  # late (see available_memory)

    peak = 0

    def hook(_module: Any, inputs: tuple, output: Any) -> None:
        nonlocal peak
        total = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        outs = output if isinstance(output, tuple | list) else (output,)
        total += sum(t.numel() * t.element_size() for t in outs if torch.is_tensor(t))
        peak = max(peak, total)

    handles = [m.register_forward_hook(hook) for m in nets.modules() if not list(m.children())]
    try:
        probe = torch.rand(1, 3, PROBE, PROBE, generator=torch.Generator().manual_seed(0)).to(device)
        center = probe if getattr(method, "uses_true_center", False) else None  # the oracle's true centre
        with torch.inference_mode():
            method.predict(nets, probe, frames, center=center)
    finally:
        for h in handles:
            h.remove()
    # frames (n,3) + flows (n,2) + deblurred + input, float32, twice: the uint8 conversion makes temporaries.
    outputs = (frames * 5 + 3 + 3) * 4 * 2
    return int(np.ceil(peak * ACTIVATION_FACTOR / (PROBE * PROBE))) + outputs


def check_training_batches(method: Any, train: Any, frames: int, device: Any, params: int,
                           per_pixel: int) -> None:
    """Refuse a stage whose batch of crops cannot fit: its data (blur, N frames and the centre, float32, a few
    batches in flight) plus the activations of a training step (`per_pixel` of inference, the probe
    estimate, times BACKWARD_FACTOR), named by the field."""
    have = available_memory(device)
    for stage in method.stages:
        batch = int(getattr(train, f"batch_{stage.batch}"))
        crop = train.crop_of(stage.batch)
        data = batch * crop * crop * 3 * 4 * (frames + 2) * BATCHES_IN_FLIGHT
        require(params * TRAINING_COPIES + data + batch * crop * crop * per_pixel * BACKWARD_FACTOR, have,
                f"--set train.batch_{stage.batch}={batch}: training {method.name} stage {stage.name} on "
                f"{batch} crops of {crop}x{crop}", f"lower train.batch_{stage.batch} or train.crop")


def check_training(method: Any, profile: Any, frames: int, device: Any) -> None:
    """`check_training_batches` for the timing runs (`bench perf --train`, `bench run --dry-run`), which
    build the stages' batches without `check_run`."""
    import torch  # late (see available_memory)

    model = dataclasses.asdict(profile.model)
    params = parameter_bytes(method, model)
    with torch.random.fork_rng(devices=[]):
        nets = method.build(model).eval()
        per_pixel = forward_bytes_per_pixel(method, nets, frames, torch.device("cpu"))
    check_training_batches(method, profile.train, frames, device, params, per_pixel)


def check_run(method: Any, model: dict | None, frames: int, resolution: list[int], device: Any,
              training: bool, train: Any = None) -> None:
    """Refuse a run before its first step when its networks (exact, from the meta device), its training
    batches (`train`, a TrainConfig, when training) or the scoring of one full test frame (probe estimate)
    would not fit in the free memory of `device`."""
    import torch  # late (see available_memory)

    have = available_memory(device)
    params = parameter_bytes(method, model)
    copies = TRAINING_COPIES if training else 1
    doing = "training" if training else "holding"
    require(params * copies, have, f"{doing} {method.name} at these widths ({params // 4 / 1e6:.1f} M "
            "parameters)", "lower the model.* widths, e.g. --set model.dm_width=16")
    h, w = (int(v) for v in resolution)
    if min(h, w) < MIN_SIDE:
        raise BenchError(f"the set's frames are {w}x{h}, but the networks need at least {MIN_SIDE} pixels a "
                         "side; prepare it from larger footage (or with a larger --resize)")
    pixels = (h + (-h) % 16) * (w + (-w) % 16)  # scored padded to a multiple of 16
    with torch.random.fork_rng(devices=[]):  # the probe's random input must not shift the run's streams
        nets = method.build(model).eval()
        per_pixel = forward_bytes_per_pixel(method, nets, frames, torch.device("cpu"))
    if training and train is not None:
        check_training_batches(method, train, frames, device, params, per_pixel)
    require(params + per_pixel * pixels, have, f"scoring {method.name} on {w}x{h} test frames",
            "lower data.height and data.width, or run where more memory is free")
