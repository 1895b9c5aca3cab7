"""A prepared set's samples, and a stored run's predictions, as plain files another method's code can read
(docs/DESIGN.md "Scoring any method").

- `export_set` (`bench export`): one split of a prepared set, in the suite's own layout
  (`<sample>/blur.png`, `<sample>/gt/frame_01.png` ... `frame_NN.png`) or in blur2vid's GOPRO_7 layout
  (`<split>/blur/<sequence>/<centre>.png`, `<split>/sharp/<sequence>/<frame>.png`, frames numbered from 1 in
  their sequence; read from tedlasai/blur2vid, extra/build_gopro_dataset.py and extra/build_gopro_test.py),
  with `index.csv`: each sample's id, N, size, gamma and the set's digest. The files are the set's own
  bytes (verified PNGs), never re-encoded.
- `save_predictions` (`bench run --save-predictions`): a finished run's predicted frames in the layout
  `bench score` reads (`<sample>/frame_01.png` ... and `<sample>/deblurred.png`), made by the very scoring
  code of the run (`bench.evaluate.score_set`), so scoring them back gives the run's own numbers.

Both write through `bench.outputs.OutputFolder`: into a folder holding the user's files they add only their
own, record them, replace or delete nothing else, and drop their own files of an earlier export there that
this one did not write.
"""

from __future__ import annotations

import csv
import io
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from torch import nn

from bench.components import load_components
from bench.config import resolve_profile
from bench.data.images import encode_png
from bench.data.manifest import damaged_files, data_digest, load_manifest
from bench.errors import BenchError
from bench.evaluate import score_set
from bench.fileio import FolderLock, sha256_file
from bench.outputs import OutputFolder
from bench.registry import get_method
from bench.store import WEIGHTS, RunRecord, checked_name, load_weights, read_record

NATIVE, BLUR2VID = "native", "blur2vid"
LAYOUTS = (NATIVE, BLUR2VID)
BLUR2VID_FRAMES = 7  # GOPRO_7 holds 7-frame windows (blur2vid's build_gopro_dataset.py, window_size=7)
INDEX = "index.csv"
INDEX_COLUMNS = ("sample", "split", "frames", "height", "width", "gamma", "set", "set_sha256", "blur")
DEBLURRED = "deblurred.png"  # a prediction folder's optional deblurred centre


def frame_name(n: int, frames: int, suffix: str = ".png") -> str:
    """`frame_01.png`: frame n (1-based) of N, zero-padded to two digits (more when N > 99), so a plain sort
    and a natural sort agree."""
    return f"frame_{n:0{max(2, len(str(frames)))}d}{suffix}"


def open_set(name: str, data_dir: Path, hold: ExitStack, verify: str = "fast", option: str = "--set") -> Path:
    """A prepared set by folder name under `data_dir` (or by path), verified under its shared lock, which
    `hold` keeps until it closes (as a run holds the sets it reads: no `bench prepare --fresh` meanwhile)."""
    folder = Path(name) if Path(name).is_dir() else Path(data_dir) / name
    checked_name(folder.name, f"{option} {name}: folder name", "pass the prepared set's folder itself")
    if not (folder / "manifest.json").is_file():
        raise BenchError(f"{option} {name}: no prepared set at {folder} (no manifest.json); build it with "
                         "bench prepare (bench list --datasets shows the prepared ones)")
    if not folder.is_symlink():  # as bench prepare: never a lock file in someone else's folder
        hold.enter_context(FolderLock(folder, shared=True, readonly_ok=True,
                                      hint="pass a writable --data-dir"))
    bad = damaged_files(folder, load_manifest(folder), full=verify == "full")
    if bad:
        raise BenchError(f"{option} {name}: {bad[0][1]}")
    return folder


def _native_files(sample: dict, split: str, n: int) -> tuple[str, dict[str, str]]:
    """(the blur's path, {path in the export: path in the set}) of one sample in the suite's layout."""
    base = checked_name(sample["id"], "sample id")
    files = {f"{base}/blur.png": sample["blur"]}
    files.update({f"{base}/gt/{frame_name(j + 1, n)}": rel for j, rel in enumerate(sample["sharp"])})
    return f"{base}/blur.png", files


def _blur2vid_files(sample: dict, split: str, n: int) -> tuple[str, dict[str, str]]:
    """The same in blur2vid's GOPRO_7 layout: window k of a sequence holds its frames k*N+1 .. k*N+N
    (numbered from 1, six digits, as GoPro's frames), and its blur is named after its centre frame."""
    seq = checked_name(sample["sequence"], "sequence name")
    first = int(sample["window"]) * n + 1
    blur = f"{split}/blur/{seq}/{first + n // 2:06d}.png"
    files = {blur: sample["blur"]}
    files.update({f"{split}/sharp/{seq}/{first + j:06d}.png": rel for j, rel in enumerate(sample["sharp"])})
    return blur, files


