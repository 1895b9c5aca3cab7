"""`bench report`: turns stored runs into reports/: README with the claims table, tables, figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from bench.commands import check_output
from bench.config import Range, check_option
from bench.errors import BenchError
from bench.report import build_report, parse_formats
from bench.store import runs_dir


def _runs_dir(option: str | None) -> Path:
    return Path(runs_dir(option))


def _grid_note(store: Path) -> str | None:
    """One line when the latest grid launched into the store (`--launcher`) has jobs not done: the report
    is built from what is stored, and their results are among the missing."""
    # late: bench.launch loads torch through bench.grid, which `bench report --help` must not
    from bench.launch import job_states, ledgers

    paths = ledgers(store)
    if not paths:
        return None
    try:
        counts = Counter(j["state"] for j in job_states(paths[-1]) if j["state"] != "done")
    except BenchError as err:
        return f"the jobs of the latest grid ({paths[-1].parent}) are unknown: {err}"
    if not counts:
        return None
    said = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"the latest grid ({paths[-1].parent.name}) has jobs not done ({said}): what they make is " \
           "missing here until they finish (bench status)"


@click.command("report")
@click.option("--runs-dir", default=None, help="results store (default: $BENCH_RUNS, else ./runs)")
@click.option("--out", "out_dir", default="reports", show_default=True,
              help="folder the report is written to; files there that bench report did not write are never "
                   "replaced or deleted (it stops instead, naming the file)")
@click.option("--format", "formats", default="md,csv,tex,png,pdf,gif,html", show_default=True,
              help="comma-separated outputs: md,csv,tex (tables), png,pdf,gif (figures), html (index.html "
                   "with the sample viewer); README.md always")
@click.option("--samples", default=8, show_default=True, type=int,
              help="html: test samples per N in the sample viewer (the reference's worst and best included)")
@click.option("--data-dir", envvar="BENCH_DATA", default=None,
              help="html: data home of the prepared sets, for the viewer's frames the runs did not store "
                   "(env BENCH_DATA, else ./datasets)")
@click.option("--profile", default=None,
              help="report this profile's runs (default: the one with most finished runs)")
@click.option("--dataset", default=None,
              help="only runs on this prepared set or family, e.g. synthetic-quick or gopro")
def command(runs_dir: str | None, out_dir: str, formats: str, samples: int, data_dir: str | None,
            profile: str | None, dataset: str | None) -> None:
    """Builds reports/ from the stored runs: claims, tables, figures and index.html with its viewer."""
    chosen = parse_formats(formats)
    check_option("--samples", samples, Range(0, 1000))
    check_output(out_dir, "--out", folder=True)
    store = _runs_dir(runs_dir)
    out = Path(out_dir)
    result = build_report(store, out, chosen, profile=profile, dataset=dataset, samples=samples,
                          data_dir=Path(data_dir) if data_dir else None)
    # Each also in the README's "Missing and failed".
    for line in result.problems + result.damaged_images + result.viewer_problems:
        click.echo(f"warning: {line}", err=True)
    held = sum(c["verdict"] == "held" for c in result.claims)
    measured = sum(c["verdict"] != "not measured" for c in result.claims)
    click.echo(f"claims: {held} held of {measured} measured ({len(result.claims)} in all); "
               f"{len(result.missing)} expected runs missing (listed in the README)")
    note = _grid_note(store)
    if note:
        click.echo(note)
    kinds = sorted({p.suffix[1:] for p in result.tables})
    fig_kinds = sorted({p.suffix[1:] for p in result.figures})
    click.echo(f"wrote {result.readme}, {len({p.stem for p in result.tables})} tables "
               f"({', '.join(kinds) or 'none'}) under {out / 'tables'} and {len(result.figures)} figure "
               f"files ({', '.join(fig_kinds) or 'none'}) under {out / 'figures'}")
    if result.page is not None:
        click.echo(f"wrote {result.page} and {len(result.viewer)} viewer strips under {out / 'viewer'}")
