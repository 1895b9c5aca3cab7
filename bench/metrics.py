"""Every metric, in one module (docs/DESIGN.md "Metrics").

Image metrics take RGB uint8 numpy arrays in [0, 255] after the network output has been rounded
(`to_uint8`): an image is `(h, w, 3)`, a video `(n, h, w, 3)`. They compute in float64 over the whole image
(crop border 0). Flows are float numpy arrays `(n, h, w, 2)` in pixels (the on-disk layout of docs/DESIGN.md
"Conventions"). Videos are compared frame n of the prediction with frame n of the truth, 1-based n = 1..N in
the docs, 0-based in the code; "the reverse order" pairs predicted frame N+1-n with true frame n.

`DEFINITIONS` holds a one-line definition of each reported metric; reports print it, because later papers
disagree on pPSNR and PW-PSNR and a table must name the definition it uses.

The metric vocabulary is stated here and only here: `VOCABULARY` gives every metrics.json key its label,
direction, unit and kind (per sample or a cost), and `SAMPLE_METRICS`, `COST_METRICS`, `LOWER_IS_BETTER`,
`BEST_AT_ONE` and `CLAIMABLE` are derived from it. `methods/` names metrics by key only (a `Claim`'s metric, a
`PaperFigure`'s) and cannot import `bench`, so bench checks those keys where it reads the registry
(`check_claimable`, by `bench ablate` and `bench report`; a test checks every registered entry).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import BenchError

if TYPE_CHECKING:  # torch is imported lazily so `import bench.metrics` stays light for reports
    import torch

PEAK = 255.0  # the data range of uint8 images


@dataclass(frozen=True)
class Metric:
    """What a metrics.json key means for the reader: how tables, figures, arrows and verdicts treat it."""

    label: str  # short name in tables, figure titles and the claims table
    better: str  # "lower" | "higher" | "one" (best at 1: neither direction is better)
    unit: str = ""  # printed after values ("dB", "s", "MB", "px"); "" for unitless
    per_sample: bool = True  # a key of each "samples" row (the aggregate is their mean); False: a cost,
    # measured once per evaluation


# Every metrics.json metric key, in the order tables print them: per-sample keys, then the costs.
VOCABULARY: dict[str, Metric] = {
    "deblur_psnr": Metric("PSNR", "higher", "dB"),
    "deblur_ssim": Metric("SSIM", "higher"),
    "deblur_lpips": Metric("LPIPS", "lower"),
    "eq6": Metric("Eq. 6 error", "lower"),
    "ppsnr": Metric("pPSNR", "higher", "dB"),
    "pwpsnr": Metric("PW-PSNR", "higher", "dB"),
    "pooled_psnr": Metric("pooled PSNR", "higher", "dB"),
    "b2v_psnr": Metric("blur2vid PSNR", "higher", "dB"),
    "b2v_pwpsnr": Metric("blur2vid PW-PSNR", "higher", "dB"),
    "reblur_psnr": Metric("reblur PSNR", "higher", "dB"),
    "mid_psnr": Metric("middle-frame PSNR", "higher", "dB"),
    "motion_ratio": Metric("motion ratio", "one"),  # 0 a still video, >1 flicker
    "epe": Metric("flow EPE", "lower", "px"),
    "runtime_deblur_s": Metric("deblurring time", "lower", "s", per_sample=False),
    "runtime_video_s": Metric("video time", "lower", "s", per_sample=False),
    "params": Metric("parameters", "lower", per_sample=False),
    "size_mb": Metric("size", "lower", "MB", per_sample=False),
}
LOWER_IS_BETTER = frozenset(k for k, m in VOCABULARY.items() if m.better == "lower")
BEST_AT_ONE = frozenset(k for k, m in VOCABULARY.items() if m.better == "one")
# The per-sample keys of metrics.json ("samples" rows and "aggregate", where they are means over samples).
SAMPLE_METRICS: tuple[str, ...] = tuple(k for k, m in VOCABULARY.items() if m.per_sample)
# Per-sample keys whose aggregate is the mean over the samples where they are defined; for the others a
# value missing for one sample (no true flow, no LPIPS) is missing for the set, never averaged over fewer.
MEAN_OVER_DEFINED = frozenset({"motion_ratio"})  # undefined only where the true video is static
# The cost keys of the aggregate: measured once per evaluation, not per sample.
COST_METRICS: tuple[str, ...] = tuple(k for k, m in VOCABULARY.items() if not m.per_sample)
# The keys a registry `Claim` may be judged on: those with a direction (a verdict needs one).
CLAIMABLE: tuple[str, ...] = tuple(k for k, m in VOCABULARY.items() if m.better != "one")


def lower_is_better(key: str) -> bool:
    """True where a smaller value of `key` is better (the direction verdicts and claims read)."""
    return key in LOWER_IS_BETTER


def check_claimable(key: str, where: str) -> None:
    """BenchError naming `where` (an entry's claim) unless `key` is a metric a claim may be judged on."""
    if key not in CLAIMABLE:
        raise BenchError(f"{where} names unknown metric {key!r}; choose from {', '.join(CLAIMABLE)} "
                         "(bench/metrics.py VOCABULARY)")


def direction(key: str) -> str:
    """Which way `key` improves, in words: "lower is better", "higher is better" or "1 is best"."""
    if key in BEST_AT_ONE:
        return "1 is best"
    return "lower is better" if key in LOWER_IS_BETTER else "higher is better"


def arrow(key: str) -> str:
    """The table arrow of `key`: ↓ lower is better, ↑ higher is better, →1 best at one."""
    if key in BEST_AT_ONE:
        return "→1"
    return "↓" if key in LOWER_IS_BETTER else "↑"

DEFINITIONS: dict[str, str] = {
    "deblur_psnr": "PSNR of the deblurred image vs the true central frame: 10 log10(255^2 / MSE), MSE over "
    "all pixels and channels, uint8 RGB, float64, no border crop",
    "deblur_ssim": "SSIM of the deblurred image vs the true central frame: skimage structural_similarity, "
    "data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False "
    "(the MATLAB-matching setting)",
    "deblur_lpips": "LPIPS (lpips 0.1, AlexNet trunk with torchvision's ImageNet weights from the local "
    "cache, inputs in [0,1], normalize=True) of the deblurred image vs the true centre; lower is better",
    "eq6": "paper's Eq. 6 error on [0,255] float64 frames: sum over n=1..floor(N/2), m=N+1-n, of "
    "mean||x^_n+x^_m|-|x_n+x_m|| + mean||x^_n-x^_m|-|x_n-x_m||, means over pixels and channels; "
    "invariant to reversing the order; lower is better",
    "ppsnr": "pPSNR (HyperCUT, CVPR 2023, utils/metrics.py calculate_pPSNR): max over {predicted order, "
    "reversed order} of the mean over the N frames of per-frame PSNR",
    "pwpsnr": "PW-PSNR after blur2vid (2025): "
    "10 log10(255^2 / mean_p min_d (1/N) sum_t (x^d_t(p)-x_t(p))^2), the order d (predicted or reversed) "
    "chosen per pixel p (an RGB triple: squared errors averaged over the 3 channels first); full resolution. "
    "blur2vid's own code chooses per pixel and channel: b2v_pwpsnr",
    "pooled_psnr": "pooled PSNR (Animation-from-Blur, ECCV 2022, valid_vaegan.py): one MSE over all N "
    "frames, pixels and channels, 10 log10(255^2 / MSE), the better of the predicted and reversed orders",
    "b2v_psnr": "blur2vid's per-clip PSNR (extra/moMets-parallel-gopro.py): both videos first halved in "
    "each side with cv2.INTER_AREA (extra/downsample_results.py), then max over {predicted, reversed} "
    "order of the mean over frames of per-frame PSNR (pPSNR's reading at half resolution)",
    "b2v_pwpsnr": "blur2vid's pixel-wise PSNR as its code computes it: both videos halved (cv2.INTER_AREA), "
    "then 10 log10(1 / mean_e min_d mean_t (x^d_t(e)-x_t(e))^2) on [0,1] values, the order d chosen per "
    "pixel AND channel e",
    "reblur_psnr": "reblur PSNR: the N predicted frames averaged as the set's blur was made (in linear light "
    "(v/255)^gamma when the set has a gamma, else the stored values), not rounded, vs the blurred input "
    "(uint8), 10 log10(255^2 / MSE) over pixels and channels; order-invariant",
    "mid_psnr": "PSNR of the predicted middle frame (n=(N+1)/2) vs the true middle frame",
    "motion_ratio": "motion of the predicted video over the true one: mean_n mean|x^_{n+1}-x^_n| / "
    "mean_n mean|x_{n+1}-x_n| on [0,255] frames; 0 for a still video, 1 when it moves as much as the truth; "
    "the aggregate is the mean over the samples whose true video moves",
    "epe": "flow end-point error: mean over frames and pixels of the Euclidean distance between predicted "
    "and true backward flows (pixels), the better of the predicted and reversed frame orders; synthetic only",
    "runtime_deblur_s": "median wall time of one deblurring forward pass (batch 1, the test resolution "
    "padded to a multiple of 16) after warm-up, torch.inference_mode, CUDA synchronised",
    "runtime_video_s": "median wall time of one whole-video prediction (deblurring included) under the same "
    "conditions",
    "params": "number of trainable and frozen parameters of all the method's networks",
    "size_mb": "float32 size of the parameters in megabytes of 10^6 bytes (params * 4 / 1e6)",
    "device": "the device the runtimes were measured on",
}


def _check_pair(a: np.ndarray, b: np.ndarray, ndim: int, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}")
    if a.ndim != ndim or a.shape[-1] != 3:
        want = "(h, w, 3)" if ndim == 3 else "(n, h, w, 3)"
        raise ValueError(f"{what}: expected a {want} array, got {a.shape}")


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def _psnr_of_mse(mse: float) -> float:
    # Identical images have no finite PSNR; inf is the honest value (evaluate stores it as null in JSON).
    return math.inf if mse == 0.0 else 10.0 * math.log10(PEAK * PEAK / mse)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of any equal shape: 10 log10(255^2 / MSE) over every element.

    Range [0, inf); inf when the arrays are equal. Float64 throughout.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {a.shape} vs {b.shape}")
    return _psnr_of_mse(_mse(a, b))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 RGB images `(h, w, 3)` with the MATLAB-matching settings.

    Range [-1, 1], 1 for identical images. Needs h, w >= 11 (the 11x11 Gaussian window of sigma 1.5).
    """
    # late: the report and bench.store read this module; scikit-image is slow to import
    from skimage.metrics import structural_similarity

    _check_pair(a, b, 3, "ssim")
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def eq6_error(pred: np.ndarray, true: np.ndarray) -> float:
    """The paper's Eq. 6 ordering-invariant error of two uint8 videos `(N, h, w, 3)` (Sec. 2.4, Sec. 3.2).

    On [0, 255] float64 frames: sum over n = 1..floor(N/2) with m = N+1-n of
    mean| |x^_n + x^_m| - |x_n + x_m| | + mean| |x^_n - x^_m| - |x_n - x_m| |, means over pixels and channels.
    The paper writes x_{N-n} (1-based); pairing n with its mirror N+1-n is the reading under which the error
    is invariant to reversing the predicted order, which is the point of Eq. 6. The central frame of an odd N
    has no partner and does not enter. Range [0, 2 * 255 * floor(N/2)]; 0 for a perfect (or reversed) video.
    """
    _check_pair(pred, true, 4, "eq6_error")
    n = pred.shape[0]
    p = pred.astype(np.float64)  # (N, h, w, 3)
    t = true.astype(np.float64)
    total = 0.0
    for i in range(n // 2):
        j = n - 1 - i  # 0-based mirror of i: 1-based n pairs with N+1-n
        total += float(np.mean(np.abs(np.abs(p[i] + p[j]) - np.abs(t[i] + t[j]))))
        total += float(np.mean(np.abs(np.abs(p[i] - p[j]) - np.abs(t[i] - t[j]))))
    return total


def _frame_psnrs(pred: np.ndarray, true: np.ndarray) -> list[float]:
    return [psnr(p, t) for p, t in zip(pred, true, strict=True)]


def ppsnr(pred: np.ndarray, true: np.ndarray) -> float:
    """pPSNR of two uint8 videos `(N, h, w, 3)`, in dB.

    Source: HyperCUT (Pham et al., CVPR 2023), github.com/VinAIResearch/HyperCUT, utils/metrics.py
    `calculate_pPSNR`. Reading: max( mean_t PSNR(x^_t, x_t), mean_t PSNR(x^_{N+1-t}, x_t) ), per-frame PSNR
    10 log10(255^2 / MSE) with the MSE over a frame's pixels and channels, averaged over the N frames; the
    better of the predicted order and its reverse, chosen per sequence. [0, 255] RGB, full resolution, no
    border crop. HyperCUT scores its network's float output un-normalised to [0, 255] without rounding; we
    score uint8 frames (the rounding moves a score by the rounding noise only). Equal to HyperCUT's code
    within 1e-4 dB (tests/test_metrics_parity.py). Range [0, inf).
    """
    _check_pair(pred, true, 4, "ppsnr")
    forward = float(np.mean(_frame_psnrs(pred, true)))
    backward = float(np.mean(_frame_psnrs(pred[::-1], true)))
    return max(forward, backward)


def pwpsnr(pred: np.ndarray, true: np.ndarray) -> float:
    """PW-PSNR, pixel-wise best-of-orders PSNR after blur2vid, of two uint8 videos `(N, h, w, 3)`, in dB.

    10 log10(255^2 / mean_p min_d (1/N) sum_t (x^d_t(p) - x_t(p))^2) with d in {predicted, reversed}: the
    direction is chosen per pixel location p, a pixel being the RGB triple (its squared error is averaged
    over the 3 channels before the minimum). [0, 255], float64, full resolution, no border crop. Since a mean
    of minima is at most the minimum of means, PW-PSNR is at least the whole-video PSNR of the better order.
    Range [0, inf).

    This is the suite's reading of blur2vid's definition (Tedla et al., SIGGRAPH Asia 2025), kept unchanged
    so stored runs stay comparable. blur2vid's own code (github.com/tedlasai/blur2vid,
    extra/moMets-parallel-gopro.py, `scorePWPSNR`) differs in two ways that move numbers: it takes the
    minimum per pixel *and channel* (so its value is never below ours on the same frames), and it scores
    videos halved in size. `b2v_pwpsnr` is that code's reading.
    """
    _check_pair(pred, true, 4, "pwpsnr")
    p = pred.astype(np.float64)  # (N, h, w, 3)
    t = true.astype(np.float64)
    err_fwd = np.mean((p - t) ** 2, axis=(0, 3))  # (h, w)
    err_bwd = np.mean((p[::-1] - t) ** 2, axis=(0, 3))  # (h, w)
    return _psnr_of_mse(float(np.mean(np.minimum(err_fwd, err_bwd))))


def pooled_psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """Pooled best-of-orders PSNR of two uint8 videos `(N, h, w, 3)`, in dB.

    Source: Animation-from-Blur (Zhong et al., ECCV 2022), github.com/zzh-tech/Animation-from-Blur,
    valid_vaegan.py `evaluate` (the "valid max." line): the N frames are stacked into one tensor and
    `torchmetrics.functional.psnr(..., data_range=255)` takes ONE MSE over every frame, pixel and channel
    (pooled, not a mean of per-frame PSNRs); the better of the predicted and reversed orders is kept. [0, 255]
    RGB, full resolution, no border crop. Their predictions are float, clamped to [0, 255] and not rounded;
    ours are uint8. Their set score is the mean over samples (an AverageMeter weighted by N, equal for one N),
    as our aggregate is; with `--num_sampling` > 1 they also keep the best of several sampled guidances, which
    a deterministic method does not have. Pooling weights a badly predicted frame by its MSE rather than its
    dB, so the value is at most pPSNR's. Range [0, inf).
    """
    _check_pair(pred, true, 4, "pooled_psnr")
    return max(psnr(pred, true), psnr(pred[::-1], true))


def half_size(video: np.ndarray) -> np.ndarray:
    """blur2vid's 2x downsampling of uint8 frames `(N, h, w, 3)` -> `(N, h // 2, w // 2, 3)` uint8.

    Source: github.com/tedlasai/blur2vid, extra/downsample_results.py `downsample_image`: cv2.resize to
    (w // 2, h // 2) with INTER_AREA on the 8-bit frame (OpenCV rounds the result to uint8). Needs h, w >= 2.
    """
    # late: OpenCV is slow to import and the report reads this module without it
    import cv2

    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[1] < 2 or video.shape[2] < 2:
        raise ValueError(f"half_size: expected (n, h, w, 3) frames with h, w >= 2, got {video.shape}")
    size = (video.shape[2] // 2, video.shape[1] // 2)  # OpenCV's (width, height)
    return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_AREA) for f in video])


def b2v_psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """blur2vid's per-clip best-of-order mean PSNR of two uint8 videos `(N, h, w, 3)`, in dB.

    Source: blur2vid (Tedla et al., SIGGRAPH Asia 2025), github.com/tedlasai/blur2vid,
    extra/moMets-parallel-gopro.py (`scorePSNR`, reduced in `main`: mean over frames, then the max over the
    two directions, then the mean over clips). Reading: both videos are first halved in each side
    (`half_size`, their extra/downsample_results.py, which their GoPro results tree goes through), then per
    frame PSNR 10 log10(1 / MSE) on [0, 1] values (= 255^2 / MSE on [0, 255]), MSE over a frame's pixels and
    channels, averaged over the N frames, the better of the predicted and reversed orders per clip. RGB, no
    border crop; they compute in float32, we in float64. On the same frames this is pPSNR's reading; what
    moves the number is the resolution: halving averages away pixel noise, several dB on noisy frames.
    Range [0, inf).
    """
    _check_pair(pred, true, 4, "b2v_psnr")
    return ppsnr(half_size(pred), half_size(true))


def b2v_pwpsnr(pred: np.ndarray, true: np.ndarray) -> float:
    """blur2vid's pixel-wise PSNR as its published code computes it: two uint8 videos `(N, h, w, 3)`, in dB.

    Source: github.com/tedlasai/blur2vid, extra/moMets-parallel-gopro.py `scorePWPSNR`:
    10 log10(1 / mean_e min_d mean_t (x^d_t(e) - x_t(e))^2) on [0, 1] values, d in {predicted, reversed}, the
    order chosen per element e = (row, column, channel), on videos first halved (`half_size`). RGB, no border
    crop; float32 there, float64 here. Differs from `pwpsnr` (the suite's reading, per RGB pixel, full
    resolution) by the channel-wise choice (never lower) and by the resolution. Range [0, inf).
    """
    _check_pair(pred, true, 4, "b2v_pwpsnr")
    p = half_size(pred).astype(np.float64)  # (N, h/2, w/2, 3)
    t = half_size(true).astype(np.float64)
    err_fwd = np.mean((p - t) ** 2, axis=0)  # (h/2, w/2, 3)
    err_bwd = np.mean((p[::-1] - t) ** 2, axis=0)
    return _psnr_of_mse(float(np.mean(np.minimum(err_fwd, err_bwd))))


def reblur(frames: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """The blur N frames make, unrounded: uint8 `(N, h, w, 3)` -> float64 `(h, w, 3)` in [0, 255].

    The suite's blur builder (bench/data/blur.py `WindowBlur`, docs/DESIGN.md "Data") without its final
    rounding: the mean of the frames, in linear light 255 * mean((v / 255)^gamma)^(1 / gamma) when `gamma` is
    given, else of the stored values. So np.rint of it is the set's stored blur of the true frames.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"reblur: expected (n, h, w, 3) frames, got {frames.shape}")
    x = frames.astype(np.float64)
    if gamma is None:
        return np.mean(x, axis=0)
    return 255.0 * np.mean((x / 255.0) ** gamma, axis=0) ** (1.0 / gamma)


def reblur_psnr(pred: np.ndarray, blur: np.ndarray, gamma: float | None = None) -> float:
    """Reblur PSNR in dB: predicted uint8 frames `(N, h, w, 3)` averaged back into a blur vs a reference blur.

    PSNR 10 log10(255^2 / MSE) of `reblur(pred, gamma)` (float64, not rounded) against `blur` `(h, w, 3)` on
    [0, 255]: in the suite the blurred input itself (uint8) with the set's gamma (None: the mean of stored
    values, as the paper; 2.2: linear light), over every pixel and channel, full resolution, no border crop.
    Order-invariant; it checks that the frames explain the input, not that they are sharp.

    Source of the idea: blur2vid (github.com/tedlasai/blur2vid, extra/moMets-parallel-gopro.py
    `scoreBlurryPSNR`). Their reading differs: the reference is the ground-truth frames reblurred the same
    way (float, never rounded) rather than the input, the gamma is always 2.2 whatever made the input, values
    are float32 in [0, 1], and their GoPro videos are halved first. Given `reblur(true, 2.2)` as `blur` and
    gamma 2.2, this function computes their reading at the resolution given (tests/test_metrics_parity.py).
    Range [0, inf).
    """
    if blur.ndim != 3 or pred.shape[1:] != blur.shape:
        raise ValueError(f"reblur_psnr: frames {pred.shape} do not match blur {blur.shape}")
    d = reblur(pred, gamma) - blur.astype(np.float64)
    return _psnr_of_mse(float(np.mean(d * d)))


def mid_psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """PSNR in dB of the middle frame (1-based (N+1)/2) of two uint8 videos `(N, h, w, 3)`, N odd."""
    _check_pair(pred, true, 4, "mid_psnr")
    c = pred.shape[0] // 2
    return psnr(pred[c], true[c])


def motion_ratio(pred: np.ndarray, true: np.ndarray) -> float:
    """How much a predicted video moves, relative to the true one: two uint8 videos `(N, h, w, 3)`, N >= 2.

    mean_n mean|x^_{n+1} - x^_n| / mean_n mean|x_{n+1} - x_n| over n = 1..N-1, inner means over pixels and
    channels, on [0, 255] float64 frames. 0 for a static prediction (a floor that repeats one frame scores
    well on Eq. 6 but 0 here), about 1 when the prediction moves as much as the truth, above 1 when it
    flickers more; invariant to reversing the predicted order. nan when the true video is static (no motion
    to compare with). Range [0, inf).
    """
    _check_pair(pred, true, 4, "motion_ratio")
    if pred.shape[0] < 2:
        raise ValueError(f"motion_ratio: needs at least 2 frames, got {pred.shape[0]}")
    p = pred.astype(np.float64)  # (N, h, w, 3)
    t = true.astype(np.float64)
    moved = float(np.mean(np.abs(np.diff(p, axis=0))))
    truth = float(np.mean(np.abs(np.diff(t, axis=0))))
    return math.nan if truth == 0.0 else moved / truth


def flow_epe(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean end-point error in pixels of flows `(N, h, w, 2)`, the better of the two frame orders.

    EPE = mean over frames and pixels of sqrt(du^2 + dv^2). The reversed order compares predicted flow N+1-n
    with true flow n (the flows are relative to the central frame, so reversing the video reorders them).
    Range [0, inf); 0 for a perfect prediction.
    """
    if pred.shape != true.shape or pred.ndim != 4 or pred.shape[-1] != 2:
        raise ValueError(f"flow_epe: expected equal (n, h, w, 2) arrays, got {pred.shape} and {true.shape}")
    p = pred.astype(np.float64)
    t = true.astype(np.float64)
    forward = float(np.mean(np.sqrt(np.sum((p - t) ** 2, axis=-1))))
    backward = float(np.mean(np.sqrt(np.sum((p[::-1] - t) ** 2, axis=-1))))
    return min(forward, backward)


# ----------------------------------------------------------------------------------------------- tensors


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Round a float image tensor in [0, 1] (any layout) to uint8: (x.clamp(0,1)*255).round().byte()."""
    return (x.detach().float().clamp(0, 1) * 255).round().byte()


def to_numpy_images(x: torch.Tensor) -> np.ndarray:
    """A float tensor `(3, h, w)` or `(n, 3, h, w)` in [0, 1] -> uint8 numpy `(h, w, 3)` or `(n, h, w, 3)`."""
    u = to_uint8(x).cpu().numpy()
    return np.ascontiguousarray(np.moveaxis(u, -3, -1))


def to_numpy_flows(x: torch.Tensor) -> np.ndarray:
    """A flow tensor `(n, 2, h, w)` (pixels) -> float64 numpy `(n, h, w, 2)`, the layout `flow_epe` takes."""
    return np.ascontiguousarray(np.moveaxis(x.detach().double().cpu().numpy(), -3, -1))


# ------------------------------------------------------------------------------------------------ LPIPS

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet weights
# lpips' alexnet wrapper splits torchvision's `features` into five slices; feature index -> slice number.
_ALEX_SLICES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}


def alexnet_cache_path() -> Path:
    """Where torchvision caches AlexNet: `$TORCH_HOME/hub/checkpoints/` (default ~/.cache/torch)."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(xdg, "torch")
    return Path(home) / "hub" / "checkpoints" / ALEXNET_FILE


def load_lpips() -> tuple[torch.nn.Module | None, str | None]:
    """The LPIPS network (alex, v0.1) in eval mode, or (None, a one-line reason) when it cannot be built here.

    The linear calibration layers ship inside the lpips wheel. The AlexNet trunk is read only from
    torchvision's local cache: lpips.LPIPS is built with `pnet_rand=True` (so torchvision is never asked to
    download) and the cached ImageNet weights are then copied into its trunk, every trunk tensor checked, so
    a missing or partial file can never leave random weights in place.
    """
    path = alexnet_cache_path()
    if not path.is_file():
        return None, (f"LPIPS not computed: AlexNet weights not cached at {path} (no download attempted; "
                      "`bench fetch-weights lpips` fetches them)")
    return _load_lpips_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _load_lpips_cached(path: str, _mtime: int) -> tuple[torch.nn.Module | None, str | None]:
    # late: lpips and torch only when LPIPS is computed (the report reads this module without them)
    import lpips
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: report, do not fall back to random weights
        return None, f"LPIPS not computed: cannot read {path} ({type(err).__name__})"
    # torchvision warns about the deprecated `pretrained=False` that lpips passes; nothing is downloaded.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    trunk = model.net.state_dict()
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and int(parts[1]) in _ALEX_SLICES:
            mapped[f"slice{_ALEX_SLICES[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    if set(mapped) != set(trunk) or any(mapped[k].shape != trunk[k].shape for k in trunk):
        return None, f"LPIPS not computed: {path} does not hold torchvision's AlexNet features"
    model.net.load_state_dict(mapped, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, None


def lpips_distance(model: torch.nn.Module, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS distance of two uint8 RGB images `(h, w, 3)` with a model from `load_lpips`.

    Inputs go in as [0, 1] floats with `normalize=True`. Range [0, ~1], 0 for identical images.
    """
    import torch  # late (see _load_lpips_cached)

    _check_pair(a, b, 3, "lpips_distance")

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]  # (1, 3, h, w)
        return t.float() / 255.0

    with torch.inference_mode():
        return float(model(prep(a), prep(b), normalize=True).item())
