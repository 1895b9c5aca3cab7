"""RVE and RVD, the recurrent video autoencoder (Sec. 2.1-2.2, Fig. 2a and 3, Eq. 1-3).

Decisions the paper leaves open:

- Activations: leaky ReLU (slope 0.2) after every conv except the flow heads; no normalisation in RVE/RVD.
- The frame encoder's feature maps 16/32/64/128 (Sec. 2.1) are `width * (1, 2, 4, 8)`, width 16 by default;
  the ConvLSTM (3x3) then works at 1/8 resolution with 8*width channels.
- RVE: the conv encoder runs on all N frames in one batch (it has no recurrence); only the ConvLSTM loops.
- RVD input (Eq. 2): at step n the flow encoder reads the previous step's finest flow f_{n-1,4}; at the first
  step, which has no previous flow, it reads zeros (the identity motion). Eq. 1: the ConvLSTM's state before
  the first step is the encoder's (RVE's or BIE's) last state (h, c).
- Flow decoder F_D (Fig. 3): a 3x3 conv on the cell output gives f_{n,1} at 1/8; a 4x4 stride-2 deconv of
  the cell output, concatenated with f_{n,1} upsampled (bilinear, values doubled: flows are in pixels of
  their own scale) and the flow encoder's features of that scale (U-Net skip), is the hybrid map from which
  a 3x3 conv gives f_{n,2}; repeated to 1/2 and full size. Flow heads start with weights scaled by 0.1 so the
  first flows are small.
- T (Eq. 3) warps the central frame, area-downsampled to each scale, with each scale's flow
  (`methods.layers.warp`: bilinear, border padding, align_corners=False). The "central frame" is frame
  (N+1)/2 in 1-based numbering (the paper's x_{floor(N/2)} is read as the middle frame for odd N).
- Ablations as keyword arguments: `output="intensity"` regresses frames instead of flows (same decoder, 3
  channels per head, input the previous finest frame; at step 1 the central frame, the intensity analogue of
  zero flow); `recurrent=False` removes the recurrence: every step starts from the encoder's state, reads a
  constant time code t in [-1, 1] instead of the previous flow, and all N steps run in one batched pass (same
  layers, so the same capacity up to the flow encoder's first conv).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from methods.layers import SCALES, ConvLSTMCell, ResBlock, downsample, leaky, upsample_flow, warp

DEFAULT_WIDTH = 16


class FrameEncoder(nn.Module):
    """The conv encoder of RVE (Sec. 2.1, Fig. 2a), reused as the RVD's flow encoder (Sec. 2.2).

    4 blocks of 3x3 convs with strides 1, 2, 2, 2; blocks 2-4 are followed by a ResBlock; outputs of
    width * (1, 2, 4, 8) channels at 1, 1/2, 1/4, 1/8 resolution, all returned (the RVD's U-Net skips).
    """

    def __init__(self, in_channels: int, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        blocks = [nn.Sequential(nn.Conv2d(in_channels, chans[0], 3, padding=1), leaky())]
        for i in range(1, 4):
            blocks.append(nn.Sequential(nn.Conv2d(chans[i - 1], chans[i], 3, stride=2, padding=1), leaky(),
                                        ResBlock(chans[i])))
        self.blocks = nn.ModuleList(blocks)
        self.channels = chans

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats  # [(b, w, h, w), (b, 2w, h/2, w/2), (b, 4w, h/4, w/4), (b, 8w, h/8, w/8)]


class RVE(nn.Module):
    """Recurrent Video Encoder (Sec. 2.1, Fig. 2a): h_n^enc = enc(h_{n-1}^enc, x_n); returns h_N^enc."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.encoder = FrameEncoder(3, width)
        self.cell = ConvLSTMCell(8 * width, 8 * width, 3)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        b, n = frames.shape[:2]
        feats = self.encoder(frames.flatten(0, 1))[-1]  # (b*n, 8w, h/8, w/8): no recurrence, one batch
        feats = feats.unflatten(0, (b, n))  # (b, n, 8w, h/8, w/8)
        state = None
        for step in range(n):
            state = self.cell(feats[:, step], state)
        return state  # (h, c), each (b, 8w, h/8, w/8)


class FlowDecoder(nn.Module):
    """F_D (Sec. 2.2, Fig. 3): cell output -> outputs at 1/8, 1/4, 1/2, 1 with 4x4 deconvs and U-Net skips.

    `out_channels` is 2 for flows (pixels) and 3 for the intensity ablation. `gain` scales an output when it
    is upsampled to the next scale (2 for flows in pixels, 1 for intensities).
    """

    def __init__(self, width: int = DEFAULT_WIDTH, out_channels: int = 2) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        k = out_channels
        self.gain = 2.0 if out_channels == 2 else 1.0
        self.heads = nn.ModuleList([nn.Conv2d(chans[3], k, 3, padding=1)])
        self.deconvs = nn.ModuleList()
        hybrid = chans[3]  # channels entering the next deconv
        for level in (2, 1, 0):
            deconv = nn.ConvTranspose2d(hybrid, chans[level], 4, stride=2, padding=1)
            self.deconvs.append(nn.Sequential(deconv, leaky()))
            hybrid = 2 * chans[level] + k  # [deconv, upsampled output, encoder skip]
            self.heads.append(nn.Conv2d(hybrid, k, 3, padding=1))
        with torch.no_grad():
            for head in self.heads:
                head.weight.mul_(0.1)

    def _up(self, out: Tensor) -> Tensor:
        if self.gain == 2.0:
            return upsample_flow(out)
        return nn.functional.interpolate(out, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, h: Tensor, skips: list[Tensor]) -> list[Tensor]:
        out = self.heads[0](h)  # (b, k, h/8, w/8): f_{n,1}
        outs = [out]
        x = h
        for i, level in enumerate((2, 1, 0)):
            x = torch.cat([self.deconvs[i](x), self._up(out), skips[level]], dim=1)  # hybrid map at 2x size
            out = self.heads[i + 1](x)  # (b, k, ...): f_{n,i+2}
            outs.append(out)
        return outs  # coarse -> fine: 1/8, 1/4, 1/2, 1


def _stack_steps(per_step: list[list[Tensor]]) -> list[Tensor]:
    """[step][scale] (b, k, h, w) -> [scale] (b, n, k, h, w)."""
    return [torch.stack(scale, dim=1) for scale in zip(*per_step, strict=True)]


class RVDOutput(NamedTuple):
    """Per-scale outputs of the RVD, coarse -> fine (1/8, 1/4, 1/2, 1)."""

    frames: list[Tensor]  # each (b, n, 3, h_j, w_j)
    flows: list[Tensor] | None  # each (b, n, 2, h_j, w_j), pixels of that scale; None for intensity output


class RVD(nn.Module):
    """Recurrent Video Decoder (Sec. 2.2, Fig. 3, Eq. 1-3).

    Eq. 1: h_0 = the encoder's last state. Eq. 2: h_n, f_{n,1..4} = G(h_{n-1}, f_{n-1,4}) with G = flow
    encoder + ConvLSTM + F_D. Eq. 3: x^_{n,j} = T(center_j, f_{n,j}). No per-N parameters: any N works.
    """

    def __init__(self, width: int = DEFAULT_WIDTH, output: str = "flow", recurrent: bool = True) -> None:
        super().__init__()
        if output not in ("flow", "intensity"):
            raise ValueError(f"RVD output must be 'flow' or 'intensity', not {output!r}")
        self.output = output
        self.recurrent = recurrent
        k = 2 if output == "flow" else 3
        in_channels = k if recurrent else 1  # previous output, or the time code of the non-recurrent ablation
        self.encoder = FrameEncoder(in_channels, width)
        self.cell = ConvLSTMCell(8 * width, 8 * width, 3)
        self.decoder = FlowDecoder(width, k)

    def _render(self, outs: list[Tensor], center: Tensor, finest_only: bool
                ) -> tuple[list[Tensor], list[Tensor]]:
        """Eq. 3: frames from per-scale outputs (warp for flows, identity for intensities)."""
        frames = []
        for j, (out, factor) in enumerate(zip(outs, SCALES, strict=True)):
            if finest_only and j < len(SCALES) - 1:
                continue
            if self.output == "flow":
                frames.append(warp(downsample(center, factor), out))  # (b, 3, h_j, w_j)
            else:
                frames.append(out)
        kept = outs[-1:] if finest_only else outs
        return frames, kept

    def forward(self, state: tuple[Tensor, Tensor], center: Tensor, n: int,
                finest_only: bool = False) -> RVDOutput:
        """state: (h, c) each (b, 8w, H/8, W/8); center (b, 3, H, W); returns N frames (and flows).

        `finest_only` skips the coarse-scale outputs (inference needs only full resolution).
        """
        run = self._recurrent if self.recurrent else self._one_pass
        frames, outs = run(state, center, n, finest_only)
        return RVDOutput(frames, outs if self.output == "flow" else None)

    def _recurrent(self, state: tuple[Tensor, Tensor], center: Tensor, n: int,
                   finest_only: bool) -> tuple[list[Tensor], list[Tensor]]:
        b, _, h, w = center.shape
        # The first input: zero flow, or the central frame for intensities (both mean "no motion yet").
        prev = center.new_zeros(b, 2, h, w) if self.output == "flow" else center
        frames, outs = [], []
        for _ in range(n):  # the only Python loop: the N recurrent steps
            skips = self.encoder(prev)
            state = self.cell(skips[3], state)
            step_outs = self.decoder(state[0], skips)
            step_frames, step_kept = self._render(step_outs, center, finest_only)
            frames.append(step_frames)
            outs.append(step_kept)
            prev = step_outs[-1]  # (b, k, h, w): f_{n,4}
        return _stack_steps(frames), _stack_steps(outs)  # per scale (b, n, k, h_j, w_j)

    def _one_pass(self, state: tuple[Tensor, Tensor], center: Tensor, n: int,
                  finest_only: bool) -> tuple[list[Tensor], list[Tensor]]:
        b, _, h, w = center.shape
        half = max(1.0, (n - 1) / 2)
        codes = (torch.arange(n, device=center.device, dtype=center.dtype) - (n - 1) / 2) / half  # (n,)
        planes = codes.view(1, n, 1, 1, 1).expand(b, n, 1, h, w).flatten(0, 1)  # (b*n, 1, h, w)
        skips = self.encoder(planes)
        h0, c0 = (s.repeat_interleave(n, dim=0) for s in state)  # every step starts from the encoder state
        hid, _ = self.cell(skips[3], (h0, c0))
        outs = self.decoder(hid, skips)  # each (b*n, k, h_j, w_j)
        frames, kept = self._render(outs, center.repeat_interleave(n, dim=0), finest_only)
        return [f.unflatten(0, (b, n)) for f in frames], [o.unflatten(0, (b, n)) for o in kept]
