"""How a training step uses the machine (bench/execution.py): precision choice, float32 losses under
autocast, the DM's float32 residual, channels-last and compile wiring, and the batch stream's modes."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import pytest
import torch
from torch import nn

from bench import execution as ex
from bench.config import apply_overrides, get_profile
from bench.errors import BenchError
from bench.execution import BatchStream, Execution, resolve_precision
from methods.dm import DM
from methods.registry import get

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _execution(**kw) -> Execution:
    base = dict(device=CPU, precision="bf16", threads=1, loader="thread", workers=0, channels_last=True,
                compile=False)
    return Execution(**{**base, **kw})


def test_auto_precision_is_bf16_only_on_cpus_with_bf16_instructions(monkeypatch):
    monkeypatch.setattr(ex, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(ex, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"  # asked for: honoured (emulated, slower)
    assert resolve_precision("fp32", CPU) == "fp32"


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled")
def test_cuda_without_bf16_falls_back_to_fp16_with_a_scaler_and_refuses_an_explicit_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    assert resolve_precision("auto", CUDA) == "fp16"
    with pytest.raises(BenchError, match=r"^--set train.precision=bf16: Old GPU has no bfloat16; use "):
        resolve_precision("bf16", CUDA)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", CUDA) == "bf16"
    assert _execution(precision="fp16", device=CUDA).scaler() is not None
    assert _execution(precision="bf16").scaler() is None  # bf16 has float32's range: no scaler


def test_loader_auto_is_a_thread_on_cpu_and_processes_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    train = get_profile("paper").train  # workers 4, loader auto, threads 0
    assert Execution.of(train, CPU).loader == "thread"
    assert Execution.of(train, CUDA).loader == "process"
    no_workers = apply_overrides(get_profile("paper"), ["train.loader=process", "train.workers=0"]).train
    assert Execution.of(no_workers, CPU).loader == "main"
    assert Execution.of(train, CPU).threads >= 1  # 0 = every core this process may use


class Out(NamedTuple):
    frames: list
    flows: torch.Tensor | None


class Twin(nn.Module):
    """Returns a NamedTuple of a list and a tensor, as the RVD does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return Out([y, y * 2], y)


def test_components_return_float32_under_bf16_autocast_so_losses_are_float32():
    class Method:
        components = {"t": type("C", (), {"channels_last_train": False})()}

    stage = type("S", (), {"trains": ("t",), "uses": ()})()
    nets = nn.ModuleDict({"t": Twin()})
    x = torch.rand(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = nets["t"](x)
    assert raw.flows.dtype == torch.bfloat16  # what autocast gives without the execution's hook
    _execution().prepare(nets, Method(), stage)
    with _execution().autocast():
        out = nets["t"](x)
        loss = (out.frames[1] - x).abs().mean()
    assert isinstance(out, Out) and [f.dtype for f in out.frames] == [torch.float32] * 2
    assert out.flows.dtype == torch.float32 and loss.dtype == torch.float32
    assert torch.equal(out.flows, raw.flows.float())  # the conv still ran in bfloat16


def test_the_dm_adds_its_global_residual_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    dm = DM(width=8, growth=4, rdbs=1)
    seen = {}
    dm.tail.register_forward_hook(lambda m, a, out: seen.setdefault("tail", out))
    blur = torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dm(blur)
    assert seen["tail"].dtype == torch.bfloat16 and out.dtype == torch.float32
    assert torch.equal(out, blur + seen["tail"].float())  # the input is never rounded to bfloat16


def test_channels_last_follows_the_registry_and_the_profile_switch():
    method = get("ours")
    stage = method.stage("dm")
    nets = method.build(get_profile("smoke").model.__dict__)
    _execution(precision="fp32").prepare(nets, method, stage)
    weight = nets["dm"].head[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert all(p.is_contiguous() for p in nets["bie"].parameters())  # not this stage's: left alone
    nets = method.build(get_profile("smoke").model.__dict__)
    plain = _execution(precision="fp32", channels_last=False)
    plain.prepare(nets, method, stage)
    assert nets["dm"].head[0].weight.is_contiguous() and plain.layout_keys(method, stage) == []
    assert _execution().layout_keys(get("jin2018"), get("jin2018").stage("jin-pairs")) == ["center"]


def test_compile_flag_off_leaves_forward_eager_and_on_compiles_it_in_place():
    method, stage = get("ours"), get("ours").stage("dm")
    nets = method.build(get_profile("smoke").model.__dict__)
    _execution(precision="fp32", compile=False).prepare(nets, method, stage)
    assert nets["dm"]._compiled_call_impl is None
    keys = set(nets["dm"].state_dict())
    _execution(precision="fp32", compile=True).prepare(nets, method, stage)
    assert nets["dm"]._compiled_call_impl is not None and set(nets["dm"].state_dict()) == keys


class Items(torch.utils.data.Dataset):
    """Item i is a batch holding i; `fail_at` raises inside the stream."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise BenchError(f"item {i}: unreadable")
        return {"x": torch.full((2, 3), float(i))}


@pytest.mark.parametrize("loader", ["thread", "main", "process"])
def test_every_loader_delivers_the_same_batches_in_order(loader):
    with BatchStream(Items(5), _execution(loader=loader, workers=1)) as stream:
        got = [float(b["x"][0, 0]) for b in stream]
    assert got == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_an_error_making_a_batch_reaches_the_step_as_raised():
    with BatchStream(Items(5, fail_at=2), _execution()) as stream:
        assert float(next(stream)["x"][0, 0]) == 0.0
        assert float(next(stream)["x"][0, 0]) == 1.0
        with pytest.raises(BenchError, match=r"^item 2: unreadable$"):
            next(stream)


def test_closing_the_stream_stops_its_thread_early():
    stream = BatchStream(Items(10_000), _execution())
    next(stream)
    stream.close()
    time.sleep(0.05)
    assert not any(t.name == "bench-batches" for t in threading.enumerate())
