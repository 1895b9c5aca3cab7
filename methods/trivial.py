"""Parameter-free and DM-only baselines: `blurred`, `ours-static` and `gt-static`.

- `blurred`: the blurred input as the deblurred image and as every frame: the floor every method must beat
  (a strong one under Eq. 6, which rewards the mean). Table 1's claims that the DM beats it are its
  entry's claims.
- `ours-static`: the DM's estimate repeated N times: what the motion branch adds over a still image. Its only
  stage is `ours`'s `dm` stage (same identity), so the DM is trained once for both.
- `gt-static`: an oracle floor, the true central frame repeated N times (under Eq. 6 it scores worse than
  `blurred`, because Eq. 6 rewards the mean).
"""

from __future__ import annotations

from torch import Tensor, nn

from methods.common import DM_PAPER, DM_STAGE, deblur_dm, dm_component, repeat_frames
from methods.registry import Claim, Method, Prediction, register


def no_deblur(nets: nn.ModuleDict, blur: Tensor) -> Tensor:
    return blur  # the floors claim no deblurring: their deblurred image is the input


def predict_blurred(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None
                    ) -> Prediction:
    return Prediction(deblurred=blur, frames=repeat_frames(blur, n), flows=None)


def predict_static(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None
                   ) -> Prediction:
    deblurred = deblur_dm(nets, blur)  # (b, 3, h, w)
    return Prediction(deblurred=deblurred, frames=repeat_frames(deblurred, n), flows=None)


def predict_gt_static(method: Method, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None
                      ) -> Prediction:
    assert center is not None  # Method.predict refuses uses_true_center methods without it
    return Prediction(deblurred=blur, frames=repeat_frames(center, n), flows=None)


register(Method(
    name="blurred", family="baseline", description="the blurred input repeated N times (the floor)",
    components={}, stages=(), predictor=predict_blurred, deblurrer=no_deblur,
    video_role="floor: blurred input repeated", video_rank=5, deblur_column="blurred input", floor=True,
    still=True,
    claims=(
        Claim("DM beats the blurred input in PSNR", "Table 1", "deblur_psnr", frames="deblur"),
        Claim("DM beats the blurred input in SSIM", "Table 1", "deblur_ssim", frames="deblur"),
    )))

register(Method(
    name="ours-static", family="baseline", description="the DM's deblurred frame repeated N times",
    components={"dm": dm_component()}, stages=(DM_STAGE,), predictor=predict_static, deblurrer=deblur_dm,
    video_role="floor: DM output repeated", video_rank=4, still=True, paper=DM_PAPER))

register(Method(
    name="gt-static", family="baseline", description="oracle floor: the true central frame repeated N times",
    components={}, stages=(), predictor=predict_gt_static, deblurrer=no_deblur, uses_true_center=True,
    video_role="floor: true central frame repeated", video_rank=6, still=True))
