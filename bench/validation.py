"""Learning curves on held-out data: every stage scores one fixed validation batch at regular intervals
(`train.val_every`), so a reader sees whether a stage had converged when its budget ran out.

The batch comes from the prepared set's **test** split, with fixed crops: no flip, zoom 1 where the frame
allows it, positions drawn from a fixed seed, the samples spread evenly over the split. It is the same for
every stage, seed and method trained on one set at one crop size, and it is a curve for the reader only:
nothing is selected on it (no early stopping, no choice of checkpoint, no tuning), so the test metrics
computed afterwards are not biased by it.

What a stage scores depends on its batch kind, as the registry declares it (`Stage.batch`):

- deblurring stages (`"deblur"`: the DM, srn, jin2018's centre network): the PSNR in dB of the method's
  deblurring output (`Method.deblur`), rounded to uint8 as the evaluation does, against the central sharp
  frame (`bench.metrics.psnr`, mean over the samples); the blurred input's PSNR is the reference line.
- video stages: the stage's own training loss on the batch (no gradients, a fixed random stream), with no
  reference line.

Scores are taken in float32 without autocast, whatever precision the stage trains in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.data.loaders import TrainSet, collate, to_float
from bench.data.manifest import load_manifest
from bench.execution import on_device
from bench.metrics import psnr, to_uint8

if TYPE_CHECKING:
    from methods.registry import MethodAPI, Stage

SPLIT = "test"  # where the validation batch comes from (see the module docstring)
STREAM = "validation"  # name of its fixed crop positions


def deblurring(stage: Stage) -> bool:
    """A stage that trains a deblurring network on the deblurring batch (blur and central frame)."""
    return stage.batch == "deblur" and {"blur", "center"} <= set(stage.objective.fields)


def validation_set(set_folder: Path, crop: int, fields: tuple[str, ...]) -> Any:
    """The test split as fixed crops of the profile's size: no flip, zoom 1 unless the frame is smaller."""
    h, w = load_manifest(set_folder)["resolution"]
    return TrainSet(set_folder, crop, zoom=(1.0, max(1.0, crop / min(h, w))), flip=False, split=SPLIT,
                    fields=fields)


def validation_batch(testset: Any, samples: int, fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """`samples` items spread evenly over the split (repeating only when it holds fewer), as one batch of
    `fields` (`bench.data.loaders.collate`: uint8 images, converted on the device like a training batch)."""
    count = len(testset)
    keys = [((i * count) // samples if samples <= count else i % count, i) for i in range(samples)]
    return collate(testset, keys, fields)


@dataclass
class Validation:
    """A stage's validation batch and its curve."""

    metric: str  # "deblur_psnr" (dB) or "loss" (the stage's own)
    batch: dict[str, torch.Tensor]  # on the CPU, as the loader made it
    reference: float | None = None  # the blurred input's PSNR (deblurring stages)
    points: list[list[float]] = field(default_factory=list)  # [iteration, score]

    @classmethod
    def of(cls, stage: Stage, batch: dict[str, torch.Tensor]) -> Validation:
        if deblurring(stage):
            data = to_float(batch)
            return cls("deblur_psnr", batch, _finite(mean_psnr(data["blur"], data["center"])))
        return cls("loss", batch)

    def record(self, iteration: int, value: float) -> None:
        """Add a point; a score without a finite value (identical images: infinite PSNR) is stored as null,
        as the evaluation stores it."""
        self.points.append([int(iteration), _finite(value)])

    def summary(self) -> dict:
        """What stage.json and the run's metrics.json store."""
        return {"metric": self.metric, "unit": "dB" if self.metric == "deblur_psnr" else "",
                "split": SPLIT, "samples": int(next(iter(self.batch.values())).shape[0]),
                "reference": self.reference,
                "reference_what": "blurred input" if self.reference is not None else None,
                "points": self.points}

    def score(self, method: MethodAPI, stage: Stage, nets: nn.ModuleDict, device: torch.device,
              loss_fn: Any) -> float:
        """The stage's score now; `loss_fn(data)` is the stage loss on a batch (`bench.train.probe_loss`)."""
        if self.metric == "loss":
            return loss_fn(self.batch)
        data = on_device(self.batch, device)
        out = method.deblur(nets, data["blur"])  # (b, 3, c, c), eval mode, no gradients
        return mean_psnr(out.float(), data["center"])


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def mean_psnr(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean over the batch of the PSNR (dB) of uint8-rounded images `(b, 3, h, w)` in [0, 1]."""
    a, b = to_uint8(pred).cpu().numpy(), to_uint8(true).cpu().numpy()
    return float(sum(psnr(x, y) for x, y in zip(a, b, strict=True)) / len(a))
