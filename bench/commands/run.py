"""`bench run --method NAME`: train (or reuse, resume, load) a method, evaluate it, store and show results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from bench.commands import launch_grid, launch_options, launch_settings, number, percent
from bench.config import (
    DEFAULT_PROFILE,
    SEED,
    TIMED,
    apply_overrides,
    check_option,
    get_profile,
    parse_int_list,
    processes_rule,
)
from bench.data.blur import check_frames
from bench.errors import BenchError
from bench.metrics import COST_METRICS, SAMPLE_METRICS, direction

if TYPE_CHECKING:
    from bench.run import RunOutcome

TABLE_KEYS = SAMPLE_METRICS + COST_METRICS


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def print_table(outcome: RunOutcome, floor: RunOutcome | None) -> None:
    """The aggregate metrics of a run beside the `blurred` floor (every method must beat it)."""
    met = outcome.metrics
    agg = met.aggregate
    table = Table(title=f"{met.method} on {met.eval_dataset} (data {met.eval_sha256[:12]}; {met.profile} "
                        f"profile, seed {met.seed})")
    table.add_column("metric")
    table.add_column(met.method, justify="right")
    if floor is not None:
        table.add_column("blurred (floor)", justify="right")
    for key in TABLE_KEYS:
        row = [f"{key} ({direction(key)})", _fmt(agg.get(key))]
        if floor is not None:
            row.append(_fmt(floor.metrics.aggregate.get(key)))
        table.add_row(*row)
    console = Console()
    console.print(table)
    if agg.get("deblur_lpips") is None and agg.get("deblur_lpips_note"):
        console.print(f"LPIPS: {agg['deblur_lpips_note']}")
    state = "reused the finished run" if outcome.cached else "wrote"
    console.print(f"{state}: {outcome.metrics_path}")


def _dry_run(spec: object, iterations: int) -> tuple[dict, Path]:
    # late: loads torch, so `bench run --help` starts without it
    from bench.trainperf import dry_run

    return dry_run(spec, iterations, log=click.echo)


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def print_dry_run(record: dict, path: Path) -> None:
    """Per stage: step time, data wait, peak memory, MAC-rate share and the projected time; then the total."""
    first = record["stages"][0] if record["stages"] else {}
    table = Table(title=f"dry run: {record['method']} ({record['profile']} profile) on {record['device']}, "
                        f"{record['iterations_run']} iterations per stage, precision "
                        f"{first.get('precision', '-')}")
    for col in ("stage", "crop x batch", "step s", "wait", "peak MB", "MAC %", "iters", "projected"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in record["stages"]:
        table.add_row(r["stage"], f"{r['crop']} x {r['batch']}", f"{r['step_s']:.3f}",
                      number(r["data_wait_share"], ".1%"), number(r["peak_mem_mb"], ".0f"),
                      percent(r["mac_rate_fraction"], ".2f"), str(r["iterations"]),
                      _duration(r["iterations"] * r["step_s"]))
    console = Console()
    console.print(table)
    console.print(f"evaluation estimate: {_duration(record['eval_estimate_s'])} ({record['eval_how']})")
    console.print(f"projected wall time of the full profile on this device: "
                  f"{_duration(record['projected_total_s'])} "
                  f"(training {_duration(record['projected_train_s'])})")
    console.print(f"wait: share of step time waiting for the next batch; MAC %: 3 x forward MACs per step "
                  f"against the dense {first.get('matmul_dtype', '-')} matmul rate of this device, measured "
                  f"in this run; peak memory: {first.get('peak_mem_how', '-')}")
    console.print(f"stored (timing only, not a result): {path}")


def relaunch_argv(ctx: click.Context, drop: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The arguments that parse back to this command's parameters (every option, defaults included) less
    those in `drop`: each process torchrun starts is given them, so a new option needs no edit here."""
    argv = [ctx.command.name]
    for param in ctx.command.params:
        if param.name in drop or not isinstance(param, click.Option) or not param.expose_value:
            continue
        value, flag = ctx.params[param.name], param.opts[0]
        if param.is_bool_flag:
            if value or param.secondary_opts:
                argv.append(flag if value else param.secondary_opts[0])
        elif param.is_flag:
            argv += [flag] if value == param.flag_value else []
        elif param.multiple:
            argv += [part for item in value for part in (flag, str(item))]
        elif value is not None:
            argv += [flag, *map(str, value)] if param.nargs > 1 else [flag, str(value)]
    return argv


