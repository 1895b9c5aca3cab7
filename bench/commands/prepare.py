"""`bench prepare`: build the 7- and 9-frame blur sets (SPEC 3)."""

from __future__ import annotations

import click


@click.command(name="prepare")
@click.option("--source", type=click.Choice(["synthetic", "gopro"]), default=None,
              help="Where sharp frames come from (default: the profile's source, synthetic for quick).")
@click.option("--root", type=click.Path(path_type=str), default=None,
              help="Footage root for --source gopro (GOPRO_Large_all layout, or folders of frames).")
@click.option("--frames", "frames_text", default="7,9", show_default=True,
              help="Comma-separated odd window lengths N >= 3; one set per N.")
@click.option("--profile", default="quick", show_default=True, help="smoke | quick | paper")
@click.option("--data-dir", envvar="BENCH_DATA", default="datasets", show_default=True,
              help="Data home where the set folders go (env BENCH_DATA).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Generator seed (synthetic) or split seed (footage without split lists).")
@click.option("--gamma", type=float, default=None,
              help="Average in linear light with this gamma (e.g. 2.2, GoPro's blur_gamma); off as in the "
                   "paper.")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--fresh", is_flag=True, help="Delete the sets and rebuild them from scratch.")
def command(source: str | None, root: str | None, frames_text: str, profile: str, data_dir: str, seed: int,
            gamma: float | None, workers: int | None, fresh: bool) -> None:
    """Build one blur set per N: each blur is the mean of N consecutive sharp frames (paper Sec. 3.1).

    Idempotent (a second run verifies the sha256 digests and does nothing), resumable (rerun after an
    interruption) and parallel over sequences.
    """
    from bench.data.blur import parse_frames
    from bench.data.prepare import prepare

    frames = parse_frames(frames_text)

    def log(msg: str) -> None:
        click.echo(msg, err=msg.startswith(("warning", "repairing")))

    # prepare() logs the last line itself: what it wrote where, or that the sets were already verified.
    prepare(source=source, root=root, frames=frames, profile=profile, data_dir=data_dir, seed=seed,
            gamma=gamma, workers=workers, fresh=fresh, progress=True, log=log)
