"""`bench run --method NAME`: train (or reuse, resume, load) a method, evaluate it, store and show results."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from bench.commands import check_output, launch_grid, launch_options, launch_settings, number, percent
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
from bench.env import cpu_name
from bench.errors import BenchError
from bench.metrics import COST_METRICS, SAMPLE_METRICS, VOCABULARY, direction
from bench.store import runs_dir as store_folder
from bench.verdict import HELD

if TYPE_CHECKING:
    from bench.run import RunOutcome, RunSpec
    from bench.train import Dist

TABLE_KEYS = SAMPLE_METRICS + COST_METRICS


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def print_stored(outcome: RunOutcome) -> None:
    """The metrics file the command wrote or reused: its last line, where scripts read it."""
    click.echo(f"{'reused the finished run' if outcome.cached else 'wrote'}: {outcome.metrics_path}")


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


def print_verdicts(outcome: RunOutcome, floor: RunOutcome | None, runs: Path | None) -> None:
    """One line per floor and metric: does the run just scored beat it (bench/floor_verdict.py), then
    the whole verdict with the machine that produced it."""
    # late: loads the registry's networks (torch), like the rest of this command's work
    from bench.floor_verdict import clears_every_floor, floor_verdicts

    met = outcome.metrics
    scored = {floor.metrics.method: floor.metrics} if floor is not None else {}
    verdicts = floor_verdicts(outcome.path, met, store_folder(runs), scored)
    if not verdicts:
        return
    console = Console()
    console.print(f"Against the floors ({met.eval_dataset}, N = {met.frames}, seed {met.seed}; paired "
                  "bootstrap over the test samples, 95% interval):")
    for v in verdicts:
        label = f"{VOCABULARY[v.metric].label} ({direction(v.metric)})"
        if v.judgement is None:
            console.print(f"  {label} vs {v.floor}: not stored; `{v.how_to_score}` scores it")
            continue
        j = v.judgement
        word = "beats" if j.verdict == HELD else "does NOT beat"
        console.print(f"  {label}: {met.method} {j.better:.3f} {word} {v.floor} {j.worse:.3f} "
                      f"(gain {j.gain:+.3f}, interval [{j.ci_low:+.3f}, {j.ci_high:+.3f}])")
    clears = clears_every_floor(verdicts)
    machine = "; ".join(met.trained_on) or f"{cpu_name()}, no training"
    if clears is True:
        console.print(f"{met.method} clears every floor judged here ({machine}).")
    elif clears is False:
        console.print(f"{met.method} does NOT clear every floor on this machine ({machine}); the committed "
                      "snapshot's verdict may differ: see docs/DESIGN.md \"Profiles\".")


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


def _check_save(save_to: str, frame_list: list[int], seed_list: list[int], nproc: int,
                planning: bool) -> None:
    """Before any work: --save-predictions writes one run's predictions into one folder."""
    if len(frame_list) > 1 or len(seed_list) > 1 or nproc > 1 or planning:
        raise BenchError("--save-predictions writes one run's frames: give one --frames and one --seeds, "
                         "without --nproc, --explain or --dry-run")
    check_output(save_to, "--save-predictions", folder=True)


def _save(outcome: RunOutcome, save_to: str, eval_data: str | None, data_dir: Path | None,
          device: str) -> None:
    """The predictions of the run just made (or reused) on the set it scored, into `save_to`."""
    # late: these load torch (see _explain)
    from bench.data.manifest import default_data_dir
    from bench.devices import resolve_device
    from bench.export import open_set, save_predictions

    name = eval_data if eval_data and Path(eval_data).is_dir() else outcome.metrics.eval_dataset
    with ExitStack() as hold:
        folder = open_set(name, default_data_dir(data_dir), hold, option="--save-predictions: set")
        written = save_predictions(outcome.path, folder, save_to, resolve_device(device))
    click.echo(f"wrote {len(written)} predicted frames and deblurred images under {save_to} (bench score "
               f"--set {folder.name} --pred {save_to} --name LABEL scores them)")


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


def _require_tensorboard() -> None:
    """--tensorboard without the optional package: refused before any work."""
    # late: loads torch (see _explain)
    from bench.boards import require_tensorboard

    require_tensorboard()


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
@click.option("--save-predictions", "save_to", default=None, metavar="DIR",
              help="also write the run's predicted frames on the scored test split into DIR, in the layout "
                   "bench score reads (<sample>/frame_01.png ..., <sample>/deblurred.png)")
@click.option("--tensorboard", is_flag=True,
              help="write TensorBoard event files of the stages it trains under <run folder>/tensorboard/ "
                   "(needs the .[tensorboard] extra)")
@launch_options
def command(method: str, profile: str, frames: str, seeds: str, overrides: tuple[str, ...],
            data_dir: Path | None, runs_dir: Path | None, source: str | None, root: Path | None,
            device: str | None, weights: Path | None, eval_data: str | None, nproc: int, fresh: bool,
            floor: bool, dry_run: int | None, explain: bool, as_json: bool, verify: str,
            save_to: str | None, tensorboard: bool, **launch: Any) -> None:
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
    if save_to is not None:
        _check_save(save_to, frame_list, seed_list, nproc, explain or dry_run is not None)
        if len(methods) > 1 or settings is not None:
            raise BenchError("--save-predictions writes one run's frames: give one --method and no "
                             "--launcher")
    if tensorboard and settings is not None:
        raise BenchError("--tensorboard logs stages trained in this process; run the grid's stages "
                         "without --launcher to watch them, or leave --tensorboard out")
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
    if tensorboard:
        _require_tensorboard()
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = relaunch_argv(click.get_current_context())
        _relaunch(nproc, argv)
        return
    for name in methods:
        _sequential(name, runs, floor, weights, verify, common, save_to, tensorboard)


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
                common: dict, save_to: str | None, tensorboard: bool) -> None:
    """Each (N, seed) run of `method` in this process (every rank of a torchrun launch), then its floor."""
    # late: these load torch (see _explain)
    from bench.run import RunSpec
    from bench.train import dist_from_env

    dist = dist_from_env(common["device"] or "auto")
    specs = [RunSpec(method=method, frames=n, seed=seed, weights=weights, progress=dist.main, verify=verify,
                     tensorboard=tensorboard, **common) for n, seed in runs]
    try:
        _run_each(specs, dist, floor, save_to)
    finally:
        if dist.active:
            # late: torch (see _explain)
            import torch.distributed as td

            td.destroy_process_group()


def _run_each(specs: list[RunSpec], dist: Dist, floor: bool, save_to: str | None) -> None:
    """Each run in turn; on the main rank, then its `blurred` floor (--floor: the same data and settings,
    nothing trained), its table, its predictions (--save-predictions) and its verdict against the floors."""
    # late: loads torch (see _explain)
    from bench.run import execute

    log = click.echo if dist.main else (lambda *_a, **_k: None)
    for spec in specs:
        outcome = execute(spec, dist=dist, log=log)
        if not dist.main:
            continue
        floor_outcome = None
        if floor and spec.method != "blurred":
            floor_spec = replace(spec, method="blurred", weights=None, fresh=False, progress=True)
            floor_outcome = execute(floor_spec, log=log)
        print_table(outcome, floor_outcome)
        print_verdicts(outcome, floor_outcome, spec.runs_dir)
        if save_to is not None:
            device = spec.device or get_profile(spec.profile).train.device
            _save(outcome, save_to, spec.eval_data, spec.data_dir, device)
        print_stored(outcome)


if __name__ == "__main__":  # the entry torchrun starts for --nproc (python -m bench.commands.run run ...)
    from bench.cli import main

    main()
