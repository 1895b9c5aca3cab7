"""The `bench` verbs, one module each, and what they share: cell formatting, the output-path check, and the
`--launcher` options of `bench run` and `bench ablate` (docs/DESIGN.md "Stage graph")."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bench.errors import BenchError


def number(x: float | None, spec: str) -> str:
    """A table cell: `x` formatted with `spec`, or "-" when it could not be measured."""
    return "-" if x is None else format(x, spec)


def percent(share: float | None, spec: str) -> str:
    """A share as a percentage number without the sign ("-" when it could not be measured)."""
    return number(None if share is None else 100 * share, spec)


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> None:
    """Refuse an output path before any work (`bench perf --json` measures for minutes first): the path must
    be a regular file (`folder`: a folder) or not exist yet, and its nearest existing parent a folder this
    user may write to (the writers create the missing ones)."""
    target = Path(path)
    kind = "folder" if folder else "file"
    if target.exists() or target.is_symlink():
        if not (target.is_dir() if folder else target.is_file()):
            raise BenchError(f"{option} {target}: not a {'folder' if folder else 'regular file'}; choose "
                             f"another {kind} path for {option}")
        if folder:
            if not os.access(target, os.W_OK | os.X_OK):
                raise BenchError(f"{option} {target}: this user cannot write into it; choose another folder")
            return
    parent = target.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"{option} {target}: {parent} is not a folder; choose another {kind} path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BenchError(f"{option} {target}: this user cannot write in {parent}; choose another {kind} path")

LAUNCH_FIELDS = ("partition", "gpus_per_node", "nodes", "cpus_per_task", "mem", "array_parallelism")


def launch_options(command: Callable) -> Callable:
    """Add the launcher's options to a click command (every one defaults to None: not given)."""
    opts = [
        click.option("--launcher", type=click.Choice(["local", "slurm"]), default=None,
                     help="run the grid as a graph of stage jobs: here (local, K jobs at once) or on Slurm"),
        click.option("--launch-config", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="TOML file of the options below in sbatch's names (gpus-per-node = 1, [sbatch])"),
        click.option("--partition", default=None, help="--launcher slurm: sbatch --partition"),
        click.option("--gpus-per-node", type=int, default=None,
                     help="GPUs per job (default: --nproc if > 1)"),
        click.option("--nodes", type=int, default=None, help="nodes per stage job (torchrun rendezvous)"),
        click.option("--cpus-per-task", type=int, default=None,
                     help="cores per job (local: K = cores / this jobs at once) [default: 1]"),
        click.option("--mem", default=None, help="--launcher slurm: sbatch --mem, e.g. 32G"),
        click.option("--time", "time_limit", default=None,
                     help="time limit per job, minutes or [D-]HH:MM:SS (default: the partition's; none)"),
        click.option("--array-parallelism", type=int, default=None, help="array tasks running at once"),
        click.option("--sbatch", "sbatch_extra", multiple=True, metavar="NAME=VALUE",
                     help="a further sbatch option, e.g. --sbatch account=proj (repeatable)"),
    ]
    for option in reversed(opts):
        command = option(command)
    return command


def launch_settings(params: dict[str, Any], nproc: int = 1) -> Any:
    """The LaunchOptions of a command's parameters (popped from `params`), or None without --launcher."""
    # late: bench.launch loads torch through bench.grid, which `--help` must not
    from bench.launch import options

    launcher, config = params.pop("launcher"), params.pop("launch_config")
    given = {name: params.pop(name) for name in LAUNCH_FIELDS}
    given["time"] = params.pop("time_limit")
    extra = params.pop("sbatch_extra")
    if launcher is None:
        named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        if named or extra or config is not None:
            raise BenchError(f"{', '.join(named) or '--sbatch/--launch-config'}: set how jobs run; add "
                             "--launcher local or --launcher slurm")
        return None
    pairs = []
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BenchError(f"--sbatch {item}: give NAME=VALUE, e.g. --sbatch account=proj")
        pairs.append((name.strip().lstrip("-"), value))
    return options({**given, "launcher": launcher, "nproc": nproc, "sbatch": pairs}, config)


def launch_grid(specs: list[Any], settings: Any, runs_dir: Path | None) -> None:
    """Build the specs' stage graph and submit or run it (`bench.launch.launch`)."""
    # late: these load torch (see launch_settings)
    from bench.grid import build_graph
    from bench.launch import launch
    from bench.store import runs_dir as resolve_runs_dir

    graph = build_graph(specs, log=click.echo)
    launch(graph, settings, resolve_runs_dir(runs_dir), click.echo)
