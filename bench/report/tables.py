"""The report's tables (docs/DESIGN.md "Reports"): deblurring in the paper's Table 1 layout, video
extraction, ablations, runtime and size, and the run index; each written as Markdown, CSV and LaTeX
(booktabs).

Every table carries notes at its top: the data it came from (and, for synthetic data, that its numbers are NOT
comparable with the paper's GoPro numbers), the metric definitions used, and the decision rule where it
decides claims. The CSV is plain data: one header row, then the same cells as plain numbers (mean and std over
seeds in separate columns), so `pandas.read_csv(path)` with no options, Python's `csv` module and spreadsheets
read it. Its title and notes go to the sidecar `tables/provenance.json` (`provenance`), never into the CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from bench.metrics import DEFINITIONS, arrow, lower_is_better
from bench.report import paper
from bench.report.claims import (
    METRIC_LABELS,
    external_variants,
    finished,
    fmt,
    per_sample,
    registered_ablations,
    registered_claims,
    registered_methods,
    summarise,
    untrained,
)
from bench.report.load import load_samples
from bench.store import EXTERNAL
from bench.verdict import NOT_MEASURED, RULE, judge

COMPARABILITY = ("**{label} ({data}): these numbers are NOT comparable with the paper's GoPro "
                 "numbers**; the paper's values are shown for reference only.")
EXTERNAL_ROLE = "outside method (bench score)"  # the role of an outside method's scored predictions
EQ6_PAIRING = ("Eq. 6 pairs frame n with its mirror N+1-n (the paper writes x_{N-n}; the mirror is the "
               "reading that makes it ordering-invariant). pPSNR as HyperCUT (CVPR 2023), PW-PSNR as "
               "blur2vid (2025).")


@dataclass
class Context:
    """The selection a report is built from: runs of one profile and data family."""

    runs: pd.DataFrame  # the selected runs (all statuses, evals included)
    all_runs: pd.DataFrame  # the whole store, for listing what was left out
    profile: str
    sources: list[str]  # data families, e.g. ["synthetic-quick"]
    frames: dict[str, int]  # "deblur", "video" and "ablation": the N those tables and claims use
    definitions: dict[str, str]  # metric -> one-line definition
    overrides: str = ""  # the `--set` overrides shared by the runs reported under their plain method names
    perf: Any = None  # the stored `bench perf --profile paper` result (bench.store.PerfResult) or None
    # (result, what changed) for each finished result whose code differs from this checkout's
    # (`bench.report.changed_code`, set once by `build_report`); None: not checked (no store)
    code_changes: list[tuple[str, str]] | None = None
    summary: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarise(self.runs)

    @cached_property
    def samples(self) -> pd.DataFrame:
        """Per-test-sample scores of the finished runs on their own test sets: what claims are judged on."""
        return load_samples(finished(self.runs))

    @property
    def comparable(self) -> bool:
        return comparable(self.sources)

    @property
    def data_label(self) -> str:
        return data_label(self.sources)

    @property
    def data_text(self) -> str:
        return ", ".join(sorted(set(self.runs["dataset"]))) or "no data"

    def header(self) -> list[str]:
        """The lines every table starts with."""
        lines = []
        if not self.comparable:
            lines.append(COMPARABILITY.format(label=self.data_label, data=self.data_text))
        devices = sorted({d for d in finished(self.runs)["device"] if d})
        commits = sorted({c for c in finished(self.runs)["commit"] if c})
        lines.append(f"Data: {self.data_text}; profile: {self.profile or '—'}"
                     f"{'; overrides: ' + self.overrides if self.overrides else ''}; device: "
                     f"{'; '.join(devices) or '—'}; commit: {', '.join(commits) or '—'}.")
        return lines


def comparable(sources: list[str]) -> bool:
    """Only GoPro footage, prepared as the paper's sets, can be set beside the paper's numbers."""
    return bool(sources) and all(s.startswith("gopro") for s in sources)


def data_label(sources: list[str]) -> str:
    """What the data is, in words, for the NOT-comparable notes (a user's video clips are real footage,
    but not the paper's)."""
    kinds = {s.split("-")[0] for s in sources} - {"gopro"}
    labels = {"synthetic": "Synthetic data", "video": "Data from your own video clips"}
    return labels[kinds.pop()] if len(kinds) == 1 and kinds <= set(labels) else "Synthetic or own data"


def select(runs: pd.DataFrame, profile: str | None, dataset: str | None) -> Context:
    """Pick the runs a report covers: one profile (the given one, else the one with most finished runs) and,
    when `dataset` is given, the sets whose name or family (name without `-<N>f`) or source equals it."""
    chosen = runs
    if dataset:
        chosen = chosen[(chosen["dataset"] == dataset) | (chosen["source"] == dataset)
                        | chosen["source"].str.startswith(dataset + "-")]
    if profile is None and not chosen.empty:
        counts = chosen[chosen["status"] == "finished"]["profile"].value_counts()
        profile = str(counts.index[0]) if len(counts) else str(chosen["profile"].iloc[0])
    if profile:
        chosen = chosen[chosen["profile"] == profile]
    # The overrides most finished runs share are this report's baseline (a store made entirely with
    # `--set train.iters_dm=200` still reports `ours`); runs with other overrides stay separate variants.
    chosen = chosen.copy()
    counts = finished(chosen)["overrides"].value_counts()
    base = str(counts.index[0]) if len(counts) else ""
    chosen["variant"] = [m if o == base else f"{m} [{o or 'no overrides'}]"
                         for m, o in zip(chosen["method"], chosen["overrides"], strict=True)]
    chosen["variant"] = _tag_other_data(chosen)
    done = finished(chosen)
    present = set(done["frames"])
    abl = done[done["method"].isin(registered_ablations())]["frames"]
    usual = 9 if 9 in present or not present else max(present)
    frames = {"deblur": usual, "video": usual, "ablation": int(abl.mode().iloc[0]) if len(abl) else usual}
    return Context(chosen.reset_index(drop=True), runs, profile or "", sorted(set(chosen["source"])), frames,
                   metric_definitions(), base)


def _tag_other_data(runs: pd.DataFrame) -> list[str]:
    """Variants, with `[data <digest12>]` added for runs of a set prepared with other content than the one
    most finished runs of that set name used (a re-prepared footage set): never pooled with them."""
    done = finished(runs)
    usual = {name: group["data_sha256"].value_counts().index[0] for name, group in done.groupby("dataset")}
    return [v if d == usual.get(name, d) else f"{v} [data {d[:12]}]"
            for v, name, d in zip(runs["variant"], runs["dataset"], runs["data_sha256"], strict=True)]


def video_methods() -> list[tuple[str, str]]:
    """(method, role) of the video table's rows: the entries with a `video_role`, by `video_rank` (unranked
    ones last), ties in registration order."""
    rows = sorted((m for m in registered_methods() if m.video_role),
                  key=lambda m: (m.video_rank == 0, m.video_rank))
    return [(m.name, m.video_role) for m in rows]


def floor_method() -> str | None:
    """The trivial answer the video table measures every row against: the entry marked `floor` (`blurred`),
    or None when none is registered."""
    return next((m.name for m in registered_methods() if m.floor), None)


def deblur_methods() -> list[tuple[str, str]]:
    """(method, column name) of the deblurring table's measured columns: the entries with a `deblur_column`,
    those in the paper's Table 1 first in its order (each beside its paper column), then the others in
    registration order."""
    table1 = [row.method for row in paper.TABLE1 if row.method]
    rank = {name: i for i, name in enumerate(table1)}
    columns = sorted((m for m in registered_methods() if m.deblur_column),
                     key=lambda m: rank.get(m.name, len(rank)))
    return [(m.name, m.deblur_column) for m in columns]


def metric_definitions() -> dict[str, str]:
    """One-line definitions from `bench.metrics.DEFINITIONS` (the code that computed the stored numbers)."""
    return dict(DEFINITIONS)


@dataclass
class Table:
    """One table: display cells (strings) for Markdown/LaTeX, numbers for CSV, notes for the top."""

    name: str  # file stem under reports/tables/
    title: str
    notes: list[str]
    display: pd.DataFrame
    numeric: pd.DataFrame

    def markdown(self) -> str:
        out = [f"## {self.title}", ""] + [f"> {n}" for n in self.notes] + [""]
        if self.display.empty:
            return "\n".join(out + ["*(no finished runs for this table)*", ""])
        cols = [str(c) for c in self.display.columns]
        out.append("| " + " | ".join(_md(c) for c in cols) + " |")
        out.append("|" + "|".join("---" for _ in cols) + "|")
        for row in self.display.itertuples(index=False):
            out.append("| " + " | ".join(_md(str(v)) for v in row) + " |")
        return "\n".join(out) + "\n"

    def csv(self) -> str:
        """Plain data: the header row and the numeric cells (floats as repr, the shortest text that reads
        back exactly); a table without rows is its header alone."""
        return self.numeric.to_csv(index=False)

    def provenance(self) -> dict:
        """This table's entry in `tables/provenance.json`: what its CSV holds and where it came from."""
        return {"file": f"{self.name}.csv", "title": _plain(self.title),
                "notes": [_plain(n).replace("\n", " ") for n in self.notes],
                "columns": [str(c) for c in self.numeric.columns], "rows": len(self.numeric)}

    def latex(self) -> str:
        cols = list(self.display.columns)
        out = [f"% {_plain(n)}" for n in [self.title, *self.notes]] + [r"% needs \usepackage{booktabs}"]
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                r"\begin{tabular}{" + "l" * min(1, len(cols)) + "r" * max(0, len(cols) - 1) + "}",
                r"\toprule", " & ".join(_tex(str(c)) for c in cols) + r" \\", r"\midrule"]
        for row in self.display.itertuples(index=False):
            out.append(" & ".join(_tex(str(v)) for v in row) + r" \\")
        caption = _tex(self.title + ". " + " ".join(_plain(n) for n in self.notes[:1]))
        out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", r"\end{table}", ""]
        return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def _plain(text: str) -> str:
    return text.replace("**", "").replace("*", "").replace("`", "")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "—": "---",
        "↓": r"$\downarrow$", "↑": r"$\uparrow$", "≥": r"$\geq$", "−": "-", "×": r"$\times$"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in _plain(text))


