"""DM, the deblurring module (Sec. 2.5, Fig. 4): blurred image -> estimate of the central sharp frame.

Decisions the paper leaves open (Fig. 4 gives the topology, not the widths):

- Space-to-depth by 2 at the input, so the three encoder sub-scales are 1/2, 1/4 and 1/8 of the input and
  the three up-sampling blocks return to full resolution, where the two output convolutions sit. Sizes must
  be multiples of 8 (the suite pads to 16).
- Widths (width w): 32 / 64 / 256 channels at 1/2 / 1/4 / 1/8. The encoder is asymmetric (the paper's
  words): most parameters sit at 1/8 resolution, where they cost 64 times fewer multiply-accumulates per
  pixel than at full size; this is what makes the DM fast.
- Growth rate g is the rate at 1/8 (default 64); the finer scales use g scaled with their width
  (g/8 and g/4), so one number sweeps the whole encoder. `rdbs` (default 4) RDBs at 1/8, rdbs/2 at 1/4 and
  rdbs/4 at 1/2 (at least 1 each): thin convolutions at fine scales cost far more time per
  multiply-accumulate on a CPU than wide ones at 1/8, measured. Each RDB has 4 conv layers and residual
  scaling 0.2 (EDSR [20]). `growth_ratio` multiplies g (the growth-rate sweep).
- Up-sampling block = 1x1 bottleneck halving the channels, then a 4x4 stride-2 deconvolution. Projection
  skips are 1x1 convolutions added to the decoder features of the same scale. A leaky ReLU (slope 0.2; the
  paper says only "a non-linearity") after every convolution except the last and the RDBs' 1x1 fusion (a
  residual branch); leaky so no unit can die, which narrow test-size DMs showed. No normalisation layers.
- The output is added to the blurred input (global residual), so an untrained DM starts near the identity.
- Default size: 4.27 M parameters, 17.1 MB float32 (MB = 10^6 bytes) against the paper's 17.9 MB.
- `block="res"` (ablation): each RDB becomes `layers/2` plain ResBlocks (the same number of 3x3 convs) whose
  inner width is solved so each block has the RDB's parameter count: equal size, no dense connections.
"""

from __future__ import annotations

from torch import Tensor, nn

from methods.layers import LEAKY_SLOPE, RDB, ResBlock, count_params, space_to_depth

DEFAULT_WIDTH = 32
DEFAULT_GROWTH = 64
DEFAULT_RDBS = 4
PAPER_MB = 17.9  # Table 1, float32 parameters


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


def _matched_resblocks(channels: int, growth: int, layers: int, res_scale: float) -> nn.Sequential:
    """Plain ResBlocks with as many 3x3 convs and (within rounding) as many parameters as one RDB."""
    target = count_params(RDB(channels, growth, layers))
    k = max(1, layers // 2)
    # k * (2 * 9 * c * mid + mid + c) = target, solved for the inner width.
    mid = max(1, round((target / k - channels) / (18 * channels + 1)))
    return nn.Sequential(*(ResBlock(channels, 3, mid=mid, res_scale=res_scale) for _ in range(k)))


class UpBlock(nn.Module):
    """Decoder up-sampling block (Sec. 2.5): 1x1 bottleneck [12] then a 4x4 stride-2 deconvolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = max(1, in_channels // 2)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1), _act(),
            nn.ConvTranspose2d(mid, out_channels, 4, stride=2, padding=1), _act(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (b, out, 2h, 2w)


class DM(nn.Module):
    """Deblurring module (Sec. 2.5, Fig. 4): space-to-depth, RDB encoder at 3 sub-scales, bottleneck+deconv
    up-sampling, projection skips, two output convolutions, residual scaling, no normalisation."""

    def __init__(self, width: int = DEFAULT_WIDTH, growth: int = DEFAULT_GROWTH, rdbs: int = DEFAULT_RDBS,
                 block: str = "rdb", growth_ratio: float = 1.0, layers: int = 4,
                 res_scale: float = 0.2) -> None:
        super().__init__()
        if block not in ("rdb", "res"):
            raise ValueError(f"DM block must be 'rdb' or 'res', not {block!r}")
        chans = (width, 2 * width, 8 * width)  # at 1/2, 1/4, 1/8
        top_growth = max(1, round(growth * growth_ratio))
        growths = tuple(max(1, round(top_growth * c / chans[2])) for c in chans)
        out_mid = max(4, width // 2)

        counts = (max(1, rdbs // 4), max(1, rdbs // 2), rdbs)  # at 1/2, 1/4, 1/8: thin fine scales are slow

        def stage(c: int, g: int, k: int) -> nn.Sequential:
            if block == "rdb":
                return nn.Sequential(*(RDB(c, g, layers, res_scale) for _ in range(k)))
            return nn.Sequential(*(_matched_resblocks(c, g, layers, res_scale) for _ in range(k)))

        self.head = nn.Sequential(nn.Conv2d(12, chans[0], 3, padding=1), _act())
        self.enc = nn.ModuleList(stage(c, g, k) for c, g, k in zip(chans, growths, counts, strict=True))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, 2, padding=1), _act()) for i in range(2))
        self.up = nn.ModuleList([UpBlock(chans[2], chans[1]), UpBlock(chans[1], chans[0]),
                                 UpBlock(chans[0], out_mid)])
        self.proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 1), _act()) for c in chans[:2])
        self.tail = nn.Sequential(nn.Conv2d(out_mid, out_mid, 3, padding=1), _act(),
                                  nn.Conv2d(out_mid, 3, 3, padding=1))

    def forward(self, blur: Tensor) -> Tensor:
        x = self.head(space_to_depth(blur, 2))  # (b, w, h/2, w/2)
        e0 = self.enc[0](x)  # (b, w, h/2, w/2)
        e1 = self.enc[1](self.down[0](e0))  # (b, 2w, h/4, w/4)
        e2 = self.enc[2](self.down[1](e1))  # (b, 8w, h/8, w/8)
        d = self.up[0](e2) + self.proj[1](e1)  # (b, 2w, h/4, w/4)
        d = self.up[1](d) + self.proj[0](e0)  # (b, w, h/2, w/2)
        d = self.up[2](d)  # (b, w/2, h, w)
        return blur + self.tail(d)  # (b, 3, h, w)