def export_set(set_folder: Path, out: Path | str, split: str = "test", layout: str = NATIVE) -> list[Path]:
    """Write the `split` samples of the prepared set at `set_folder` into `out` in `layout`, then
    `index.csv`; returns the files written."""
    manifest = load_manifest(set_folder)
    samples = [s for s in manifest["samples"] if s["split"] == split]
    if not samples:
        raise BenchError(f"{set_folder}: its {split} split is empty; export another --split or prepare "
                         f"footage with {split}/ sequences")
    n = int(manifest["frames"])
    if layout == BLUR2VID and n != BLUR2VID_FRAMES:
        raise BenchError(f"--layout blur2vid: blur2vid's GOPRO_7 holds {BLUR2VID_FRAMES}-frame windows, "
                         f"{set_folder.name} has N={n}; export a {BLUR2VID_FRAMES}-frame set (bench prepare "
                         f"--frames {BLUR2VID_FRAMES})")
    place = _native_files if layout == NATIVE else _blur2vid_files
    plan = [(sample, *place(sample, split, n)) for sample in samples]
    digest = data_digest(set_folder)
    written: list[Path] = []
    with OutputFolder(out, "export") as folder:
        folder.check([folder.folder / rel for _, _, files in plan for rel in files] + [folder.folder / INDEX])
        rows = []
        for sample, blur, files in plan:
            items = {folder.folder / rel: (set_folder / src).read_bytes() for rel, src in files.items()}
            folder.claim(items)
            written += [folder.write(path, data) for path, data in items.items()]
            rows.append(_index_row(sample, manifest, digest, split, blur, set_folder.name))
        written.append(folder.write(folder.folder / INDEX, _csv(rows)))
        folder.remove_stale(lambda rel: True)  # an earlier export's files that this one did not write
    return written


def _index_row(sample: dict, manifest: dict, digest: str, split: str, blur: str, set_name: str) -> dict:
    h, w = manifest["resolution"]
    gamma = manifest.get("gamma")
    return {"sample": sample["id"], "split": split, "frames": manifest["frames"], "height": h, "width": w,
            # none: the blur is the mean of the stored values (no gamma), as the paper's text describes
            "gamma": "none" if gamma is None else gamma, "set": set_name, "set_sha256": digest, "blur": blur}


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _networks(method: Any, record: RunRecord) -> nn.ModuleDict:
    """The networks a finished run scored: its weights.pt, or the `--weights` file it scored (when that file
    still holds the recorded bytes); a method without networks needs neither."""
    config, metrics = record.config, record.metrics
    if metrics.weights_sha256 is not None:
        path = record.path / WEIGHTS
    elif config.weights_from is not None:
        path = Path(config.weights_from)
        if not path.is_file() or sha256_file(path) != config.weights_from_sha256:
            raise BenchError(f"{path}: not the weights file {record.path.name} scored (missing or changed); "
                             "rerun bench run --weights with that file")
    elif not method.components:
        return method.build(None)
    else:
        raise BenchError(f"{record.path}: records no weights; rerun bench run --fresh")
    payload = load_weights(path)
    nets = method.build(payload["model"])
    load_components(nets, payload["state_dicts"], source=path, fix="rerun bench run --fresh")
    return nets


def save_predictions(run_folder: Path, set_folder: Path, out: Path | str, device: Any) -> list[Path]:
    """Write the predictions of the finished run at `run_folder` on the test split of `set_folder` into
    `out`, one folder per sample (`frame_01.png` ... and `deblurred.png`): the uint8 frames its scoring
    computes (`score_set`), so `bench score` reads back exactly the arrays the run was scored on."""
    record = read_record(run_folder)
    if record is None or record.status != "finished":
        why = record.problem or record.status if record else "not a run"
        raise BenchError(f"{run_folder}: no finished run there ({why}); run it first with bench run")
    config = record.config
    method = get_method(config.method, config.frames)
    profile = resolve_profile(config.profile, config.overrides)
    nets = _networks(method, record)
    written: list[Path] = []
    with OutputFolder(out, "predictions", option="--save-predictions") as folder:

        def scored(i: int, total: int, item: dict, images: tuple) -> None:
            deblurred, frames, _ = images  # (h, w, 3), (N, h, w, 3) uint8, as scored
            base = folder.folder / checked_name(item["id"], "sample id")
            items = {base / frame_name(t + 1, len(frames)): encode_png(f) for t, f in enumerate(frames)}
            items[base / DEBLURRED] = encode_png(deblurred)
            folder.claim(items)
            written.extend(folder.write(path, data) for path, data in items.items())

        score_set(method, nets, set_folder, profile, device, scored)
        folder.remove_stale(lambda rel: True)
    return written