def _with_std(metrics: list[str]) -> list[str]:
    """The CSV columns of metrics shown as mean and std over seeds: `<metric>`, `<metric>_std`, ..."""
    return [c for m in metrics for c in (m, f"{m}_std")]


def _defs(ctx: Context, keys: list[str]) -> str:
    parts = [f"{METRIC_LABELS.get(k, k)}: {ctx.definitions[k]}" for k in keys if k in ctx.definitions]
    return "Definitions. " + "; ".join(parts) + "." if parts else "Definitions: see bench/metrics.py."


def _cell(ctx: Context, variant: str, frames: int) -> pd.Series | None:
    hit = ctx.summary[(ctx.summary["variant"] == variant) & (ctx.summary["frames"] == frames)]
    return None if hit.empty else hit.iloc[0]


def _val(row: pd.Series | None, metric: str) -> tuple[float, float]:
    if row is None:
        return math.nan, math.nan
    return float(row[metric]), float(row[f"{metric}_std"])


def _show(row: pd.Series | None, metric: str) -> str:
    mean, std = _val(row, metric)
    return fmt(mean, metric, std)


def deblur_table(ctx: Context) -> Table:
    """Deblurring in the layout of the paper's Table 1 (methods as columns), each re-implemented method's
    measured column beside the paper's. A method's size comes from the entry holding its deblurring network
    alone where it names one (`Method.deblur_alone`: the DM of `ours` is `ours-static`)."""
    metrics = ["deblur_psnr", "deblur_ssim", "deblur_lpips", "runtime_deblur_s", "size_mb", "params"]
    labels = ["PSNR (dB) ↑", "SSIM ↑", "LPIPS ↓", "Time (s) ↓", "Size (MB)", "Parameters", "Hardware",
              "Seeds"]
    columns: dict[str, list[str]] = {}
    numeric = []
    measured = dict(deblur_methods())
    measured.update({v: f"{v} (bench score)" for v, _ in external_variants(ctx.runs)})
    for row in paper.table1():
        values = [fmt(row.psnr, "deblur_psnr"), fmt(row.ssim, "deblur_ssim"), "—", _as_printed(row.time_s),
                  _as_printed(row.size_mb), "—", row.hardware, "—"]
        name = f"{row.name} (paper)" if row.ref == "Ours" else f"{row.name} {row.ref} (paper)"
        numeric.append({"column": name, "source": "paper (GoPro)", "method": row.method or "", "frames": "",
                        "n_seeds": "", "seeds": "", "deblur_psnr": row.psnr, "deblur_ssim": row.ssim,
                        "runtime_deblur_s": row.time_s, "size_mb": row.size_mb, "hardware": row.hardware})
        columns[name] = values  # each re-implemented method: the paper's column, then ours beside it
        if row.method in measured:
            for n in _deblur_frames(ctx, row.method):
                _measured(ctx, row.method, measured[row.method], n, metrics, columns, numeric)
    for method, label in measured.items():
        if paper.table1_row(method) is None:
            for n in _deblur_frames(ctx, method):
                _measured(ctx, method, label, n, metrics, columns, numeric)
    display = pd.DataFrame({"Metric": labels, **columns})
    alone = [f"'{label} (measured)' is the deblurred output of `{m}` (its size from `{deblur_alone(m)}`, "
             "which holds only that network)" for m, label in measured.items() if deblur_alone(m)]
    notes = ctx.header() + [
        "Measured columns: mean ± std over seeds at the test resolution of the prepared set, on the device "
        "named in the Hardware row, each named by its entry's deblurring column; the paper's columns are "
        "GoPro 1280x704 as published. " + "; ".join(alone) + ("." if alone else ""),
        _defs(ctx, metrics)]
    num = pd.DataFrame(numeric)
    return Table("deblurring", "Single-image deblurring (the paper's Table 1 layout)", notes, display, num)


