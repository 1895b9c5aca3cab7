"""The paper's published numbers for the report (Purohit, Shah, Rajagopalan, CVPR 2019).

Reports print these beside the measured values and never mix them into measured aggregates. Each figure the
paper gives for a method the suite re-implements is stated once, on that method's registry entry
(`Method.paper`: Table 1's deblurring on the GoPro test set at 1280x704; Sec. 3.3's Eq. 6 error on 250 GoPro
test images, sizes and timings against Jin et al. 2018, [13]); this module reads them from there. It states
only what no entry holds: Table 1's layout, and the columns of the methods the suite does not re-implement.
The registry is read when a report is built, never at import (see `bench.report.claims.registered_claims`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.report.claims import registered_methods

TABLE1_SOURCE = "Table 1"


@dataclass(frozen=True)
class Table1Row:
    """One column of the paper's Table 1 (there methods are columns, metrics rows)."""

    ref: str  # the paper's citation key, e.g. "[34]"
    name: str  # short name of the method
    method: str | None  # our registry name when the suite re-implements it (its figures come from there)
    psnr: float | None  # dB on the GoPro test set; None only for a registry row before `table1` fills it
    ssim: float | None
    time_s: float | None  # seconds per image, as the authors report (timing protocol not stated)
    size_mb: float | None  # model size in MB; None where the paper prints "-"
    hardware: str  # "CPU" or "GPU"


# The re-implemented columns carry no numbers here: `table1()` fills them from their registry entries.
TABLE1: tuple[Table1Row, ...] = (
    Table1Row("[42]", "Xu et al. 2013", None, 21.0, 0.740, 3800.0, None, "CPU"),
    Table1Row("[39]", "Whyte et al. 2012", None, 24.6, 0.845, 700.0, None, "CPU"),
    Table1Row("[33]", "Sun et al. 2015", None, 24.5, 0.851, 1500.0, 54.1, "CPU"),
    Table1Row("[7]", "Gong et al. 2017", None, 26.4, 0.863, 1200.0, 41.2, "CPU"),
    Table1Row("[23]", "Nah et al. 2017", None, 28.9, 0.911, 6.0, 300.0, "GPU"),
    Table1Row("[18]", "DeblurGAN", None, 27.2, 0.905, 0.8, 45.6, "GPU"),
    Table1Row("[34]", "SRN-DeblurNet", "srn", None, None, None, None, "GPU"),
    Table1Row("Ours", "DM", "ours", None, None, None, None, "GPU"),
)


def table1() -> list[Table1Row]:
    """Table 1's columns, each re-implemented one with its entry's Table 1 figures (those of the entry that
    holds its deblurring network alone, `Method.deblur_alone`, where there is one: Table 1's "Ours" column is
    the DM); numbers stay None when the registry does not load."""
    entries = {m.name: m for m in registered_methods()}
    rows = []
    for row in TABLE1:
        entry = entries.get(row.method or "")
        if entry is not None:
            entry = entries.get(entry.deblur_alone, entry)
            figs = {key: entry.published(key, source=TABLE1_SOURCE)
                    for key in ("deblur_psnr", "deblur_ssim", "runtime_deblur_s", "size_mb")}
            row = replace(row, psnr=figs["deblur_psnr"], ssim=figs["deblur_ssim"],
                          time_s=figs["runtime_deblur_s"], size_mb=figs["size_mb"])
        rows.append(row)
    return rows


def table1_row(method: str) -> Table1Row | None:
    """The Table 1 column of a re-implemented method (`srn`, `ours`), or None."""
    for row in TABLE1:
        if row.method == method:
            return row
    return None


def figure(method: str, metric: str, frames: int | None = None) -> float | None:
    """The paper's figure of `metric` for the registered `method` (at N = `frames` where N matters), or None
    (no such figure, an unregistered name, or a registry that does not load)."""
    for entry in registered_methods():
        if entry.name == method:
            return entry.published(metric, frames)
    return None


def eq6_figures() -> dict[tuple[str, int], float]:
    """The paper's Eq. 6 errors (lower is better) by (method, N frames): Sec. 3.3, GoPro test, 1280x704."""
    return {(entry.name, fig.frames): fig.value for entry in registered_methods() for fig in entry.paper
            if fig.metric == "eq6" and fig.frames is not None}
