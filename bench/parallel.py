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

Batch norm (the BIE) normalises with the statistics of the global batch on CUDA (SyncBatchNorm) and with
each rank's own share elsewhere, as it did before DDP (SyncBatchNorm runs on accelerators only); DDP
broadcasts rank 0's running statistics before each forward, and rank 0's are the ones checkpointed, so
the stored weights are rank 0's.

`bench.train.StageRun.step` uses it under torchrun; the wrapper holds the stage's networks by
reference, so the optimiser, the checkpoints (state dicts of the components, no `module.` prefix) and the
validation on rank 0 see the same tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

if TYPE_CHECKING:
    from methods.registry import MethodAPI, Stage


class StageForward(nn.Module):
    """The network calls of one training step as one module: forward(batch) -> (loss, float logs)."""

    def __init__(self, method: MethodAPI, stage: Stage, nets: nn.ModuleDict) -> None:
        super().__init__()
        self.method, self.stage = method, stage
        self.nets = nets  # the stage's networks themselves (registered, so DDP reaches their parameters)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        return self.method.stage_loss(self.stage, self.nets, batch)


def sync_batch_norms(nets: nn.ModuleDict, device: torch.device) -> None:
    """On CUDA, every batch norm of `nets` becomes a SyncBatchNorm holding the same parameter and buffer
    tensors (so Adam and the checkpoints see no change); elsewhere nothing changes."""
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(nets)


def data_parallel(method: MethodAPI, stage: Stage, nets: nn.ModuleDict, device: torch.device
                  ) -> DistributedDataParallel:
    """The stage's `StageForward` in DDP (a collective: every rank calls it at the same point). Construction
    broadcasts rank 0's parameters and buffers, so the ranks start equal. On CUDA the stage's batch norms
    become SyncBatchNorm (the same parameters and buffers, so Adam and the checkpoints are untouched): their
    statistics then cover the global batch, as in one process; SyncBatchNorm refuses CPU tensors, so gloo
    runs keep each rank's statistics."""
    sync_batch_norms(nets, device)
    return DistributedDataParallel(StageForward(method, stage, nets), static_graph=True,
                                   device_ids=[device.index] if device.type == "cuda" else None)
