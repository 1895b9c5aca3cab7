"""methods/layers.py: the transformer T, ConvLSTM, blocks, space-to-depth, padding."""

import torch

from methods.layers import (
    RDB,
    ConvLSTMCell,
    ResBlock,
    crop_to,
    depth_to_space,
    downsample,
    pad_to_multiple,
    space_to_depth,
    upsample_flow,
    warp,
)


def test_zero_flow_warp_is_identity():
    img = torch.rand(2, 3, 12, 20)
    out = warp(img, torch.zeros(2, 2, 12, 20))
    assert torch.allclose(out, img, atol=1e-6)


def test_integer_flow_is_exact_shift_away_from_borders():
    img = torch.rand(1, 3, 16, 24)
    dx, dy = 3, -2
    flow = torch.zeros(1, 2, 16, 24)
    flow[:, 0], flow[:, 1] = dx, dy  # backward flow: out(p) = img(p + flow)
    out = warp(img, flow)
    # rows y with 0 <= y+dy < 16 and columns x with 0 <= x+dx < 24
    assert torch.allclose(out[..., 2:, :21], img[..., :14, 3:], atol=1e-5)
    # at the border the edge value is repeated (border padding), not zero
    assert torch.allclose(out[..., 0, 0], img[..., 0, 3], atol=1e-5)


def test_half_pixel_flow_interpolates_bilinearly():
    img = torch.arange(8.0).view(1, 1, 1, 8).repeat(1, 1, 4, 1)
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 0.5
    out = warp(img, flow)
    assert torch.allclose(out[..., :7], img[..., :7] + 0.5, atol=1e-5)


def test_convlstm_zero_state_and_shapes():
    cell = ConvLSTMCell(5, 7)
    x = torch.rand(2, 5, 6, 6)
    h, c = cell(x)
    assert h.shape == c.shape == (2, 7, 6, 6)
    h0 = torch.zeros(2, 7, 6, 6)
    h2, c2 = cell(x, (h0, h0.clone()))
    assert torch.allclose(h, h2) and torch.allclose(c, c2)
    assert h.abs().max() < 1  # h = o * tanh(c)


def test_blocks_keep_shape_and_start_near_identity():
    x = torch.rand(2, 8, 10, 10)
    assert ResBlock(8).forward(x).shape == x.shape
    rdb = RDB(8, 4, layers=3, res_scale=0.0)
    assert torch.equal(rdb(x), x)  # residual scaling 0 leaves only the skip


def test_space_to_depth_round_trip():
    x = torch.rand(2, 3, 16, 8)
    y = space_to_depth(x, 2)
    assert y.shape == (2, 12, 8, 4)
    assert torch.equal(depth_to_space(y, 2), x)


def test_downsample_is_area_average_for_videos():
    x = torch.rand(2, 3, 3, 8, 8)
    y = downsample(x, 2)
    assert y.shape == (2, 3, 3, 4, 4)
    assert torch.allclose(y[0, 1, 2, 1, 3], x[0, 1, 2, 2:4, 6:8].mean())


def test_upsample_flow_doubles_pixel_values():
    flow = torch.full((1, 2, 4, 4), 1.5)
    up = upsample_flow(flow)
    assert up.shape == (1, 2, 8, 8)
    assert torch.allclose(up, torch.full_like(up, 3.0))


def test_pad_and_crop_round_trip_all_layouts():
    for shape in [(3, 30, 21), (2, 3, 30, 21), (2, 5, 3, 30, 21)]:
        x = torch.rand(*shape)
        padded, size = pad_to_multiple(x, 16)
        assert padded.shape[-2:] == (32, 32) and padded.shape[:-2] == x.shape[:-2]
        assert size == (30, 21)
        assert torch.equal(crop_to(padded, size), x)
        # reflect padding at the bottom: row 30 mirrors row 28
        assert torch.equal(padded[..., 30, :21], x[..., 28, :])
    x = torch.rand(1, 3, 32, 48)
    same, size = pad_to_multiple(x, 16)
    assert same is x and size == (32, 48)


def test_pad_tiny_image_replicates():
    x = torch.rand(1, 3, 5, 5)
    padded, _ = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (16, 16)
    assert torch.equal(padded[..., 15, 15], x[..., 4, 4])
