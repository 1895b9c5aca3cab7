"""`bench report`: stored runs -> reports/ (docs/DESIGN.md "Reports"). Reads the store only; never trains or
re-scores.

`build_report(runs_dir, out, formats, profile, dataset)` writes `out/README.md` (provenance, the claims table,
missing and failed runs, links), `out/tables/<name>.{md,csv,tex}` (each CSV plain data; the tables' titles
and notes in `out/tables/provenance.json`), `out/figures/*.{png,pdf,gif}` and, with the `html` format,
`out/index.html` (`bench.report.html`) with its sample viewer's strips under `out/viewer/`
(`bench.report.viewer`).

`out` may hold other files (`--out .` in a project): the report goes through `bench.outputs.OutputFolder`, so
it replaces or deletes only files it wrote itself (recorded in `out/.bench-outputs.json`). When a name it
needs (README.md first of all) is taken by a file it did not write, it stops before writing anything, naming
that file: a project's README is never replaced, the report asks for another `--out` instead.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.env import git_commit
from bench.errors import BenchError
from bench.outputs import OutputFolder
from bench.report import html, paper
from bench.report.claims import (
    CLAIM_COLUMNS,
    EXTERNAL_SOURCE,
    PERF_COMMAND,
    evaluate_claims,
    external_claims,
    finished,
    fmt,
    registered_ablations,
    registered_claims,
    registered_methods,
)
from bench.report.load import load_runs
from bench.report.tables import (
    EQ6_PAIRING,
    Context,
    Table,
    all_tables,
    select,
    video_methods,
)
from bench.store import latest_perf, read_config
from bench.verdict import RULE

FORMATS = ("md", "csv", "tex", "png", "pdf", "gif", "html")
PAGE = "index.html"  # the html format's page, beside README.md
PROVENANCE = "provenance.json"  # beside the CSVs under tables/: their titles and notes


@dataclass
class ReportResult:
    readme: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # damaged stored timings, one line each
    damaged_images: list[str] = field(default_factory=list)  # sample PNGs the figures skipped, one line each
    page: Path | None = None  # index.html, with the html format
    viewer: list[Path] = field(default_factory=list)  # the viewer's strips under viewer/
    viewer_problems: list[str] = field(default_factory=list)  # players without frames, one line each


def parse_formats(text: str) -> set[str]:
    """`--format md,csv,png` -> {"md", "csv", "png"}; an unknown or empty choice is a BenchError."""
    chosen = {f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()}
    unknown = chosen - set(FORMATS)
    if unknown or not chosen:
        raise BenchError(f"--format {text!r}: choose from {','.join(FORMATS)} (comma-separated)")
    return chosen


def expected_cells(ctx: Context) -> list[tuple[str, int, str]]:
    """(method, N, command) that a complete report needs; those without a finished run are listed."""
    p = f" --profile {ctx.profile}" if ctx.profile else ""
    cells = []
    for m in registered_methods():  # the video table's rows at each N they make; deblurring-only rows
        if m.video_role:
            cells += [(m.name, n) for n in (7, 9) if m.frames is None or n in m.frames]
        elif m.deblur_column:
            cells.append((m.name, ctx.frames["deblur"]))
    out = [(m, n, f"bench run --method {m} --frames {n}{p}") for m, n in cells]
    n = ctx.frames["ablation"]
    out += [(m, n, f"bench ablate --only {m} --frames {n}{p}") for m in registered_ablations()]
    return out


def missing_runs(ctx: Context) -> list[str]:
    """One line per expected (method, N) without a finished run, with the failure if one was recorded."""
    done = finished(ctx.runs)
    have = set(zip(done["variant"], done["frames"], strict=True))
    lines = []
    for method, n, command in expected_cells(ctx):
        if (method, n) in have:
            continue
        runs = ctx.runs
        tried = runs[(runs["variant"] == method) & (runs["frames"] == n) & (runs["eval_set"] == "")]
        why = "no run"
        if len(tried):
            last = tried.iloc[-1]
            why = f"{last['status']} ({last['run_id']}{': ' + last['error'] if last['error'] else ''})"
        lines.append(f"`{method}` at N={n}: {why}; make it with `{command}`")
    return lines


def failed_runs(ctx: Context) -> list[str]:
    """One line per selected entry that did not finish, and per damaged or pre-digest entry anywhere in the
    store (whose profile may be unreadable, so it cannot be selected)."""
    unusable = ctx.all_runs[ctx.all_runs["status"].isin(["damaged", "legacy"])]
    bad = pd.concat([ctx.runs[ctx.runs["status"] != "finished"], unusable]).drop_duplicates(
        subset=["run_id", "eval_set"])
    return [f"`{r.run_id}` ({r.variant}, N={r.frames}, seed {r.seed}"
            f"{', eval ' + r.eval_set if r.eval_set else ''}): {r.status}{' — ' + r.error if r.error else ''}"
            for r in bad.itertuples(index=False)]


def _timing_note(ctx: Context) -> str:
    """Where the speed claims' numbers come from, or the command that measures them."""
    perf = ctx.perf
    if perf is None:
        return (f"Speed claims: not measured; `{PERF_COMMAND}` times the paper-sized networks and keeps the "
                "result in the runs store, where this report reads it.")
    return (f"Speed claims: `bench perf --profile {perf.profile}` (paper-sized networks, untrained) on "
            f"{perf.device} at {perf.resolution}, N={perf.frames}, {perf.repeats} timed passes after "
            f"{perf.warmup}, commit {perf.env.commit_text or 'unknown'}, {perf.env.date}. Size claims: exact "
            "parameter counts of the registry's networks at the paper's widths, whatever profile the runs "
            "used.")


