"""How much of a set's blur a linear filter can undo: a yardstick for the DM's gain over `blurred`.

    .venv/bin/python benchmarks/headroom.py datasets/synthetic-quick-9f
    .venv/bin/python benchmarks/headroom.py datasets/gopro-9f --kernel 21 --test-limit 20

Three PSNRs of the central sharp frame on the test split:

- `blurred`: the blurred input itself (the `blurred` floor of `bench run`);
- `shared filter`: one K x K filter, least-squares fitted on train images and applied to every test image,
  the best a single non-adaptive sharpening can do (a lower bound on what a trained DM should reach);
- `oracle filter`: a K x K filter fitted on each test image against its own truth (it sees the answer), the
  most any spatially uniform linear deconvolution could recover. Blur that varies across the image (moving
  layers, rotation, occlusion) caps it; a learned DM beats it only by adapting to the local blur, which
  takes far more training than the `quick` profile gives.

The filter is shared by the three colour channels and fitted on every `stride`-th pixel; images in [0, 1].
PSNRs are `bench.metrics.psnr` of the uint8-rounded images, the definition every `bench run` table uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout


def neighbourhoods(image: np.ndarray, kernel: int, stride: int = 1) -> np.ndarray:
    """Every `stride`-th pixel's K x K neighbourhood of `image` `(3, h, w)`, reflect-padded: `(m, K*K)`."""
    r = kernel // 2
    rows = []
    for channel in image:
        padded = np.pad(channel, r, mode="reflect")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel))[::stride, ::stride]
        rows.append(windows.reshape(-1, kernel * kernel))
    return np.concatenate(rows)  # (3 * h' * w', K*K)


def fit_filter(blurs: list[np.ndarray], sharps: list[np.ndarray], kernel: int, stride: int) -> np.ndarray:
    """Least-squares K x K filter (flattened) mapping the blur neighbourhoods to the sharp pixel."""
    x = np.concatenate([neighbourhoods(b, kernel, stride) for b in blurs])
    y = np.concatenate([s[:, ::stride, ::stride].reshape(-1) for s in sharps])
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    return weights  # (K*K,)


def apply_filter(image: np.ndarray, weights: np.ndarray, kernel: int) -> np.ndarray:
    """`image` `(3, h, w)` filtered by the flattened K x K `weights`, clipped to [0, 1]."""
    out = neighbourhoods(image, kernel) @ weights
    return np.clip(out.reshape(image.shape), 0.0, 1.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1], rounded to uint8 first as the suite's metrics are."""
    import torch

    from bench import metrics

    def rounded(x: np.ndarray) -> np.ndarray:
        return metrics.to_uint8(torch.from_numpy(x)).numpy()

    return metrics.psnr(rounded(a), rounded(b))


def headroom(folder: Path, kernel: int = 15, stride: int = 3, train_limit: int = 60,
             test_limit: int = 0) -> dict[str, float]:
    """Mean test PSNRs of `blurred`, the shared filter and the per-image oracle filter (see the docstring)."""
    from bench.data.loaders import TestSet

    train = TestSet(folder, split="train")
    test = TestSet(folder, split="test", limit=test_limit or None)
    centre = (train.frames - 1) // 2
    step = max(1, len(train) // train_limit)
    pairs = [train[i] for i in range(0, len(train), step)]
    shared = fit_filter([p["blur"].numpy() for p in pairs], [p["sharp"][centre].numpy() for p in pairs],
                        kernel, stride)
    scores: dict[str, list[float]] = {"blurred": [], "shared filter": [], "oracle filter": []}
    for i in range(len(test)):
        item = test[i]
        blur, truth = item["blur"].numpy(), item["sharp"][centre].numpy()
        oracle = fit_filter([blur], [truth], kernel, 1)
        scores["blurred"].append(psnr(blur, truth))
        scores["shared filter"].append(psnr(apply_filter(blur, shared, kernel), truth))
        scores["oracle filter"].append(psnr(apply_filter(blur, oracle, kernel), truth))
    return {k: float(np.mean(v)) for k, v in scores.items()}


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--kernel", default=15, show_default=True, type=click.IntRange(3), help="filter side K (odd)")
@click.option("--stride", default=3, show_default=True, type=click.IntRange(1),
              help="fit the shared filter on every stride-th pixel")
@click.option("--test-limit", default=0, show_default=True, type=click.IntRange(0), help="0 = all")
def main(folder: Path, kernel: int, stride: int, test_limit: int) -> None:
    """Print the blurred, shared-filter and oracle-filter PSNRs of a prepared set's test split."""
    if kernel % 2 == 0:
        raise click.BadParameter("the filter side must be odd", param_hint="--kernel")
    result = headroom(folder, kernel, stride, test_limit=test_limit)
    base = result["blurred"]
    for name, value in result.items():
        click.echo(f"{name:>14}: {value:6.2f} dB  ({value - base:+.2f} dB)")


if __name__ == "__main__":
    main()
