"""`bench score`: any method's predicted frames scored on a prepared set's test split, on the same terms as
the suite's own runs, and stored as a run (docs/DESIGN.md "Scoring any method").

Predictions live in one folder, one entry per test sample: `<sample>/frame_01.png` ... (any image format
OpenCV reads, taken in natural order: frame_2 before frame_10), optionally `<sample>/deblurred.png` (the
deblurred centre; without it the middle predicted frame stands for it), or one `<sample>.mp4` / `.gif`.
Hidden entries are skipped and plain files that name no sample (an `index.csv`, notes) are ignored.

Every sample is scored by `bench.evaluate.score_sample`, the function `bench run` scores with, so every
per-sample metric of `bench/metrics.py` comes in, and the aggregate is `bench.evaluate.mean_scores`. The
result is a run record (`bench.store`): `runs/<label>-<hash>/` with config.json (family `external`, no
stages, the prediction folder in `weights_from` and the digest of its files in `weights_from_sha256`),
env.json and metrics.json; its id hashes the set's digest, the prediction files' digest and the scoring
code (`bench.code_identity.external_code`). Costs (runtime, parameters) are not measured: null.

Bad predictions are refused before anything is stored, one line each: a missing or extra sample, a wrong
frame count or size, an unreadable file, a grayscale frame, an RGBA frame with transparent pixels. 16-bit
frames are converted (round(v / 257)) and opaque RGBA frames lose their alpha, each said once.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageSequence

from bench import metrics
from bench.code_identity import external_code
from bench.config import Profile, to_dict
from bench.data.images import IMAGE_EXTENSIONS, decode_image
from bench.data.loaders import TestSet
from bench.data.manifest import data_digest
from bench.env import environment
from bench.errors import BenchError
from bench.evaluate import mean_scores, score_sample, stored_row
from bench.export import DEBLURRED
from bench.fileio import FolderLock, atomic_write_json, stable_hash
from bench.store import (
    CONFIG,
    ENV,
    EXTERNAL,
    METRICS,
    RunConfig,
    RunMetrics,
    iter_runs,
    read_record,
    run_id,
    run_request,
    scoring_digest,
)

DEVICE = "not timed (bench score)"  # the aggregate's device: scores of files, no method was run here
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,62}")  # a folder-safe name, not starting with a dot
FRAME_SUFFIXES = (*IMAGE_EXTENSIONS, ".webp")
VIDEO_SUFFIXES = (".mp4", ".gif")


class BadPredictions(BenchError):
    """Predictions that cannot be scored: one line per problem in `problems`; nothing was stored."""

    def __init__(self, folder: Path, problems: list[str]) -> None:
        self.problems = problems
        many = f"{folder}: {len(problems)} problems in the predictions (each above); nothing stored"
        super().__init__(problems[0] if len(problems) == 1 else many)


@dataclass
class Found:
    """A sample's prediction files: a frame folder (frames, optional deblurred image) or one video."""

    frames: list[Path] = field(default_factory=list)  # natural order
    deblurred: Path | None = None
    video: Path | None = None


def natural_key(name: str) -> list:
    """Sort key in which digit runs compare as numbers: frame_2 < frame_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def check_label(label: str, registered: list[str]) -> str:
    """`label` when it can name a stored run beside the registry's methods; else one line with the fix."""
    if not LABEL.fullmatch(label or ""):
        raise BenchError(f"--name {label!r}: not a valid label; use letters, digits and . _ + - (at most 63, "
                         "starting with a letter or digit), e.g. --name my-method")
    clash = next((m for m in registered if m.lower() == label.lower()), None)
    if clash is not None:
        raise BenchError(f"--name {label}: taken by the registered method {clash} (bench list --methods); "
                         f"choose another --name, e.g. {label}-ext")
    return label


def _visible(folder: Path) -> list[Path]:
    """The entries of `folder` but hidden ones (the suite's .lock, .bench-outputs.json), naturally sorted."""
    entries = (p for p in folder.iterdir() if not p.name.startswith("."))
    return sorted(entries, key=lambda p: natural_key(p.name))


