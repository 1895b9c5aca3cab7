"""`bench list`: the registered methods, prepared datasets, stored runs and profiles (all four by default)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.config import PROFILES
from bench.data.manifest import default_data_dir, describe_sets
from bench.store import iter_runs
from bench.store import runs_dir as resolve_runs

SECTIONS = ("methods", "datasets", "runs", "profiles")


def methods_rows() -> list[dict]:
    """`methods.registry.summary()`: name, family, params, size_mb, components (stable keys)."""
    from methods import registry  # late: the methods load torch, which only `bench list` of methods needs

    return registry.summary()


def dataset_rows(data_dir: Path) -> list[dict]:
    return describe_sets(data_dir)


def run_rows(runs_dir: Path) -> list[dict]:
    """One row per stored run: its identity, data digest and headline metrics; status failed, incomplete,
    damaged or legacy (pre-digest) shown as such, with the one-line `problem` of an unusable entry."""
    rows = []
    for record in iter_runs(runs_dir):
        cfg, met = record.config, record.metrics
        agg = met.aggregate if met is not None else {}
        rows.append({"run": record.path.name, "method": cfg.method if cfg else None,
                     "profile": cfg.profile if cfg else None, "dataset": cfg.dataset if cfg else None,
                     "data_sha256": cfg.data_sha256 if cfg else None, "frames": cfg.frames if cfg else None,
                     "seed": cfg.seed if cfg else None, "status": record.status, "eq6": agg.get("eq6"),
                     "ppsnr": agg.get("ppsnr"), "deblur_psnr": agg.get("deblur_psnr"),
                     "motion_ratio": agg.get("motion_ratio"),
                     "training_time_s": met.training_time_s if met and met.status == "finished" else None,
                     "problem": record.problem, "path": str(record.path)})
    return rows


def profile_rows() -> list[dict]:
    rows = []
    for p in PROFILES.values():
        t, d = p.train, p.data
        rows.append({"name": p.name, "source": d.source, "resolution": [d.height, d.width],
                     "crop": t.crop, "crop_deblur": t.crop_of("deblur"),
                     "batch_video": t.batch_video, "batch_deblur": t.batch_deblur,
                     "iters_dm": t.iters_dm, "iters_autoencoder": t.iters_autoencoder,
                     "iters_bie": t.iters_bie, "config": asdict(p)})
    return rows


def paper_sizes(rows: list[dict]) -> dict[tuple[bool, str], float]:
    """(is a component row, row name) -> the paper's size in MB: a method's own figure (`Method.paper`), and a
    network's where an entry consists of that network alone (the DM, from `ours-static`: Table 1)."""
    from methods import registry  # late: the methods load torch, which only `bench list` of methods needs

    sizes: dict[tuple[bool, str], float] = {}
    for row in rows:
        size = None if row["family"] == "component" else registry.get(row["name"]).published("size_mb")
        if size is None:
            continue
        sizes[False, row["name"]] = size
        networks = list(row["components"].values())
        if len(networks) == 1:
            sizes.setdefault((True, networks[0]), size)
    return sizes


def _method_view(row: dict, sizes: dict[tuple[bool, str], float]) -> dict:
    """One terminal row of the methods table: sizes at the default (paper) widths beside the paper's."""
    component = row["family"] == "component"
    paper_mb = sizes.get((component, row["name"]))
    frames = row.get("frames")
    return {"name": row["name"], "family": row["family"], "params (M)": f"{row['params'] / 1e6:.2f}",
            "MB (fp32, 10^6 B)": f"{row['size_mb']:.1f}",
            "paper MB": f"{paper_mb:g}" if paper_mb is not None else "",
            "N": "" if component else ("odd >= 3" if not frames else ",".join(str(n) for n in frames)),
            "networks / used by": _short(row.get("used_by", [])) if component
            else ", ".join(row.get("components", {})) or "none"}


def _short(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])} and {len(names) - 2} more"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else str(value)
    if isinstance(value, dict):
        return ", ".join(value) if len(value) < 6 else f"{len(value)} entries"
    return str(value)


