"""The spread of a trained method's outcome over seeds, thread counts and machines.

The quick recipe's stage 2 is trajectory-sensitive: the seed, the thread count (the float reduction order) and
the precision each move where it ends (docs/DESIGN.md "Profiles"). A runs store holds one result per run
identity, and the thread count is not part of it (it changes rounding, not the recipe), so each thread count
or machine is trained into a store of its own. This script reads one or more stores and prints, per stored
run of the method, what decides the verdict: the floors' judgements (the same paired bootstrap `bench run`
prints), the motion ratio against the range the recipe must hold, the DM's PSNR and the last stage's
validation curve, then a summary per N.

    .venv/bin/python benchmarks/seed_spread.py --runs runs --runs runs-2threads
    .venv/bin/python benchmarks/seed_spread.py --runs runs --format json > spread.json

Rows: store, N, seed, trained on (chip, precision, threads), DM PSNR, Eq. 6 and pPSNR with each floor's value
and the lower end of the 95% interval of the gain over it, motion ratio (mean and largest per sample),
whether every floor is cleared, and the last stage's validation loss at its recorded iterations.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

MOTION_RANGE = (0.3, 1.2)  # a robust recipe keeps every run's motion ratio inside this (DESIGN "Profiles")


@dataclass(frozen=True)
class FloorRow:
    """One metric of the run against one floor."""

    floor: str  # the floor's method name
    metric: str  # "eq6" or "ppsnr"
    floor_value: float | None  # the floor's mean; None when no run of it is stored
    gain_low: float | None  # lower end of the 95% interval of the improvement (positive: beats it)
    verdict: str  # bench.verdict's word, or "not stored"


@dataclass(frozen=True)
class SpreadRow:
    """One stored run of the method."""

    store: str  # the runs store it was read from
    frames: int  # N
    seed: int
    trained_on: tuple[str, ...]  # chip · precision · threads of its stages
    deblur_psnr: float | None  # dB, the DM's estimate of the centre
    eq6: float
    ppsnr: float  # dB
    motion_ratio: float
    motion_max: float  # the largest per-sample motion ratio
    clears: bool  # every stored floor beaten on both metrics
    floors: tuple[FloorRow, ...]
    curve: tuple[tuple[int, float], ...] = field(default=())  # last stage's (iteration, validation loss)


def _floor_rows(verdicts) -> tuple[FloorRow, ...]:
    rows = []
    for v in verdicts:
        j = v.judgement
        rows.append(FloorRow(v.floor, v.metric, None if j is None else j.worse,
                             None if j is None else j.ci_low, "not stored" if j is None else j.verdict))
    return tuple(rows)


def _curve(metrics, method: str) -> tuple[tuple[int, float], ...]:
    """The validation points of the method's last trained stage (stage 2 for `ours`)."""
    from methods import registry

    stages = [s.name for s in registry.get(method).stages]
    info = metrics.training.get(stages[-1]) if stages else None
    points = ((info or {}).get("validation") or {}).get("points") or []
    return tuple((int(p[0]), float(p[1])) for p in points if p[1] is not None)


def spread_rows(runs: Path, method: str) -> list[SpreadRow]:
    """One row per finished run of `method` in the store `runs`, ordered by N and seed."""
    from bench.floor_verdict import clears_every_floor, floor_verdicts
    from bench.store import iter_runs

    rows = []
    for record in iter_runs(runs):
        m = record.metrics
        if m is None or m.status != "finished" or m.method != method:
            continue
        verdicts = floor_verdicts(record.path, m, runs, {})
        motions = [r["motion_ratio"] for r in m.samples if r.get("motion_ratio") is not None]
        rows.append(SpreadRow(str(runs), m.frames, m.seed, m.trained_on, m.aggregate.get("deblur_psnr"),
                              m.aggregate["eq6"], m.aggregate["ppsnr"], m.aggregate["motion_ratio"],
                              max(motions, default=math.nan), clears_every_floor(verdicts),
                              _floor_rows(verdicts), _curve(m, method)))
    return sorted(rows, key=lambda r: (r.frames, r.seed))


def _num(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _floor_cell(row: SpreadRow, metric: str) -> str:
    """"69.76 (82.59 +10.4; 85.87 +13.9)": the run's value, then each floor's value and the gain's low end."""
    own = row.eq6 if metric == "eq6" else row.ppsnr
    parts = [f"{_num(f.floor_value)} {_num(f.gain_low, sign=True)}" for f in row.floors if f.metric == metric]
    return f"{own:.2f} ({'; '.join(parts)})"


def _sparse(curve: tuple, keep: int = 4) -> tuple:
    """At most `keep` points of a curve, first and last included, for a table cell (JSON keeps them all)."""
    if len(curve) <= keep:
        return curve
    return tuple(curve[round(i * (len(curve) - 1) / (keep - 1))] for i in range(keep))


def markdown(rows: list[SpreadRow]) -> str:
    floors = list(dict.fromkeys(f.floor for r in rows for f in r.floors))
    head = (f"| store | N | seed | trained on | DM dB | Eq. 6 ({', '.join(floors)}: value, gain low) | pPSNR "
            f"(same) | motion (max) | clears | last stage validation |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        curve = " / ".join(f"{loss:.3f}@{it}" for it, loss in _sparse(r.curve)) or "-"
        lines.append(f"| {r.store} | {r.frames} | {r.seed} | {'; '.join(r.trained_on) or '-'} | "
                     f"{_num(r.deblur_psnr)} | {_floor_cell(r, 'eq6')} | {_floor_cell(r, 'ppsnr')} | "
                     f"{r.motion_ratio:.3f} ({_num(r.motion_max)}) | {'yes' if r.clears else 'NO'} | "
                     f"{curve} |")
    return "\n".join(lines + [""] + summary(rows))


def summary(rows: list[SpreadRow]) -> list[str]:
    """Per N: how many runs clear every floor and keep the motion ratio in range; each metric's spread."""
    lines = []
    for n in sorted({r.frames for r in rows}):
        at = [r for r in rows if r.frames == n]
        held = sum(r.clears and MOTION_RANGE[0] <= r.motion_ratio <= MOTION_RANGE[1] for r in at)
        spread = ", ".join(f"{name} {min(vals):.2f}-{max(vals):.2f}" for name, vals in (
            ("Eq. 6", [r.eq6 for r in at]), ("pPSNR", [r.ppsnr for r in at]),
            ("motion", [r.motion_ratio for r in at])))
        lines.append(f"N = {n}: {held} of {len(at)} runs clear every floor with motion ratio in "
                     f"[{MOTION_RANGE[0]}, {MOTION_RANGE[1]}]; {spread}")
    return lines


@click.command()
@click.option("--runs", "stores", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="a runs store; repeat for one store per thread count or machine")
@click.option("--method", default="ours", show_default=True, help="the trained method whose spread to show")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
def main(stores: tuple[str, ...], method: str, fmt: str) -> None:
    from methods import registry

    if method not in registry.names():
        raise click.BadParameter(f"unknown method {method!r}; `bench list` names them", param_hint="--method")
    rows = [row for store in stores for row in spread_rows(Path(store), method)]
    if not rows:
        raise click.ClickException(f"no finished run of {method} in {', '.join(stores)}; "
                                   f"`bench run --method {method}` stores one")
    click.echo(json.dumps([asdict(r) for r in rows], indent=1) if fmt == "json" else markdown(rows))


if __name__ == "__main__":
    main()
