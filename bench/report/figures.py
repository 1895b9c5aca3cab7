"""The report's figures (docs/DESIGN.md "Reports"), from stored runs only: bar charts with seed spread,
qualitative strips from the stored sample PNGs, an animated GIF per method (its video beside the truth),
training curves, and the Eq. 6 error against blur size (N = 7 vs 9 frames). PNG and PDF through matplotlib's
Agg backend; every figure carries a footer naming data, profile and device, and says when the data are
synthetic."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from bench.data.images import encode_gif, read_image  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.fileio import atomic_write_bytes  # noqa: E402
from bench.metrics import VOCABULARY, direction  # noqa: E402
from bench.report import paper  # noqa: E402
from bench.report.claims import METRIC_LABELS, finished  # noqa: E402
from bench.report.load import (  # noqa: E402
    PARSED,
    load_curves,
    load_sample_images,
    load_stage_summaries,
)
from bench.report.tables import Context, base_method, deblur_methods, video_methods  # noqa: E402

GIF_FPS = 5.0  # frames per second of the report's animations: slow enough to follow each frame
Write = Callable[[Path, bytes], Path]  # how a figure's bytes reach the disk (`OutputFolder.write` in reports)



def axis_label(metric: str) -> str:
    """A metric's axis title from the one vocabulary: name, unit and direction ("PSNR (dB, higher is
    better)")."""
    unit = VOCABULARY[metric].unit
    return f"{VOCABULARY[metric].label} ({unit + ', ' if unit else ''}{direction(metric)})"


def _footer(ctx: Context, fig: plt.Figure) -> None:
    devices = "; ".join(sorted({d for d in finished(ctx.runs)["device"] if d})) or "—"
    text = f"data: {ctx.data_text} | profile: {ctx.profile or '—'} | device: {devices}"
    if not ctx.comparable:
        text += f"\n{ctx.data_label.lower()}: NOT comparable with the paper's GoPro numbers"
    fig.text(0.01, 0.005, text, fontsize=7, va="bottom", ha="left", color="0.3")


DPI = 130  # the figures' resolution; strips of small frames use less (`strip_dpi`)


def save(fig: plt.Figure, path_stem: Path, formats: set[str],
         write: Write = atomic_write_bytes, dpi: int = DPI) -> list[Path]:
    """Write `fig` as `<stem>.png` / `.pdf` (those in `formats`) through `write`; closes the figure."""
    written = []
    for ext in ("png", "pdf"):
        if ext in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
            written.append(write(path_stem.with_suffix(f".{ext}"), buf.getvalue()))
    plt.close(fig)
    return written


def _grouped_bars(ctx: Context, methods: list[str], metrics: list[str], title: str) -> plt.Figure | None:
    s = ctx.summary
    frames = sorted(set(s[s["variant"].isin(methods)]["frames"]))
    methods = [m for m in methods if m in set(s["variant"])]
    if not methods or not frames:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    width = 0.8 / len(frames)
    for ax, metric in zip(axes[0], metrics, strict=True):
        lows, highs = np.array([np.nan]), np.array([np.nan])
        for k, n in enumerate(frames):
            means, stds = [], []
            for m in methods:
                hit = s[(s["variant"] == m) & (s["frames"] == n)]
                means.append(float(hit[metric].iloc[0]) if len(hit) else math.nan)
                stds.append(float(hit[f"{metric}_std"].iloc[0]) if len(hit) else math.nan)
            x = np.arange(len(methods)) + (k - (len(frames) - 1) / 2) * width
            lows = np.append(lows, np.array(means) - np.nan_to_num(stds))
            highs = np.append(highs, np.array(means) + np.nan_to_num(stds))
            ax.bar(x, np.nan_to_num(means), width, yerr=np.nan_to_num(stds), capsize=3,
                   label=f"N = {n} frames")
            for xi, mean in zip(x, means, strict=True):
                if math.isnan(mean):
                    # x in data units, y in axes units: stays inside the axes whatever the y-limits
                    ax.text(xi, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90,
                            transform=ax.get_xaxis_transform())
        ax.set_xticks(np.arange(len(methods)), methods, rotation=30, ha="right")
        ax.set_ylabel(axis_label(metric))
        ax.set_xlabel("method")
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(axis="y", alpha=0.3)
        if metric != "eq6" and np.isfinite(lows).any():
            # dB and SSIM differences are small against their size: start the axis near the data.
            lo, hi = np.nanmin(lows), np.nanmax(highs)
            ax.set_ylim(lo - 0.5 * (hi - lo) - 1e-3, hi + 0.15 * (hi - lo) + 1e-3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, title="error bars: std over seeds",
               title_fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 0.88, 0.95))
    _footer(ctx, fig)
    return fig


