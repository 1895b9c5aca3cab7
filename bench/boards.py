"""TensorBoard event files of a run's stages (`bench run --tensorboard`), to watch long runs while they train.

One event file per trained stage, under `<run folder>/tensorboard/<stage>/`, written on rank 0 as the stage
trains (TensorBoard's own writer, `torch.utils.tensorboard.SummaryWriter`; the `tensorboard` package is the
optional extra `.[tensorboard]`). `tensorboard --logdir runs/<run>/tensorboard` shows:

- scalars every `train.log_every` iterations and at the last, over the iterations since the last point
  (the window of the loss curve in `stage.json`): `train/loss` (the mean loss over ranks),
  `train/lr/<component>` (each Adam group's rate after the schedule), `train/samples_per_s` (the stage's
  global batch over the step time) and `train/data_wait_share` (the share of the step time spent waiting
  for the batch);
- at every validation point (`bench.validation`: at 0, every `train.val_every`, the end): the score as
  `validation/<metric>` (`deblur_psnr` in dB, or the stage's `loss`) and the image `validation/grid`, one
  row per validation sample (at most `GRID_ROWS`): the blurred input, the predicted frames, the true frames
  (deblurring stages: the blurred input, the deblurred image, the true central frame). Video stages predict
  with the method's test-time path fed the true central frame, as they train (Sec. 2.3). A stage whose batch
  holds no blurred image (the autoencoder of stage 1, which rebuilds sharp frames from sharp frames) logs
  the score without a grid.

A resumed stage writes a new event file in the same folder, opened with `purge_step` at its first point, so
TensorBoard drops what the killed session had logged past the checkpoint. The files are logs for people:
appended as training goes, read by nothing in bench, and no part of a stage key or run id.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchvision.utils import make_grid

from bench.errors import BenchError
from bench.execution import on_device
from bench.validation import deblurring

if TYPE_CHECKING:
    from bench.validation import Validation
    from methods.registry import MethodAPI, Stage

FOLDER = "tensorboard"  # under the run folder
GRID_ROWS = 4  # validation samples shown in the grid


def require_tensorboard() -> None:
    """Refuse `--tensorboard` in one line where the optional package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise BenchError("--tensorboard needs the tensorboard package: pip install -e '.[tensorboard]' "
                         "(or leave --tensorboard out)")


class Boards:
    """The event folders of one run: `stage` opens a stage's board and closes the one before it."""

    def __init__(self, run_folder: Path, log_every: int) -> None:
        require_tensorboard()
        self.root, self.log_every = Path(run_folder) / FOLDER, log_every
        self.current: StageBoard | None = None

    def stage(self, stage: Stage, batch: int, total: int) -> StageBoard:
        """The board of `stage` (global batch `batch`, `total` iterations)."""
        self.close()
        self.current = StageBoard(self.root / stage.name, batch, self.log_every, total)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def __enter__(self) -> Boards:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StageBoard:
    """One stage's event file: `step` after every iteration, `validation` at every validation point."""

    def __init__(self, folder: Path, batch: int, log_every: int, total: int) -> None:
        self.folder, self.batch, self.log_every, self.total = folder, batch, log_every, total
        self.writer: Any = None  # opened at the first point (its step is the purge step of a resume)
        self.window = [0.0, 0.0, 0.0, 0]  # loss sum, wait seconds, step seconds, iterations

    def _writer(self, first_step: int) -> Any:
        if self.writer is None:
            # late: the optional extra (`require_tensorboard` checked it when the run began)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder), purge_step=first_step, flush_secs=30)
        return self.writer

    def step(self, done: int, loss: float, wait_s: float, step_s: float, groups: list[dict]) -> None:
        """Iteration `done` (1-based) finished; every `log_every` and at the end, as the loss curve, the
        window's scalars are written."""
        w = self.window
        self.window = w = [w[0] + loss, w[1] + wait_s, w[2] + step_s, w[3] + 1]
        if done % self.log_every and done != self.total:
            return
        writer = self._writer(done)
        writer.add_scalar("train/loss", w[0] / w[3], done)
        for group in groups:
            writer.add_scalar(f"train/lr/{group.get('name', 'all')}", group["lr"], done)
        if w[2] > 0:
            writer.add_scalar("train/samples_per_s", self.batch * w[3] / w[2], done)
            writer.add_scalar("train/data_wait_share", w[1] / w[2], done)
        self.window = [0.0, 0.0, 0.0, 0]

    def validation(self, iteration: int, validation: Validation, method: MethodAPI, stage: Stage,
                   nets: nn.ModuleDict, device: torch.device) -> None:
        """The validation point just recorded, and the grid of the networks' outputs on its batch."""
        writer = self._writer(iteration)
        score = validation.points[-1][1]
        writer.add_scalar(f"validation/{validation.metric}", float("nan") if score is None else score,
                          iteration)
        grid = validation_grid(method, stage, nets, validation.batch, device)
        if grid is not None:
            writer.add_image("validation/grid", grid, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def validation_grid(method: MethodAPI, stage: Stage, nets: nn.ModuleDict, batch: dict[str, torch.Tensor],
                    device: torch.device) -> torch.Tensor | None:
    """(3, H, W) in [0, 1]: per sample, the blurred input, the prediction, the truth (module docstring);
    None for a batch without a blurred image. Float32, eval mode, and the training RNG left untouched."""
    data = on_device({k: v[:GRID_ROWS] for k, v in batch.items()}, device)
    if "blur" not in data:
        return None
    blur = data["blur"]  # (b, 3, h, w)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        if deblurring(stage):
            deblurred = method.deblur(nets, blur).float()  # (b, 3, h, w)
            tiles = torch.stack([blur, deblurred, data["center"]], 1)  # (b, 3, 3, h, w)
        else:
            sharp = data["sharp"]  # (b, n, 3, h, w)
            n = sharp.shape[1]
            frames = method.predict(nets, blur, n, center=sharp[:, n // 2]).frames.float()  # (b, n, 3, h, w)
            tiles = torch.cat([blur[:, None], frames, sharp], 1)  # (b, 1 + 2n, 3, h, w)
    return make_grid(tiles.clamp(0, 1).flatten(0, 1).cpu(), nrow=tiles.shape[1], padding=2)
