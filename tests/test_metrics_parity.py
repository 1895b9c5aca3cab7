"""Parity of bench/metrics.py with the metric code other projects publish.

The numbers below were produced by each project's own code, run outside this repository (in /tmp/parity on
the development machine, torch 2.14.1 CPU, numpy 2.2.6, OpenCV 4.12.0, torchmetrics 1.9.0), on the fixed
inputs `_case` builds: uniform random uint8 truths, predictions = truth + seeded Gaussian noise whose
strength differs per frame (rounded, clipped), one prediction drawn independently, and one whose frames are
in reversed order (a known order flip). Only numbers are copied here, never code. GitHub itself is not
reachable from that machine, so each source file was transcribed from the indexed copy at the commit named;
the lines that compute a metric were kept as published, and what had to change around them is listed:

- HyperCUT, github.com/VinAIResearch/HyperCUT @ 24510d6dc5dcd2e1c6d77349f4a05c7650752f92 (utils/metrics.py
  is identical at d451605d3fe1feb619e2dd637d6490286200f14c), utils/metrics.py `calculate_pPSNR` with
  utils/training_utils.py `unnormalize_vid_tensor` and resources/consts.py. Inputs were normalised as its
  test loader does (ImageNet mean/std on [0, 1] values, float32, shape (1, N, 3, H, W)); the printed value is
  the `mean` it returns.
- Animation-from-Blur, github.com/zzh-tech/Animation-from-Blur @ d19e82fde82d5534c4775158ca5049697aa6716c,
  valid_vaegan.py `evaluate`: its PSNR lines (flip, reshape to (N*b, c, h, w), two torchmetrics PSNRs with
  data_range=255, the max, the AverageMeter update) run on float32 [0, 255] tensors as MBD.update returns
  them. The rest of `evaluate` needs CUDA, the trained networks and DDP, so it did not run.
  `torchmetrics.functional.psnr` is `peak_signal_noise_ratio` since torchmetrics 0.8 and was aliased.
- blur2vid, github.com/tedlasai/blur2vid @ b6079dbe34d63e2927011b93d28ae8280676a9e9,
  extra/moMets-parallel-gopro.py, run whole (`main` with `compute = True`, then `main`'s own reduction taken
  per clip) on a GOPROResultsImages tree holding one clip, with patchDim 20 (the test frames are 80x120;
  patchDim only sizes the patch SSIM/LPIPS loops). FVD (cdfvd), LPIPS, EPE and scikit-image's SSIM were
  stubbed: they need downloaded weights and none of them enters PSNR, PWPSNR or BlurryPSNR. "half" rows are
  the same script on the tree written by extra/downsample_results.py
  @ 61264a6265aebec2b84b58c718a5d1c8dbe8e704 (2x INTER_AREA), which is how blur2vid's GoPro numbers are made.

What could not be matched: blur2vid's PWPSNR (per pixel AND channel) is not the suite's `pwpsnr` (per RGB
pixel), whose values stay as they were; `b2v_pwpsnr` is the published reading and matches. blur2vid's
BlurryPSNR compares against the reblurred truth, not the input; `reblur_psnr` given that reference matches.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import metrics

TOL = 1e-4  # dB

# name -> (seed, N, h, w, per-frame noise sigmas, prediction independent of the truth, frames reversed)
CASES = {
    "seed0": (0, 7, 80, 120, (4, 6, 8, 10, 12, 14, 16), False, False),
    "seed1": (1, 9, 80, 80, (30, 2, 20, 5, 10, 5, 20, 2, 30), False, False),
    "seed2": (2, 7, 40, 80, (0,) * 7, True, False),
    "flip": (3, 7, 80, 120, (3, 5, 7, 9, 11, 13, 15), False, True),
}

# The sources' numbers on CASES (dB), printed with 6 decimals.
HYPERCUT_PPSNR = {"seed0": 29.122562, "seed1": 29.368731, "seed2": 7.739924, "flip": 30.270374}
AFB_POOLED = {"seed0": 27.714273, "seed1": 23.761101, "seed2": 7.739469, "flip": 28.478382}
B2V_FULL = {  # moMets at full size: per-clip PSNR, PWPSNR, BlurryPSNR
    "seed0": (29.122563, 27.715382, 36.069061),
    "seed1": (29.368729, 23.762375, 33.321472),
    "seed2": (7.739924, 8.640141, 16.917570),
    "flip": (30.270373, 28.478529, 36.845627),
}
B2V_HALF = {  # moMets after downsample_results.py
    "seed0": (35.072932, 33.685738, 42.079803),
    "seed1": (35.187643, 29.724119, 39.135330),
    "seed2": (13.773183, 14.623507, 22.139637),
    "flip": (36.201831, 34.475754, 42.940441),
}


def _case(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred, true) uint8 `(N, h, w, 3)` of one fixed case, drawn in the order the source runs drew them."""
    seed, n, h, w, sigmas, independent, flip = CASES[name]
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    if independent:
        pred = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    else:
        noise = rng.normal(0.0, 1.0, (n, h, w, 3)) * np.asarray(sigmas, np.float64)[:, None, None, None]
        pred = np.clip(np.rint(true + noise), 0, 255).astype(np.uint8)
    return (pred[::-1].copy() if flip else pred), true