def claims_table(ctx: Context, rows: list[dict]) -> Table:
    display = pd.DataFrame([{"Claim": r["claim"], "Source": r["source"], "Metric": r["metric"],
                             "Paper (GoPro)": r["paper"], "Ours": r["ours"],
                             "Improvement [95% CI]": r["improvement"], "Verdict": r["verdict"],
                             "On": r["evidence"] or ("missing: " + ", ".join(r["missing"]) if r["missing"]
                                                     else r["note"])} for r in rows])
    numeric = pd.DataFrame([{k: (";".join(v) if isinstance(v, list) else v) for k, v in r.items()}
                            for r in rows], columns=list(CLAIM_COLUMNS))
    notes = ctx.header() + [RULE, _timing_note(ctx), f"Deblurring claims at N={ctx.frames['deblur']}, "
                            f"ablations at N={ctx.frames['ablation']}. " + EQ6_PAIRING]
    if any(r["source"] == EXTERNAL_SOURCE for r in rows):
        notes.append(f"Claims from `{EXTERNAL_SOURCE}` are not the paper's: one per metric for each outside "
                     "method's scored predictions (ours beats LABEL), judged by the same rule on the same "
                     "samples; an outside method's one set of predictions stands for every seed.")
    registry_note = registered_claims()[1]
    if registry_note:
        notes.append(registry_note)
    return Table("claims", "The paper's claims on this data", notes, display, numeric)


def provenance_json(tables: list[Table]) -> bytes:
    """`tables/provenance.json`: per table, its CSV file, title, notes (data, profile, device, commit,
    definitions, the decision rule), columns and row count."""
    doc = {"about": "Titles and notes of the CSV tables beside this file; each CSV is plain data (one header "
                    "row), read with pandas.read_csv(path) and no options.",
           "tables": {t.name: t.provenance() for t in tables}}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _commits(ctx: Context) -> Counter[str]:
    """Commit (with `+dirty`; "" when unknown) -> number of finished results behind this report."""
    return Counter(ctx.runs[ctx.runs["status"] == "finished"]["commit"])


def _machines(ctx: Context) -> Counter[str]:
    """Where the finished trained results behind this report were trained (`RunMetrics.trained_on`; "" for
    unfinished and untrained ones) -> number of results."""
    return Counter(m for m in ctx.runs["trained_on"] if m)


def provenance_marks(ctx: Context) -> list[str]:
    """The warnings that open the README when its numbers do not come from one clean commit (results of
    several commits, of a tree with uncommitted changes, or of code outside a git checkout) or from one
    training setting (chip, precision and threads)."""
    return _commit_marks(ctx) + _machine_marks(ctx)


def _machine_marks(ctx: Context) -> list[str]:
    """The training-setting half of `provenance_marks`."""
    machines = _machines(ctx)
    if len(machines) < 2:
        return []
    listing = "; ".join(f"{m} ({machines[m]})" for m in sorted(machines))
    return [f"> **Mixed machines: results trained with {len(machines)} settings of chip, precision and "
            f"threads** ({listing}). The quick recipe's outcome can change with them (docs/DESIGN.md "
            "\"Profiles\"): compare methods trained alike (the runs table's `trained_on`)."]


