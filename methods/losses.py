"""Losses of Sec. 2.4: TV smoothness, Eq. 5 (L1), Eq. 6 (ordering-invariant) and the multi-scale Eq. 4.

Decisions the paper leaves open:

- Reductions: every data and TV term is a mean over batch, channels and pixels of one frame (or one frame
  pair), summed over frames n (or pairs). Means keep the scales comparable whatever the crop size; the paper's
  norms are sums, which only rescale each term.
- Eq. 6 pairs frame n with its mirror N+1-n (1-based), for n = 1 .. ceil(N/2). For odd N the central frame
  pairs with itself, where the term reduces to | |2 x^_c| - |2 x_c| | = 2 |x^_c - x_c| for non-negative
  images: an ordinary L1 anchor on the middle frame, which is not ambiguous under time reversal. We keep it in
  the loss (it tells the decoder the middle frame is the given sharp frame); the *metric* (bench/metrics.py)
  sums n = 1 .. floor(N/2) only. The paper writes x_{N-n}; pairing with N+1-n is the reading that makes the
  loss invariant to reversing the sequence.
- TV (Sec. 2.4): TV(s) = mean |d/dx s| + mean |d/dy s| over a flow map, in pixels of the flow's own scale.
- Scale weights lambda_j (the paper defers to [22], Mayer et al.'s DispNet, which follows FlowNet [4]):
  FlowNet weighs its losses 0.32, 0.08, 0.02, 0.01, 0.005 from coarse to fine, on end-point errors summed
  over pixels; each finer level has 4x the pixels, so in per-pixel-mean terms its four finest levels weigh
  0.25 : 0.25 : 0.5 : 1. We use those per-pixel weights with our means: LAMBDAS = (0.25, 0.25, 0.5, 1.0) for
  scales 1/8, 1/4, 1/2, 1. DispNet's schedule, which moves the weight towards the finest scale as training
  proceeds, needs the iteration count and is not reproduced; the weights are a field of LossConfig.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch import Tensor

from methods.layers import SCALES, downsample

LAMBDAS = (0.25, 0.25, 0.5, 1.0)  # Eq. 4 scale weights, coarse -> fine (1/8, 1/4, 1/2, 1); see module doc
MU = 0.02  # Eq. 4 TV weight, "empirically set to 0.02" (Sec. 2.4)


@dataclass(frozen=True)
class LossConfig:
    """Eq. 4's knobs; a method's entry carries one, and the ablations change it."""

    lambdas: tuple[float, float, float, float] = LAMBDAS  # per-scale weights, coarse -> fine
    mu: float = MU  # TV weight

    @property
    def scales(self) -> tuple[int, ...]:
        """Indices (0 = 1/8 ... 3 = full) of the scales whose weight is non-zero."""
        return tuple(j for j, lam in enumerate(self.lambdas) if lam != 0)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["lambdas"] = list(self.lambdas)
        out["scales"] = list(self.scales)
        return out


def tv(flow: Tensor) -> Tensor:
    """Total variation (Sec. 2.4) of flows (..., 2, h, w): mean |dx| + mean |dy|, summed over leading frames.

    For a video of flows (b, n, 2, h, w) it returns sum_n TV(f_n), as Eq. 4's inner sum.
    """
    dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs()
    dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs()
    if flow.dim() == 5:
        return dx.mean(dim=(0, 2, 3, 4)).sum() + dy.mean(dim=(0, 2, 3, 4)).sum()
    return dx.mean() + dy.mean()


def l1_video(pred: Tensor, target: Tensor) -> Tensor:
    """Eq. 5: sum over frames n of mean |x^_n - x_n|; pred, target (b, n, c, h, w)."""
    return (pred - target).abs().mean(dim=(0, 2, 3, 4)).sum()


def mirror_pairs(n: int) -> tuple[list[int], list[int]]:
    """0-based (first, mirror) indices: frame i with n-1-i, i = 0 .. ceil(n/2)-1 (centre with itself)."""
    first = list(range(math.ceil(n / 2)))
    return first, [n - 1 - i for i in first]


def pair_terms(a: Tensor, b: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """One Eq. 6 term per pair: mean | |a+b| - |x+y| | + mean | |a-b| - |x-y| |, means over all but dim 1.

    a, b predicted frames and x, y their true counterparts, (batch, pairs, c, h, w); returns (pairs,).
    """
    plus = ((a + b).abs() - (x + y).abs()).abs()
    minus = ((a - b).abs() - (x - y).abs()).abs()
    dims = (0, 2, 3, 4)
    return plus.mean(dim=dims) + minus.mean(dim=dims)


def eq6(pred: Tensor, target: Tensor) -> Tensor:
    """Eq. 6, ordering-invariant: summed over mirror pairs (n, N+1-n), the centre pairing with itself.

    pred, target (b, n, c, h, w). Zero for a perfect prediction or its time reversal (see module doc).
    """
    first, mirror = mirror_pairs(pred.shape[1])
    return pair_terms(pred[:, first], pred[:, mirror], target[:, first], target[:, mirror]).sum()


def deblur_l1(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between a deblurred image and the central sharp frame, (b, 3, h, w): the DM's training loss."""
    return (pred - target).abs().mean()


DATA_TERMS = {"eq5": l1_video, "eq6": eq6}


def multiscale_loss(frames: list[Tensor], flows: list[Tensor] | None, target: Tensor, config: LossConfig,
                    data: str) -> tuple[Tensor, dict[str, float]]:
    """Eq. 4: sum_j lambda_j [ L_j + mu sum_n TV(f_{n,j}) ] over the four scales.

    frames: per scale (b, n, 3, h/s, w/s), coarse -> fine; flows likewise (b, n, 2, ...) or None (intensity
    output: no TV term); target (b, n, 3, h, w) at full size, area-downsampled per scale; `data` picks the
    data term L_j: "eq5" (RVE-RVD) or "eq6" (BIE-RVD).
    """
    term = DATA_TERMS[data]
    total = target.new_zeros(())
    parts: dict[str, float] = {}
    for j, (lam, factor) in enumerate(zip(config.lambdas, SCALES, strict=True)):
        if lam == 0:
            continue
        data_j = term(frames[j], downsample(target, factor))
        tv_j = tv(flows[j]) if flows is not None and config.mu != 0 else target.new_zeros(())
        total = total + lam * (data_j + config.mu * tv_j)
        parts[f"{data}_s{factor}"] = float(data_j.detach())
        parts[f"tv_s{factor}"] = float(tv_j.detach())
    parts["loss"] = float(total.detach())
    return total, parts
