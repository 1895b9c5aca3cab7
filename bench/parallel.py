"""Data parallelism of one training stage under torchrun (`bench run --nproc K`): PyTorch's
DistributedDataParallel (DDP; Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training", VLDB 2020) around one module per stage.

DDP averages gradients with an all-reduce per bucket of parameters (25 MB), started from autograd hooks as
soon as every gradient of the bucket is ready, so communication overlaps the rest of the backward pass. Its
hooks sit on the parameters, but it prepares a backward only for what runs inside its own `forward`. A stage's
step calls several networks (RVE then RVD, BIE then RVD, Jin's chain), some several times (the recurrent
decoder's cell once per frame), and its objective calls them however it likes; so the wrapped module is the
whole step's network part, `StageForward`, whose `forward(batch)` is the stage's loss. `static_graph=True`
tells DDP that every iteration uses the same parameters the same number of times (true of every registered
stage: no branch depends on the data), which lets it reuse parameters within one forward and skip the search
for unused ones.

Batch norm (the BIE) normalises with the statistics of the whole global batch, as one process does:
PyTorch's SyncBatchNorm on CUDA, `RankSyncedBatchNorm` (a differentiable all-reduce of per-channel sums) on
gloo, since SyncBatchNorm runs on accelerators only. Every rank then holds the same running statistics;
rank 0's are the ones checkpointed.

`bench.train.StageRun.step` uses it under torchrun; the wrapper holds the stage's networks by
reference, so the optimiser, the checkpoints (state dicts of the components, no `module.` prefix) and the
validation on rank 0 see the same tensors.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed.nn as dist_nn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

if TYPE_CHECKING:
    from methods.registry import MethodAPI, Stage


_IN_STEP = False  # inside a distributed step's forward, where every rank runs the same network calls


class StageForward(nn.Module):
    """The network calls of one training step as one module: forward(batch) -> (loss, float logs)."""

    def __init__(self, method: MethodAPI, stage: Stage, nets: nn.ModuleDict) -> None:
        super().__init__()
        self.method, self.stage = method, stage
        self.nets = nets  # the stage's networks themselves (registered, so DDP reaches their parameters)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        global _IN_STEP
        _IN_STEP = True  # every rank is here at once: collectives inside the step are safe
        try:
            return self.method.stage_loss(self.stage, self.nets, batch)
        finally:
            _IN_STEP = False


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over the ranks, differentiable (the backward pass sums the gradients the same way)."""
    with warnings.catch_warnings():  # deprecated for a private successor; this one is differentiable
        warnings.simplefilter("ignore", FutureWarning)
        return dist_nn.all_reduce(t)


class RankSyncedBatchNorm(nn.BatchNorm2d):
    """2-D batch norm whose training statistics cover every rank's share of the batch, as one process
    computes them on the global batch: the per-channel sums, then the squared deviations from the global
    mean, go through a differentiable
    all-reduce (so the backward pass, too, sees the global statistics). PyTorch's SyncBatchNorm does this on
    accelerators only; this one runs wherever the process group does (gloo on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, h, w) -> (b, c, h, w)
        if not self.training or not _IN_STEP:  # rank 0's probe and validation run alone: local statistics
            return super().forward(x)
        c, shape = x.shape[1], (1, x.shape[1], 1, 1)
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        sums = _all_reduce(torch.cat([x.sum((0, 2, 3)), count]))  # (c+1,)
        n = sums[-1]
        mean = sums[:c] / n  # (c,)
        # Two passes, as one process's batch norm: the spread about the global mean, not E[x^2] - E[x]^2.
        var = _all_reduce(((x - mean.view(shape)) ** 2).sum((0, 2, 3))) / n  # (c,) biased
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)  # unbiased, as torch
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def _rank_synced(module: nn.Module) -> None:
    """Every BatchNorm2d child of `module`, recursively, replaced by a RankSyncedBatchNorm holding the same
    parameter and buffer tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = RankSyncedBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                         child.track_running_stats)
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            _rank_synced(child)


def sync_batch_norms(nets: nn.ModuleDict, device: torch.device) -> None:
    """Every batch norm of `nets` becomes one whose statistics cover the global batch, holding the same
    parameter and buffer tensors (so Adam and the checkpoints see no change): PyTorch's SyncBatchNorm on
    CUDA, `RankSyncedBatchNorm` elsewhere."""
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(nets)
    else:
        _rank_synced(nets)


def data_parallel(method: MethodAPI, stage: Stage, nets: nn.ModuleDict, device: torch.device
                  ) -> DistributedDataParallel:
    """The stage's `StageForward` in DDP (a collective: every rank calls it at the same point). Construction
    broadcasts rank 0's parameters and buffers, so the ranks start equal. The stage's batch norms first
    become ones whose statistics cover the global batch (`sync_batch_norms`), as in one process."""
    sync_batch_norms(nets, device)
    return DistributedDataParallel(StageForward(method, stage, nets), static_graph=True,
                                   device_ids=[device.index] if device.type == "cuda" else None)