def bar_charts(ctx: Context, out: Path, formats: set[str], write: Write) -> list[Path]:
    written = []
    video = [m for m, _ in video_methods()]
    fig = _grouped_bars(ctx, video, ["eq6", "ppsnr", "pwpsnr", "mid_psnr"],
                        "Video extraction, mean over seeds")
    if fig is not None:
        written += save(fig, out / "bars_video", formats, write)
    fig = _grouped_bars(ctx, [m for m, _ in deblur_methods()], ["deblur_psnr", "deblur_ssim"],
                        "Single-image deblurring, mean over seeds")
    if fig is not None:
        written += save(fig, out / "bars_deblur", formats, write)
    return written


def eq6_vs_blur(ctx: Context, out: Path, formats: set[str], write: Write) -> list[Path]:
    """Eq. 6 error against blur size (the number N of frames averaged into the blur), per method."""
    s = ctx.summary.dropna(subset=["eq6"])
    if s.empty:
        return []
    fig, ax = plt.subplots(figsize=(5.5, 4))
    video = [m for m, _ in video_methods()]
    # The video table's entries, then stored variants of them (other overrides or data); ablations have
    # their own table.
    tagged = sorted(v for v in set(s["variant"]) - set(video) if base_method(v) in video)
    for variant in video + tagged:
        hit = s[s["variant"] == variant].sort_values("frames")
        if hit.empty:
            continue
        ax.errorbar(hit["frames"], hit["eq6"], yerr=hit["eq6_std"].fillna(0), marker="o", capsize=3,
                    label=variant)
    published = paper.eq6_figures()
    for (method, n), value in published.items():
        ax.scatter([n], [value], marker="D", facecolors="none", edgecolors="k", zorder=5)
        ax.annotate(f"paper {method} (GoPro)", (n, value), textcoords="offset points", xytext=(5, 3),
                    fontsize=7)
    ax.set_xlabel("blur size: frames averaged per blurred image, N")
    ax.set_ylabel(axis_label("eq6"))
    ax.set_xticks(sorted(set(s["frames"]) | {n for _, n in published}))
    ax.set_title("Eq. 6 error against blur size")
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _footer(ctx, fig)
    return save(fig, out / "eq6_vs_blur_size", formats, write)


def first_runs(ctx: Context, n: int) -> dict[str, pd.Series]:
    """The lowest-seed finished run of each variant at N (the one whose samples are shown): its row."""
    done = finished(ctx.runs)
    done = done[done["frames"] == n].sort_values(["seed", "run_id"])
    return {v: g.iloc[0] for v, g in done.groupby("variant", sort=True)}


def ordered(variants: list[str]) -> list[str]:
    main = [m for m, _ in video_methods() if m in variants]
    return main + sorted(v for v in variants if v not in main)


class SampleImages:
    """The stored sample PNGs, decoded for the figures by the suite's safe decoder. A damaged one (garbage,
    truncated, empty) costs its panel, never the report: it reads as None and is named once in `problems`."""

    def __init__(self) -> None:
        self.problems: list[str] = []  # one line per damaged image, for the README and the command's warning
        self._bad: set[Path] = set()

    def read(self, path: Path | None) -> np.ndarray | None:
        """RGB uint8 `(h, w, 3)`, or None for no image or a damaged one."""
        if path is None or path in self._bad:
            return None
        try:
            return read_image(path)[0]
        except BenchError as err:
            self._bad.add(path)
            self.problems.append(str(err))
            return None