def _sample_files(entry: Path) -> tuple[Found, list[str]]:
    """The frames and deblurred image in a sample's folder; problems for entries that are not regular
    files."""
    found, problems = Found(), []
    for path in _visible(entry):
        if path.suffix.lower() not in FRAME_SUFFIXES:
            continue
        if not path.is_file():
            problems.append(f"{path}: not a regular file; write the frame as an image file")
        elif path.stem.lower() == Path(DEBLURRED).stem:
            found.deblurred = path
        else:
            found.frames.append(path)
    return found, problems


def discover(folder: Path, ids: list[str]) -> tuple[dict[str, Found], list[str]]:
    """Each sample's prediction files under `folder`, and one line per problem: a sample missing, given
    twice (folder and video), or an entry that names no test sample."""
    if not folder.is_dir():
        raise BenchError(f"--pred {folder}: not a folder; give the folder holding one entry per test sample")
    entries: dict[str, list[Path]] = {}
    problems = []
    for path in _visible(folder):
        video = path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()
        if video or path.is_dir():
            entries.setdefault(path.stem if video else path.name, []).append(path)
    known = set(ids)
    problems += [f"{p}: extra sample, not in the set's test split; remove it or score it against its own set"
                 for name, paths in entries.items() if name not in known for p in paths]
    found = {}
    for sid in ids:
        paths = entries.get(sid, [])
        if not paths:
            problems.append(f"{folder / sid}: missing sample; write its frames as {sid}/frame_01.png ... or "
                            f"one {sid}.mp4")
        elif len(paths) > 1:
            problems.append(f"{folder / sid}: given twice ({', '.join(p.name for p in paths)}); keep one")
        elif paths[0].is_dir():
            found[sid], more = _sample_files(paths[0])
            problems += more
        else:
            found[sid] = Found(video=paths[0])
    return found, problems


def files_digest(folder: Path, found: dict[str, Found]) -> str:
    """sha256 over every prediction file scored, by its path under `folder`: the predictions' identity."""
    digests = {}
    for item in found.values():
        for path in [*item.frames, *([item.deblurred] if item.deblurred else []),
                     *([item.video] if item.video else [])]:
            digests[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return stable_hash(digests, 64)


def _opaque(data: bytes) -> bool:
    """True when every alpha value of an RGBA image is the format's maximum (fully opaque)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return bool(img[..., 3].min() == np.iinfo(img.dtype).max)


def read_frame(path: Path) -> tuple[np.ndarray, str | None]:
    """One predicted frame as RGB uint8 `(h, w, 3)` and the conversion done ("16-bit", "RGBA", both or
    None); a one-line BenchError when it is refused: unreadable, grayscale, or RGBA with transparency."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BenchError(f"{path}: cannot read ({err.strerror}); check the file and its access") from None
    try:
        rgb, note = decode_image(data, path)
    except BenchError:
        raise BenchError(f"{path}: unreadable image (empty, truncated or not a format OpenCV decodes); "
                         "write it again as an 8-bit RGB PNG") from None
    kinds = set((note or "").split("+"))
    if "grayscale" in kinds:
        raise BenchError(f"{path}: a grayscale frame, refused (the truth is RGB); write RGB frames, the gray "
                         "channel repeated three times if the method sees gray")
    if "RGBA" in kinds and not _opaque(data):
        raise BenchError(f"{path}: an RGBA frame with transparent pixels, refused (they have no colour to "
                         "score); write opaque RGB frames")
    return rgb, note


def read_video(path: Path) -> list[np.ndarray]:
    """The frames of an MP4 (OpenCV's FFmpeg) or GIF (Pillow, every frame composited to RGB) as RGB uint8
    `(h, w, 3)`; a one-line BenchError when none decodes."""
    frames: list[np.ndarray] = []
    if path.suffix.lower() == ".gif":
        try:
            with Image.open(path) as im:
                frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
        except Exception:  # noqa: BLE001 - any decoder failure is the same refusal
            frames = []
    else:
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read()
        while ok:
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))  # OpenCV decodes to BGR
            ok, frame = cap.read()
        cap.release()
    if not frames:
        raise BenchError(f"{path}: no frame decoded (empty, cut short, or not a video this OpenCV reads); "
                         "write it again, or write the frames as PNGs")
    return frames


