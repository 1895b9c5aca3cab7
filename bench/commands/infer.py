"""`bench infer PHOTO...`: a trained method on the user's own blurred photos. Thin: the work is in
`bench/infer/`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.commands import check_output
from bench.config import FPS, TILE, check_option
from bench.data.blur import check_frames
from bench.errors import BenchError


def _formats(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    # late: bench.infer loads torch; this callback runs only when the verb does, never for --help
    from bench.infer import FORMATS

    chosen = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    unknown = [v for v in chosen if v not in FORMATS]
    if unknown or not chosen:
        raise click.BadParameter(f"{','.join(unknown) or value!r}: choose from {','.join(FORMATS)}")
    return chosen


@click.command(name="infer")
@click.argument("photos", nargs=-1, required=True)
@click.option("--method", default=None, help="method (default: ours, or the one in --run/--checkpoint)")
@click.option("--frames", type=int, default=None, help="N frames to recover (default 9, or the trained N)")
@click.option("--run", "run", default=None, help="a run folder or run id in the store to take weights from")
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="a weights.pt written by bench run")
@click.option("--runs-dir", default=None, help="results store (default: $BENCH_RUNS, else ./runs)")
@click.option("--out", default="infer-out", show_default=True, type=click.Path(file_okay=False),
              help="output folder; one sub-folder per photo")
@click.option("--format", "formats", default="gif,mp4,png", show_default=True, callback=_formats,
              help="frame outputs: png (frames), gif, mp4; deblurred.png and strip.png are always written")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
@click.option("--tile", type=int, default=None,
              help="force tiles of this side (multiple of 16); default: tile only when memory is short")
@click.option("--fps", type=float, default=10.0, show_default=True, help="frame rate of the GIF and MP4")
def command(photos: tuple[str, ...], method: str | None, frames: int | None, run: str | None,
            checkpoint: str | None, runs_dir: str | None, out: str, formats: tuple[str, ...], device: str,
            tile: int | None, fps: float) -> None:
    """Turn each blurred PHOTO (files, folders or globs) into its sharp frames and videos.

    Per photo, OUT/<name>/ gets deblurred.png, frames/frame_XX.png, video.gif, video.mp4 and strip.png
    (blur | deblurred | frames). A photo that cannot be read is reported and skipped; the others are still
    processed and the command exits non-zero at the end, listing the failures.
    """
    # late: bench.infer loads torch, so `bench infer --help` starts without it
    from bench.infer import expand_inputs, infer_photos, load_method

    check_option("--fps", fps, FPS)
    if tile is not None:
        check_option("--tile", tile, TILE)
    if frames is not None:
        check_frames(frames)  # 0 is refused, not read as "the default"
    check_output(out, "--out", folder=True)
    paths, failed = expand_inputs(photos)
    for item, message in failed:
        click.echo(f"error: {item}: {message}", err=True)
    loaded = load_method(method, frames, run, checkpoint, runs_dir, device)
    click.echo(f"{loaded.method.name}, {loaded.frames} frames, on {loaded.device}, weights: {loaded.source}")

    console = Console(stderr=True)
    out_dir = Path(out)
    with Progress(TextColumn("[bold]infer"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=len(paths))

        def on_photo(photo: Path, error: str | None) -> None:
            if error is not None:
                progress.console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            progress.update(task, advance=1)

        def on_start(photo: Path) -> None:
            progress.update(task, description=photo.name)

        result = infer_photos(loaded, paths, out_dir, formats, tile, fps, on_photo=on_photo,
                              on_start=on_start)
    failures = failed + result.failed
    named = {"png": f"frames/ ({loaded.frames} PNGs)", "gif": "video.gif", "mp4": "video.mp4"}
    kinds = ["deblurred.png", "strip.png"] + [named[f] for f in formats]
    click.echo(f"wrote {len(result.done)} photo(s) to {out_dir}/<photo>/: {', '.join(kinds)}")
    if failures:
        names = ", ".join(item for item, _ in failures)
        raise BenchError(f"{len(failures)} of {len(failures) + len(result.done)} input(s) failed: {names}")
