"""BIE, the Blurred Image Encoder (Sec. 2.3, Fig. 2b).

Decisions the paper leaves open (Fig. 2b gives kernel sizes we cannot read from the text):

- 7 conv layers, kernels 7, 5, 5, 3, 3, 3, 3, strides 1, 2, 2, 2, 1, 1, 1, channels width * (1, 2, 4, 8, 8, 8)
  and a last layer of 2 * 8 * width channels split into the ConvLSTM state (h, c) at 1/8 resolution, the
  shape the RVD's cell expects (Eq. 1 with the BIE in place of the RVE). About 0.73 M parameters at width 16
  (the design's budget: about 0.7 M).
- Batch norm + leaky ReLU (slope 0.2) after every layer but the last (the paper); the last is linear, so h
  and c are unbounded, as a ConvLSTM's c is.
- Input: the blurred image concatenated with the central sharp frame (the true one in training, the DM's
  estimate at test time); `sharp=False` (the ablation) reads the blurred image only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.layers import LEAKY_SLOPE

DEFAULT_WIDTH = 16
KERNELS = (7, 5, 5, 3, 3, 3, 3)
STRIDES = (1, 2, 2, 2, 1, 1, 1)
WIDTHS = (1, 2, 4, 8, 8, 8)  # multiples of width for layers 1-6; layer 7 outputs 16 * width (h and c)


class BIE(nn.Module):
    """Blurred Image Encoder (Sec. 2.3, Fig. 2b): (blur ++ central frame) -> ConvLSTM state (h, c)."""

    def __init__(self, width: int = DEFAULT_WIDTH, sharp: bool = True) -> None:
        super().__init__()
        self.sharp = sharp
        chans = [6 if sharp else 3] + [m * width for m in WIDTHS] + [16 * width]
        layers: list[nn.Module] = []
        for i, (k, s) in enumerate(zip(KERNELS, STRIDES, strict=True)):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], k, stride=s, padding=k // 2, bias=i == 6))
            if i < 6:  # all but the last: batch norm + leaky ReLU
                layers += [nn.BatchNorm2d(chans[i + 1]), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, blur: Tensor, center: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = torch.cat([blur, center], dim=1) if self.sharp else blur  # (b, 6 or 3, h, w)
        h, c = self.net(x).chunk(2, dim=1)  # each (b, 8w, h/8, w/8)
        return h, c