def _commit_marks(ctx: Context) -> list[str]:
    """The commit half of `provenance_marks`: results of several commits are one experiment when every one
    is what this checkout's code makes (`bench.report.currency`); those whose code has changed are named."""
    commits = _commits(ctx)
    known = sorted(c for c in commits if c)
    marks = []
    changed = ctx.code_changes
    if changed is None and len(commits) > 1:
        listing = ", ".join(f"`{c or 'unknown'}` ({commits[c]})" for c in sorted(commits))
        marks.append(f"> **Mixed provenance: built from results of {len(commits)} commits** ({listing}). "
                     "A difference between methods may be a difference between code versions; regenerate on "
                     "one clean commit (`bash reports/regenerate.sh`).")
    elif changed:
        shown = "; ".join(f"`{label}` ({why})" for label, why in changed[:MAX_LISTED])
        more = f"; and {len(changed) - MAX_LISTED} more" if len(changed) > MAX_LISTED else ""
        marks.append(f"> **Mixed provenance: {len(changed)} of {sum(commits.values())} results were made by "
                     f"code that differs from this checkout's** ({shown}{more}). A difference between "
                     "methods may be a difference between code versions; run them again here (`bench run` "
                     "retrains exactly those), or regenerate on one clean commit "
                     "(`bash reports/regenerate.sh`).")
    dirty = [c for c in known if c.endswith("+dirty")]
    if dirty:
        marks.append(f"> **Built from results made with uncommitted changes** ({', '.join(dirty)}): those "
                     "commits alone do not reproduce them.")
    if "" in commits:
        marks.append(f"> **{commits['']} result(s) record no commit** (made outside a git checkout).")
    return marks


MAX_LISTED = 6  # results named in the opening warning about changed code; the rest are counted


def changed_code(runs: pd.DataFrame, runs_dir: Path) -> list[tuple[str, str]]:
    """(result, what changed) for each finished run of `runs` whose code differs from this checkout's
    (`bench.report.currency`), in table order."""
    from bench.report.currency import code_change  # the registry and torch: not for `bench report --help`

    done = runs[(runs["status"] == "finished") & (runs["eval_set"] == "")]
    changed = []
    for run in done.itertuples(index=False):
        why = code_change(read_config(Path(run.path)), runs_dir / "stages")
        if why:
            changed.append((f"{run.variant} N={run.frames} seed {run.seed}", why))
    return changed


def _code_row(ctx: Context) -> str:
    """The provenance table's "Code" entry: whether every result is what this checkout's code makes."""
    changed = ctx.code_changes
    if changed is None:
        return "not checked (no store)"
    if not changed:
        return "every result's code identity (bench/code_identity.py) is this checkout's"
    return f"{len(changed)} result(s) made by code that differs from this checkout's (see the top)"


def provenance_rows(ctx: Context, out: Path) -> list[tuple[str, str]]:
    """(what, value) rows of the provenance table that README.md and index.html open with."""
    done = finished(ctx.runs)
    dates = sorted(d for d in done["date"] if d)
    seeds = sorted({int(s) for s in done["seed"] if s >= 0})
    here = git_commit(outputs=out)  # the report's own files are not its code
    commits = _commits(ctx)
    return [("Data", ctx.data_text), ("Profile", ctx.profile or "—"), ("Overrides", ctx.overrides or "none"),
            ("Device", "; ".join(sorted({d for d in done["device"] if d})) or "—"),
            ("Trained on", "; ".join(f"{m} ({n} results)" for m, n in sorted(_machines(ctx).items())) or "—"),
            ("Commits of the results", ", ".join(f"{c or 'unknown'} ({commits[c]} results)"
                                                 for c in sorted(commits)) or "—"),
            ("Report built by", f"{here['commit'] or 'unknown'}{'+dirty' if here['dirty'] else ''}"),
            ("Code", _code_row(ctx)),
            ("Run dates", f"{dates[0]} … {dates[-1]}" if dates else "—"),
            ("Seeds", ", ".join(map(str, seeds)) or "—"),
            ("Runs", f"{len(done)} finished of {len(ctx.runs)} selected; {len(ctx.all_runs)} in the store"),
            ("Report built", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))]


