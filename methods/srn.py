"""`srn`: a re-implementation of SRN-DeblurNet (Tao et al. 2018, the paper's [34]), the deblurring anchor of
Table 1, trained here on the same data and budget as the DM.

Structure (Tao et al. Sec. 3): three scales (1/4, 1/2, 1) solved coarse to fine by ONE network whose weights
all scales share. Each scale reads the blurred image at that scale concatenated with the previous scale's
estimate upsampled (the blurred image itself at the coarsest). Encoder-decoder: InBlock (5x5 conv to w, then
3 ResBlocks), two EBlocks (5x5 stride-2 conv doubling the channels, 3 ResBlocks), a ConvLSTM at the
bottleneck (1/4 of the scale, its state carried across scales and upsampled), two DBlocks (3 ResBlocks, 4x4
stride-2 deconvolution halving the channels) and an OutBlock (3 ResBlocks, 5x5 conv to RGB), with additive
skips between encoder and decoder of the same size. ResBlocks: 5x5 conv, ReLU, 5x5 conv, plus input.

Decisions: w = 32 (so 32/64/128 channels) as Tao et al.; 3x3 ConvLSTM with 128 hidden channels. Down-scaled
blurred inputs are area averages, upsampling is bilinear. Loss: the sum over scales of the mean squared
error against the central sharp frame at that scale (Tao et al.'s Euclidean loss with equal weights).
Size: 8.06 M parameters, 32.2 MB (10^6 bytes); without the ConvLSTM 6.88 M, 27.5 MB: the paper's Table 1
figure matches SRN-DeblurNet's released model without the LSTM, and we keep the LSTM its paper describes.
The video of `srn` is its deblurred frame repeated N times (it predicts no motion).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.common import LR, repeat_frames
from methods.layers import ConvLSTMCell, ResBlock, downsample
from methods.registry import Claim, Component, Method, Objective, PaperFigure, Prediction, Stage, register

DEFAULT_WIDTH = 32


def _res_stack(channels: int, blocks: int = 3) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels, 5, slope=0.0) for _ in range(blocks)))


class SRN(nn.Module):
    """SRN-DeblurNet (Tao et al. 2018): scale-recurrent encoder-decoder with a ConvLSTM bottleneck."""

    def __init__(self, width: int = DEFAULT_WIDTH, scales: int = 3, lstm: bool = True) -> None:
        super().__init__()
        w = width
        self.scales = scales
        self.inblock = nn.Sequential(nn.Conv2d(6, w, 5, padding=2), nn.ReLU(inplace=True), _res_stack(w))
        self.eblock1 = nn.Sequential(nn.Conv2d(w, 2 * w, 5, stride=2, padding=2), nn.ReLU(inplace=True),
                                     _res_stack(2 * w))
        self.eblock2 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 5, stride=2, padding=2), nn.ReLU(inplace=True),
                                     _res_stack(4 * w))
        self.cell = ConvLSTMCell(4 * w, 4 * w, 3) if lstm else None
        self.dblock2 = nn.Sequential(_res_stack(4 * w), nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, padding=1),
                                     nn.ReLU(inplace=True))
        self.dblock1 = nn.Sequential(_res_stack(2 * w), nn.ConvTranspose2d(2 * w, w, 4, 2, padding=1),
                                     nn.ReLU(inplace=True))
        self.outblock = nn.Sequential(_res_stack(w), nn.Conv2d(w, 3, 5, padding=2))

    def forward(self, blur: Tensor) -> list[Tensor]:
        """blur (b, 3, h, w), h and w multiples of 4 * 2^(scales-1) -> estimates per scale, coarse -> fine."""
        outs: list[Tensor] = []
        state = None
        prev = None
        for s in reversed(range(self.scales)):
            inp = downsample(blur, 2 ** s)  # (b, 3, h/2^s, w/2^s)
            prev = inp if prev is None else F.interpolate(prev, size=inp.shape[-2:], mode="bilinear",
                                                          align_corners=False)
            e0 = self.inblock(torch.cat([inp, prev], dim=1))  # (b, w, ...)
            e1 = self.eblock1(e0)  # (b, 2w, /2)
            e2 = self.eblock2(e1)  # (b, 4w, /4)
            if self.cell is not None:
                if state is not None:  # carry the LSTM state to the finer scale
                    state = tuple(F.interpolate(t, size=e2.shape[-2:], mode="bilinear", align_corners=False)
                                  for t in state)
                state = self.cell(e2, state)
                e2 = state[0]
            d1 = self.dblock2(e2) + e1  # (b, 2w, /2)
            d0 = self.dblock1(d1) + e0  # (b, w, ...)
            prev = self.outblock(d0)  # (b, 3, ...)
            outs.append(prev)
        return outs


def srn_loss(method: Method, stage: Stage, nets: nn.ModuleDict, batch: dict[str, Tensor]
             ) -> tuple[Tensor, dict[str, float]]:
    """Tao et al.'s multi-scale Euclidean loss: sum over scales of MSE to the central frame at that scale."""
    center = batch["center"]  # (b, 3, c, c)
    outs = nets["srn"](batch["blur"])
    total = center.new_zeros(())
    logs: dict[str, float] = {}
    for k, out in enumerate(outs):
        factor = 2 ** (len(outs) - 1 - k)
        mse = F.mse_loss(out, downsample(center, factor))
        total = total + mse
        logs[f"mse_s{factor}"] = float(mse.detach())
    logs["loss"] = float(total.detach())
    return total, logs


SRN_LOSS = Objective("srn", srn_loss, fields=("blur", "center"))


def deblur_srn(nets: nn.ModuleDict, blur: Tensor) -> Tensor:
    return nets["srn"](blur)[-1].clamp(0, 1)  # (b, 3, h, w): the finest scale


def predict_srn(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None
                ) -> Prediction:
    deblurred = deblur_srn(nets, blur)  # (b, 3, h, w)
    return Prediction(deblurred=deblurred, frames=repeat_frames(deblurred, n), flows=None)


# Table 1: the DM against SRN-DeblurNet. The DM's size is `ours-static`'s, whose only network is the DM.
TABLE1_CLAIMS = (
    Claim("DM beats SRN in PSNR", "Table 1", "deblur_psnr", frames="deblur"),
    Claim("DM beats SRN in SSIM", "Table 1", "deblur_ssim", frames="deblur"),
    Claim("DM is smaller than SRN", "Table 1", "size_mb", better="ours-static", frames="deblur", kind="size"),
    Claim("DM is faster than SRN", "Table 1", "runtime_deblur_s", frames="deblur", kind="speed"),
)
# Table 1's SRN-DeblurNet [34] column (GPU; the size without its ConvLSTM).
TABLE1_PAPER = (PaperFigure("deblur_psnr", 30.10, "Table 1"), PaperFigure("deblur_ssim", 0.933, "Table 1"),
                PaperFigure("runtime_deblur_s", 0.4, "Table 1"), PaperFigure("size_mb", 27.5, "Table 1"))

register(Method(
    name="srn", family="baseline",
    description="SRN-DeblurNet (Tao et al. 2018) re-implemented; its frame repeated N times",
    components={"srn": Component(SRN, {}, {"width": "srn_width"}, channels_last_train=True)},
    stages=(Stage("srn", trains=("srn",), lr={"srn": LR}, objective=SRN_LOSS, batch="deblur",
                  iters_keys=("iters_dm",)),),
    predictor=predict_srn, deblurrer=deblur_srn, claims=TABLE1_CLAIMS, deblur_column="srn", still=True,
    paper=TABLE1_PAPER))
