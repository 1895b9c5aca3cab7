"""`bench perf`: runtime, size, MACs and memory of every method side by side (docs/DESIGN.md "Perf")."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from bench.commands import check_output, number, percent
from bench.config import MATMUL, TIMED, WARMUP, check_option, parse_int_list, processes_rule
from bench.errors import BenchError
from bench.fileio import atomic_write_text
from bench.store import runs_dir


def print_rows(rows: list[dict], rate: float) -> None:
    console = Console()
    measured = [r for r in rows if not r.get("skipped")]
    device = rows[0]["device"] if rows else "?"
    table = Table(title=f"bench perf: {rows[0]['resolution'] if rows else ''}, batch 1, {device}")
    for col in ("method", "N", "params", "MB", "GMAC", "deblur s (IQR)", "video s (IQR)", "img/s",
                "peak MB", "MAC rate deblur", "MAC rate video"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in measured:
        table.add_row(
            r["method"], str(r["frames"]), f"{r['params'] / 1e6:.2f}M", f"{r['size_mb']:.1f}",
            f"{r['macs'] / 1e9:.1f}", f"{r['runtime_deblur_s']:.4f} ({r['runtime_deblur_iqr_s']:.4f})",
            f"{r['runtime_video_s']:.4f} ({r['runtime_video_iqr_s']:.4f})", f"{r['images_per_s']:.2f}",
            number(r["peak_mem_mb"], ".0f"), percent(r["mac_rate_fraction_deblur"], ".1f") + "%",
            percent(r["mac_rate_fraction"], ".1f") + "%")
    console.print(table)
    console.print(f"dense float32 matmul rate: {rate / 1e9:.1f} GMAC/s on {device}; MB = 10^6 bytes; "
                  f"peak memory: {measured[0]['peak_mem_how'] if measured else '-'}")
    for r in rows:
        if r.get("skipped"):
            console.print(f"[yellow]skipped[/] {r['method']}: {r['skipped']}")
    for r in measured:
        if r.get("breakdown_deblur"):
            parts = ", ".join(f"{o['op'].removeprefix('aten::')} {100 * o['share']:.0f}%"
                              for o in r["breakdown_deblur"])
            console.print(f"{r['method']} deblurring time by operator: {parts}")
    by = {r["method"]: r for r in measured}
    if "ours" in by and "srn" in by:
        ratio = by["srn"]["runtime_deblur_s"] / by["ours"]["runtime_deblur_s"]
        console.print(f"srn / DM deblurring time: {ratio:.2f}x (paper: 20x on a GPU)")
    if "ours" in by and "jin2018" in by:
        ours, jin = by["ours"], by["jin2018"]
        ratio = jin["runtime_video_s"] / ours["runtime_video_s"]
        console.print(f"jin2018 / ours video time: {ratio:.2f}x (paper: 1.10/0.39 = 2.8x); "
                      f"size {ours['size_mb']:.1f} vs {jin['size_mb']:.1f} MB")


def print_loader_rows(rows: list[dict]) -> None:
    if not rows:
        return
    r0 = rows[0]
    table = Table(title=f"bench perf --loader: {r0['set']} ({r0['resolution']}), crop {r0['crop']}, "
                        f"N={r0['frames']}, to {r0['device']}")
    for col in ("stage", "fields", "batch", "workers", "samples/s", "batches/s"):
        table.add_column(col, justify="left" if col in ("stage", "fields") else "right")
    for r in rows:
        table.add_row(r["stage"], "+".join(r["fields"]), str(r["batch"]), str(r["workers"]),
                      f"{r['samples_per_s']:.1f}", f"{r['batches_per_s']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"CPU: {r0['cpu']}; timed after one batch per worker and one more")
    if r0.get("breakdown_ms_per_video_sample"):
        parts = r0["breakdown_ms_per_video_sample"]
        console.print("one video sample (blur + N frames) in one process: "
                      + ", ".join(f"{k} {v:.2f} ms" for k, v in parts.items()))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def print_train_rows(rows: list[dict]) -> None:
    if not rows:
        return
    r0 = rows[0]
    loader = r0["loader"] + (f" ({r0['workers']} workers)" if r0["loader"] == "process" else "")
    table = Table(title=f"bench perf --train: {r0['device']}, {r0['threads']} threads, {r0['precision']}, "
                        f"batches from {loader}")
    for col in ("stage", "layout", "crop x b", "samples/s", "bare/s", "loop/bare", "batch CPU ms",
                "val ms/it", "ckpt ms/it", "wait", "peak MB", "MAC %"):
        table.add_column(col, justify="left" if col in ("stage", "layout") else "right")
    for r in rows:
        table.add_row(f"{r['method']}/{r['stage']}", "CL" if r["channels_last"] else "contig",
                      f"{r['crop']} x {r['batch']}", number(r["samples_per_s"], ".1f"),
                      number(r.get("bare_samples_per_s"), ".1f"),
                      percent(r.get("loop_efficiency"), ".0f") + "%",
                      number(_ms(r.get("batch_cpu_s")), ".1f"),
                      number(_ms(r.get("validation_s_per_step")), ".2f"),
                      number(_ms(r.get("checkpoint_s_per_step")), ".2f"),
                      percent(r["data_wait_share"], ".1f") + "%", number(r["peak_mem_mb"], ".0f"),
                      percent(r["mac_rate_fraction"], ".2f"))
    console = Console()
    console.print(table)
    console.print(f"CPU: {r0['cpu']}. layout CL: the stage's channels_last_train components channels-last; "
                  "bare/s: the same step over batches made beforehand; loop/bare: bare step time over the "
                  "loop's time per iteration, validation and checkpoints amortised (val, ckpt: ms per "
                  "iteration at the profile's cadence); batch CPU: one thread's CPU time to make one batch; "
                  f"a live progress bar costs {percent(r0.get('progress_cpu_share'), '.1f')}% of a core; "
                  "wait: share of step time waiting for the next batch; MAC %: 3 x forward MACs per step "
                  "against the dense matmul rate measured in this run in the step's dtype "
                  f"({r0['matmul_rate'] / 1e9:.1f} GMAC/s in {r0['matmul_dtype']}; "
                  f"{r0['matmul_rate_fp32'] / 1e9:.1f} GMAC/s in float32); peak memory: {r0['peak_mem_how']}")


@click.command("perf")
@click.option("--methods", "methods_opt", default=None, help="comma-separated method names (default: the "
              "paper's methods and the baselines)")
@click.option("--resolution", default="1280x704", show_default=True, help="WIDTHxHEIGHT of the blurred input")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps")
@click.option("--repeats", default=10, show_default=True, type=int, help="timed passes")
@click.option("--warmup", default=2, show_default=True, type=int, help="untimed passes first")
@click.option("--frames", default=None, type=click.IntRange(3),
              help="N, frames per video (default: 7; 9 with --loader and --train, or the N a method needs)")
@click.option("--profile", "profile_name", default=None,
              help="whose network widths to build (default paper, the paper-sized networks); with --loader, "
                   "whose data, crop and batch (default paper); with --train, whose data, crop, batch and "
                   "widths (default quick)")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="write the rows as JSON here")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile each network first")
@click.option("--amp", is_flag=True, help="bfloat16 autocast (CUDA only)")
@click.option("--channels-last/--contiguous", "channels_last", default=True, show_default=True,
              help="the registry's inference layout (channels-last where it measured faster), or all "
                   "networks contiguous")
@click.option("--breakdown", is_flag=True, help="also profile one deblurring pass per method: its time by "
              "operator (convolution, concatenation, copies, ...)")
@click.option("--matmul-size", default=2048, show_default=True, type=int,
              help="side of the square matrices of the matmul-rate measurement")
@click.option("--loader", is_flag=True, help="measure the training data path instead of the methods: "
              "samples/s of the DM and video batches at the profile's crop and batch sizes")
@click.option("--train", "train", is_flag=True, help="time training steps instead: every stage of each "
              "method through the training loop's code, on the profile's data, crop and batch (default "
              "profile quick); nothing is written to the stage cache")
@click.option("--source", default=None, help="--loader, --train: where the frames come from (default: the "
              "profile's source; paper = gopro); the set is prepared or verified first")
@click.option("--root", default=None, type=click.Path(path_type=str), help="--loader, --train: footage root")
@click.option("--data-dir", envvar="BENCH_DATA", default="datasets", show_default=True,
              help="--loader, --train: data home of the prepared sets (env BENCH_DATA)")
@click.option("--workers", "workers_text", default="1,2,4", show_default=True,
              help="--loader: DataLoader worker counts to measure, comma-separated")
@click.option("--batches", default=20, show_default=True, type=int,
              help="--loader: timed batches per measurement (after one per worker and one more)")
@click.option("--steps", default=10, show_default=True, type=int,
              help="--train: timed steps per stage (after --warmup untimed ones)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="--train: override a profile field (train.precision=fp32, train.channels_last=false, ...)")
@click.option("--store", "store_it", is_flag=True, help="also keep the result in the runs store "
              "(RUNS/perf/), where bench report reads the speed claims from (with --profile paper)")
@click.option("--runs-dir", default=None,
              help="results store for --store (default: $BENCH_RUNS, else ./runs)")
def command(methods_opt: str | None, resolution: str, device: str, repeats: int, warmup: int,
            frames: int | None, profile_name: str | None, json_path: str | None, compile_: bool, amp: bool,
            channels_last: bool, breakdown: bool, matmul_size: int, loader: bool, train: bool,
            source: str | None, root: str | None, data_dir: str, workers_text: str, batches: int, steps: int,
            overrides: tuple[str, ...], store_it: bool, runs_dir: str | None) -> None:
    """Measure runtime, size, MACs and peak memory of methods side by side, untrained (seeded) networks;
    with --loader, the samples per second the training data path delivers; with --train, the training
    loop's samples per second, data wait and MAC rate per stage."""
    # Imported here, not at the top: the measuring modules import torch, and this module is imported by
    # `bench perf --help` too (bench/cli.py imports a verb's module to run it).
    from bench.loaderperf import run_loader
    from bench.perf import default_methods, run_perf, store_rows
    from bench.trainperf import run_train

    if loader and train:
        raise BenchError("--loader and --train are two measurements: run them as two commands")
    if (loader or train) and store_it:
        flag = "--loader" if loader else "--train"
        raise BenchError(f"--store keeps the methods' timings for the report; drop {flag} or --store")
    counts = {"--repeats": repeats, "--warmup": warmup, "--matmul-size": matmul_size, "--batches": batches,
              "--steps": steps}
    workers = check_numbers(counts, workers_text if loader else None, json_path,
                            runs_dir if store_it else False)
    names = [m.strip() for m in methods_opt.split(",") if m.strip()] if methods_opt else None
    if loader:
        rows = run_loader(source, root, data_dir, profile_name or "paper", frames or 9, workers, batches,
                          device, breakdown, log=_status)
        print_loader_rows(rows)
    elif train:
        rows = run_train(names or ["ours", "srn"], profile_name or "quick", list(overrides), device, steps,
                         warmup, frames, data_dir, source, root, matmul_size, log=_status)
        print_train_rows(rows)
    else:
        rows, rate = run_perf(names or default_methods(), resolution, device, repeats, warmup, frames or 7,
                              profile_name or "paper", compile_, amp, matmul_size, channels_last, breakdown,
                              log=_status)
        print_rows(rows, rate)
    if json_path:
        atomic_write_text(json_path, json.dumps(rows, indent=2, allow_nan=False) + "\n")
        click.echo(f"wrote {json_path}")
    if store_it:
        stored = store_rows(rows, profile_name or "paper", frames or 7, repeats, warmup, device, runs_dir)
        click.echo(f"stored {stored}")


def _status(message: str) -> None:
    """Progress of a measurement: on stderr, so stdout holds the table alone."""
    click.echo(message, err=True)


def check_numbers(counts: dict[str, int], workers_text: str | None, json_path: str | None,
                  store: str | None | bool) -> list[int]:
    """Every count within its rule (a huge one would overflow or run for ever), the --loader worker counts
    within this machine's process cap (never started to find out), and the --json path and the store of
    --store (`store`: its --runs-dir; False without --store) writable: all before the first measurement.
    Returns the worker counts ([] without `workers_text`)."""
    rules = {"--warmup": WARMUP, "--matmul-size": MATMUL}
    for option, value in counts.items():
        check_option(option, value, rules.get(option, TIMED))
    workers = []
    if workers_text is not None:
        workers = parse_int_list(workers_text, "--workers", "1,2,4", rule=processes_rule())
        if not workers:
            raise BenchError(f"--workers {workers_text!r}: expected worker counts >= 0, e.g. --workers 1,2,4")
    if json_path:
        check_output(json_path, "--json")
    if store is not False:
        check_output(runs_dir(store or None), "--runs-dir", folder=True)
    return workers
