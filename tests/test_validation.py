"""Learning curves on held-out data (bench/validation.py): fixed test-split crops, the deblurring PSNR on
uint8-rounded outputs with the blurred input as reference, the stage's loss for video stages."""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.config import get_profile
from bench.data.loaders import TestSet
from bench.metrics import psnr, to_uint8
from bench.validation import Validation, deblurring, validation_batch, validation_set
from methods.registry import get

SMOKE = get_profile("smoke")


def _found_in(crop: torch.Tensor, image: torch.Tensor) -> bool:
    """Whether `crop` (3, c, c) is a window of `image` (3, H, W), pixel for pixel."""
    c = crop.shape[-1]
    windows = image.unfold(1, c, 1).unfold(2, c, 1)  # (3, H-c+1, W-c+1, c, c)
    return bool((windows == crop[:, None, None]).all(-1).all(-1).all(0).any())


def test_the_validation_batch_is_fixed_unflipped_unzoomed_crops_of_the_test_split(smoke_data):
    folder = smoke_data / "synthetic-smoke-9f"
    fields = ("blur", "center")
    batch = validation_batch(validation_set(folder, SMOKE.train.crop, fields), 4, fields)
    again = validation_batch(validation_set(folder, SMOKE.train.crop, fields), 4, fields)
    assert set(batch) == set(fields) and batch["blur"].shape == (4, 3, 32, 32)
    assert batch["blur"].dtype == torch.uint8  # as the training batches: converted on the device
    assert all(torch.equal(batch[k], again[k]) for k in fields)  # the same crops every time
    batch = {k: v.float().div(255) for k, v in batch.items()}
    tests = TestSet(folder)
    for i in range(4):
        assert any(_found_in(batch["blur"][i], tests[j]["blur"]) for j in range(len(tests))), i
        centre = [tests[j]["sharp"][tests[j]["sharp"].shape[0] // 2] for j in range(len(tests))]
        assert any(_found_in(batch["center"][i], c) for c in centre), i


def test_samples_are_spread_evenly_over_the_split_and_repeat_only_when_it_is_smaller():
    class Recorder:
        def __init__(self, n):
            self.n, self.keys = n, []

        def __len__(self):
            return self.n

        def __getitem__(self, key):
            self.keys.append(key)
            return {"blur": torch.zeros(3, 4, 4)}

    big = Recorder(10)
    assert validation_batch(big, 4, ("blur",))["blur"].shape == (4, 3, 4, 4)
    assert [k[0] for k in big.keys[:4]] == [0, 2, 5, 7]
    small = Recorder(3)
    validation_batch(small, 5, ("blur",))
    assert [k[0] for k in small.keys] == [0, 1, 2, 0, 1] and len({k[1] for k in small.keys}) == 5


def test_deblurring_stages_score_psnr_against_the_centre_with_the_blur_as_reference():
    ours, srn = get("ours"), get("srn")
    assert deblurring(ours.stage("dm")) and deblurring(srn.stage("srn"))
    assert deblurring(get("jin2018").stage("jin-center"))
    assert not deblurring(ours.stage("autoencoder")) and not deblurring(ours.stage("bie"))
    g = torch.Generator().manual_seed(0)
    center = torch.rand(3, 3, 16, 16, generator=g)
    blur = (center + 0.05 * torch.randn(3, 3, 16, 16, generator=g)).clamp(0, 1)
    val = Validation.of(ours.stage("dm"), {"blur": blur, "center": center})
    by_hand = np.mean([psnr(to_uint8(b).numpy(), to_uint8(c).numpy()) for b, c in zip(blur, center,
                                                                                        strict=True)])
    assert val.metric == "deblur_psnr" and val.reference == by_hand and val.summary()["unit"] == "dB"

    class Identity:  # a "method" whose deblurring returns its input
        def deblur(self, nets, x):
            return x

    assert val.score(Identity(), ours.stage("dm"), None, torch.device("cpu"), None) == by_hand
    val.record(3, val.score(Identity(), ours.stage("dm"), None, torch.device("cpu"), None))

    class Oracle:
        def deblur(self, nets, x):
            return center

    score = val.score(Oracle(), ours.stage("dm"), None, torch.device("cpu"), None)
    assert math.isinf(score)
    val.record(6, score)
    assert val.summary()["points"] == [[3, by_hand], [6, None]]  # no finite PSNR: stored as null


def test_video_stages_score_their_own_loss():
    stage = get("ours").stage("bie")
    batch = {"blur": torch.zeros(1, 3, 8, 8), "sharp": torch.zeros(1, 9, 3, 8, 8)}
    val = Validation.of(stage, batch)
    assert val.metric == "loss" and val.reference is None
    assert val.score(get("ours"), stage, None, torch.device("cpu"), lambda data: 0.25) == 0.25
    assert val.summary()["reference_what"] is None and val.summary()["samples"] == 1