@pytest.mark.parametrize("name", CASES)
def test_ppsnr_equals_hypercut(name: str) -> None:
    pred, true = _case(name)
    assert metrics.ppsnr(pred, true) == pytest.approx(HYPERCUT_PPSNR[name], abs=TOL)


@pytest.mark.parametrize("name", CASES)
def test_pooled_psnr_equals_animation_from_blur(name: str) -> None:
    pred, true = _case(name)
    assert metrics.pooled_psnr(pred, true) == pytest.approx(AFB_POOLED[name], abs=TOL)


@pytest.mark.parametrize("name", CASES)
def test_b2v_metrics_equal_blur2vid_at_half_size(name: str) -> None:
    pred, true = _case(name)
    clip, pw, _ = B2V_HALF[name]
    assert metrics.b2v_psnr(pred, true) == pytest.approx(clip, abs=TOL)
    assert metrics.b2v_pwpsnr(pred, true) == pytest.approx(pw, abs=TOL)


@pytest.mark.parametrize("name", CASES)
def test_blur2vid_per_clip_psnr_at_full_size_is_ppsnr(name: str) -> None:
    # Without the downsampling, blur2vid's per-clip reading is HyperCUT's pPSNR.
    pred, true = _case(name)
    assert metrics.ppsnr(pred, true) == pytest.approx(B2V_FULL[name][0], abs=TOL)


@pytest.mark.parametrize(("table", "half"), [(B2V_FULL, False), (B2V_HALF, True)])
@pytest.mark.parametrize("name", CASES)
def test_reblur_psnr_equals_blur2vid_against_the_reblurred_truth(name: str, table: dict, half: bool) -> None:
    pred, true = _case(name)
    if half:
        pred, true = metrics.half_size(pred), metrics.half_size(true)
    got = metrics.reblur_psnr(pred, metrics.reblur(true, 2.2), 2.2)
    assert got == pytest.approx(table[name][2], abs=TOL)


@pytest.mark.parametrize("name", CASES)
def test_suite_pwpsnr_differs_from_blur2vid_as_documented(name: str) -> None:
    # Per RGB pixel (ours) never beats per pixel and channel (theirs) on the same frames. Where one order is
    # clearly right the two nearly agree (0.0001-0.0013 dB here); where the orders compete (seed2, frames
    # unrelated to the truth) ours is 0.39 dB lower: why b2v_pwpsnr exists and pwpsnr keeps its values.
    pred, true = _case(name)
    ours, theirs = metrics.pwpsnr(pred, true), B2V_FULL[name][1]
    assert ours <= theirs + TOL
    if name == "seed2":
        assert theirs - ours > 0.3