def _as_printed(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def deblur_alone(method: str) -> str | None:
    """The entry holding `method`'s deblurring network alone (`Method.deblur_alone`), or None: its runs give
    the network's size (the method's own size counts every network) and stand in for its scores where the
    method has no run at an N."""
    return next((m.deblur_alone for m in registered_methods() if m.name == method and m.deblur_alone), None)


def _deblur_frames(ctx: Context, method: str) -> list[int]:
    """The N of the method's finished results, or of the entry holding its deblurring network alone."""
    variants = [method, *([deblur_alone(method)] if deblur_alone(method) else [])]
    return sorted(set(ctx.summary[ctx.summary["variant"].isin(variants)]["frames"]))


def _measured(ctx: Context, method: str, label: str, n: int, metrics: list[str], columns: dict,
              numeric: list) -> None:
    alone = deblur_alone(method)
    main = _cell(ctx, method, n)
    if main is None and alone is not None:
        main = _cell(ctx, alone, n)
    size_row = _cell(ctx, alone, n) if alone is not None else main
    if main is None and size_row is None:
        return
    src = {m: (size_row if m in ("size_mb", "params") else main) for m in metrics}
    values = [_show(src[m], m) for m in metrics]
    values += [(main if main is not None else size_row)["device"] or "—",
               str((main if main is not None else size_row)["seeds"])]
    columns[f"{label} (measured, N={n})"] = values
    entry = {"column": f"{label} (measured, N={n})", "source": "measured", "method": method, "frames": n,
             "n_seeds": int((main if main is not None else size_row)["n"]),
             "seeds": str((main if main is not None else size_row)["seeds"])}
    for m in metrics:
        entry[m], entry[f"{m}_std"] = _val(src[m], m)
    entry["hardware"] = (main if main is not None else size_row)["device"]
    numeric.append(entry)


def video_table(ctx: Context) -> Table:
    """Video extraction at every N stored: Eq. 6, pPSNR, PW-PSNR, middle-frame PSNR, motion ratio, EPE, with
    the floors (the rows of the registry's floors) and the paper's Eq. 6 beside (docs/DESIGN.md "Metrics":
    the floors put the paper's figures in perspective; the motion ratio shows which answers do not move)."""
    metrics = ["eq6", "ppsnr", "pwpsnr", "mid_psnr", "motion_ratio", "epe"]
    roles = video_methods() + [(v, EXTERNAL_ROLE) for v in dict.fromkeys(v for v, _ in
                                                                      external_variants(ctx.runs))]
    base = floor_method()
    below = f"Below `{base or 'floor'}` floor by"
    display, numeric = [], []
    for n in sorted(set(ctx.summary["frames"])):
        floor_eq6 = _val(_cell(ctx, base, n) if base else None, "eq6")[0]
        for method, role in roles:
            row = _cell(ctx, method, n)
            if row is None or all(math.isnan(_val(row, m)[0]) for m in metrics):
                continue
            eq6 = _val(row, "eq6")[0]
            margin = floor_eq6 - eq6 if method != base else math.nan
            published = paper.figure(method, "eq6", n)
            display.append({"Method": method, "N": n, "Role": role,
                            **{f"{METRIC_LABELS[m]} {arrow(m)}": _show(row, m) for m in metrics},
                            below: fmt(margin, "eq6"), "Seeds": row["seeds"],
                            "Paper Eq. 6 (GoPro)": fmt(published, "eq6")})
            entry = {"method": method, "frames": n, "role": role, "n_seeds": int(row["n"]),
                     "seeds": row["seeds"]}
            for m in metrics:
                entry[m], entry[f"{m}_std"] = _val(row, m)
            entry["eq6_below_floor"] = margin
            entry["paper_eq6_gopro"] = published if published is not None else math.nan
            numeric.append(entry)
    notes = ctx.header() + [
        "Eq. 6 error ↓ (sum over mirrored frame pairs, [0,255] scale); PSNRs in dB ↑; EPE in pixels ↓; "
        "motion ratio →1 (0: the frames do not move; 1: they move as much as the truth). "
        f"'{below}' = the floor's Eq. 6 − the method's (> 0 beats the trivial answer; the floor is the "
        "registry's `floor` entry). Eq. 6 rewards the mean: repeating the blurred input is a strong floor "
        "(docs/DESIGN.md, Metrics).",
        EQ6_PAIRING, _defs(ctx, metrics)]
    columns = ["method", "frames", "role", "n_seeds", "seeds", *_with_std(metrics), "eq6_below_floor",
               "paper_eq6_gopro"]
    return Table("video", "Video extraction (Eq. 6, pPSNR, PW-PSNR, middle-frame PSNR)", notes,
                 pd.DataFrame(display), pd.DataFrame(numeric, columns=columns))


def base_method(variant: str) -> str:
    """The registry entry a stored variant ran: `ours-no-tv [train.iters_dm=200]` -> `ours-no-tv`."""
    return variant.split(" [")[0]


def ablation_variants(ctx: Context) -> list[str]:
    """The registered ablations, then the stored variants of them with other overrides or data (each judged
    by its entry's claims). Stored runs of other entries or of unregistered names are not ablations: they
    stay in the video, runtime and runs tables."""
    known = registered_ablations()
    extra = sorted(v for v in set(ctx.summary["variant"]) if v not in known and base_method(v) in known)
    return known + extra


def _ablation_claims(variant: str) -> list[tuple[str, str, str, bool]]:
    """(winner, claim, metric, lower is better) for each claim the variant's entry carries about itself."""
    method = base_method(variant)
    pairs, _note = registered_claims()
    return [(c.better, c.text, c.metric, lower_is_better(c.metric)) for owner, c in pairs
            if owner == method and c.sides(owner)[1] == method]


def ablation_table(ctx: Context) -> Table:
    """Each ablation against its claim's winner (`ours`) on the metric it should hurt: both sides' means on
    the paired seeds and test samples, the winner's improvement with its interval, and the verdict (the rule
    of `bench.verdict`, as the claims table and `bench ablate`)."""
    n = ctx.frames["ablation"]
    known = set(registered_ablations())
    display, numeric = [], []
    for variant in ablation_variants(ctx):
        for winner, claim, metric, lower in _ablation_claims(variant):
            mine = per_sample(ctx.samples, variant, n, metric)
            if not mine and variant not in known:
                continue
            j = judge(per_sample(ctx.samples, winner, n, metric), mine, lower, untrained(ctx.samples, winner),
                      untrained(ctx.samples, variant))
            shown = j.verdict != NOT_MEASURED
            display.append({"Variant": variant, "Paper's claim": claim, "Metric": METRIC_LABELS[metric],
                            "Winner": winner, "winner": fmt(j.better, metric) if shown else "—",
                            "variant": fmt(j.worse, metric) if shown else "—",
                            "winner better by [95% CI]": (f"{fmt(j.gain, metric)} [{fmt(j.ci_low, metric)}, "
                                                          f"{fmt(j.ci_high, metric)}]") if shown else "—",
                            "Seeds x samples": f"{len(j.seeds)} x {j.samples}",
                            "Verdict": j.verdict + (f" ({j.note})" if j.note else "")})
            numeric.append({"variant": variant, "claim": claim, "metric": metric, "frames": n,
                            "winner": winner, "winner_mean": j.better, "variant_mean": j.worse,
                            "gain": j.gain, "ci_low": j.ci_low, "ci_high": j.ci_high,
                            "seeds": ",".join(map(str, j.seeds)), "samples": j.samples, "verdict": j.verdict})
    notes = ctx.header() + [f"Ablations at N={n}, same data, budget and seeds as `ours`. 'winner better "
                            "by' is in the claimed direction (> 0: the claim's winner, `ours`, is better), "
                            "on the seeds and test samples both sides have.", RULE, EQ6_PAIRING]
    columns = ["variant", "claim", "metric", "frames", "winner", "winner_mean", "variant_mean", "gain",
               "ci_low", "ci_high", "seeds", "samples", "verdict"]
    return Table("ablations", f"Ablations of the paper's design choices (N={n})", notes,
                 pd.DataFrame(display), pd.DataFrame(numeric, columns=columns))


def runtime_table(ctx: Context) -> Table:
    """Parameters, size and runtimes of every finished (variant, N), with the device that timed them."""
    metrics = ["params", "size_mb", "runtime_deblur_s", "runtime_video_s", "train_time_s"]
    display, numeric = [], []
    for _, r in ctx.summary.iterrows():
        row = r
        base = row.variant
        published = {m: paper.figure(base, m) for m in ("size_mb", "runtime_deblur_s", "runtime_video_s")}
        display.append({"Method": base, "N": row.frames, "Parameters": _show(r, "params"),
                        "Size (MB)": _show(r, "size_mb"), "Deblur time (s)": _show(r, "runtime_deblur_s"),
                        "Video time (s)": _show(r, "runtime_video_s"),
                        "Train time (s)": _show(r, "train_time_s"),
                        "Device": row.device or "—", "Paper size (MB)": fmt(published["size_mb"], "size_mb"),
                        "Paper deblur time (s, GPU)": fmt(published["runtime_deblur_s"], "runtime_deblur_s"),
                        "Paper video time (s, GPU)": fmt(published["runtime_video_s"], "runtime_video_s")})
        entry = {"method": base, "frames": row.frames, "n_seeds": row.n, "device": row.device}
        for m in metrics:
            entry[m], entry[f"{m}_std"] = _val(r, m)
        for m, value in published.items():
            entry[f"paper_{m}"] = math.nan if value is None else value
        numeric.append(entry)
    notes = ctx.header() + [
        "Runtimes are measured at the prepared set's test resolution on the device named in each row, not "
        "the paper's 1280x704 on its GPU; the paper's timings are as published (synchronisation not stated).",
        _defs(ctx, metrics[:4])]
    columns = ["method", "frames", "n_seeds", "device", *_with_std(metrics), "paper_size_mb",
               "paper_runtime_deblur_s", "paper_runtime_video_s"]
    return Table("runtime", "Runtime and size", notes, pd.DataFrame(display),
                 pd.DataFrame(numeric, columns=columns))


def runs_table(ctx: Context) -> Table:
    """Every run in the store, selected or not, with status and error: nothing is silently dropped."""
    cols = ["run_id", "method", "variant", "profile", "dataset", "frames", "seed", "eval_set", "status",
            "error", "device", "trained_on", "commit", "date"]
    frame = ctx.all_runs[cols].copy()
    selected = set(zip(ctx.runs["run_id"], ctx.runs["eval_set"], strict=True))
    frame["in_report"] = [(r, e) in selected for r, e in zip(frame["run_id"], frame["eval_set"], strict=True)]
    display = frame.rename(columns={"run_id": "Run", "eval_set": "Eval set"}).astype(str)
    notes = ctx.header()[1:] + ["All runs in the store; `in_report` says whether this report's tables use "
                                "it (one profile and data family per report; cross-dataset evaluations "
                                "are listed, not pooled)."]
    return Table("runs", "Runs in the store", notes, display, frame)


def evals_table(ctx: Context) -> Table:
    """Cross-dataset evaluations (`bench run --eval-data SET`): each run scored on another set's test split,
    one row per (run, set); never pooled with the runs' own test scores."""
    metrics = ["deblur_psnr", "deblur_ssim", "eq6", "ppsnr", "pwpsnr", "mid_psnr"]
    rows = ctx.runs[(ctx.runs["eval_set"] != "") & (ctx.runs["status"] == "finished")].copy()
    outside = finished(ctx.runs)
    outside = outside[outside["family"] == EXTERNAL].copy()
    # an outside method's predictions: trained elsewhere, on data this suite does not know
    outside["eval_set"], outside["dataset"] = outside["dataset"], EXTERNAL_ROLE
    rows = pd.concat([rows, outside]) if len(outside) else rows
    cols = ["run_id", "variant", "frames", "seed", "dataset", "eval_set", *metrics, "device"]
    numeric = rows[cols].rename(columns={"dataset": "trained_on", "eval_set": "evaluated_on"})
    display = numeric.copy()
    for m in metrics:
        display[m] = [fmt(v, m) for v in numeric[m]]
    display = display.rename(columns={m: METRIC_LABELS[m] for m in metrics})
    notes = ctx.header() + ["Each row: a run trained on one set, scored on another set's test split "
                            "(stored under runs/<run-id>/evals/<set>/), or an outside method's predictions "
                            "scored by `bench score` (trained on its own data).", EQ6_PAIRING]
    return Table("cross_dataset", "Cross-dataset evaluations", notes, display.astype(str), numeric)


def all_tables(ctx: Context) -> list[Table]:
    """Every table of the report except the claims (built with the claims, in `bench.report`)."""
    return [deblur_table(ctx), video_table(ctx), ablation_table(ctx), runtime_table(ctx), evals_table(ctx),
            runs_table(ctx)]