def _explain(method: str, weights: Path | None, floor: bool, runs: list[tuple[int, int]], common: dict,
             as_json: bool) -> None:
    """The plan of each (frames, seed) run, and of its `blurred` floor with --floor."""
    # late: these load torch, so `bench run --help` starts without it
    from bench.explain import explain, plans_json, print_plans
    from bench.run import RunSpec

    names = [method] + (["blurred"] if floor and method != "blurred" else [])
    plans = [explain(RunSpec(method=name, frames=n, seed=seed, weights=weights if name == method else None,
                             **common)) for n, seed in runs for name in names]
    if as_json:
        click.echo(plans_json(plans))
    else:
        print_plans(plans, click.echo)


def _relaunch(nproc: int, argv: list[str]) -> None:
    """Start `nproc` copies of this command under torchrun (PyTorch's own launcher) and wait for them."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "bench.commands.run", *argv]
    click.echo(f"launching {nproc} processes: {' '.join(cmd)}")
    code = subprocess.call(cmd)
    if code != 0:
        raise BenchError(f"the distributed run exited with status {code}; rerun the same command to resume")


@click.command("run")
@click.option("--method", default="ours", show_default=True,
              help="method name (bench list --methods); a comma list runs each")
@click.option("--profile", default=DEFAULT_PROFILE, show_default=True, help="smoke | quick | paper")
@click.option("--frames", default="9", show_default=True, help="frames N per blur; a comma list runs each")
@click.option("--seeds", default="0", show_default=True, help="seeds, comma list (0,1,2)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a profile field")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="prepared sets (datasets/)")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None, help="results store")
@click.option("--source", type=click.Choice(["synthetic", "gopro", "video"]), default=None,
              help="data source")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="footage root (gopro: folders of frames; video: a video file or a folder of them)")
@click.option("--device", default=None, help="auto | cpu | cuda | mps (default: the profile's, auto)")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="evaluate this weights.pt")
@click.option("--eval-data", default=None, help="score on this prepared set's test split (folder name)")
@click.option("--nproc", type=int, default=1, show_default=True, help="processes (torchrun, DDP)")
@click.option("--fresh", is_flag=True, help="retrain every stage and re-evaluate, ignoring caches")
@click.option("--floor/--no-floor", default=True, show_default=True, help="also score `blurred`")
@click.option("--dry-run", "dry_run", type=int, default=None, metavar="K",
              help="time K iterations of every stage at the profile's sizes and project the full run's wall "
                   "time on this device; stored under runs/dryrun/, nothing trained is kept")
@click.option("--explain", is_flag=True,
              help="say per stage and run what would be reused, resumed or trained and why, with the code "
                   "each key follows; train nothing")
@click.option("--json", "as_json", is_flag=True, help="with --explain: print it as JSON")
@click.option("--verify", type=click.Choice(["fast", "full"]), default="fast", show_default=True,
              help="fast: re-hash only set files whose size, mtime or inode changed; full: every file")
@launch_options
def command(method: str, profile: str, frames: str, seeds: str, overrides: tuple[str, ...],
            data_dir: Path | None, runs_dir: Path | None, source: str | None, root: Path | None,
            device: str | None, weights: Path | None, eval_data: str | None, nproc: int, fresh: bool,
            floor: bool, dry_run: int | None, explain: bool, as_json: bool, verify: str,
            **launch: Any) -> None:
    """Train (or reuse) METHOD, evaluate it on the test split and store the results."""
    methods = [m.strip() for m in method.split(",") if m.strip()] or ["ours"]
    frame_list = [check_frames(n) for n in parse_int_list(frames, "--frames")]
    seed_list = parse_int_list(seeds, "--seeds", "0,1,2", rule=SEED)
    apply_overrides(get_profile(profile), list(overrides))  # the whole profile validated before any work
    check_option("--nproc", nproc, processes_rule(lo=1))
    settings = launch_settings(launch, nproc)
    if dry_run is not None:
        check_option("--dry-run", dry_run, TIMED)
    if eval_data is not None and not eval_data.strip():
        raise BenchError("--eval-data '': give the folder name of a prepared set (bench list --datasets), or "
                         "leave --eval-data out to score on the run's own test split")
    if as_json and not explain:
        raise BenchError("--json: prints the plan of --explain; add --explain")
    if len(methods) > 1 and (weights is not None or dry_run is not None):
        raise BenchError(f"--method {method}: --weights and --dry-run take one method")
    common = {"profile": profile, "overrides": tuple(overrides), "data_dir": data_dir,
              "runs_dir": runs_dir, "source": source, "root": root, "device": device,
              "eval_data": eval_data, "fresh": fresh}
    runs = [(n, seed) for n in frame_list for seed in seed_list]
    if settings is not None:
        if explain or dry_run is not None:
            raise BenchError("--launcher runs the grid as jobs: leave out --explain and --dry-run")
        _launch(methods, runs, floor, {**common, "verify": verify}, settings)
        return
    if explain:
        if dry_run is not None:
            raise BenchError("--explain and --dry-run: give one of them")
        for name in methods:
            _explain(name, weights, floor, runs, common, as_json)
        return
    if dry_run is not None:
        _dry_run_command(methods[0], frame_list, seed_list, dry_run, weights, nproc, common)
        return
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = relaunch_argv(click.get_current_context())
        _relaunch(nproc, argv)
        return
    for name in methods:
        _sequential(name, runs, floor, weights, verify, common)


def _launch(methods: list[str], runs: list[tuple[int, int]], floor: bool, common: dict,
            settings: Any) -> None:
    """The grid's runs (and their `blurred` floors) as a stage graph of jobs (`bench.launch`)."""
    # late: loads torch (see _explain)
    from bench.run import RunSpec

    names = methods + (["blurred"] if floor and "blurred" not in methods else [])
    specs = [RunSpec(method=name, frames=n, seed=seed, **common) for name in names for n, seed in runs]
    launch_grid(specs, settings, common["runs_dir"])


