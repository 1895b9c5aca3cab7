"""Shared layers: ConvLSTM cell, residual and residual dense blocks, space-to-depth, the flow transformer T.

Decisions the paper leaves open, stated once here:

- Flows are in pixels, layout (b, 2, h, w), channel 0 = x (columns), channel 1 = y (rows), and *backward*:
  frame_n(p) = center(p + flow_n(p)). A flow at a coarser scale is in pixels of that scale.
- The transformer T (Sec. 2.2, Eq. 3) samples with `grid_sample(mode="bilinear", padding_mode="border",
  align_corners=False)`. With align_corners=False pixel i's centre sits at normalised (2i + 1) / size - 1, and
  that is exactly the map used to build the grid, so a zero flow is the identity and an integer flow an exact
  shift (away from the borders, where the border value is repeated).
- Multi-scale targets (Eq. 4) are area-averaged (`avg_pool2d`), the same operator that made the blur.
- Padding for sizes that are not a multiple of 16 reflects at the bottom and right, so (0, 0) keeps its place
  and cropping back is a plain slice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCALES = (8, 4, 2, 1)  # downsampling factor of the four RVD outputs and Eq. 4's scales, coarse -> fine
LEAKY_SLOPE = 0.2  # leaky ReLU slope of every network here that uses one (common; the paper is silent)


def leaky() -> nn.LeakyReLU:
    """The leaky ReLU used across the video networks."""
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (Shi et al. 2015, the paper's [40]); 3x3 kernels as Sec. 2.1 chooses.

    One convolution over [x, h] yields the four gates; no peephole terms. A missing state starts at zeros.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden, x.shape[2], x.shape[3])
            state = (zeros, zeros)
        h, c = state  # (b, hidden, h, w) each
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ResBlock(nn.Module):
    """Residual block without normalisation: x + s * conv(act(conv(x))), the inner width free.

    `mid` lets a ResBlock be sized to match another block's parameter count (the DM ablation).
    """

    def __init__(self, channels: int, kernel: int = 3, mid: int | None = None, res_scale: float = 1.0,
                 slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        mid = mid or channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid, kernel, padding=kernel // 2),
            nn.LeakyReLU(slope, inplace=True) if slope > 0 else nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, kernel, padding=kernel // 2),
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.body(x)


class RDB(nn.Module):
    """Residual dense block (Zhang et al. 2018, the paper's [44]), residual scaling (Lim et al. 2017, [20]).

    `layers` 3x3 convolutions, each seeing the concatenation of the block input and every earlier layer's
    `growth` new channels; a 1x1 local fusion back to `channels`; output x + res_scale * fused.
    """

    def __init__(self, channels: int, growth: int, layers: int = 4, res_scale: float = 0.2,
                 slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels + i * growth, growth, 3, padding=1) for i in range(layers))
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)
        self.res_scale = res_scale
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        feats = x
        for conv in self.convs:
            new = F.leaky_relu(conv(feats), self.slope)  # (b, growth, h, w)
            feats = torch.cat([feats, new], dim=1)  # (b, channels + k*growth, h, w)
        return x + self.res_scale * self.fuse(feats)


def space_to_depth(x: Tensor, factor: int) -> Tensor:
    """(b, c, h, w) -> (b, c*f*f, h/f, w/f): the DM's input transform (Sec. 2.5)."""
    return F.pixel_unshuffle(x, factor)


def depth_to_space(x: Tensor, factor: int) -> Tensor:
    """(b, c*f*f, h, w) -> (b, c, h*f, w*f), the inverse of `space_to_depth`."""
    return F.pixel_shuffle(x, factor)


def downsample(x: Tensor, factor: int) -> Tensor:
    """Area average by an integer factor over the last two dims; any leading dims (videos too)."""
    if factor == 1:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.avg_pool2d(flat, factor)
    return out.reshape(*lead, *out.shape[-3:])


def upsample_flow(flow: Tensor) -> Tensor:
    """Double a flow's resolution and its pixel values (a coarse pixel is two fine ones)."""
    return 2.0 * F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=False)


def _base_grid(h: int, w: int, like: Tensor) -> Tensor:
    ys = torch.arange(h, device=like.device, dtype=like.dtype)
    xs = torch.arange(w, device=like.device, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=0)  # (2, h, w), pixel coordinates, channel 0 = x


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """The transformer T (Sec. 2.2, Eq. 3): out(p) = image(p + flow(p)), bilinear, border padding.

    image (b, c, h, w); flow (b, 2, h, w) in pixels, channel 0 = x. One flow per pixel, as the paper's
    per-pixel variant of the spatial transformer [11]. See the module docstring for align_corners.
    """
    b, _, h, w = image.shape
    pos = _base_grid(h, w, flow) + flow  # (b, 2, h, w), sampling positions in pixels
    # align_corners=False: pixel i's centre is at normalised (2i + 1) / size - 1.
    gx = (2.0 * pos[:, 0] + 1.0) / w - 1.0
    gy = (2.0 * pos[:, 1] + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # (b, h, w, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad the last two dims at the bottom and right up to a multiple; returns (padded, (h, w)).

    Works for images (3, h, w), batches (b, 3, h, w) and videos (b, n, 3, h, w). Where an image is too small
    to reflect (pad >= size), the edge is replicated instead.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    flat = x.reshape(-1, h, w).unsqueeze(0)  # (1, k, h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    out = F.pad(flat, (0, pw, 0, ph), mode=mode)
    return out.reshape(*x.shape[:-2], h + ph, w + pw), (h, w)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Undo `pad_to_multiple`: keep the top-left (h, w) of the last two dims."""
    h, w = size
    return x[..., :h, :w]


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def eval_mode(nets: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the block, restoring each module's training flag afterwards."""
    flags = [(m, m.training) for m in nets.modules()]
    nets.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, flag in flags:
            module.train(flag)
