"""bench/parallel.py: the step's network calls as one module in DistributedDataParallel, and
`StageRun.step` through it against `StageRun.step` alone, in a one-process gloo group."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as td
from test_train import PROFILE, ToyMethod, ToySet

from bench import parallel
from bench.parallel import RankSyncedBatchNorm, StageForward, data_parallel, sync_batch_norms
from bench.train import Dist, open_stage


@pytest.fixture
def one_process_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = td.TCPStore("127.0.0.1", port, 1, is_master=True)
    td.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    td.destroy_process_group()


def _session(tmp_path, name):
    method = ToyMethod()
    stage = method.stages[1]  # two components, one Adam group each
    run = open_stage(method, stage, PROFILE, tmp_path / "set", 0, tmp_path / name, torch.device("cpu"),
                     {"a": "a-key"}, Dist(0, 1, 0), log=lambda *a: None)
    run.build_networks()
    return run


def test_stage_forward_is_the_stage_loss_over_the_stages_networks():
    method = ToyMethod()
    nets = method.build()
    batch = {k: v[None] for k, v in ToySet()[(0, 1)].items() if torch.is_tensor(v)}  # a batch of one
    module = StageForward(method, method.stages[1], nets)
    assert {id(p) for p in module.parameters()} == {id(p) for p in nets.parameters()}
    loss, logs = module(batch)
    expected, _ = method.stage_loss(method.stages[1], nets, batch)
    assert torch.equal(loss, expected) and set(logs) == {"l1"}


def test_a_step_through_ddp_in_one_process_gives_the_weights_of_a_step_alone(tmp_path, one_process_group):
    alone, parallel = _session(tmp_path, "alone"), _session(tmp_path, "parallel")
    ddp = data_parallel(parallel.method, parallel.stage, parallel.nets, parallel.device)
    parallel.parallel = ddp
    losses = []
    with alone.batches(ToySet(), 0, 4) as batches:
        for it in range(4):
            data = next(batches)
            losses.append((alone.step(it, data, None), parallel.step(it, data, None)))
    assert parallel.parallel is ddp  # the DDP module the steps went through
    for a, b in losses:
        assert a == b
    for name in ("f", "g"):
        for p, q in zip(alone.nets[name].parameters(), parallel.nets[name].parameters(), strict=True):
            assert torch.equal(p, q)
    rates = [[g["lr"] for g in run.optimizer.param_groups] for run in (alone, parallel)]
    assert rates[0] == rates[1]
    moved = [not torch.equal(p, q) for p, q in zip(alone.nets["f"].parameters(),
                                                   _session(tmp_path, "fresh").nets["f"].parameters(),
                                                   strict=True)]
    assert any(moved)  # the four steps trained


def _bie_like():
    return torch.nn.ModuleDict({"bie": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
                                                           torch.nn.BatchNorm2d(4))})


def test_batch_norms_become_synchronised_ones_holding_the_same_tensors():
    cpu, gpu = _bie_like(), _bie_like()
    tensors = [(n["bie"][1].weight, n["bie"][1].running_mean) for n in (cpu, gpu)]
    sync_batch_norms(cpu, torch.device("cpu"))
    sync_batch_norms(gpu, torch.device("cuda"))  # no tensor moves: the modules are replaced, not run
    assert type(cpu["bie"][1]) is RankSyncedBatchNorm and type(gpu["bie"][1]) is torch.nn.SyncBatchNorm
    for nets, (weight, mean) in zip((cpu, gpu), tensors, strict=True):
        assert nets["bie"][1].weight is weight and nets["bie"][1].running_mean is mean
        assert list(nets.state_dict()) == list(_bie_like().state_dict())  # checkpoints keep their keys


def test_rank_synced_batch_norm_of_one_process_is_batch_norm(one_process_group):
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm2d(4)
    plain.weight.data.uniform_(0.5, 1.5)
    plain.bias.data.uniform_(-0.5, 0.5)
    synced = RankSyncedBatchNorm(4)
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(6, 4, 5, 7) * 3 + 1  # (b, c, h, w)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    parallel._IN_STEP = True  # as inside a step (StageForward.forward)
    try:
        for _ in range(2):  # two updates of the running statistics
            ya, yb = plain(xa), synced(xb)
    finally:
        parallel._IN_STEP = False
    (ya * torch.arange(ya.numel()).view_as(ya).sin()).sum().backward()
    (yb * torch.arange(yb.numel()).view_as(yb).sin()).sum().backward()
    assert torch.allclose(ya, yb, atol=1e-5) and torch.allclose(xa.grad, xb.grad, atol=1e-5)
    assert torch.allclose(plain.weight.grad, synced.weight.grad, atol=1e-4)
    for key, value in plain.state_dict().items():
        assert torch.allclose(value.float(), synced.state_dict()[key].float(), atol=1e-6), key