def _dry_run_command(method: str, frame_list: list[int], seed_list: list[int], dry_run: int,
                     weights: Path | None, nproc: int, common: dict) -> None:
    # late: loads torch (see _explain)
    from bench.run import RunSpec

    if weights is not None or common["eval_data"] is not None or nproc > 1:
        raise BenchError("--dry-run times training in this process: leave out --weights, --eval-data and "
                         "--nproc")
    if len(frame_list) > 1 or len(seed_list) > 1:
        raise BenchError(f"--dry-run projects one N and one seed; give one --frames (not "
                         f"{','.join(map(str, frame_list))}) and one --seeds")
    spec = RunSpec(method=method, frames=frame_list[0], seed=seed_list[0],
                   **{k: v for k, v in common.items() if k not in ("eval_data", "fresh")})
    print_dry_run(*_dry_run(spec, dry_run))


def _sequential(method: str, runs: list[tuple[int, int]], floor: bool, weights: Path | None, verify: str,
                common: dict) -> None:
    """Each (N, seed) run of `method` in this process (every rank of a torchrun launch), then its floor."""
    # late: these load torch (see _explain)
    from bench.run import RunSpec, execute
    from bench.train import dist_from_env

    dist = dist_from_env(common["device"] or "auto")
    log = click.echo if dist.main else (lambda *_a, **_k: None)
    try:
        for n, seed in runs:
            spec = RunSpec(method=method, frames=n, seed=seed, weights=weights, progress=dist.main,
                           verify=verify, **common)
            outcome = execute(spec, dist=dist, log=log)
            if not dist.main:
                continue
            floor_outcome = None
            if floor and method != "blurred":
                floor_spec = RunSpec(method="blurred", frames=n, seed=seed, progress=True, verify=verify,
                                     **{**common, "fresh": False})
                floor_outcome = execute(floor_spec, log=log)
            print_table(outcome, floor_outcome)
    finally:
        if dist.active:
            # late: torch (see _explain)
            import torch.distributed as td

            td.destroy_process_group()


if __name__ == "__main__":  # the entry torchrun starts for --nproc (python -m bench.commands.run run ...)
    from bench.cli import main

    main()
