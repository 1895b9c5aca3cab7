"""Tests of bench/metrics.py against hand-computed values and the properties docs/DESIGN.md "Metrics"
states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench import metrics
from bench.errors import BenchError


def _rng_video(n: int = 5, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_psnr_of_known_mse() -> None:
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110  # one error of 10 over 48 values: MSE = 100 / 48
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 100), abs=1e-12)
    c = np.full((4, 4, 3), 90, np.uint8)  # every value off by 10: MSE = 100, PSNR = 28.1308 dB
    assert metrics.psnr(a, c) == pytest.approx(28.130803608679106, abs=1e-12)
    assert metrics.psnr(a, a) == math.inf


def test_psnr_does_not_wrap_uint8() -> None:
    # 0 - 255 in uint8 arithmetic wraps to 1; the metric must compute in float (MSE = 255^2 -> 0 dB).
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 255, np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(0.0, abs=1e-12)


def test_ssim_identical_is_one_and_noise_lowers_it() -> None:
    a = _rng_video(1, 24, 24)[0]
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # Constant images have no variance, so SSIM is the luminance term
    # (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) with C1 = (0.01 * 255)^2 (skimage's K1, data_range=255).
    c1 = (0.01 * 255) ** 2
    flat_a, flat_b = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 110, np.uint8)
    want = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert metrics.ssim(flat_a, flat_b) == pytest.approx(want, abs=1e-9)
    smooth = np.repeat(np.linspace(0, 255, 24).astype(np.uint8)[None, :, None], 24, axis=0).repeat(3, axis=2)
    noise = np.random.default_rng(1).integers(-40, 41, smooth.shape)
    noisy = np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)
    assert metrics.ssim(smooth, noisy) < 0.8


def test_eq6_zero_for_perfect_and_reversed_positive_otherwise() -> None:
    true = _rng_video(7)
    assert metrics.eq6_error(true, true) == 0.0
    assert metrics.eq6_error(true[::-1].copy(), true) == 0.0  # ordering invariance: Eq. 6's purpose
    wrong = true.copy()
    wrong[0] = 255 - wrong[0]
    err = metrics.eq6_error(wrong, true)
    assert err > 0
    assert metrics.eq6_error(wrong[::-1].copy(), true) == pytest.approx(err, abs=1e-12)


def test_eq6_hand_computed_and_ignores_centre() -> None:
    # N = 3: only the pair (1, 3) counts. Truth frames 0, c, 100; prediction 10, c', 80 (constant images).
    true = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 50, 100)])
    pred = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (10, 200, 80)])
    # sum term: |(10+80) - (0+100)| = 10; difference term: ||10-80| - |0-100|| = 30
    assert metrics.eq6_error(pred, true) == pytest.approx(40.0, abs=1e-12)


def test_blurred_mean_beats_repeated_true_centre_in_eq6() -> None:
    # Eq. 6 rewards the mean (docs/DESIGN.md "Metrics"). A smooth texture translating 2 px per frame over 9
    # frames.
    rng = np.random.default_rng(3)
    base = rng.random((48, 96, 3))
    k = np.ones(5) / 5  # smooth the noise so a shift changes the image gradually, like real footage
    base = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 0, base)
    base = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, base)
    base = (base - base.min()) / (base.max() - base.min())
    frames = np.stack([base[8:40, 8 + 2 * t: 8 + 2 * t + 64] for t in range(9)])  # (9, 32, 64, 3)
    true = np.round(frames * 255).astype(np.uint8)
    blurred = np.round(frames.mean(axis=0) * 255).astype(np.uint8)
    err_blurred = metrics.eq6_error(np.repeat(blurred[None], 9, axis=0), true)
    err_centre = metrics.eq6_error(np.repeat(true[4][None], 9, axis=0), true)
    assert 0 < err_blurred < err_centre


def test_ppsnr_picks_the_better_order() -> None:
    true = _rng_video(5)
    rev = true[::-1].copy()
    assert metrics.ppsnr(rev, true) == math.inf  # the reversed truth is perfect under pPSNR
    noisy = np.clip(true.astype(int) + 3, 0, 255).astype(np.uint8)
    forward = np.mean([metrics.psnr(p, t) for p, t in zip(noisy, true, strict=True)])
    assert metrics.ppsnr(noisy, true) == pytest.approx(forward, abs=1e-12)
    assert metrics.ppsnr(noisy[::-1].copy(), true) == pytest.approx(forward, abs=1e-12)


def test_pwpsnr_bounds() -> None:
    true = _rng_video(5, seed=4)
    # Equal error in every frame (a constant offset of 6 where it does not clip): per-frame PSNRs are equal,
    # so pPSNR equals the whole-video PSNR, and PW-PSNR, choosing per pixel, can only be higher.
    true = np.clip(true, 10, 240)
    pred = (true.astype(int) + 6).astype(np.uint8)
    assert metrics.ppsnr(pred, true) == pytest.approx(10 * math.log10(255**2 / 36), abs=1e-9)
    assert metrics.pwpsnr(pred, true) >= metrics.ppsnr(pred, true) - 1e-12
    # In general PW-PSNR is at least the whole-video PSNR of the better order.
    other = _rng_video(5, seed=5)
    video_psnr = max(metrics.psnr(other, true), metrics.psnr(other[::-1].copy(), true))
    assert metrics.pwpsnr(other, true) >= video_psnr - 1e-12
    # A prediction whose left half is in order and right half reversed: perfect only for PW-PSNR.
    mixed = true.copy()
    mixed[:, :, 8:] = true[::-1, :, 8:]
    assert metrics.pwpsnr(mixed, true) == math.inf
    mixed[2, 0, 0, 0] ^= 1  # keep every per-frame PSNR finite so pPSNR's mean is informative
    assert metrics.ppsnr(mixed, true) < 30


def test_mid_psnr_uses_the_middle_frame() -> None:
    true = _rng_video(7)
    pred = 255 - true
    pred[3] = true[3]
    assert metrics.mid_psnr(pred, true) == math.inf
    pred[3, 0, 0, 0] ^= 1  # one value off by one: MSE = 1 / 768
    assert metrics.mid_psnr(pred, true) == pytest.approx(10 * math.log10(255**2 * 768), abs=1e-9)
    assert metrics.ppsnr(pred, true) < 20


def test_flow_epe_hand_value_and_better_order() -> None:
    true = np.zeros((3, 4, 4, 2))
    true[0, ..., 0] = -2.0
    true[2, ..., 0] = 2.0
    pred = true.copy()
    pred[..., 1] += 3.0
    pred[..., 0] += 4.0  # every vector off by (4, 3): EPE 5 in the given order
    assert metrics.flow_epe(pred, true) == pytest.approx(5.0)
    assert metrics.flow_epe(true[::-1].copy(), true) == 0.0
    # off by (4, 3) in the reversed order, worse in the given one: the reversed order is taken
    assert metrics.flow_epe(pred[::-1].copy(), true) == pytest.approx(5.0)


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 0.6 / 255, 0.5, 1.0, 2.0])
    assert metrics.to_uint8(x).tolist() == [0, 0, 0, 1, 128, 255, 255]  # round half to even at 0.5
    img = torch.rand(2, 3, 5, 6)
    arr = metrics.to_numpy_images(img)
    assert arr.shape == (2, 5, 6, 3) and arr.dtype == np.uint8
    assert arr[1, 2, 3, 0] == metrics.to_uint8(img[1, 0, 2, 3]).item()
    flows = metrics.to_numpy_flows(torch.randn(3, 2, 4, 5))
    assert flows.shape == (3, 4, 5, 2)


def test_definitions_cover_every_aggregate_metric() -> None:
    for key in (*metrics.SAMPLE_METRICS, *metrics.COST_METRICS):
        assert metrics.DEFINITIONS.get(key), f"{key} has no one-line definition for the reports"


def test_lpips_missing_backbone_is_reported_not_downloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, reason = metrics.load_lpips()
    assert model is None
    assert "alexnet-owt-7be5be79.pth" in reason and "\n" not in reason
    assert not any(tmp_path.rglob("*"))  # nothing fetched into the cache


def test_lpips_loads_the_cached_backbone(tmp_path, monkeypatch) -> None:
    # A stand-in AlexNet file (seeded weights) checks the wiring: every trunk tensor must come from the file.
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet().state_dict()
    path = tmp_path / "hub" / "checkpoints" / metrics.ALEXNET_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, reason = metrics.load_lpips()
    assert reason is None
    assert torch.equal(getattr(model.net.slice1, "0").weight, state["features.0.weight"])
    assert torch.equal(getattr(model.net.slice5, "10").bias, state["features.10.bias"])
    a = _rng_video(1, 32, 32)[0]
    assert metrics.lpips_distance(model, a, a) == pytest.approx(0.0, abs=1e-6)
    assert metrics.lpips_distance(model, a, 255 - a) > 0
    # A file that is not AlexNet is refused, never half-loaded.
    path.write_bytes(b"not a checkpoint")
    bad, why = metrics.load_lpips()
    assert bad is None and "cannot read" in why


def _moving_ramp(n: int = 7, h: int = 12, w: int = 40, step: float = 2.0) -> np.ndarray:
    """A horizontal ramp translating `step` pixels per frame: every frame differs from the next."""
    x = np.arange(w, dtype=np.float64)[None, :] - step * np.arange(n, dtype=np.float64)[:, None]  # (n, w)
    values = np.clip(4.0 * x + 40.0, 0, 255)  # slope 4 per pixel, away from clipping for these sizes
    return np.broadcast_to(values[:, None, :, None], (n, h, w, 3)).round().astype(np.uint8).copy()


def test_motion_ratio_static_truth_half_and_reversed() -> None:
    true = _moving_ramp()
    assert metrics.motion_ratio(true, true) == pytest.approx(1.0, abs=1e-12)
    assert metrics.motion_ratio(true[::-1].copy(), true) == pytest.approx(1.0, abs=1e-12)
    still = np.repeat(true[3:4], true.shape[0], axis=0)  # the centre frame repeated: a floor's answer
    assert metrics.motion_ratio(still, true) == 0.0
    half = _moving_ramp(step=1.0)  # the same ramp moving half as far per frame
    assert metrics.motion_ratio(half, true) == pytest.approx(0.5, abs=0.02)
    # Half-amplitude motion about the centre frame: x^_n = (x_n + x_c) / 2, differences halved up to rounding.
    blend = ((true.astype(np.float64) + true[3:4].astype(np.float64)) / 2).round().astype(np.uint8)
    assert metrics.motion_ratio(blend, true) == pytest.approx(0.5, abs=0.03)
    flicker = true.copy()
    flicker[1::2] = 255 - flicker[1::2]
    assert metrics.motion_ratio(flicker, true) > 2.0
    assert math.isnan(metrics.motion_ratio(true, still))  # no true motion: undefined, not 0 or inf
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.motion_ratio(true, true[:3])


def test_the_vocabulary_is_the_one_source_of_metric_names_and_directions() -> None:
    vocab = metrics.VOCABULARY
    assert metrics.SAMPLE_METRICS + metrics.COST_METRICS == tuple(vocab)  # every list derives from it
    assert "motion_ratio" in metrics.SAMPLE_METRICS and "size_mb" in metrics.COST_METRICS
    assert set(vocab) <= set(metrics.DEFINITIONS)  # every metric is defined in words for the reports
    for key, m in vocab.items():
        assert m.better in ("lower", "higher", "one"), key
        assert metrics.lower_is_better(key) == (m.better == "lower") == (key in metrics.LOWER_IS_BETTER)
        assert metrics.arrow(key) == {"lower": "↓", "higher": "↑", "one": "→1"}[m.better]
        assert (key in metrics.CLAIMABLE) == (m.better != "one")  # a verdict needs a direction
    assert metrics.direction("eq6") == "lower is better" and metrics.direction("ppsnr") == "higher is better"
    metrics.check_claimable("eq6", "a claim")
    with pytest.raises(BenchError, match="motion_ratio"):
        metrics.check_claimable("motion_ratio", "a claim")  # best at one: no verdict can favour a side


def _noisy(true: np.ndarray, sigmas: list[float], seed: int = 5) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=true.shape) * np.asarray(sigmas)[:, None, None, None]
    return np.clip(np.rint(true + noise), 0, 255).astype(np.uint8)


def test_pooled_psnr_is_one_mse_over_the_video_best_order() -> None:
    true = _rng_video(5, 12, 14)
    pred = _noisy(true, [2, 4, 8, 16, 32])
    pooled = metrics.pooled_psnr(pred, true)
    assert pooled == pytest.approx(metrics.psnr(pred, true), abs=1e-12)  # the forward order is the better
    assert metrics.pooled_psnr(pred[::-1].copy(), true) == pytest.approx(pooled, abs=1e-12)
    # A mean of per-frame dB favours the good frames; one pooled MSE is dominated by the worst ones.
    assert pooled < metrics.ppsnr(pred, true) - 1.0
    same = _noisy(true, [6] * 5)
    assert metrics.pooled_psnr(same, true) == pytest.approx(metrics.ppsnr(same, true), abs=0.05)


def test_half_size_averages_two_by_two_blocks() -> None:
    block = np.kron(_rng_video(2, 3, 4), np.ones((1, 2, 2, 1), np.uint8))  # (2, 6, 8, 3), 2x2 blocks
    assert np.array_equal(metrics.half_size(block), _rng_video(2, 3, 4))
    odd = _rng_video(3, 9, 11)
    assert metrics.half_size(odd).shape == (3, 4, 5, 3)  # OpenCV's (w // 2, h // 2)
    with pytest.raises(ValueError, match="h, w >= 2"):
        metrics.half_size(_rng_video(3, 1, 8))


def test_blur2vid_metrics_score_the_halved_videos() -> None:
    true = _rng_video(7, 16, 20)
    pred = _noisy(true, [10] * 7)
    half_pred, half_true = metrics.half_size(pred), metrics.half_size(true)
    assert metrics.b2v_psnr(pred, true) == pytest.approx(metrics.ppsnr(half_pred, half_true), abs=1e-12)
    assert metrics.b2v_psnr(pred, true) > metrics.ppsnr(pred, true) + 3  # halving averages noise away
    rev = pred[::-1].copy()
    assert metrics.b2v_pwpsnr(rev, true) == pytest.approx(metrics.b2v_pwpsnr(pred, true), abs=1e-12)
    # Choosing the order per channel beats choosing it per RGB pixel (the suite's pwpsnr) on the same frames.
    other = _rng_video(7, 16, 20, seed=9)
    assert metrics.b2v_pwpsnr(other, true) > metrics.pwpsnr(metrics.half_size(other), half_true) + 0.1
    assert metrics.b2v_psnr(true, true) == math.inf


def test_reblur_is_the_set_blur_before_rounding() -> None:
    from bench.data.blur import blur_frames

    frames = _rng_video(7, 10, 12)
    for gamma in (None, 2.2):
        soft = metrics.reblur(frames, gamma)
        assert soft.dtype == np.float64 and soft.shape == (10, 12, 3)
        assert np.array_equal(np.clip(np.rint(soft), 0, 255).astype(np.uint8), blur_frames(frames, gamma))


def test_reblur_psnr_of_the_truth_is_only_rounding_and_ignores_order() -> None:
    from bench.data.blur import blur_frames

    true = _rng_video(7, 10, 12)
    for gamma in (None, 2.2):
        blur = blur_frames(true, gamma)
        # The stored blur differs from the unrounded reblur by at most 0.5: MSE <= 1/4, so >= 54.2 dB.
        assert metrics.reblur_psnr(true, blur, gamma) > 54.1
        reverse = metrics.reblur_psnr(true[::-1].copy(), blur, gamma)
        assert reverse == pytest.approx(metrics.reblur_psnr(true, blur, gamma), abs=1e-9)
        still = np.repeat(true[3:4], 7, axis=0)  # a video that does not explain the blur
        assert metrics.reblur_psnr(still, blur, gamma) < 20
    with pytest.raises(ValueError, match="do not match"):
        metrics.reblur_psnr(true, blur[:5], 2.2)
