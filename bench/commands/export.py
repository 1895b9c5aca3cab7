"""`bench export --set NAME --out DIR`: a prepared set's samples as plain files for another method's code."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from bench.commands import check_output
from bench.data.manifest import default_data_dir


@click.command("export")
@click.option("--set", "set_name", required=True, help="prepared set folder name (bench list --datasets)")
@click.option("--out", "out_dir", required=True,
              help="folder to write into; files there that bench export did not write are never replaced or "
                   "deleted (it stops instead, naming the file)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--layout", type=click.Choice(["native", "blur2vid"]), default="native", show_default=True,
              help="native: <sample>/blur.png, <sample>/gt/frame_01.png ...; blur2vid: their GOPRO_7 layout "
                   "(<split>/blur/<seq>/<centre>.png, <split>/sharp/<seq>/<frame>.png)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="prepared sets (datasets/)")
@click.option("--verify", type=click.Choice(["fast", "full"]), default="fast", show_default=True,
              help="fast: re-hash only set files whose size, mtime or inode changed; full: every file")
def command(set_name: str, out_dir: str, split: str, layout: str, data_dir: Path | None, verify: str) -> None:
    """Write a split of a prepared set as blur.png and gt/frame_NN.png per sample, with index.csv."""
    check_output(out_dir, "--out", folder=True)
    # late: bench.export loads torch (its save_predictions scores with the method)
    from bench.export import INDEX, export_set, open_set

    with ExitStack() as hold:
        folder = open_set(set_name, default_data_dir(data_dir), hold, verify)
        written = export_set(folder, Path(out_dir), split, layout)
    click.echo(f"wrote {len(written)} files of {folder.name} ({split} split, {layout} layout) under "
               f"{out_dir}; index: {Path(out_dir) / INDEX}")
