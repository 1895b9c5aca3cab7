"""Write a footage root of rendered frames in the GoPro layout (`train/<seq>/000001.png`, `test/...`).

    .venv/bin/python benchmarks/make_footage.py /tmp/root720                      # 4 x 40 train, 1 x 40 test
    .venv/bin/python benchmarks/make_footage.py /tmp/root --height 360 --width 640 --train 2 --length 27
    .venv/bin/bench prepare --source gopro --root /tmp/root720 --profile paper --frames 9
    .venv/bin/bench perf --loader --source gopro --root /tmp/root720

It stands in for GOPRO_Large_all where the real footage is not at hand: loader throughput at 720p, GPU
checks, a disk or memory budget. The frames come from the synthetic renderer
(`bench.data.synthetic.write_footage_root`), so the output depends only on the arguments.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout


@click.command()
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--height", default=720, show_default=True, type=click.IntRange(16))
@click.option("--width", default=1280, show_default=True, type=click.IntRange(16))
@click.option("--train", "train", default=4, show_default=True, type=click.IntRange(0),
              help="sequences under train/")
@click.option("--test", "test", default=1, show_default=True, type=click.IntRange(0),
              help="sequences under test/")
@click.option("--length", default=40, show_default=True, type=click.IntRange(3), help="frames per sequence")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
def main(root: Path, height: int, width: int, train: int, test: int, length: int, seed: int) -> None:
    """Render ROOT/train/<seq>/*.png and ROOT/test/<seq>/*.png."""
    from bench.data.synthetic import write_footage_root

    if train + test < 1:
        raise click.BadParameter("give at least one sequence (--train or --test)")
    start = time.perf_counter()
    folders = write_footage_root(root, height, width, train, test, length, seed)
    took = time.perf_counter() - start
    click.echo(f"wrote {len(folders)} sequences of {length} {width}x{height} frames under {root} "
               f"in {took:.0f} s")


if __name__ == "__main__":
    main()
