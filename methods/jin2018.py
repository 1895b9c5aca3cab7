"""`jin2018`: a re-implementation of Jin, Meishvili and Favaro, CVPR 2018 (the paper's [13]), N = 7 only.

Their public code is inference-only; this follows its published network structure and the paper's
description, written anew. Four networks run in sequence, each fed the blurred image and the frames
already estimated, each regressing intensities:

1. `center`: blur -> frame 4 (a deblurring network, residual on the blur).
2. `pair35`: two frame networks: frame 3 from (blur, 4, 4), frame 5 from (blur, 3, 4), residual on frame 4.
3. `pair26`: one frame network used twice, mirrored: frame 2 from (blur, 4, 3), frame 6 from (blur, 4, 5),
   residual on frames 3 and 5.
4. `pair17`: likewise: frame 1 from (blur, 3, 2), frame 7 from (blur, 5, 6), residual on frames 2 and 6.

Every network processes the three colour channels separately with shared weights (colour folded into the
batch, as the original, which the paper blames for its colour artefacts), works at 1/4 resolution after a
space-to-depth of each input (the original uses 1/4 for the centre and 1/5 for the others; 1/4 keeps the
suite's multiple-of-16 sizes valid), stacks pre-activation residual blocks with instance normalisation, some
dilated, sums 1x1+3x3 "fuse" projections of several depths back to 16 channels, returns to full resolution
by depth-to-space, and refines the three colours jointly with a small full-resolution block.

Widths: `width` (jin_width, default 128) is the frame networks' block width; the centre network uses 9/8 of
it (144). Default total: about 17.9 M parameters (the original: about 18.2 M, 73 MB).

Training (two stages, budgets matched to `ours`): `jin-center` trains the centre network on the deblurring
batch with L1 for `iters_dm` iterations (the DM's budget); `jin-pairs` trains the three pair networks for
`iters_autoencoder + iters_bie` (the motion branch's budget) with the Eq. 6 term of each pair, each network
fed the (detached) estimates of the networks before it, the trained centre network frozen. Running the
networks in sequence and detaching between them reproduces the original's one-network-at-a-time training
in one stage.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.common import DEBLUR, LR
from methods.layers import depth_to_space, space_to_depth
from methods.losses import pair_terms
from methods.registry import Claim, Component, Method, Objective, PaperFigure, Prediction, Stage, register

DEFAULT_WIDTH = 128
FACTOR = 4  # space-to-depth factor of every input
FRAMES = 7


def _in_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True))


class PreActBlock(nn.Module):
    """x + conv1x1(relu(IN x)) + conv3x3_d2(relu(IN conv3x3_d1(relu(IN x)))), bias-free convs."""

    def __init__(self, channels: int, dilations: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        d1, d2 = dilations
        self.short = nn.Sequential(_in_relu(channels), nn.Conv2d(channels, channels, 1, bias=False))
        self.long = nn.Sequential(
            _in_relu(channels), nn.Conv2d(channels, channels, 3, padding=d1, dilation=d1, bias=False),
            _in_relu(channels), nn.Conv2d(channels, channels, 3, padding=d2, dilation=d2, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.short(x) + self.long(x)


class Fuse(nn.Module):
    """conv1x1(relu(IN x)) + conv3x3(relu(IN x)): projects a depth's features to the output channels."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.one = nn.Sequential(_in_relu(channels), nn.Conv2d(channels, out, 1, bias=False))
        self.three = nn.Sequential(_in_relu(channels), nn.Conv2d(channels, out, 3, padding=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.one(x) + self.three(x)


def _per_channel(image: Tensor) -> Tensor:
    """(b, 3, h, w) -> (3b, 16, h/4, w/4): colours into the batch, then space-to-depth."""
    return space_to_depth(image.flatten(0, 1).unsqueeze(1), FACTOR)


def _merge_channels(x: Tensor, b: int) -> Tensor:
    """(3b, 16, h/4, w/4) -> (b, 3, h, w)."""
    return depth_to_space(x, FACTOR).squeeze(1).unflatten(0, (b, 3))


class _Refine(nn.Module):
    """Full-resolution joint refinement of the three colours: conv, block, IN-ReLU, conv to RGB."""

    def __init__(self, width: int, residual_block: bool) -> None:
        super().__init__()
        block = PreActBlock(width) if residual_block else Fuse(width, width)
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), block, _in_relu(width),
                                  nn.Conv2d(width, 3, 3, padding=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class JinCenter(nn.Module):
    """Jin et al.'s centre-frame (deblurring) network: blur -> frame 4."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        c = max(1, width * 9 // 8)
        k = FACTOR * FACTOR
        self.inp = nn.Conv2d(k, c, 5, padding=2, bias=False)
        self.groups = nn.ModuleList([
            nn.Sequential(*(PreActBlock(c) for _ in range(3))),
            nn.Sequential(*(PreActBlock(c, d) for d in ((1, 2), (2, 4), (4, 8)))),
            nn.Sequential(*(PreActBlock(c, d) for d in ((8, 4), (4, 2), (2, 1)))),
            nn.Sequential(*(PreActBlock(c) for _ in range(3))),
        ])
        self.fuse = nn.ModuleList(Fuse(c, k) for _ in self.groups)
        self.refine = _Refine(max(2, round(width * 4 / 8)), residual_block=True)

    def forward(self, blur: Tensor) -> Tensor:
        b = blur.shape[0]
        x0 = _per_channel(blur)  # (3b, 16, h/4, w/4)
        x = self.inp(x0)
        acc = x0
        for group, fuse in zip(self.groups, self.fuse, strict=True):
            x = group(x)
            acc = acc + fuse(x)
        out = _merge_channels(acc, b)  # (b, 3, h, w)
        return self.refine(out) + blur


class JinFrameNet(nn.Module):
    """Jin et al.'s frame network: (blur, ref_a, ref_b) -> a frame, residual on ref_b (the nearest one)."""

    def __init__(self, width: int = DEFAULT_WIDTH, blocks: int = 4) -> None:
        super().__init__()
        k = FACTOR * FACTOR
        half, quarter = max(1, width // 2), max(1, width // 4)
        self.inp_blur = nn.Conv2d(k, half, 5, padding=2, bias=False)
        self.inp_a = nn.Conv2d(k, quarter, 5, padding=2, bias=False)
        self.inp_b = nn.Conv2d(k, quarter, 5, padding=2, bias=False)
        c = half + 2 * quarter
        self.groups = nn.ModuleList([
            nn.Sequential(*(PreActBlock(c) for _ in range(blocks))),
            nn.Sequential(*(PreActBlock(c, d) for d in ((1, 2), (4, 8), (8, 4), (2, 1)))),
            nn.Sequential(*(PreActBlock(c) for _ in range(blocks))),
        ])
        self.fuse = nn.ModuleList(Fuse(c, k) for _ in self.groups)
        self.refine = _Refine(max(2, width // 4), residual_block=False)

    def forward(self, blur: Tensor, ref_a: Tensor, ref_b: Tensor) -> Tensor:
        b = blur.shape[0]
        xb = _per_channel(ref_b)  # (3b, 16, h/4, w/4)
        x = torch.cat([self.inp_blur(_per_channel(blur)), self.inp_a(_per_channel(ref_a)), self.inp_b(xb)], 1)
        acc = xb
        for group, fuse in zip(self.groups, self.fuse, strict=True):
            x = group(x)
            acc = acc + fuse(x)
        return self.refine(_merge_channels(acc, b)) + ref_b  # (b, 3, h, w)


class JinPair35(nn.Module):
    """Frames 3 and 5 from the blur and frame 4: two frame networks, the second also reading frame 3."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.net3 = JinFrameNet(width, blocks=4)
        self.net5 = JinFrameNet(width, blocks=4)

    def forward(self, blur: Tensor, f4: Tensor) -> tuple[Tensor, Tensor]:
        f3 = self.net3(blur, f4, f4)
        return f3, self.net5(blur, f3, f4)


class JinOuterPair(nn.Module):
    """Frames (2, 6) or (1, 7): one frame network applied to both mirrored sides."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.net = JinFrameNet(width, blocks=2)

    def forward(self, blur: Tensor, inner_a: Tensor, near_a: Tensor, inner_b: Tensor, near_b: Tensor
                ) -> tuple[Tensor, Tensor]:
        # One batch for both sides: the same weights, mirrored inputs.
        out = self.net(blur.repeat(2, 1, 1, 1), torch.cat([inner_a, inner_b]), torch.cat([near_a, near_b]))
        return out.chunk(2)


def run_chain(nets: nn.ModuleDict, blur: Tensor, f4: Tensor, detach: bool) -> list[Tensor]:
    """Frames 1..7 from the blur and frame 4, each pair network reading the earlier estimates."""
    cut = (lambda t: t.detach()) if detach else (lambda t: t)
    f3, f5 = nets["pair35"](blur, f4)
    f2, f6 = nets["pair26"](blur, f4, cut(f3), f4, cut(f5))
    f1, f7 = nets["pair17"](blur, cut(f3), cut(f2), cut(f5), cut(f6))
    return [f1, f2, f3, f4, f5, f6, f7]


def pairs_loss(method: Method, stage: Stage, nets: nn.ModuleDict, batch: dict[str, Tensor]
               ) -> tuple[Tensor, dict[str, float]]:
    """Eq. 6 term of each pair (3,5), (2,6), (1,7), each network fed the detached earlier estimates."""
    sharp = batch["sharp"]  # (b, 7, 3, c, c)
    method.check_frames(sharp.shape[1])
    blur = batch["blur"]
    with torch.no_grad():
        f4 = nets["center"](blur)  # the trained centre network, frozen in this stage
    frames = run_chain(nets, blur, f4, detach=True)
    total = blur.new_zeros(())
    logs: dict[str, float] = {}
    for i, j in ((2, 4), (1, 5), (0, 6)):  # 0-based (3,5), (2,6), (1,7)
        term = pair_terms(frames[i].unsqueeze(1), frames[j].unsqueeze(1), sharp[:, i:i + 1],
                          sharp[:, j:j + 1])
        total = total + term.sum()
        logs[f"eq6_{i + 1}{j + 1}"] = float(term.sum().detach())
    logs["loss"] = float(total.detach())
    return total, logs


def deblur_jin(nets: nn.ModuleDict, blur: Tensor) -> Tensor:
    return nets["center"](blur).clamp(0, 1)  # (b, 3, h, w): frame 4


def predict_jin(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None
                ) -> Prediction:
    f4 = nets["center"](blur)  # (b, 3, h, w)
    frames = torch.stack(run_chain(nets, blur, f4, detach=False), dim=1)  # (b, 7, 3, h, w)
    return Prediction(deblurred=f4.clamp(0, 1), frames=frames, flows=None)


PAIRS = Objective("jin-pairs", pairs_loss, fields=("blur", "sharp"))

# Sec. 3.3: the paper's method against Jin et al. at N = 7 (and at N = 9 against their 7).
SEC33_CLAIMS = (
    Claim("ours beats jin2018 in Eq. 6 at 7 frames", "Sec. 3.3", "eq6", frames=FRAMES),
    Claim("ours at 9 frames stays below jin2018 at 7 in Eq. 6", "Sec. 3.3", "eq6", frames=FRAMES,
          better_frames=9),
    Claim("ours is smaller than jin2018", "Sec. 3.3", "size_mb", frames=FRAMES, kind="size"),
    Claim("ours is faster than jin2018 (video)", "Sec. 3.3", "runtime_video_s", frames=FRAMES, kind="speed"),
)
# Sec. 3.3's figures of Jin et al. (GPU, 1280x704): four networks, "0.02s vs 0.45s for deblurring".
SEC33_PAPER = (PaperFigure("eq6", 49.06, "Sec. 3.3", FRAMES), PaperFigure("size_mb", 70.0, "Sec. 3.3"),
               PaperFigure("runtime_deblur_s", 0.45, "Sec. 3.3"),
               PaperFigure("runtime_video_s", 1.10, "Sec. 3.3"))

_W = {"width": "jin_width"}
register(Method(
    name="jin2018", family="baseline",
    description="Jin et al. 2018 re-implemented: centre network, then pairs (3,5), (2,6), (1,7); N=7 only",
    components={"center": Component(JinCenter, {}, _W, channels_last_train=True),
                "pair35": Component(JinPair35, {}, _W), "pair26": Component(JinOuterPair, {}, _W),
                "pair17": Component(JinOuterPair, {}, _W)},
    stages=(
        Stage("jin-center", trains=("center",), lr={"center": LR}, objective=DEBLUR, batch="deblur",
              iters_keys=("iters_dm",)),
        Stage("jin-pairs", trains=("pair35", "pair26", "pair17"),
              lr={"pair35": LR, "pair26": LR, "pair17": LR}, objective=PAIRS,
              init_from=("jin-center",), batch="video", iters_keys=("iters_autoencoder", "iters_bie"),
              uses=("center",)),
    ),
    predictor=predict_jin, deblurrer=deblur_jin, frames=(FRAMES,),
    frames_reason="its four networks output frames 1-7", claims=SEC33_CLAIMS,
    video_role="comparison (Jin et al. 2018)", video_rank=2, deblur_column="jin2018 centre",
    paper=SEC33_PAPER))
