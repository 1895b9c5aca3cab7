"""How a training step uses the machine: threads, numeric precision, memory layout, compilation, and where
the next batch is made while the step runs. `Execution.of(profile.train, device)` resolves the profile's
`auto` settings for one device; the training loop, `bench perf --train` and `bench run --dry-run` all run
through it, so what is measured is what trains.

Decisions, each measured (the figures are in docs/DESIGN.md "Training"):

- Threads: torch's intra-op pool gets every core this process may run on (`train.threads=0`), or the
  profile's count. `quick` takes every core (the fastest on a quiet machine); a shared machine is better
  served by 1 (spinning OpenMP threads stall on cores other jobs hold), or by pinning each job to its own
  cores, which the count then follows.
- Precision: autocast runs the networks' convolutions in bfloat16 where the hardware has it (CUDA with
  bf16; CPUs with avx512_bf16 or amx_bf16, where a training step of the quick profile took 1.2-1.8x less
  CPU time than in float32, and 600 DM and 200 RVE-RVD iterations ended within 0.01 dB and 0.2% of the
  float32 validation scores); weights, Adam's moments and the losses stay float32: every component's
  outputs are cast back to float32 before the loss reads them, and the DM's global residual adds its output
  to the float32 input.
  bfloat16 has float32's range, so no gradient scaler is needed; CUDA devices without bf16 get float16 and
  a scaler.
- Layout: components marked `channels_last_train` in the registry train channels-last
  (`train.channels_last=false` turns it off).
- The next batch: on CPU a background thread of the training process (`loader="thread"`). Cropping a packed
  uint8 batch costs about 2% of a DM step in CPU time and numpy and OpenCV release the GIL, so one thread
  keeps a batch ready at that cost, where a DataLoader worker process needs the same CPU plus a process
  and a shared-memory hand-over, and `loader="main"` pays the 2% inside the step. On CUDA the step is far
  faster than one core can crop, so `workers` DataLoader processes with pinned memory (`loader="process"`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import torch
from torch import nn

from bench.data.loaders import make_loader, to_float
from bench.env import processor_name
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.config import TrainConfig
    from methods.registry import MethodAPI, Stage

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 dot products
PREFETCH = 2  # batches the loader thread keeps ready


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    """True on CPUs that compute bfloat16 in hardware (oneDNN uses AVX512-BF16 or AMX for it)."""
    return bool(cpu_flags() & set(CPU_BF16_FLAGS)) and torch.backends.mkldnn.is_available()


def resolve_precision(requested: str, device: torch.device) -> str:
    """"fp32", "bf16" or "fp16" (CUDA without bf16 only) for `train.precision` on `device`."""
    if requested == "fp32":
        return "fp32"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16"
        if requested == "bf16":
            raise BenchError(f"--set train.precision=bf16: {torch.cuda.get_device_name(device)} has no "
                             "bfloat16; use train.precision=auto (float16 with a gradient scaler) or fp32")
        return "fp16"
    if device.type == "cpu" and requested == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "bf16" if requested == "bf16" else "fp32"


def resolve_threads(threads: int) -> int:
    """`train.threads`, or (0) every core this process may run on."""
    if threads > 0:
        return int(threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Execution:
    """The resolved execution settings of training on one device (module docstring)."""

    device: torch.device
    precision: str  # "fp32" | "bf16" | "fp16": the autocast dtype of the networks' forward passes
    threads: int  # torch intra-op threads
    loader: str  # "thread" | "process" | "main": where the next batch is made
    workers: int  # DataLoader processes of the "process" loader
    channels_last: bool  # honour the registry's `channels_last_train`
    compile: bool  # torch.compile each component's forward

    @classmethod
    def of(cls, train: TrainConfig, device: torch.device) -> Execution:
        loader = train.loader
        if loader == "auto":
            loader = "process" if device.type == "cuda" else "thread"
        if loader == "process" and train.workers == 0:
            loader = "main"
        return cls(device, resolve_precision(train.precision, device), resolve_threads(train.threads), loader,
                   int(train.workers), bool(train.channels_last), bool(train.compile))

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def autocast(self) -> Any:
        """The forward pass's autocast context (a no-op in float32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> Any:
        """A gradient scaler for float16 (whose range needs one); None otherwise."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def apply_threads(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def layout_keys(self, method: MethodAPI, stage: Stage) -> list[str]:
        """The components of `stage` (trained or used) that run channels-last."""
        if not self.channels_last:
            return []
        return sorted(k for k in dict.fromkeys((*stage.trains, *stage.uses))
                      if method.components[k].channels_last_train)

    def prepare(self, nets: nn.ModuleDict, method: MethodAPI, stage: Stage) -> None:
        """Lay out, wrap and compile the stage's networks in place (after they are on the device)."""
        for key in self.layout_keys(method, stage):
            nets[key].to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop sizes: the fastest algorithm is picked once
        for key in dict.fromkeys((*stage.trains, *stage.uses)):
            if self.precision != "fp32":
                nets[key].register_forward_hook(_float32_outputs)
            if self.compile:
                nets[key].compile()  # in place: state dict keys and component methods unchanged

    def describe(self, method: MethodAPI, stage: Stage) -> dict:
        """The settings as stored beside a stage's results and printed by `bench perf --train`."""
        return {"precision": self.precision, "threads": self.threads, "loader": self.loader,
                "workers": self.workers if self.loader == "process" else 0,
                "channels_last": self.layout_keys(method, stage), "compile": self.compile,
                "device": str(self.device), "processor": processor_name(str(self.device))}


def _float32_outputs(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: a component's floating outputs in float32, so the losses computed from them are."""
    return _to_float32(output)


def _to_float32(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple (the RVD's output)
        return type(value)(*(_to_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value


# --- the next batch -----------------------------------------------------------------------------------------


class _Failure:
    """An exception raised while making a batch, carried to the step's thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # every batch delivered


class BatchStream:
    """Items 0, 1, ... of `dataset` (each a whole batch, `bench.train.PlannedBatches`), in order, made where
    `execution.loader` says; an error in making one is raised by `next` as it was raised. Close it (or use
    it as a context manager) to stop its thread or worker processes."""

    def __init__(self, dataset: Any, execution: Execution) -> None:
        self.dataset, self.execution = dataset, execution
        self.pin = execution.device.type == "cuda"
        self._thread: threading.Thread | None = None
        self._iter: Iterator | None = None
        if execution.loader == "thread":
            one_opencv_thread()
            self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._fill, name="bench-batches", daemon=True)
            self._thread.start()
        elif execution.loader == "process":
            self._iter = iter(make_loader(dataset, execution.workers, execution.device))
        else:
            self._iter = (dataset[i] for i in range(len(dataset)))

    def _fill(self) -> None:
        try:
            for i in range(len(self.dataset)):
                item = self.dataset[i]
                if self.pin:
                    item = {k: v.pin_memory() for k, v in item.items()}
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the step's thread, which raises it
            self._put(_Failure(err))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iter is not None:
            return next(self._iter)
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._iter = None  # a DataLoader iterator's workers stop when it is released

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def one_opencv_thread() -> None:
    """OpenCV's own pool would spread a crop over the cores the step uses; one thread makes the batches."""
    cv2.setNumThreads(1)


def on_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A loader's batch on `device`, its images as float32 in [0, 1] (converted there: 4x fewer bytes to
    copy); `non_blocking` overlaps the copy of a pinned batch with the work queued before it."""
    return to_float({k: v.to(device, non_blocking=True) for k, v in batch.items()})
