"""The blur builder: the rounded mean of N frames (paper Sec. 3.1), odd N only, optional linear light."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data.blur import WindowBlur, blur_frames, center_offset, parse_frames, window_count
from bench.errors import BenchError


@settings(max_examples=25, deadline=None)
@given(n=st.sampled_from([3, 5, 7, 9, 11]), seed=st.integers(0, 2**31 - 1))
def test_blur_is_the_rounded_mean_of_its_frames(n: int, seed: int) -> None:
    frames = np.random.default_rng(seed).integers(0, 256, (n, 5, 6, 3), dtype=np.uint8)
    expected = np.floor(frames.astype(np.float64).mean(0) + 0.5).astype(np.uint8)
    assert np.array_equal(blur_frames(frames), expected)


def test_streaming_gives_one_blur_per_window() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8)
    acc = WindowBlur(7)
    outs = [acc.add(f) for f in frames]
    closed = [i for i, o in enumerate(outs) if o is not None]
    assert closed == [6, 13]  # two windows of 7 in 16 frames; the last two frames start a third
    assert np.array_equal(outs[13], blur_frames(frames[7:14]))
    assert window_count(16, 7) == 2 and center_offset(9) == 4


def test_linear_light_blur_keeps_flat_frames_and_brightens_mixtures() -> None:
    flat = np.full((3, 2, 2, 3), 77, np.uint8)
    assert np.array_equal(blur_frames(flat, gamma=2.2), flat[0])
    mix = np.stack([np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8),
                    np.zeros((2, 2, 3), np.uint8)])
    # (mean of x^g)^(1/g) >= mean of x: averaging light, then encoding, gives a brighter blur.
    assert blur_frames(mix, gamma=2.2)[0, 0, 0] == round(255 * (1 / 3) ** (1 / 2.2))
    assert blur_frames(mix)[0, 0, 0] == 85


@pytest.mark.parametrize("text", ["8", "1", "7,8", "nine", "", "-3"])
def test_bad_frame_counts_are_refused(text: str) -> None:
    with pytest.raises(BenchError) as err:
        parse_frames(text)
    assert "\n" not in str(err.value)


def test_frames_parse_sorted_and_unique() -> None:
    assert parse_frames("9, 7,9") == (7, 9)
