"""`bench prepare`: build the 7- and 9-frame blur sets (docs/DESIGN.md "Data")."""

from __future__ import annotations

import click

from bench.config import SEED, check_option, processes_rule
from bench.data.blur import parse_frames


@click.command(name="prepare")
@click.option("--source", type=click.Choice(["synthetic", "gopro", "video"]), default=None,
              help="Where sharp frames come from (default: the profile's source, synthetic for quick).")
@click.option("--root", type=click.Path(path_type=str), default=None,
              help="Footage: for gopro a GOPRO_Large_all layout or folders of frames; for video a video file "
                   "or a folder of them (train/ and test/ optional).")
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
@click.option("--stride", type=int, default=None,
              help="Video: keep every K-th frame (240 fps footage with 2 gives 120 fps; each blur then spans "
                   "twice the time).")
@click.option("--resize", type=int, default=None,
              help="Video: shrink frames so the long side is this many pixels (area-averaged).")
@click.option("--max-frames", type=int, default=None, help="Video: keep at most this many frames per video.")
@click.option("--start", type=float, default=None, help="Video: seconds to skip at the start of each video.")
@click.option("--end", type=float, default=None, help="Video: seconds into each video where frames stop.")
@click.option("--verify", type=click.Choice(["fast", "full"]), default="fast", show_default=True,
              help="fast: re-hash only files whose size, mtime or inode changed since they last verified; "
                   "full: re-hash every file.")
@click.option("--no-wait", is_flag=True,
              help="Refuse at once when a set is in use (a run reading it, another prepare) instead of "
                   "waiting for it.")
def command(source: str | None, root: str | None, frames_text: str, profile: str, data_dir: str, seed: int,
            gamma: float | None, workers: int | None, fresh: bool, stride: int | None, resize: int | None,
            max_frames: int | None, start: float | None, end: float | None, verify: str,
            no_wait: bool) -> None:
    """Build one blur set per N: each blur is the mean of N consecutive sharp frames (paper Sec. 3.1).

    Idempotent (a second run verifies the sha256 digests and does nothing; by default only files whose
    stat changed are re-hashed), resumable (rerun after an interruption) and parallel over sequences. A set
    that runs are reading is rebuilt only after they finish (or, with --no-wait, refused). With --source
    video, a video that cannot be used gets one error line; the others are prepared and the command exits
    with status 2 at the end.
    """
    # late: these load OpenCV, slow to import, so `bench prepare --help` starts without it
    from bench.data.prepare import prepare
    from bench.data.video import VideoOptions

    frames = parse_frames(frames_text)
    check_option("--seed", seed, SEED)
    if workers is not None:
        check_option("--workers", workers, processes_rule(lo=1))
    given = {"stride": stride, "resize": resize, "max_frames": max_frames, "start": start, "end": end}
    options = VideoOptions(**{k: v for k, v in given.items() if v is not None}) if any(
        v is not None for v in given.values()) else None

    def log(msg: str) -> None:
        click.echo(msg, err=msg.startswith(("warning", "repairing", "error")))

    # prepare() logs the last line itself: what it wrote where, or that the sets were already verified.
    prepare(source=source, root=root, frames=frames, profile=profile, data_dir=data_dir, seed=seed,
            gamma=gamma, workers=workers, fresh=fresh, progress=True, log=log, video_options=options,
            verify=verify, wait=not no_wait)
