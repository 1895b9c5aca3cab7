"""How much a video made by warping one centre image can move: the motion-ratio ceiling of a centre estimate.

The RVD (Sec. 2.2, Eq. 3) makes every frame by warping the centre image it is given, so its frames are exactly
as sharp as that image, and a blurred centre moves less than a sharp one under the same motion: the
difference between two warps of an image is its gradient times the displacement. Warping a centre estimate
with the TRUE flows of a prepared set that has them (the synthetic sources) gives the `motion_ratio`
(bench/metrics.py) of a decoder whose flows are perfect. This script measures that ceiling for the true
central frame, the blurred input, and the deblurred estimate of a stored run or weights file, so the motion
ratio of a trained method can be read against what its centre estimate allows.

    .venv/bin/python benchmarks/motion_ceiling.py --set datasets/synthetic-quick-9f --run ours-8ff0c449e5
    .venv/bin/python benchmarks/motion_ceiling.py --set datasets/synthetic-quick-9f --checkpoint weights.pt

Rows: centre, motion_ratio (mean over test samples, as the evaluation averages it), mean frame PSNR (dB)
against the true frames over the non-central frames (the central one is the centre itself).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

CentreOf = Callable[[dict], torch.Tensor]  # a test item -> its centre image (3, H, W) in [0, 1]


def warp_video(centre: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """N frames from one image: centre (3, H, W) warped by each flow of flows (N, 2, H, W), Eq. 3's T."""
    from methods.layers import warp

    n = flows.shape[0]
    return warp(centre[None].float().expand(n, -1, -1, -1), flows.float())  # (N, 3, H, W)


def ceilings(set_folder: Path | str, centres: dict[str, CentreOf], limit: int | None = None) -> list[dict]:
    """Per centre source: the mean motion ratio and non-central frame PSNR of its true-flow warps on the
    test split of `set_folder` (a set prepared with flows)."""
    from bench import metrics
    from bench.data.loaders import TestSet
    from bench.errors import BenchError

    data = TestSet(Path(set_folder), split="test", limit=limit)
    ratios: dict[str, list[float]] = {name: [] for name in centres}
    psnrs: dict[str, list[float]] = {name: [] for name in centres}
    for i in range(len(data)):
        item = data[i]
        if item.get("flow") is None:
            raise BenchError(f"{set_folder}: the set has no true flows; use a synthetic set (bench prepare)")
        truth = metrics.to_numpy_images(item["sharp"])  # (N, H, W, 3) uint8
        mid = truth.shape[0] // 2
        for name, centre_of in centres.items():
            with torch.inference_mode():
                pred = metrics.to_numpy_images(warp_video(centre_of(item), item["flow"]))
            ratios[name].append(metrics.motion_ratio(pred, truth))
            psnrs[name].append(float(np.mean([metrics.psnr(pred[j], truth[j])
                                              for j in range(truth.shape[0]) if j != mid])))
    return [{"centre": name, "motion_ratio": float(np.nanmean(ratios[name])),
             "frame_psnr": float(np.mean(psnrs[name])), "samples": len(data)} for name in centres]


def run_centre(run: str | None, checkpoint: str | None, runs_dir: str | None) -> tuple[str, CentreOf]:
    """The deblurred estimate of a stored run or weights file, as `method.deblur` gives it at test time."""
    from bench.evaluate import _crop, _pad
    from bench.infer.loading import load_method

    loaded = load_method(run=run, checkpoint=checkpoint, runs_option=runs_dir, device="cpu")

    def centre_of(item: dict) -> torch.Tensor:
        blur, hw = _pad(item["blur"][None])  # (1, 3, H16, W16)
        return _crop(loaded.method.deblur(loaded.nets, blur), hw)[0]  # (3, H, W)

    return f"{loaded.method.name} estimate ({loaded.source})", centre_of


@click.command()
@click.option("--set", "set_folder", required=True, type=click.Path(path_type=Path),
              help="a prepared set with true flows (synthetic)")
@click.option("--run", help="a stored run (folder or id) whose deblurred estimate to measure")
@click.option("--checkpoint", help="or a weights.pt")
@click.option("--runs-dir", help="the store --run is looked up in (default runs/)")
@click.option("--limit", type=click.IntRange(1), help="score at most this many test samples")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="also write the rows here")
def main(set_folder: Path, run: str | None, checkpoint: str | None, runs_dir: str | None, limit: int | None,
         json_path: Path | None) -> None:
    """Print the motion-ratio ceilings of the true central frame, the blurred input and (with --run or
    --checkpoint) a method's deblurred estimate on a prepared set's test split."""
    from bench.errors import BenchError

    torch.set_num_threads(1)
    centres: dict[str, CentreOf] = {
        "true central frame": lambda item: item["sharp"][item["sharp"].shape[0] // 2],
        "blurred input": lambda item: item["blur"],
    }
    try:
        if run or checkpoint:
            name, centre_of = run_centre(run, checkpoint, runs_dir)
            centres[name] = centre_of
        rows = ceilings(set_folder, centres, limit)
    except BenchError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    for r in rows:
        click.echo(f"{r['centre']}: motion_ratio ceiling {r['motion_ratio']:.3f}, frame PSNR "
                   f"{r['frame_psnr']:.2f} dB ({r['samples']} test samples)")
    if json_path is not None:
        from bench.fileio import atomic_write_json

        atomic_write_json(json_path, [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                       for k, v in r.items()} for r in rows])


if __name__ == "__main__":
    main()