def _table(title: str, rows: list[dict], skip: tuple[str, ...] = ()) -> Any:
    table = Table(title=title)
    if not rows:
        table.add_column("(none)")
        return table
    cols = [k for k in rows[0] if k not in skip]
    for col in cols:
        table.add_column(col, overflow="fold")  # wrap, never truncate: run ids must stay copyable
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in cols))
    return table


@click.command("list")
@click.option("--methods", "show_methods", is_flag=True, help="registered methods and their components")
@click.option("--datasets", "show_datasets", is_flag=True, help="prepared datasets in the data dir")
@click.option("--runs", "show_runs", is_flag=True, help="stored runs and their headline metrics")
@click.option("--profiles", "show_profiles", is_flag=True, help="profiles: data, budgets, batches")
@click.option("--json", "as_json", is_flag=True, help="JSON: one section as a list, several as an object")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="data home ($BENCH_DATA)")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None, help="results store")
def command(show_methods: bool, show_datasets: bool, show_runs: bool, show_profiles: bool, as_json: bool,
            data_dir: Path | None, runs_dir: Path | None) -> None:
    """List methods, datasets, stored runs and profiles (all four when no section is named)."""
    wanted = [s for s, on in zip(SECTIONS, (show_methods, show_datasets, show_runs, show_profiles),
                                 strict=True) if on] or list(SECTIONS)
    store = resolve_runs(runs_dir)
    data_dir = default_data_dir(data_dir)
    getters = {"methods": methods_rows, "datasets": lambda: dataset_rows(data_dir),
               "runs": lambda: run_rows(store), "profiles": profile_rows}
    data = {name: getters[name]() for name in wanted}
    if as_json:
        payload = data[wanted[0]] if len(wanted) == 1 else data
        click.echo(json.dumps(payload, indent=2, default=str))
        return

    console = Console()
    titles = {"methods": "methods", "datasets": "datasets", "runs": "runs", "profiles": "profiles"}
    captions = {"methods": "sizes at the paper's widths (profiles may narrow them); bench run --method NAME",
                "datasets": f"in {data_dir} (bench prepare)",
                "runs": f"in {store}; data = the first 12 hex digits of the training set's digest",
                "profiles": "bench run --profile NAME; --set section.field=value"}
    skips = {"methods": ("components",), "runs": ("path", "dataset"), "profiles": (), "datasets": ("path",)}
    shown = dict(data)
    if "profiles" in shown:  # compact columns so the table fits a terminal; --json has every field
        shown["profiles"] = [{"name": r["name"], "source": r["source"], "frame px": r["resolution"],
                              "crop video/deblur": f"{r['crop']}/{r['crop_deblur']}",
                              "batch video/deblur": f"{r['batch_video']}/{r['batch_deblur']}",
                              "iters dm/ae/bie": f"{r['iters_dm']}/{r['iters_autoencoder']}/{r['iters_bie']}"}
                             for r in shown["profiles"]]
    if "methods" in shown:  # compact, with the paper's sizes beside ours (Table 1, Sec. 3.3)
        sizes = paper_sizes(shown["methods"])
        shown["methods"] = [_method_view(r, sizes) for r in shown["methods"]]
    if "runs" in shown:
        shown["runs"] = [{"run": r["run"], "profile": r["profile"], "data": (r["data_sha256"] or "")[:12],
                          "N": r["frames"], "seed": r["seed"], "status": r["status"], "eq6": r["eq6"],
                          "pPSNR": r["ppsnr"], "PSNR": r["deblur_psnr"], "motion": r["motion_ratio"]}
                         for r in shown["runs"]]
    for name in wanted:
        table = _table(titles[name], shown[name], skips[name])
        table.caption = captions[name]
        console.print(table)
    for row in data.get("runs", []):  # an unusable entry: one line each, below the table
        if row["problem"]:
            console.print(f"{row['status']}: {row['problem']}", soft_wrap=True)