def _findings(ctx: Context) -> list[str]:
    """The video table's rows (floors and oracle included) beside the paper's Eq. 6 figures (Eq. 6 rewards
    the mean: docs/DESIGN.md "Metrics")."""
    s = ctx.summary
    lines = []
    for n in sorted(set(s.dropna(subset=["eq6"])["frames"])):
        parts = []
        for m, _role in video_methods():
            hit = s[(s["variant"] == m) & (s["frames"] == n)]
            if len(hit) and not math.isnan(hit["eq6"].iloc[0]):
                parts.append(f"`{m}` {fmt(hit['eq6'].iloc[0], 'eq6', hit['eq6_std'].iloc[0])}")
        published = [f"{m} {v}" for (m, k), v in paper.eq6_figures().items() if k == n]
        lines.append(f"- N={n}: Eq. 6 here: {', '.join(parts) or '—'}; paper (GoPro): "
                     f"{', '.join(published) or '—'} (the paper reports no trivial floor).")
    return lines


def _links(out: Path, tables: list[Path], figures: list[Path]) -> list[str]:
    lines = ["## Tables", ""]
    by_stem: dict[str, list[Path]] = {}
    for p in tables:
        by_stem.setdefault(p.stem, []).append(p)
    for stem, paths in by_stem.items():
        links = [f"[{p.suffix[1:]}]({p.relative_to(out).as_posix()})" for p in paths]
        lines.append(f"- {stem}: " + ", ".join(links))
    lines += ["", "## Figures", ""]
    for p in figures:
        rel = p.relative_to(out).as_posix()
        inline = f"<br>![{p.stem}]({rel})" if p.suffix in (".png", ".gif") else ""
        lines.append(f"- [{p.name}]({rel})" + inline)
    return lines + [""]


def build_report(runs_dir: Path, out: Path, formats: set[str], profile: str | None = None,
                 dataset: str | None = None, samples: int = 8, data_dir: Path | None = None) -> ReportResult:
    """Write the whole report from the runs in `runs_dir`; see the module docstring for the layout.
    `samples` and `data_dir` serve the html page's viewer (`bench.report.viewer`): K samples per N, and the
    prepared sets' home."""
    runs = load_runs(runs_dir)
    if runs.empty:
        raise BenchError(f"no runs in {runs_dir}; make some with `bench run --method ours` "
                         "(or point --runs-dir / BENCH_RUNS at a store)")
    ctx = select(runs, profile, dataset)
    if ctx.runs.empty:
        raise BenchError(f"no runs in {runs_dir} match profile={profile!r} dataset={dataset!r}; "
                         f"stored profiles: {', '.join(sorted(set(runs['profile'])))}")
    result = ReportResult(readme=out / "README.md", page=out / PAGE if "html" in formats else None)
    ctx.perf, perf_problems = latest_perf(runs_dir, "paper")
    ctx.code_changes = changed_code(ctx.runs, Path(runs_dir))
    result.claims = evaluate_claims(ctx.samples, ctx.frames, ctx.perf, external_claims(ctx.runs))
    result.problems = perf_problems
    tables = [claims_table(ctx, result.claims), *all_tables(ctx)]
    writers = {"md": Table.markdown, "csv": Table.csv, "tex": Table.latex}
    targets = {out / "tables" / f"{t.name}.{ext}": write(t).encode("utf-8")
               for t in tables for ext, write in writers.items() if ext in formats}
    if "csv" in formats:  # the CSVs are plain data; their titles and notes live beside them
        targets[out / "tables" / PROVENANCE] = provenance_json(tables)
    folder = OutputFolder(out, "report")
    folder.check([result.readme, *targets, *([result.page] if result.page else [])])  # before any write
    with folder:
        for path, data in targets.items():
            result.tables.append(folder.write(path, data))
        from bench.report.figures import SampleImages, all_figures  # matplotlib only for figures

        images = SampleImages()
        result.figures = all_figures(ctx, out / "figures", formats, folder.write, images)
        result.damaged_images = images.problems
        viewer_docs = _viewer(ctx, result, samples, out, folder.write, data_dir) if result.page else []
        # A run that is gone must not leave its figure behind: this verb's own files of the rebuilt formats
        # that this report did not write go; the user's files, whatever their names, stay.
        folder.remove_stale(lambda rel: (rel.split("/")[0] in ("tables", "figures")
                                         and rel.rsplit(".", 1)[-1] in formats)
                            or (rel.startswith("viewer/") and "html" in formats))
        result.missing = missing_runs(ctx)
        provenance = provenance_rows(ctx, out)
        folder.write(result.readme, _readme(ctx, runs, result, tables[0], out, provenance).encode("utf-8"))
        if result.page:
            page = _page(ctx, runs, result, tables, out, provenance, viewer_docs)
            folder.write(result.page, html.render(page).encode("utf-8"))
    return result