def strips(ctx: Context, out: Path, formats: set[str], write: Write, images: SampleImages) -> list[Path]:
    """Per test sample and N: the blur and true frames on top, then per method its deblurred frame and
    its N frames."""
    written = []
    for n in sorted(set(finished(ctx.runs)["frames"])):
        runs = first_runs(ctx, n)
        samples = {v: load_sample_images(run["path"]) for v, run in runs.items()}
        ids = sorted({sid for found in samples.values() for sid in found})
        for sid in ids:
            rows: list[tuple[str, list[np.ndarray | None]]] = []
            truth = next((s[sid] for s in samples.values() if sid in s and s[sid]["truth"]), None)
            blur = next((s[sid]["blur"] for s in samples.values() if sid in s and s[sid].get("blur")), None)
            true_frames = truth["truth"] if truth else []
            rows.append(("input / truth", [images.read(blur)] + [images.read(p) for p in true_frames]))
            for variant in ordered([v for v in samples if sid in samples[v]]):
                entry = samples[variant][sid]
                rows.append((variant, [images.read(entry.get("deblurred"))]
                             + [images.read(p) for p in entry["frame"]]))
            cols = max(len(r[1]) for r in rows)
            if cols == 0:
                continue
            height = 1.5 * len(rows) + 0.9  # inches: the rows, a title band and the footer
            fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, height), squeeze=False)
            for i, (label, cells) in enumerate(rows):
                for j in range(cols):
                    ax = axes[i][j]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    image = cells[j] if j < len(cells) else None
                    if image is not None:
                        ax.imshow(image)
                    else:
                        ax.axis("off")
                    if i == 0:
                        ax.set_title("blurred" if j == 0 else f"frame {j}", fontsize=8)
                    elif j == 0:
                        ax.set_title("deblurred", fontsize=7)
                    if j == 0:
                        ax.set_ylabel(label, fontsize=8)
            fig.suptitle(f"Sample {sid}, N = {n}: each method's frames against the truth (top row)",
                         fontsize=9)
            # Margins in inches, not fractions, so tall strips keep the title clear of the column headings.
            fig.tight_layout(rect=(0, 0.45 / height, 1, 1 - 0.35 / height))
            _footer(ctx, fig)
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in sid)
            written += save(fig, out / f"strip_{n}f_{safe}", formats, write, strip_dpi(fig))
    return written


def strip_dpi(fig: plt.Figure) -> int:
    """The resolution that draws a strip's widest frame at its own width, at most `DPI`: drawn larger, the
    frames add only interpolated pixels, which made the snapshot's strips megabytes each."""
    best = 0.0
    for ax in fig.axes:
        for image in ax.get_images():
            ax.apply_aspect()  # the box the image is drawn in, after its aspect is kept
            inches = ax.get_position().width * fig.get_figwidth()
            best = max(best, image.get_array().shape[1] / inches)
    return int(min(DPI, max(72, math.ceil(best))))


def _label(image: np.ndarray, text: str) -> np.ndarray:
    canvas = Image.fromarray(np.concatenate([np.full((14, image.shape[1], 3), 255, np.uint8), image]))
    ImageDraw.Draw(canvas).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def _side_by_side(variant: str, preds: list[np.ndarray], gts: list[np.ndarray]) -> np.ndarray:
    """The GIF's frames `(n, h, w, 3)`: each predicted frame (left) beside the true one (right), labelled;
    small images are enlarged (nearest neighbour) to stay visible."""
    scale = max(1, math.ceil(128 / preds[0].shape[0]))
    frames = []
    for t, (a, b) in enumerate(zip(preds, gts, strict=False), start=1):
        a = np.kron(a, np.ones((scale, scale, 1), np.uint8))
        b = np.kron(b, np.ones((scale, scale, 1), np.uint8))
        gap = np.full((a.shape[0] + 14, 4, 3), 255, np.uint8)
        frames.append(np.concatenate([_label(a, f"{variant} {t}/{len(preds)}"), gap, _label(b, "truth")],
                                     axis=1))
    return np.stack(frames)


def gifs(ctx: Context, out: Path, write: Write, images: SampleImages) -> list[Path]:
    """One animated GIF per method and N: its extracted video (left) beside the true one (right), first
    stored test sample; none for a method whose sample holds a damaged image (named in `images.problems`)."""
    written = []
    for n in sorted(set(finished(ctx.runs)["frames"])):
        runs = first_runs(ctx, n)
        samples = {v: load_sample_images(run["path"]) for v, run in runs.items()}
        for variant, found in samples.items():
            sid = next((s for s in sorted(found) if found[s]["frame"] and found[s]["truth"]), None)
            if sid is None:
                continue
            preds = [images.read(p) for p in found[sid]["frame"]]
            gts = [images.read(p) for p in found[sid]["truth"]]
            decoded = [im for im in preds + gts if im is not None]
            if len(decoded) < len(preds) + len(gts) or len({im.shape for im in decoded}) > 1:
                continue  # a damaged or odd-sized frame: no animation rather than a wrong one
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in variant)
            data = encode_gif(_side_by_side(variant, preds, gts), fps=GIF_FPS)
            written.append(write(out / f"video_{safe}_{n}f.gif", data))
    return written


