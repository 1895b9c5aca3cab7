"""What several methods share: the paper's learning rates, the DM as a component and a training stage, the
deblurring objective, the DM deblurrer, the still video and the paper's Table 1 figures of the DM.

`ours`, `ours-static` and every variant that keeps the DM train the same `dm` stage (one checkpoint for all);
jin2018's centre network and the DM minimise the same L1 deblurring objective (Sec. 3.1).
"""

from __future__ import annotations

from torch import Tensor, nn

from methods.dm import DM
from methods.losses import deblur_l1
from methods.registry import Component, Method, Objective, PaperFigure, Stage

LR = 1e-4  # Adam learning rate of every network (Sec. 3.1)
LR_RVD_STAGE2 = 2e-5  # RVD learning rate while training BIE-RVD (Sec. 3.1)

DM_WIDTHS = {"width": "dm_width", "growth": "dm_growth", "rdbs": "dm_rdbs"}  # DM argument -> profile key
VIDEO_WIDTHS = {"width": "video_width"}  # RVE / RVD / BIE argument -> profile key


def repeat_frames(image: Tensor, n: int) -> Tensor:
    """(b, 3, h, w) -> (b, n, 3, h, w), a still video (a view, no copy)."""
    return image.unsqueeze(1).expand(-1, n, -1, -1, -1)


def deblur_dm(nets: nn.ModuleDict, blur: Tensor) -> Tensor:
    """The DM's estimate of the central frame, clamped to the image range the BIE and RVD read."""
    return nets["dm"](blur).clamp(0, 1)  # (b, 3, h, w)


def deblur_loss(method: Method, stage: Stage, nets: nn.ModuleDict, batch: dict[str, Tensor]
                ) -> tuple[Tensor, dict[str, float]]:
    """L1 between the stage's deblurring network output and the central sharp frame."""
    loss = deblur_l1(nets[stage.trains[0]](batch["blur"]), batch["center"])  # (b, 3, c, c) each
    return loss, {"loss": float(loss.detach())}


DEBLUR = Objective("deblur", deblur_loss, fields=("blur", "center"))


def dm_component(kwargs: dict | None = None) -> Component:
    """The DM with keyword overrides (an ablation's blocks or growth), channels-last in training and at
    inference."""
    return Component(DM, kwargs or {}, DM_WIDTHS, channels_last=True, channels_last_train=True)


# Table 1's "Ours" column: the DM alone (`ours`'s deblurring, `ours-static`'s only network). Seconds per
# 1280x704 image on a GPU, whether CUDA was synchronised not stated; MB as printed (10^6 or 2^20 not said).
DM_PAPER = (PaperFigure("deblur_psnr", 30.58, "Table 1"), PaperFigure("deblur_ssim", 0.941, "Table 1"),
            PaperFigure("runtime_deblur_s", 0.02, "Table 1"), PaperFigure("size_mb", 17.9, "Table 1"))

DM_STAGE = Stage("dm", trains=("dm",), lr={"dm": LR}, objective=DEBLUR, batch="deblur",
                 iters_keys=("iters_dm",))