def _viewer(ctx: Context, result: ReportResult, k: int, out: Path, write: Any,
            data_dir: Path | None) -> list[dict]:
    """The viewer's strips written, its per-N documents returned (`bench.report.viewer`)."""
    from bench.report.viewer import viewer  # torch only for the viewer's frames

    sets = viewer(ctx, k, out, write, data_dir)
    result.viewer = [p for s in sets for p in s.written]
    result.viewer_problems = [p for s in sets for p in s.problems]
    return [s.doc for s in sets]


def _page(ctx: Context, runs: pd.DataFrame, result: ReportResult, tables: list[Table], out: Path,
          provenance: list[tuple[str, str]], viewer_docs: list[dict]) -> html.Page:
    files: dict[str, list[str]] = {}
    for p in result.tables:
        files.setdefault(p.stem, []).append(p.relative_to(out).as_posix())
    note = VIEWER_NOTE
    if not ctx.comparable:
        note += f" {ctx.data_label}: NOT comparable with the paper's GoPro numbers."
    return html.Page(marks=opening_marks(ctx), provenance=provenance, claims=tables[0],
                     findings=_findings(ctx), missing=missing_lines(ctx, runs, result), tables=tables[1:],
                     files=files, figures=[p.relative_to(out).as_posix() for p in result.figures],
                     definitions=dict(ctx.definitions), footnotes=[EQ6_PAIRING], viewer=viewer_docs,
                     viewer_note=note)


VIEWER_NOTE = ("Each set shows `bench report --samples K` test samples, the same for every method, at evenly "
               "spaced ranks of the reference method's stored per-sample Eq. 6 (`ours` where present, its "
               "lowest seed): the first is its worst sample, the last its best. Each player is the "
               "lowest-seed run of its method; its frames are the ones the run stored, or made again from "
               "the run's weights.pt and set against its stored scores (each player says which, and whether "
               "they reproduce). Strips are lossy WebP for size; every number comes from the lossless frames "
               "the run scored.")


def opening_marks(ctx: Context) -> list[str]:
    """The Markdown warnings README.md and index.html open with: provenance, then comparability."""
    marks = provenance_marks(ctx)
    if not ctx.comparable:
        marks.append(f"> **Built from {ctx.data_label.lower()} ({ctx.data_text}). Its numbers are NOT "
                     "comparable with the paper's GoPro numbers**; the paper's figures are shown beside ours "
                     "for reference only.")
    return marks


def missing_lines(ctx: Context, runs: pd.DataFrame, result: ReportResult) -> list[str]:
    """The "Missing and failed runs" items (Markdown, one per line, without the list dash)."""
    lines = list(result.missing) or ["none missing"]
    lines += [f"failed/unfinished: {f}" for f in failed_runs(ctx)]
    lines += [f"damaged stored timing, not used: {p}" for p in result.problems]
    lines += [f"damaged sample image, left out of the figures: {p}" for p in result.damaged_images]
    lines += [f"sample viewer, no frames: {p}" for p in result.viewer_problems]
    others = sorted(set(runs["profile"]) - {ctx.profile})
    if others:
        lines.append(f"other profiles in the store, not in this report: {', '.join(others)} "
                     "(`bench report --profile NAME`)")
    return lines


def _readme(ctx: Context, runs: pd.DataFrame, result: ReportResult, claims: Table, out: Path,
            provenance: list[tuple[str, str]]) -> str:
    lines = ["# Blurred Moments Bench: report", ""]
    lines += [line for mark in opening_marks(ctx) for line in (mark, "")]
    page = f" The same report as one page, with a sample viewer: [{PAGE}]({PAGE})." if result.page else ""
    lines += ["Reproduction of Purohit, Shah, Rajagopalan, *Bringing Alive Blurred Moments*, CVPR 2019. "
              f"Built by `bench report` from stored runs only.{page}", "",
              "## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in provenance), "",
              "## Claims", "", *claims.markdown().splitlines()[2:], "",
              "## Eq. 6 floors beside the paper's figures", "", *_findings(ctx), "",
              "## Missing and failed runs", ""]
    lines += [f"- {m}" for m in missing_lines(ctx, runs, result)]
    lines += ["", *_links(out, result.tables, result.figures), "## Metric definitions", ""]
    lines += [f"- `{k}`: {v}" for k, v in ctx.definitions.items()] or ["- see bench/metrics.py"]
    lines += ["", f"- {EQ6_PAIRING}", ""]
    return "\n".join(lines)