def _stage_panels(ctx: Context) -> list[dict]:
    """One panel per distinct trained stage (stage cache key) among the lowest-seed run of each variant at
    each N: stages shared by several variants (the DM of every `ours` variant) are drawn once."""
    panels: dict[str, dict] = {}
    for n in sorted(set(finished(ctx.runs)["frames"])):
        runs = first_runs(ctx, n)
        for variant in ordered(list(runs)):
            run = runs[variant]
            curves, summaries = load_curves(run["path"]), load_stage_summaries(run[PARSED])
            for stage in dict.fromkeys([*curves, *summaries]):
                info = summaries.get(stage, {})
                key = str(info.get("key") or f"{variant}:{stage}:{n}")
                panel = panels.setdefault(key, {"stage": stage, "frames": n, "variants": [],
                                                "loss": curves.get(stage),
                                                "validation": info.get("validation")})
                panel["variants"].append(variant)
    return [p for p in panels.values() if p["loss"] or _val_points(p["validation"])]


def _val_points(validation: object) -> tuple[list[float], list[float]]:
    points = validation.get("points") if isinstance(validation, dict) else None
    pairs = [(float(i), float(v)) for i, v in points or [] if isinstance(v, (int, float))]
    return [i for i, _ in pairs], [v for _, v in pairs]


def _draw_stage(ax: plt.Axes, panel: dict) -> None:
    """Training loss on the left axis; the validation score, and its reference, on the right."""
    names = panel["variants"]
    shown = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
    ax.set_title(f"stage {panel['stage']}, N = {panel['frames']} ({shown})", fontsize=8)
    ax.set_xlabel("iteration (within the stage)")
    handles = []
    if panel["loss"]:
        its, loss = panel["loss"]
        handles += ax.plot(its, loss, color="C0", label="training loss (window mean)")
        if min(loss) > 0 and max(loss) > 10 * min(loss):  # log only where losses span a decade
            ax.set_yscale("log")
    ax.set_ylabel("training loss (stage's own)", color="C0", fontsize=8)
    val = panel["validation"]
    its, values = _val_points(val)
    if its:
        right = ax.twinx()
        psnr = val.get("metric") == "deblur_psnr"
        what = "validation PSNR (dB)" if psnr else "validation loss"
        handles += right.plot(its, values, color="C1", marker="o", markersize=3, label=what)
        if val.get("reference") is not None:
            handles.append(right.axhline(val["reference"], color="C1", linestyle="--", linewidth=1,
                                         label=f"{val.get('reference_what') or 'reference'} (PSNR)"))
        right.set_ylabel(f"{what}, test-split crops", color="C1", fontsize=8)
    ax.legend(handles=handles, fontsize=6, loc="best")


def training_curves(ctx: Context, out: Path, formats: set[str], write: Write) -> list[Path]:
    """One panel per trained stage: its training loss and its validation curve on a fixed batch of test-split
    crops (deblurring PSNR with the blurred input as reference, or the stage's loss), lowest seed."""
    panels = _stage_panels(ctx)
    if not panels:
        return []
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.4 * rows + 0.8), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        _draw_stage(ax, panel)
    fig.suptitle("Training curves per stage (lowest seed): loss, and a fixed validation batch of test-split "
                 "crops\n(a curve for the reader: never used to select or stop anything)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _footer(ctx, fig)
    return save(fig, out / "training_curves", formats, write)


def all_figures(ctx: Context, out: Path, formats: set[str], write: Write = atomic_write_bytes,
                images: SampleImages | None = None) -> list[Path]:
    """Every figure of `formats`; damaged sample images are skipped and named in `images.problems`."""
    images = images if images is not None else SampleImages()
    written: list[Path] = []
    if formats & {"png", "pdf"}:
        written += bar_charts(ctx, out, formats, write)
        written += eq6_vs_blur(ctx, out, formats, write)
        written += strips(ctx, out, formats, write, images)
        written += training_curves(ctx, out, formats, write)
    if "gif" in formats:
        written += gifs(ctx, out, write, images)
    return written
