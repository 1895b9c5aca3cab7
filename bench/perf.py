"""Timing, multiply-accumulate counts, peak memory and the machine's matmul rate (docs/DESIGN.md "Perf").

Runtimes follow docs/DESIGN.md "Metrics": batch 1, warm-up passes first, then the median of timed passes under
`torch.inference_mode`, with the device synchronised before each clock read (asynchronous CUDA kernels would
otherwise be timed at launch, which flatters published deblurring timings 10-20x). Every figure carries the
device name.

MACs are counted with forward hooks on every convolution, transposed convolution and linear layer (a
ConvLSTM's gate convolution is an `nn.Conv2d`, so it is counted once per recurrent step it runs). Element-wise
work (activations, warping, additions) is not counted: the MAC rate compares the dense arithmetic with the
dense matmul rate of the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from bench.config import SIDE, get_profile
from bench.devices import resolve_device
from bench.env import cpu_name, environment
from bench.errors import BenchError
from bench.memory import available_memory, forward_bytes_per_pixel, require
from bench.store import PerfResult, RunEnv, runs_dir, store_perf
from methods import registry
from methods.layers import count_params
from methods.registry import MethodAPI


def device_name(device: torch.device | str) -> str:
    """A human name of the device that goes with every timing: the GPU model, or the CPU model and threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"

    threads = torch.get_num_threads()
    return f"{cpu_name() or 'CPU'} ({threads} thread{'' if threads == 1 else 's'})"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Wall seconds of `repeats` calls of `fn` after `warmup` untimed ones, synchronised, inference mode."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        synchronize(device)
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return times


@dataclass(frozen=True)
class Spread:
    """Median and spread of timed passes, in seconds."""

    median: float
    low: float  # fastest pass
    high: float  # slowest pass
    iqr: float  # inter-quartile range (0 with fewer than 2 passes)

    @classmethod
    def of(cls, times: list[float]) -> Spread:
        if len(times) >= 2:
            q = statistics.quantiles(times, n=4, method="inclusive")
            iqr = q[2] - q[0]
        else:
            iqr = 0.0
        return cls(statistics.median(times), min(times), max(times), iqr)


