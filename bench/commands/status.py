"""`bench status`: the jobs of the grids `bench run` and `bench ablate` launched (`--launcher`), each queued,
running, done or failed, with the log of each failed job (docs/DESIGN.md "Stage graph")."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from bench.store import runs_dir as resolve_runs


@click.command("status")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None, help="results store")
@click.option("--all", "every", is_flag=True, help="every grid launched into the store (default: the latest)")
@click.option("--json", "as_json", is_flag=True, help="the jobs as JSON")
def command(runs_dir: Path | None, every: bool, as_json: bool) -> None:
    """Show what each job of the latest grid (or --all) is doing; a failed job names its log."""
    # late: bench.launch loads torch through bench.grid, which `bench status --help` must not
    from bench.launch import job_states, ledgers

    store = resolve_runs(runs_dir)
    paths = ledgers(store)
    if not paths:
        click.echo(f"{store}: no grid launched here (bench run --launcher local|slurm writes {store}/jobs/)")
        return
    grids = {str(p.parent): job_states(p) for p in (paths if every else paths[-1:])}
    if as_json:
        click.echo(json.dumps({"grids": grids}, indent=2))
        return
    for grid, jobs in grids.items():
        counts = Counter(j["state"] for j in jobs)
        said = ", ".join(f"{counts[s]} {s}" for s in ("queued", "running", "done", "failed"))
        click.echo(f"{grid}: {said}")
        for job in jobs:
            after = f" after {','.join(job['deps'])}" if job["deps"] else ""
            click.echo(f"  {job['state']:<8} {job['job_id'] or '-':<10} {job['label']}{after}")
            if job["state"] == "failed":
                click.echo(f"           {job.get('why', '')}; log {job['stderr'] or '-'}")
