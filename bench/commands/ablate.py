"""`bench ablate`: each ablation variant of `ours` on the same data, budget and seeds; a verdict table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.commands import launch_grid, launch_options, launch_settings
from bench.config import DEFAULT_PROFILE, SEED, parse_int_list
from bench.data.blur import check_frames
from bench.errors import BenchError
from bench.store import iter_runs
from bench.store import runs_dir as resolve_runs_dir
from bench.verdict import LEVEL, RESAMPLES


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def print_table(rows: list[dict], frames: int, profile: str, wall_s: float) -> None:
    table = Table(title=f"ablations: {profile} profile, N={frames} (means over the paired seeds and test "
                        f"samples; {LEVEL:.0%} paired-bootstrap interval, {RESAMPLES:,} resamples)")
    winners = {row["better"] for row in rows}
    winner_col = next(iter(winners)) if len(winners) == 1 else "winner"  # "ours" for every claim so far
    widest = max([len(row["variant"]) for row in rows] + [7])
    for col in ("variant", "claim", "metric", winner_col, "variant value", "improvement [CI]",
                "seeds x samples", "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "claim", "metric", "verdict") else "right",
                         min_width=widest if col == "variant" else None)
    for row in rows:
        arrow = "lower is better" if row["lower_is_better"] else "higher is better"
        colour = {"held": "green", "not held": "red"}.get(row["verdict"], "yellow")
        verdict = f"[{colour}]{row['verdict']}[/]" + (f" ({row['note']})" if row["note"] else "")
        interval = f"{_fmt(row['difference'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        table.add_row(row["variant"], row["claim"], f"{row['metric']} ({arrow})",
                      ("" if len(winners) == 1 else f"{row['better']} ") + _fmt(row["better_mean"]),
                      _fmt(row["variant_mean"]), interval if row["held"] is not None else "-",
                      f"{row['seeds']} x {row['samples']}", verdict)
    console = Console()
    console.print(table)
    console.print("held = the interval of the winner's improvement over the variant lies above zero "
                  f"(bench.verdict); wall time {wall_s:.0f} s")


@click.command("ablate")
@click.option("--only", default=None, help="comma list of variants (default: every registered ablation)")
@click.option("--profile", default=DEFAULT_PROFILE, show_default=True, help="smoke | quick | paper")
@click.option("--frames", type=int, default=9, show_default=True, help="frames N per blur")
@click.option("--seeds", default="0,1,2", show_default=True, help="seeds, comma list")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="prepared sets (datasets/)")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None, help="results store")
@click.option("--device", default=None, help="auto | cpu | cuda | mps")
@launch_options
def command(only: str | None, profile: str, frames: int, seeds: str, data_dir: Path | None,
            runs_dir: Path | None, device: str | None, **launch: Any) -> None:
    """Train and score each ablation variant beside `ours`; stages shared with `ours` are reused.

    The variants and the claims they test come from the method registry (`methods/ours.py`).

    Interrupted, the same command continues: finished runs and stages are cached in the store.
    """
    # late: these load torch (and the methods), so `bench ablate --help` starts without them
    from bench.ablate import ablation_names, plan, table
    from bench.run import RunSpec, execute

    known = ablation_names()
    variants = known if not only else [v.strip() for v in only.split(",") if v.strip()]
    for name in variants:
        if name not in known:
            raise BenchError(f"--only {name}: not an ablation; choose from {', '.join(known)}")
    seed_list = parse_int_list(seeds, "--seeds", "0,1,2", rule=SEED)
    check_frames(frames)
    settings = launch_settings(launch)
    started = time.perf_counter()
    if settings is not None:  # the same runs as a stage graph of jobs; the table once they are stored
        specs = [RunSpec(method=name, profile=profile, frames=frames, seed=seed, data_dir=data_dir,
                         runs_dir=runs_dir, device=device) for seed in seed_list for name in plan(variants)]
        launch_grid(specs, settings, runs_dir)
        if settings.launcher == "slurm":
            click.echo("when bench status shows every job done, the same command without --launcher prints "
                       "the table (every run is reused)")
            return
    digest = None
    for seed in seed_list:
        for name in plan(variants):
            click.echo(f"== {name}, seed {seed}")
            outcome = execute(RunSpec(method=name, profile=profile, frames=frames, seed=seed,
                                      data_dir=data_dir, runs_dir=runs_dir, device=device), log=click.echo)
            digest = outcome.metrics.data_sha256
    store = resolve_runs_dir(runs_dir)
    rows = table(iter_runs(store), variants, frames, profile, digest, seeds=seed_list)
    print_table(rows, frames, profile, time.perf_counter() - started)
    click.echo(f"runs stored under {store}")