def load_prediction(item: Found, n: int, hw: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                      list[str], list[str]]:
    """(frames `(N, h, w, 3)`, deblurred `(h, w, 3)` or None, problems, conversions) of one sample whose
    truth has N frames of size `hw`; frames None when any problem was found."""
    problems: list[str] = []
    notes: list[str] = []

    def checked(path: Path, rgb: np.ndarray) -> np.ndarray | None:
        if rgb.shape[:2] != tuple(hw):
            problems.append(f"{path}: {rgb.shape[1]}x{rgb.shape[0]}, the set's frames are {hw[1]}x{hw[0]} "
                            "(width x height); write predictions at the set's size, uncropped and unpadded")
            return None
        return rgb

    def image(path: Path) -> np.ndarray | None:
        try:
            rgb, note = read_frame(path)
        except BenchError as err:
            problems.append(str(err))
            return None
        notes.extend([f"{note}: {path}"] if note else [])
        return checked(path, rgb)

    try:
        frames = [checked(item.video, f) for f in read_video(item.video)] if item.video else \
            [image(p) for p in item.frames]
    except BenchError as err:
        return None, None, [str(err)], notes
    where = item.video or (item.frames[0].parent if item.frames else None)
    if len(frames) != n:
        problems.append(f"{where}: {len(frames)} frames, the set has N={n}; write exactly {n}")
    deblurred = image(item.deblurred) if item.deblurred else None
    if problems:
        return None, None, list(dict.fromkeys(problems)), notes
    return np.stack(frames), deblurred, [], notes


