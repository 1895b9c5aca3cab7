"""benchmarks/headroom.py: the linear-filter yardstick for deblurring gains."""

import importlib.util
from pathlib import Path

import numpy as np

_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "headroom.py"
_spec = importlib.util.spec_from_file_location("headroom", _SCRIPT)
headroom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(headroom)


def _box_blur(image: np.ndarray, length: int) -> np.ndarray:
    """Horizontal box blur of `(3, h, w)`, edges reflected."""
    r = length // 2
    padded = np.pad(image, ((0, 0), (0, 0), (r, r)), mode="reflect")
    return np.mean([padded[:, :, i:i + image.shape[2]] for i in range(length)], axis=0)


def test_an_oracle_filter_undoes_a_uniform_blur_better_than_nothing() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.random((3, 40, 48))
    blur = _box_blur(sharp, 3)
    weights = headroom.fit_filter([blur], [sharp], 9, 1)
    restored = headroom.apply_filter(blur, weights, 9)
    assert headroom.psnr(restored, sharp) > headroom.psnr(blur, sharp) + 3.0


def test_a_filter_fitted_on_sharp_pairs_is_the_identity() -> None:
    rng = np.random.default_rng(1)
    sharp = rng.random((3, 24, 24))
    weights = headroom.fit_filter([sharp], [sharp], 5, 1)
    centre = np.zeros(25)
    centre[12] = 1.0
    assert np.allclose(weights, centre, atol=1e-6)
    assert headroom.psnr(headroom.apply_filter(sharp, weights, 5), sharp) > 60


def test_headroom_on_a_prepared_set(smoke_data) -> None:
    result = headroom.headroom(smoke_data / "synthetic-smoke-7f", kernel=5, stride=2)
    assert set(result) == {"blurred", "shared filter", "oracle filter"}
    # The oracle is fitted on each test image itself, so it cannot do worse than the identity filter would.
    assert result["oracle filter"] >= result["blurred"] - 1e-6
