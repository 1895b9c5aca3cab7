"""methods/dm.py, video.py, bie.py, srn.py, jin2018.py: shapes, the paper's structure, and sizes."""

import pytest
import torch

from methods.bie import BIE
from methods.dm import DM, PAPER_MB
from methods.jin2018 import JinCenter, JinFrameNet
from methods.layers import count_params, warp
from methods.srn import SRN
from methods.video import RVD, RVE

SIZES = [(32, 32), (48, 64)]
W = 4  # tiny video width: shapes only


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("n", [3, 7, 9, 11])
@pytest.mark.parametrize("hw", SIZES)
def test_autoencoder_and_bie_shapes(n, hw):
    h, w = hw
    frames = torch.rand(1, n, 3, h, w)
    state = RVE(W)(frames)
    assert [s.shape for s in state] == [(1, 8 * W, h // 8, w // 8)] * 2
    bie_state = BIE(W)(frames.mean(1), frames[:, n // 2])
    assert [s.shape for s in bie_state] == [(1, 8 * W, h // 8, w // 8)] * 2
    out = RVD(W)(state, frames[:, n // 2], n)
    for j, f in enumerate((8, 4, 2, 1)):
        assert out.frames[j].shape == (1, n, 3, h // f, w // f)
        assert out.flows[j].shape == (1, n, 2, h // f, w // f)


@pytest.mark.parametrize("kwargs", [{"output": "intensity"}, {"recurrent": False}])
def test_rvd_ablation_shapes(kwargs):
    center = torch.rand(2, 3, 32, 48)
    state = (torch.randn(2, 8 * W, 4, 6), torch.randn(2, 8 * W, 4, 6))
    out = RVD(W, **kwargs)(state, center, 5)
    assert out.frames[-1].shape == (2, 5, 3, 32, 48) and out.frames[0].shape == (2, 5, 3, 4, 6)
    assert (out.flows is None) == (kwargs.get("output") == "intensity")


def test_rvd_frames_are_the_centre_warped_by_its_flows():
    """Eq. 3: every finest frame is T(centre, finest flow)."""
    center = torch.rand(1, 3, 32, 32)
    state = (torch.randn(1, 8 * W, 4, 4), torch.randn(1, 8 * W, 4, 4))
    out = RVD(W)(state, center, 3, finest_only=True)
    assert len(out.frames) == 1
    for i in range(3):
        assert torch.allclose(out.frames[0][:, i], warp(center, out.flows[0][:, i]), atol=1e-6)


def test_rvd_depends_on_the_initial_state_and_on_recurrence():
    """Eq. 1: the encoder's state initialises the decoder; Eq. 2: steps differ through the recurrence."""
    rvd = RVD(W)
    center = torch.rand(1, 3, 32, 32)
    s1 = (torch.randn(1, 8 * W, 4, 4), torch.randn(1, 8 * W, 4, 4))
    s2 = (torch.randn(1, 8 * W, 4, 4), torch.randn(1, 8 * W, 4, 4))
    f1, f2 = rvd(s1, center, 3).flows[-1], rvd(s2, center, 3).flows[-1]
    assert not torch.allclose(f1, f2)
    assert not torch.allclose(f1[:, 0], f1[:, 1])


def test_nonrecurrent_decoder_has_the_same_capacity():
    full, flat = count_params(RVD()), count_params(RVD(recurrent=False))
    assert abs(full - flat) / full < 0.10


def test_video_networks_match_the_papers_sizes():
    """RVE, RVD, BIE at the paper's widths: about 1.7 M, 1.9 M and 0.7 M parameters (docs/DESIGN.md
    "Methods")."""
    for net, expected in ((RVE(), 1.7e6), (RVD(), 1.9e6), (BIE(), 0.7e6)):
        assert abs(count_params(net) - expected) / expected < 0.10


def test_bie_without_sharp_frame_reads_only_the_blur():
    bie = BIE(W, sharp=False).eval()
    blur = torch.rand(1, 3, 32, 32)
    h1, _ = bie(blur, torch.rand(1, 3, 32, 32))
    h2, _ = bie(blur, None)
    assert torch.equal(h1, h2)


def test_dm_default_size_matches_the_paper():
    mb = count_params(DM()) * 4 / 1e6
    assert abs(mb - PAPER_MB) / PAPER_MB < 0.10


def test_dm_resblocks_variant_has_equal_size():
    rdb, res = count_params(DM()), count_params(DM(block="res"))
    assert abs(rdb - res) / rdb < 0.10
    assert count_params(DM(growth_ratio=0.5)) < rdb < count_params(DM(growth_ratio=1.5))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("block", ["rdb", "res"])
def test_dm_shapes_and_residual_start(hw, block):
    dm = DM(width=8, growth=4, rdbs=1, block=block)
    blur = torch.rand(2, 3, *hw)
    assert dm(blur).shape == (2, 3, *hw)


@pytest.mark.parametrize("hw", SIZES)
def test_srn_three_scales(hw):
    h, w = hw
    outs = SRN(width=4)(torch.rand(1, 3, h, w))
    assert [o.shape for o in outs] == [(1, 3, h // 4, w // 4), (1, 3, h // 2, w // 2), (1, 3, h, w)]


def test_srn_shares_weights_across_scales():
    """One network for all scales: its size does not grow with the number of scales."""
    assert count_params(SRN(width=4, scales=3)) == count_params(SRN(width=4, scales=2))


@pytest.mark.parametrize("hw", SIZES)
def test_jin_networks_shapes(hw):
    blur = torch.rand(1, 3, *hw)
    assert JinCenter(4)(blur).shape == (1, 3, *hw)
    assert JinFrameNet(4, blocks=2)(blur, blur, blur).shape == (1, 3, *hw)