def score_predictions(data: TestSet, pred: Path, found: dict[str, Found], profile: Profile
                      ) -> tuple[list[dict], dict[str, Any]]:
    """Every test sample's predictions scored by `score_sample` (as `bench run` scores), against the truth
    decoded as `score_set` decodes it: (the metrics.json "samples" rows, what the scores were made from).
    BadPredictions, listing every problem, when any file is refused."""
    lpips_model, lpips_note = (None, "LPIPS disabled by the profile (eval.lpips=false)")
    if profile.eval.lpips:
        lpips_model, lpips_note = metrics.load_lpips()
    samples, problems, notes = [], [], []
    centre: Counter[str] = Counter()
    for i in range(len(data)):
        item = data[i]
        sharp = metrics.to_numpy_images(item["sharp"])  # (N, H, W, 3) uint8
        frames, deblurred, bad, done = load_prediction(found[item["id"]], sharp.shape[0], sharp.shape[1:3])
        problems += bad
        notes += done
        if frames is None:
            continue
        centre[DEBLURRED if deblurred is not None else "the middle predicted frame"] += 1
        deblurred = frames[len(frames) // 2] if deblurred is None else deblurred
        blur = metrics.to_numpy_images(item["blur"])  # (H, W, 3) uint8, the stored blur, as `score_set`
        row = score_sample(deblurred, frames, sharp, lpips_model=lpips_model, blur=blur,
                           gamma=data.manifest["gamma"])  # no flows: epe null
        samples.append(stored_row(item["id"], row))
    if problems:
        raise BadPredictions(pred, problems)
    made = {"deblurred_from": ", ".join(f"{k} ({v})" for k, v in sorted(centre.items())),
            "conversions": notes, "lpips_note": lpips_note}
    return samples, made


@dataclass
class ScoreOutcome:
    path: Path  # the run folder
    metrics: RunMetrics
    cached: bool  # True when these predictions were already scored by this code
    conversions: list[str] = field(default_factory=list)  # "16-bit: <file>", ... (scored after converting)

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS


def _same_label(store: Path, label: str, set_name: str, profile: str, predictions: str) -> None:
    """Refuse a label already given to other predictions on the same set and profile: the report shows a
    label as one row, so two prediction folders under one label would be pooled as if they were seeds."""
    for record in iter_runs(store):
        config = record.config
        if record.status == "finished" and config.method == label and config.dataset == set_name and \
                config.profile == profile and config.weights_from_sha256 != predictions:
            raise BenchError(f"--name {label}: {record.path} holds other predictions scored as {label} on "
                             f"{set_name}; choose another --name, or remove that folder to replace them")


def _aggregate(samples: list[dict], made: dict, n: int, hw: list[int]) -> dict[str, Any]:
    """The per-sample means (`mean_scores`, as a run's) and what they were made from; costs are null: no
    method ran here."""
    aggregate: dict[str, Any] = mean_scores(samples)
    if aggregate["deblur_lpips"] is None:
        aggregate["deblur_lpips_note"] = made["lpips_note"] or "LPIPS not computed for every sample"
    aggregate.update({key: None for key in metrics.COST_METRICS})
    aggregate.update({"device": DEVICE, "frames": n, "n_samples": len(samples), "resolution": hw,
                      "deblurred_from": made["deblurred_from"], "conversions": len(made["conversions"])})
    return aggregate


def score(set_folder: Path, pred: Path, label: str, profile: Profile, store: Path,
          log: Any = print) -> ScoreOutcome:
    """Score the prediction folder `pred` on the test split of `set_folder` and store it as the run
    `<label>-<hash>` under `store` (module docstring); reused when these files were already scored by this
    code. Nothing is written unless every sample is scored."""
    data = TestSet(set_folder, split="test")
    if len(data) == 0:
        raise BenchError(f"{set_folder}: the test split is empty; prepare the set again (bench prepare)")
    found, problems = discover(pred, [s["id"] for s in data.samples])
    if problems:
        raise BadPredictions(pred, problems)
    digest, predictions = data_digest(set_folder), files_digest(pred, found)
    resolved = run_request(label, to_dict(profile), set_folder.name, digest, data.frames, 0, predictions, {},
                           scoring_digest(external_code()))
    folder = Path(store) / run_id(label, resolved)
    record = read_record(folder)
    if record is not None and record.status == "finished":
        return ScoreOutcome(folder, record.metrics, cached=True)
    if record is not None and record.problem:
        log(f"{folder.name}: {record.problem}; scoring again")
    _same_label(Path(store), label, set_folder.name, profile.name, predictions)
    started = time.perf_counter()
    samples, made = score_predictions(data, pred, found, profile)
    h, w = data.manifest["resolution"]
    result = RunMetrics(
        "finished", folder.name, method=label, profile=profile.name, dataset=set_folder.name,
        data_sha256=digest, eval_dataset=set_folder.name, eval_sha256=digest, frames=data.frames, seed=0,
        aggregate=_aggregate(samples, made, data.frames, [int(h), int(w)]), samples=tuple(samples),
        metric_definitions=dict(metrics.DEFINITIONS), wall_s=time.perf_counter() - started)
    config = RunConfig(run_id=folder.name, method=label, family=EXTERNAL, profile=profile.name, overrides=(),
                       resolved_profile=resolved["profile"], dataset=set_folder.name, data_sha256=digest,
                       frames=data.frames, seed=0, stages=(), weights_from=str(pred.resolve()),
                       weights_from_sha256=predictions, stage_keys={}, scoring_code=resolved["scoring_code"])
    with FolderLock(folder, hint="pass a writable --runs-dir"):
        atomic_write_json(folder / CONFIG, config.to_json())
        atomic_write_json(folder / ENV, environment("cpu"))
        atomic_write_json(folder / METRICS, result.to_json())  # last: its presence means finished
    return ScoreOutcome(folder, result, cached=False, conversions=made["conversions"])
