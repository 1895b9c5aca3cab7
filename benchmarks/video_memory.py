"""Peak memory and time of `bench prepare --source video` on a long high-resolution clip.

    .venv/bin/python benchmarks/video_memory.py                       # 1920x1080, 600 frames, --frames 7,9
    .venv/bin/python benchmarks/video_memory.py --count 120 --budget-mb 600

Writes a clip with OpenCV's VideoWriter (mp4v, a texture panning two pixels a frame) into a temporary
folder (`--work`, removed afterwards), then prepares it in a child process and reads that child's peak
resident memory from the kernel (`os.wait4`, the child's own `ru_maxrss`), beside a child that only imports
what prepare imports (the floor) and beside what holding every frame in memory would take. The video reader
streams one frame at a time into the frame writer and the blur windows, so the peak must not grow with the
clip's length: the goal is a peak under `--budget-mb` (1000 by default); the exit status is 1 above it.
Timings depend on the machine and its load; say which when quoting them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

ENTRY = "import sys; from bench.cli import main; main()"
FLOOR = "import cv2, numpy, bench.data.prepare, bench.data.video"


def write_clip(path: Path, width: int, height: int, count: int, fps: float) -> None:
    """A smooth random texture panning right, `count` frames of `width` x `height`, written one at a time."""
    import cv2

    rng = np.random.default_rng(0)
    span = width + 2 * count
    coarse = rng.integers(0, 256, (height // 16 + 1, span // 16 + 1, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (span, height), interpolation=cv2.INTER_CUBIC)  # (h, span, 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise click.ClickException(f"{path}: OpenCV cannot write mp4v here")
    for t in range(count):
        writer.write(np.ascontiguousarray(texture[:, 2 * t:2 * t + width]))
    writer.release()


def child_peak(args: list[str]) -> tuple[int, float, float]:
    """Run `python -c ...` with `args`; returns (exit code, peak RSS in MB, wall seconds) of that child."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen from waiting again
    return proc.returncode, usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


@click.command()
@click.option("--width", default=1920, show_default=True)
@click.option("--height", default=1080, show_default=True)
@click.option("--count", default=600, show_default=True, help="frames in the clip")
@click.option("--fps", default=240.0, show_default=True)
@click.option("--frames", "frames_text", default="7,9", show_default=True, help="bench prepare --frames")
@click.option("--budget-mb", default=1000.0, show_default=True, help="the peak memory goal")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="scratch folder for the clip and the sets (default: a new temporary folder)")
def main(width: int, height: int, count: int, fps: float, frames_text: str, budget_mb: float,
         work: Path | None) -> None:
    """Prepare a generated clip in a child process and report its peak memory and time."""
    from bench.env import cpu_name

    scratch = Path(tempfile.mkdtemp(prefix="bmb-video-", dir=work))
    try:
        clip = scratch / "clip.mp4"
        started = time.perf_counter()
        write_clip(clip, width, height, count, fps)
        size_mb = clip.stat().st_size / 1e6
        click.echo(f"clip: {width}x{height}, {count} frames at {fps:g} fps, {size_mb:.1f} MB (mp4v), written "
                   f"in {time.perf_counter() - started:.1f} s")
        code, floor_mb, _ = child_peak(["-c", FLOOR])
        prepare = ["-c", ENTRY, "prepare", "--source", "video", "--root", str(clip), "--frames", frames_text,
                   "--data-dir", str(scratch / "data"), "--workers", "1"]
        code, peak_mb, wall = child_peak(prepare)
        if code != 0:
            raise click.ClickException(f"bench prepare exited with status {code}")
        all_frames_mb = count * width * height * 3 / 2**20
        click.echo(f"bench prepare --frames {frames_text}: peak RSS {peak_mb:.0f} MiB (imports alone "
                   f"{floor_mb:.0f} MiB; all frames in memory would be {all_frames_mb:.0f} MiB), "
                   f"{wall:.1f} s ({count / wall:.1f} frames/s), sets on disk "
                   f"{folder_mb(scratch / 'data'):.0f} MB")
        click.echo(f"machine: {cpu_name()}, {os.cpu_count()} cores; budget {budget_mb:.0f} MiB: "
                   f"{'within' if peak_mb <= budget_mb else 'OVER'}")
        if peak_mb > budget_mb:
            sys.exit(1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
