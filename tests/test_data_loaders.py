"""Loaders: one shared random transform (crop, zoom, flip) per sample, flows that stay true under it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench.data.loaders import TestSet, TrainSet
from bench.errors import BenchError


def test_train_items_have_the_contract_shapes_and_are_deterministic(smoke_data: Path) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-9f", crop=32)
    assert len(ds) > 0
    a = ds[(0, 5)]
    assert set(a) == {"blur", "sharp"}  # training samples carry no flow
    assert a["blur"].shape == (3, 32, 32) and a["sharp"].shape == (9, 3, 32, 32)
    assert a["blur"].dtype == torch.float32 and 0 <= a["blur"].min() and a["blur"].max() <= 1
    assert torch.equal(a["sharp"], ds[(0, 5)]["sharp"])
    assert any(not torch.equal(a["blur"], ds[(0, s)]["blur"]) for s in range(6, 10))
    assert torch.equal(ds[1]["blur"], ds[(1, 1)]["blur"])


def test_fields_return_only_what_is_asked_with_the_same_crops(smoke_data: Path) -> None:
    folder = smoke_data / "synthetic-smoke-7f"
    full = TrainSet(folder, crop=24)
    deblur = TrainSet(folder, crop=24, fields=("blur", "center"))  # what the DM's objective reads
    video = TrainSet(folder, crop=24, fields=("sharp",))  # stage 1
    for key in ((0, 3), (1, 8), (2, 11)):
        a, b, c = full[key], deblur[key], video[key]
        assert set(b) == {"blur", "center"} and set(c) == {"sharp"}
        assert torch.equal(b["blur"], a["blur"]) and torch.equal(b["center"], a["sharp"][3])
        assert torch.equal(c["sharp"], a["sharp"])
    with pytest.raises(ValueError, match="mask"):
        TrainSet(folder, crop=24, fields=("mask",))


def test_same_transform_for_blur_and_frames(smoke_data: Path) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-7f", crop=24, zoom=(1.0, 1.0), flip=True)
    for seed in range(6):
        item = ds[(0, seed)]
        # At zoom 1 the crop is exact, so the cropped blur is still the mean of the cropped frames.
        mean = item["sharp"].mul(255).mean(0)
        assert torch.allclose(item["blur"].mul(255), mean, atol=0.51)


def test_flows_follow_zoom_and_flip(smoke_data: Path) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-9f", crop=32, zoom=(1.5, 2.0), split="test")
    flips, errs = set(), []
    for seed in range(8):
        item = ds[(0, seed)]
        flips.add(ds.transform((48, 64), np.random.default_rng([0, seed]))[3])
        center = (item["sharp"][4].permute(1, 2, 0).numpy() * 255).astype(np.float32)
        for j in (0, 8):
            frame = item["sharp"][j].permute(1, 2, 0).numpy() * 255
            flow = item["flow"][j].permute(1, 2, 0).numpy()
            xs, ys = np.meshgrid(np.arange(32, dtype=np.float32), np.arange(32, dtype=np.float32))
            mx, my = xs + flow[..., 0], ys + flow[..., 1]
            inside = (mx >= 1) & (mx <= 30) & (my >= 1) & (my <= 30)
            warped = cv2.remap(center, mx, my, cv2.INTER_LINEAR)
            err = np.median(np.abs(warped - frame).mean(-1)[inside])
            unwarped = np.median(np.abs(center - frame).mean(-1)[inside])
            # A flow with the wrong scale or the wrong sign after a flip would not beat "no motion".
            errs.append((err, unwarped))
    assert flips == {True, False}
    err, unwarped = np.mean(errs, axis=0)
    assert err < 0.3 * unwarped, (err, unwarped)


def test_test_set_gives_whole_frames(smoke_data: Path) -> None:
    ds = TestSet(smoke_data / "synthetic-smoke-9f")
    item = ds[0]
    assert item["blur"].shape == (3, 48, 64) and item["sharp"].shape == (9, 3, 48, 64)
    assert item["flow"].shape == (9, 2, 48, 64) and item["id"].startswith("test_")
    assert len(TestSet(smoke_data / "synthetic-smoke-9f", split="train", limit=2)) == 2
    assert TestSet(smoke_data / "synthetic-smoke-9f", split="train")[0]["flow"] is None


def test_crop_larger_than_frames_is_refused(smoke_data: Path) -> None:
    with pytest.raises(BenchError, match="crop"):
        TrainSet(smoke_data / "synthetic-smoke-9f", crop=200)