# --------------------------------------------------------------------------------------------------- MACs

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
            nn.Linear)


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call of a conv / deconv / linear layer (bias adds not counted)."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # every input value is scattered through a kernel into out_channels/groups outputs
        return inp.numel() * (module.out_channels // module.groups) * kernel
    return out.numel() * (module.in_channels // module.groups) * kernel


@contextlib.contextmanager
def mac_counter(modules: nn.Module | list[nn.Module]) -> Iterator[dict[str, int]]:
    """Count MACs of every conv/deconv/linear call inside `modules` while the context is open.

    Yields a dict: `total` and one entry per layer class name, filled in as the forward passes run.
    """
    roots = modules if isinstance(modules, list) else [modules]
    counts: dict[str, int] = {"total": 0}
    seen: set[int] = set()
    handles = []

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        macs = _layer_macs(module, args[0], out)
        counts["total"] += macs
        name = type(module).__name__
        counts[name] = counts.get(name, 0) + macs

    for root in roots:
        for module in root.modules():
            if isinstance(module, _COUNTED) and id(module) not in seen:  # shared modules hooked once
                seen.add(id(module))
                handles.append(module.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def count_macs(fn: Callable[[], Any], modules: nn.Module | list[nn.Module]) -> int:
    """MACs of one call of `fn` (which runs `modules`), counted with forward hooks, in inference mode."""
    with mac_counter(modules) as counts, torch.inference_mode():
        fn()
    return counts["total"]


# ------------------------------------------------------------------------------------------------ memory


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status_kb(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmHWM: the peak resident set size) in bytes; None where absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Set the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


class PeakMemory:
    """Peak memory of the code run inside the context, in MB (10^6 bytes); `how` says what was measured.

    CUDA: `torch.cuda.max_memory_allocated` after a reset (tensors only, the caching allocator's overhead
    excluded). CPU on Linux: the kernel's peak resident set size (VmHWM, reset to the current RSS at entry)
    above the RSS at entry: exact, and nothing runs beside the measured code. Where that mark cannot be
    reset, RSS sampled every 2 ms by a thread (an estimate: allocations shorter than a sample can be missed,
    and the sampler's wake-ups cost the measured code a few per cent of a 2-core machine). In both, memory
    the allocator keeps from earlier work is not counted again. Elsewhere: not measured (None).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self.how = "not measured"
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0
        self._thread: threading.Thread | None = None
        self._hwm = False

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.how = "CUDA max_memory_allocated above the allocation at start"
        elif self.device.type == "cpu" and os.path.exists("/proc/self/statm"):
            self._base = self._peak = _rss_bytes()
            self._hwm = _reset_peak_rss()
            if self._hwm:
                self.how = "CPU peak RSS (VmHWM, reset at start) above the RSS at start"
            else:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
                self.how = "CPU peak RSS above the RSS at start, sampled every 2 ms"
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            self._stop.wait(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 1e6
        elif self._hwm:
            self.mb = (max(self._base, _status_kb("VmHWM") or 0) - self._base) / 1e6
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.mb = (self._peak - self._base) / 1e6


# ------------------------------------------------------------------------------------------ matmul rate


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 5,
                dtype: torch.dtype = torch.float32) -> float:
    """The machine's dense matrix-multiply rate in `dtype` (float32 by default; bfloat16 for steps that run
    under bf16 autocast) in MACs per second (median of `repeats` torch.mm).

    One `size` x `size` by `size` x `size` product is size^3 multiply-accumulates.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    times = time_calls(lambda: torch.mm(a, b), device, repeats=repeats, warmup=1)
    return size**3 / statistics.median(times)


def op_breakdown(fn: Callable[[], Any], top: int = 8) -> list[dict[str, Any]]:
    """Where one call of `fn` spends its time: the `top` operators by self time (torch.profiler, CPU side).

    Rows `{"op", "calls", "self_s", "share"}`, largest first, `share` of the profiled total; the rest are
    summed into one `other` row. On CUDA the CPU self time is launch overhead, so this is a CPU tool.
    """
    with torch.inference_mode():
        fn()  # warm-up outside the profile: first calls pick algorithms and allocate
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [{"op": e.key, "calls": int(e.count), "self_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total} for e in events[:top]]
    rest = events[top:]
    if rest:
        other = sum(e.self_cpu_time_total for e in rest)
        rows.append({"op": "other", "calls": int(sum(e.count for e in rest)), "self_s": other / 1e6,
                     "share": other / total})
    return rows


# --------------------------------------------------------------------------------------- method entries


def params_of(nets: nn.Module) -> int:
    """Parameter count of all of a method's networks (`Module.parameters()` yields a shared tensor once)."""
    return count_params(nets)


def inference_params(method: MethodAPI, nets: nn.Module) -> int:
    """Parameters of the networks a method runs at test time (metrics.json's `params`, as `bench list`):
    components marked `inference=False` (the RVE, used only in stage-1 training) are left out."""
    used = [nets[k] for k in method.inference_keys() if k in nets]
    return params_of(nn.ModuleList(used))


def size_mb(params: int) -> float:
    """float32 size in MB of 10^6 bytes."""
    return params * 4 / 1e6


def deblur_entry(method: MethodAPI, nets: nn.Module) -> tuple[Callable[[torch.Tensor], Any], str]:
    """The deblurring part of a method as a callable of the blur `(b, 3, h, w)`, and a note saying what it is
    (the registry's deblur function: the DM for ours, SRN, jin2018's centre network, the input for floors)."""
    return (lambda blur: method.deblur(nets, blur)), "method.deblur"


# ------------------------------------------------------------------------------------------- bench perf


def parse_resolution(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT` (e.g. 1280x704, the paper's GoPro test size) -> (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BenchError(f"--resolution {text!r}: expected WIDTHxHEIGHT, e.g. 1280x704") from None
    if not (SIDE.accepts(w) and SIDE.accepts(h)):
        raise BenchError(f"--resolution {text}: width and height take {SIDE.allowed(int)}, e.g. 1280x704")
    return h, w


def check_fits(method: MethodAPI, nets: nn.Module, frames: int, hw: tuple[int, int], device: torch.device,
               resolution: str) -> None:
    """Refuse a measurement whose forward pass would not fit in the free memory of `device`, from the
    parameters and the probe estimate of activations per pixel (`bench.memory`), before allocating it."""
    h, w = hw
    pixels = (h + (-h) % 16) * (w + (-w) % 16)
    params = sum(p.numel() * p.element_size() for p in nets.parameters())
    per_pixel = forward_bytes_per_pixel(method, nets, frames, torch.device("cpu"))
    require(params + per_pixel * pixels, available_memory(device), f"--resolution {resolution}: "
            f"{method.name}", "pass a smaller --resolution, e.g. 1280x704")


def measure_method(method: MethodAPI, nets: nn.Module, frames: int, hw: tuple[int, int], device: torch.device,
                   repeats: int, warmup: int, rate: float, compile: bool = False,
                   amp: bool = False, channels_last: bool = True, breakdown: bool = False) -> dict[str, Any]:
    """One `bench perf` row: size, MACs, deblurring and video times (median and spread), peak memory.

    Inputs are a seeded random blur `(1, 3, h, w)` (h, w padded to a multiple of 16) and, for the
    true-centre oracle, a random centre frame. `rate` is the machine's matmul rate (MAC/s) for the fractions.
    `channels_last` uses the inference layout of `Method.for_inference` (the registry's channels-last
    components); False keeps every network contiguous, to measure what the layout buys. `breakdown` adds
    `breakdown_deblur`, the operator profile of one deblurring pass (`op_breakdown`).
    """
    h, w = hw
    hp, wp = h + (-h) % 16, w + (-w) % 16
    gen = torch.Generator().manual_seed(0)
    blur = torch.rand(1, 3, hp, wp, generator=gen).to(device)  # (1, 3, h, w)
    center = torch.rand(1, 3, hp, wp, generator=gen).to(device) if method.uses_true_center else None
    nets = method.for_inference(nets, device) if channels_last else nets.to(device).eval()
    params = inference_params(method, nets)

    deblur_fn, deblur_what = deblur_entry(method, nets)
    # MACs are counted on the eager networks: compiled graphs bypass module hooks.
    macs_video = count_macs(lambda: method.predict(nets, blur, frames, center=center), nets)
    macs_deblur = count_macs(lambda: deblur_fn(blur), nets)

    if compile:
        for key in list(nets.keys()):
            nets[key] = torch.compile(nets[key])
        deblur_fn, deblur_what = deblur_entry(method, nets)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp and device.type == "cuda"
                else contextlib.nullcontext())

    def video() -> Any:
        with autocast:
            return method.predict(nets, blur, frames, center=center)

    def deblur() -> Any:
        with autocast:
            return deblur_fn(blur)

    times_video = time_calls(video, device, repeats, warmup)
    times_deblur = time_calls(deblur, device, repeats, warmup)
    t_video, t_deblur = Spread.of(times_video), Spread.of(times_deblur)
    with PeakMemory(device) as mem, torch.inference_mode():
        video()
    ops = op_breakdown(deblur) if breakdown else None
    frac_video = macs_video / t_video.median / rate if rate > 0 else None
    frac_deblur = macs_deblur / t_deblur.median / rate if rate > 0 else None
    return {
        "method": method.name, "frames": frames, "resolution": f"{w}x{h}",
        "runtime_resolution": f"{wp}x{hp}", "device": device_name(device),
        "params": params, "size_mb": size_mb(params), "train_params": params_of(nets),
        "macs": macs_video, "macs_deblur": macs_deblur,
        "runtime_deblur_s": t_deblur.median, "runtime_deblur_min_s": t_deblur.low,
        "runtime_deblur_max_s": t_deblur.high, "runtime_deblur_iqr_s": t_deblur.iqr,
        "runtime_video_s": t_video.median, "runtime_video_min_s": t_video.low,
        "runtime_video_max_s": t_video.high, "runtime_video_iqr_s": t_video.iqr,
        # every timed pass, so a speed claim can resample them (bench.report.claims)
        "runtime_deblur_times_s": times_deblur, "runtime_video_times_s": times_video,
        "images_per_s": 1.0 / t_video.median, "deblur_images_per_s": 1.0 / t_deblur.median,
        "peak_mem_mb": mem.mb, "peak_mem_how": mem.how,
        "mac_rate_fraction": frac_video, "mac_rate_fraction_deblur": frac_deblur,
        # from the fastest pass: on a shared machine the least disturbed pass is the closest to the hardware
        "mac_rate_fraction_deblur_best": macs_deblur / t_deblur.low / rate if rate > 0 else None,
        "matmul_macs_per_s": rate, "deblur_what": deblur_what, "repeats": repeats, "warmup": warmup,
        "compile": compile, "amp": amp and device.type == "cuda",
        "channels_last": method.channels_last_keys() if channels_last else [],
        "torch_threads": torch.get_num_threads(),
        "breakdown_deblur": ops, "skipped": None,
    }


# --- `bench perf`: the methods side by side ----------------------------------------------------------------

ROW_KEYS = ("method", "frames", "resolution", "device", "params", "size_mb", "macs", "runtime_deblur_s",
            "runtime_video_s", "peak_mem_mb", "mac_rate_fraction")  # keys of every row, skipped ones too


def default_methods() -> list[str]:
    """The methods `bench perf` compares unless told otherwise: the paper's methods and the baselines
    (ablations are variants of `ours` at the same cost class)."""
    return [n for n in registry.names() if registry.get(n).family != "ablation"]


def run_perf(methods: list[str], resolution: str, device: str, repeats: int, warmup: int, frames: int,
             profile_name: str, compile: bool, amp: bool, matmul_size: int,
             channels_last: bool = True, breakdown: bool = False,
             log: Callable[[str], None] = print) -> tuple[list[dict], float]:
    """Measure each named method; returns the rows and the machine's matmul rate (MAC/s). A method that
    cannot make `frames` frames gets a row saying why (`skipped`); every memory refusal comes before any
    timing."""
    hw = parse_resolution(resolution)
    dev = resolve_device(device)
    model = dataclasses.asdict(get_profile(profile_name).model)
    for name in methods:
        if name not in registry.names():
            raise BenchError(f"--methods: unknown method {name!r}; known: {', '.join(registry.names())}")
    built: dict[str, nn.Module] = {}
    for name in methods:
        method = registry.get(name)
        if _frames_problem(method, frames) is None:
            torch.manual_seed(0)  # untrained, seeded networks: timing does not depend on the weights' values
            built[name] = method.build(model)
            check_fits(method, built[name], frames, hw, dev, resolution)
    rate = matmul_rate(dev, size=matmul_size)
    log(f"matmul rate {rate / 1e9:.1f} GMAC/s on {device_name(dev)}")
    rows = []
    for name in methods:
        method = registry.get(name)
        log(f"measuring {name} (N={frames}, {resolution}, {repeats} timed passes after {warmup})")
        if name not in built:
            row = {k: None for k in ROW_KEYS}
            row.update(method=name, frames=frames, resolution=resolution, device=device_name(dev),
                       skipped=_frames_problem(method, frames))
            rows.append(row)
            continue
        rows.append(measure_method(method, built[name], frames, hw, dev, repeats, warmup, rate, compile, amp,
                                   channels_last, breakdown))
    return rows, rate


def _frames_problem(method: MethodAPI, frames: int) -> str | None:
    """Why `method` cannot produce `frames` frames (its row is then skipped), or None."""
    try:
        method.check_frames(frames)
    except ValueError as err:
        return str(err)
    return None


def store_rows(rows: list[dict], profile_name: str, frames: int, repeats: int, warmup: int, device: str,
               runs: str | None) -> Path:
    """Keep the rows as a `bench.store.PerfResult` in the runs store (`bench perf --store`), where the
    report reads the speed claims from; returns the file written."""
    store = runs_dir(runs)
    result = PerfResult(profile=profile_name, frames=frames, resolution=rows[0]["resolution"],
                        device=rows[0]["device"], repeats=repeats, warmup=warmup,
                        env=RunEnv.from_json(environment(device), store), rows=tuple(rows))
    return store_perf(store, result)
