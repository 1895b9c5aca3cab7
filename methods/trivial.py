"""Parameter-free and DM-only baselines (SPEC 5): `blurred` and `ours-static`.

- `blurred`: the blurred input as the deblurred image and as every frame: the floor every method must beat
  (a strong one under Eq. 6, which rewards the mean; see SPEC 6).
- `ours-static`: the DM's estimate repeated N times: what the motion branch adds over a still image. Its only
  stage is `ours`'s `dm` stage (same identity), so the DM is trained once for both.
- `gt-static`: an oracle floor, the true central frame repeated N times (SPEC 6: under Eq. 6 it scores worse
  than `blurred`, because Eq. 6 rewards the mean).
"""

from __future__ import annotations

from torch import Tensor, nn

from methods.dm import DM
from methods.ours import DM_STAGE, DM_WIDTHS, _deblur_dm
from methods.registry import Component, Method, Prediction, deblurrer, predictor, register


def repeat_frames(image: Tensor, n: int) -> Tensor:
    """(b, 3, h, w) -> (b, n, 3, h, w), a still video (a view, no copy)."""
    return image.unsqueeze(1).expand(-1, n, -1, -1, -1)


deblurrer("static")(_deblur_dm)


@deblurrer("blurred")
def _identity(nets: nn.ModuleDict, blur: Tensor) -> Tensor:
    return blur


@predictor("blurred")
def _blurred(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None) -> Prediction:
    return Prediction(deblurred=blur, frames=repeat_frames(blur, n), flows=None)


@predictor("static")
def _static(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None) -> Prediction:
    deblurred = _deblur_dm(nets, blur)  # (b, 3, h, w)
    return Prediction(deblurred=deblurred, frames=repeat_frames(deblurred, n), flows=None)


register(Method(
    name="blurred", family="baseline", description="the blurred input repeated N times (the floor)",
    components={}, stages=(), predictor="blurred"))

register(Method(
    name="ours-static", family="baseline", description="the DM's deblurred frame repeated N times",
    components={"dm": Component(DM, {}, DM_WIDTHS, channels_last=True)}, stages=(DM_STAGE,),
    predictor="static"))


@deblurrer("gt-static")
def _no_deblur(nets: nn.ModuleDict, blur: Tensor) -> Tensor:
    return blur  # a video floor only: its deblurred image is the input, so it claims no deblurring


@predictor("gt-static")
def _gt_static(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int,
               center: Tensor | None) -> Prediction:
    assert center is not None  # Method.predict refuses uses_true_center methods without it
    return Prediction(deblurred=blur, frames=repeat_frames(center, n), flows=None)


register(Method(
    name="gt-static", family="baseline", description="oracle floor: the true central frame repeated N times",
    components={}, stages=(), predictor="gt-static", uses_true_center=True))
