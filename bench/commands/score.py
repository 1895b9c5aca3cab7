"""`bench score --set NAME --pred DIR --name LABEL`: any method's predicted frames, scored as a run."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from bench.config import DEFAULT_PROFILE, get_profile
from bench.data.manifest import default_data_dir
from bench.errors import BenchError
from bench.fileio import read_json
from bench.store import runs_dir


def _profile(option: str | None, set_folder: Path) -> str:
    """The profile given, else the one the synthetic set was rendered for, else the default."""
    if option:
        return option
    manifest = read_json(set_folder / "manifest.json")
    named = manifest.get("profile") if isinstance(manifest, dict) else None
    return named if isinstance(named, str) else DEFAULT_PROFILE


@click.command("score")
@click.option("--set", "set_name", required=True, help="prepared set folder name (bench list --datasets)")
@click.option("--pred", "pred", required=True, type=click.Path(path_type=Path),
              help="folder of predictions: <sample>/frame_01.png ... (optional <sample>/deblurred.png), or "
                   "<sample>.mp4 / <sample>.gif")
@click.option("--name", "label", required=True, help="the label the report shows (not a registered method)")
@click.option("--profile", default=None,
              help="profile the result is filed under (default: the set's own, else quick)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="prepared sets (datasets/)")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None, help="results store")
@click.option("--verify", type=click.Choice(["fast", "full"]), default="fast", show_default=True,
              help="fast: re-hash only set files whose size, mtime or inode changed; full: every file")
def command(set_name: str, pred: Path, label: str, profile: str | None, data_dir: Path | None,
            runs_dir: Path | None, verify: str) -> None:
    """Score predicted frames of any method on a set's test split and store them as the run LABEL."""
    # late: these load torch and OpenCV (and `bench score --help` imports no other verb)
    from bench import score as scoring
    from bench.commands.run import print_stored, print_table
    from bench.export import open_set
    from methods import registry

    scoring.check_label(label, registry.names())
    with ExitStack() as hold:
        folder = open_set(set_name, default_data_dir(data_dir), hold, verify)
        chosen = get_profile(_profile(profile, folder))
        try:
            outcome = scoring.score(folder, pred, label, chosen, runs_dir_of(runs_dir), log=click.echo)
        except scoring.BadPredictions as err:
            for line in err.problems if len(err.problems) > 1 else ():
                click.echo(f"error: {line}", err=True)
            raise BenchError(str(err)) from None
    for line in outcome.conversions[:5]:
        click.echo(f"note: converted {line}")
    if len(outcome.conversions) > 5:
        click.echo(f"note: {len(outcome.conversions) - 5} more files converted (metrics.json 'aggregate')")
    print_table(outcome, None)
    print_stored(outcome)


def runs_dir_of(option: Path | None) -> Path:
    return Path(runs_dir(option))
