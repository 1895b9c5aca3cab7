"""The sample viewer of the report page (docs/DESIGN.md "Reports"): which test samples it shows, and every
method's frames of them, written under `viewer/` beside `index.html`.

Which samples: per N, the K test samples (`bench report --samples K`) at evenly spaced ranks of the reference
method's stored per-sample Eq. 6 (`ours`, else the first video-table method present; its lowest-seed run):
rank 1 is its worst sample, the last rank its best. Every method shows the same samples, so the players line
up, and the page can order them by any stored per-sample metric of any method.

Where the frames come from: a run stores the PNGs of its first `eval.samples_saved` test samples only
(`bench.evaluate`), so for the other chosen samples the viewer runs the run's own networks again (its
`weights.pt`, checked against the sha256 its metrics.json recorded; parameter-free methods need none) on the
sample of the prepared set the run scored (found under the data home, its manifest's sha256 equal to the
recorded one), exactly as `bench.evaluate.score_set` predicts: float32, padded to a multiple of 16, cropped
back, rounded to uint8. The frames are then scored again (PSNR, Eq. 6 and pPSNR, by the functions
`bench.evaluate.score_sample` calls) and set against the stored per-sample scores: a player whose frames do
not reproduce them says so, with the difference. The report still trains nothing and never replaces a stored
score. Storing every sample's frames in every run instead would cost the store (and the paper profile's 1,111
test samples at 1280x720) far more than re-running K samples does; storing only a fixed few could never show
a method's worst sample.

Each player is one WebP strip (quality `WEBP_QUALITY`, the N frames side by side), which keeps the committed
snapshot small (measured on the quick profile's 128x160 frames: 36 KB a 9-frame strip, against 58 KB as
JPEG at quality 90 and 133 KB as PNG); the metrics beside it come from the lossless frames the run scored.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bench import metrics, store
from bench.components import load_components
from bench.data.images import read_image
from bench.data.loaders import TestSet
from bench.data.manifest import default_data_dir
from bench.errors import BenchError
from bench.fileio import sha256_file
from bench.registry import get_method
from bench.report.claims import finished
from bench.report.figures import first_runs, ordered
from bench.report.load import PARSED
from bench.report.tables import Context
from methods.layers import crop_to, pad_to_multiple

RANK_METRIC = "eq6"  # the per-sample score the samples are chosen by (lower is better: rank 1 is the worst)
WEBP_QUALITY = 85  # of the viewer's strips: no visible loss at these sizes, about a quarter of PNG's bytes
REPRODUCED = 0.01  # largest |difference| (dB or Eq. 6 units) between re-scored and stored scores that counts
#   as the same frames: float32 on another thread count may move a few pixels by one level, nothing more
CHECKED = ("deblur_psnr", "eq6", "ppsnr")  # the stored scores frames made again must reproduce (`rescore`)
Write = Callable[[Path, bytes], Path]


def choose_samples(scores: pd.Series, k: int) -> list[tuple[str, int]]:
    """(sample id, 1-based rank) of `k` samples at evenly spaced ranks of `scores` (sample id -> the
    reference's `RANK_METRIC`, NaN last), worst first: the worst and the best are always among them."""
    ranked = scores.sort_values(ascending=False, na_position="last", kind="stable")
    ids = [str(s) for s in ranked.index]
    if k <= 0 or not ids:
        return []
    k = min(k, len(ids))
    picks = sorted({round(i * (len(ids) - 1) / max(1, k - 1)) for i in range(k)})
    return [(ids[i], i + 1) for i in picks]


@dataclass
class Frames:
    """One sample's images as a run made them (uint8): blur `(h, w, 3)`, frames, truth `(N, h, w, 3)`."""

    blur: np.ndarray
    frames: np.ndarray
    truth: np.ndarray
    source: str  # how they were obtained, for the page
    scores: dict[str, float | None] = field(default_factory=dict)  # re-scored, when re-inferred


class RunFrames:
    """The frames of one run's test samples: the PNGs the run stored, else its networks run again."""

    def __init__(self, run: pd.Series, data_dir: Path | None, shared: dict | None = None) -> None:
        self.run = run
        # The last test sample read, by (set folder, id): every run of a set shows the same sample in turn,
        # so one decoded copy serves them all and memory stays one sample whatever the resolution.
        self.shared = shared if shared is not None else {}
        self.stored = store.read_sample_images(Path(run["path"]) / "samples")
        self.data_dir = data_dir
        self._model: tuple[Any, Any, TestSet, dict[str, int]] | None = None
        self.problem = ""  # why the last sample asked for has no frames
        self._unloadable = ""  # why the run's networks or set cannot be loaded, once known

    def get(self, sid: str) -> Frames | None:
        """The sample's frames, or None (with `problem` set) when neither stored nor made again."""
        found = self.stored.get(sid)
        if found and found.get("blur") and found["frame"] and len(found["frame"]) == len(found["truth"]):
            try:
                return Frames(read_image(found["blur"])[0],
                              np.stack([read_image(p)[0] for p in found["frame"]]),
                              np.stack([read_image(p)[0] for p in found["truth"]]), "stored by the run")
            except BenchError:
                pass  # a damaged stored PNG (the README names it): make the frames again instead
        if self._unloadable:
            self.problem = self._unloadable
            return None
        try:
            return self._infer(sid)
        except BenchError as err:
            self.problem = str(err)
            return None

    def _load(self) -> tuple[Any, Any, TestSet, dict[str, int]]:
        try:
            return self._model or self._load_once()
        except BenchError as err:
            self._unloadable = str(err)
            raise

    def _load_once(self) -> tuple[Any, Any, TestSet, dict[str, int]]:
        """The run's method and networks (its weights.pt checked), its test set and sample index."""
        folder = Path(self.run["path"])
        config = store.read_config(folder)
        if config.family == store.EXTERNAL:  # no networks to run: the frames are the user's files
            raise BenchError(f"{self.run['run_id']}: an outside method's predictions (bench score); its "
                             f"frames are in {config.weights_from}, not in the store")
        method = get_method(config.method, config.frames)
        nets = method.build(config.resolved_profile.get("model") or {})
        if method.stages:
            problem = store.verify_weights(folder, self.run[PARSED])
            if problem or not (folder / store.WEIGHTS).is_file():
                raise BenchError(problem or f"{folder}: no weights.pt (scored from --weights), so its "
                                 "frames cannot be made again; rerun it with `bench run`")
            payload = store.load_weights(folder / store.WEIGHTS)
            nets = method.build(payload["model"])
            load_components(nets, payload["state_dicts"], source=folder / store.WEIGHTS)
        data = TestSet(self._set_folder(config))
        self._model = (method, method.for_inference(nets, "cpu"), data,
                       {s["id"]: i for i, s in enumerate(data.samples)})
        return self._model

    def _set_folder(self, config: store.RunConfig) -> Path:
        folder = default_data_dir(self.data_dir) / config.dataset
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            raise BenchError(f"{folder}: the set {self.run['run_id']} was scored on is not here; prepare it "
                             "(bench prepare) or pass bench report --data-dir")
        if sha256_file(manifest) != config.data_sha256:
            raise BenchError(f"{folder}: holds other data than {self.run['run_id']} was scored on (manifest "
                             "sha256 differs); pass the --data-dir of that set")
        return folder

    def _infer(self, sid: str) -> Frames:
        """The frames as `bench.evaluate.score_set` makes them, then scored again."""
        method, nets, data, index = self._load()
        if sid not in index:
            raise BenchError(f"{self.run['run_id']}: sample {sid} is not in its test split")
        key = (data.folder, sid)
        if key not in self.shared:
            self.shared.clear()
            self.shared[key] = data[index[sid]]
        item = self.shared[key]
        n = item["sharp"].shape[0]
        blur, hw = pad_to_multiple(item["blur"][None], 16)  # (1, 3, H16, W16)
        center = pad_to_multiple(item["sharp"][n // 2][None], 16)[0] if method.uses_true_center else None
        with torch.inference_mode():
            pred = method.predict(nets, blur, n, center=center)
        deblurred = metrics.to_numpy_images(crop_to(pred.deblurred, hw)[0])  # (H, W, 3)
        frames = metrics.to_numpy_images(crop_to(pred.frames, hw)[0])  # (N, H, W, 3)
        truth = metrics.to_numpy_images(item["sharp"])  # (N, H, W, 3)
        how = "made again from the run's weights" if method.stages else "made again (no weights to load)"
        blurred_input = metrics.to_numpy_images(item["blur"])  # (H, W, 3)
        return Frames(blurred_input, frames, truth, how, rescore(deblurred, frames, truth))


def rescore(deblurred: np.ndarray, frames: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """The `CHECKED` scores of frames made again, by the functions `bench.evaluate.score_sample` calls
    (deblurred `(h, w, 3)`, frames and truth `(N, h, w, 3)`, uint8); None where undefined (inf PSNR)."""
    scores = {"deblur_psnr": metrics.psnr(deblurred, truth[truth.shape[0] // 2]),
              "eq6": metrics.eq6_error(frames, truth), "ppsnr": metrics.ppsnr(frames, truth)}
    return {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in scores.items()}


def reproduction_note(made: Frames, stored: dict[str, float | None]) -> str:
    """"" for frames the run stored; else whether the re-scored frames reproduce the stored scores."""
    if not made.scores:
        return ""
    gaps = [abs(float(v) - float(stored[k])) for k, v in made.scores.items()
            if v is not None and stored.get(k) is not None and math.isfinite(float(v))
            and math.isfinite(float(stored[k]))]
    worst = max(gaps, default=0.0)
    if worst <= REPRODUCED:
        return f"reproduces the stored scores (largest difference {worst:.4f})"
    shown = ", ".join(f"{k} {made.scores[k]:.3f} vs stored {stored.get(k)}" for k in CHECKED
                      if made.scores.get(k) is not None)
    return f"DIFFERS from the stored scores ({shown}): the code or data changed since the run"


def webp(image: np.ndarray) -> bytes:
    """An RGB uint8 `(h, w, 3)` image as lossy WebP bytes (every browser of the last years shows it)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="WEBP", quality=WEBP_QUALITY)
    return buf.getvalue()


def strip(frames: np.ndarray) -> np.ndarray:
    """`(N, h, w, 3)` -> the frames side by side `(h, N*w, 3)`, the sprite a player steps through."""
    return np.concatenate(list(frames), axis=1)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _sample_scores(ctx: Context, run_id: str) -> dict[str, dict[str, float | None]]:
    rows = ctx.samples[ctx.samples["run_id"] == run_id]
    keys = [k for k in metrics.SAMPLE_METRICS if k in rows]
    return {str(r["sample"]): {k: (float(r[k]) if math.isfinite(r[k]) else None) for k in keys}
            for _, r in rows.iterrows()}


@dataclass
class ViewerSet:
    """The viewer's samples at one N: the JSON the page reads, and the files written for it."""

    doc: dict
    written: list[Path]
    problems: list[str]


def viewer_set(ctx: Context, n: int, k: int, out: Path, write: Write, data_dir: Path | None) -> ViewerSet:
    """Choose the samples at N (module docstring) and write each method's strip, the blur and the truth."""
    runs = first_runs(ctx, n)
    variants = ordered(list(runs))
    reference = next((v for v in variants if v == "ours"), variants[0])
    scores = {v: _sample_scores(ctx, runs[v]["run_id"]) for v in variants}
    ref = pd.Series({sid: s.get(RANK_METRIC) for sid, s in scores[reference].items()}, dtype=float)
    chosen = choose_samples(ref, k)
    shared: dict = {}
    sources = {v: RunFrames(runs[v], data_dir, shared) for v in variants}
    written, problems, samples = [], [], []
    for sid, rank in chosen:
        folder = out / "viewer" / f"{n}f" / _safe(sid)
        entry: dict[str, Any] = {"id": sid, "rank": rank, "of": len(ref), "players": {}}
        for v in variants:
            made = sources[v].get(sid)
            player = {"run_id": runs[v]["run_id"], "seed": int(runs[v]["seed"]),
                      "metrics": scores[v].get(sid, {}), "strip": None, "source": "", "note": ""}
            if made is None:
                player["note"] = f"no frames: {sources[v].problem}"
                problems.append(f"viewer, N={n}, {v}, sample {sid}: {sources[v].problem}")
            else:
                player["strip"] = _write(write, folder / f"{_safe(v)}.webp", strip(made.frames), out, written)
                player["source"], player["note"] = made.source, reproduction_note(made, player["metrics"])
                if "blur" not in entry:
                    entry["blur"] = _write(write, folder / "blur.webp", made.blur, out, written)
                    entry["truth"] = _write(write, folder / "truth.webp", strip(made.truth), out, written)
                    entry["height"], entry["width"] = (int(x) for x in made.blur.shape[:2])
            entry["players"][v] = player
        samples.append(entry)
    ranks = ", ".join(str(rank) for _, rank in chosen)
    doc = {"frames": n, "dataset": str(runs[reference]["dataset"]), "reference": reference,
           "rank_metric": RANK_METRIC, "methods": variants, "samples": samples,
           "chosen": f"N = {n}: {len(chosen)} of the {len(ref)} test samples of "
                     f"{runs[reference]['dataset']}, at ranks {ranks} of {reference}'s per-sample Eq. 6 (run "
                     f"{runs[reference]['run_id']}; rank 1 is its worst)."}
    return ViewerSet(doc, written, problems)


def _write(write: Write, path: Path, image: np.ndarray, out: Path, written: list[Path]) -> str:
    written.append(write(path, webp(image)))
    return path.relative_to(out).as_posix()


def viewer(ctx: Context, k: int, out: Path, write: Write, data_dir: Path | None) -> list[ViewerSet]:
    """One `ViewerSet` per N with finished runs (none when `k` is 0)."""
    if k <= 0:
        return []
    frames = sorted(set(finished(ctx.runs)["frames"]))
    return [viewer_set(ctx, int(n), k, out, write, data_dir) for n in frames]
