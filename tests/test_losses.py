"""methods/losses.py: Eq. 4-6 and TV."""

import pytest
import torch

from methods.losses import LAMBDAS, LossConfig, eq6, l1_video, mirror_pairs, multiscale_loss, tv


@pytest.fixture
def video() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(2, 7, 3, 16, 16)


def test_mirror_pairs_cover_every_frame_once():
    for n in (3, 7, 9, 11, 4):
        first, mirror = mirror_pairs(n)
        assert sorted(set(first) | set(mirror)) == list(range(n))
        assert all(a + b == n - 1 for a, b in zip(first, mirror, strict=True))


@pytest.mark.parametrize("n", [3, 7, 9])
def test_eq6_zero_for_perfect_prediction(n: int):
    x = torch.rand(2, n, 3, 8, 8)
    assert eq6(x, x).item() == 0.0


def test_eq6_positive_for_a_wrong_prediction(video):
    noisy = video + 0.1 * torch.randn_like(video)
    assert eq6(noisy, video).item() > 0
    assert eq6(video.mean(1, keepdim=True).expand_as(video), video).item() > 0  # the "blurred" answer


def test_eq6_invariant_to_reversing_the_prediction(video):
    pred = torch.rand_like(video)
    assert torch.allclose(eq6(pred, video), eq6(pred.flip(1), video), atol=1e-6)
    assert eq6(video.flip(1), video).item() == pytest.approx(0.0, abs=1e-7)  # reversed truth costs nothing
    assert l1_video(video.flip(1), video).item() > 0  # whereas Eq. 5 penalises it


def test_eq6_centre_term_is_twice_the_l1_of_the_middle_frame(video):
    pred = video.clone()
    pred[:, 3] += 0.05  # only the central frame (N = 7) is off
    assert eq6(pred, video).item() == pytest.approx(2 * 0.05 * 3 * 16 * 16 / (3 * 16 * 16), rel=1e-4)


def test_l1_video_sums_frames(video):
    pred = video + 0.1
    assert l1_video(pred, video).item() == pytest.approx(0.1 * 7, rel=1e-4)


def test_tv_zero_for_constant_and_known_for_a_ramp():
    flat = torch.full((1, 2, 8, 8), 3.0)
    assert tv(flat).item() == 0.0
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 8, 8)
    assert tv(ramp).item() == pytest.approx(1.0)  # |dx| = 1 everywhere, dy = 0
    video = ramp.unsqueeze(1).expand(1, 5, 2, 8, 8)
    assert tv(video).item() == pytest.approx(5.0)  # Eq. 4's inner sum over n


def test_loss_config_defaults_and_scales():
    cfg = LossConfig()
    assert cfg.lambdas == LAMBDAS and cfg.mu == 0.02 and cfg.scales == (0, 1, 2, 3)
    assert LossConfig(lambdas=(0, 0, 0, 1)).scales == (3,)
    assert cfg.to_dict()["lambdas"] == list(LAMBDAS)


def _outputs(video: torch.Tensor, offset: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    from methods.layers import downsample

    frames = [downsample(video, f) + offset for f in (8, 4, 2, 1)]
    flows = [torch.randn(video.shape[0], video.shape[1], 2, video.shape[-2] // f, video.shape[-1] // f)
             for f in (8, 4, 2, 1)]
    return frames, flows


def test_multiscale_loss_weights_scales_and_tv(video):
    frames, flows = _outputs(video, 0.1)
    no_tv = LossConfig(mu=0.0)
    total, parts = multiscale_loss(frames, flows, video, no_tv, "eq5")
    assert total.item() == pytest.approx(sum(LAMBDAS) * 0.7, rel=1e-4)  # each scale's L1 is 0.1 * 7 frames
    assert parts["tv_s1"] == 0.0
    with_tv, parts = multiscale_loss(frames, flows, video, LossConfig(), "eq5")
    assert with_tv.item() > total.item() and parts["tv_s1"] > 0
    single, parts = multiscale_loss(frames, flows, video, LossConfig(lambdas=(0, 0, 0, 1), mu=0.0), "eq5")
    assert single.item() == pytest.approx(0.7, rel=1e-4) and "eq5_s8" not in parts
    perfect, _ = multiscale_loss(_outputs(video, 0.0)[0], None, video, LossConfig(), "eq6")
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)  # intensity output: no flows, no TV
