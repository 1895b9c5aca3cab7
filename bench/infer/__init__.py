"""The user's own blurred photos to sharp videos (`bench infer`, docs/DESIGN.md "Infer").

One motion-blurred photo in, the sharp frames seen during its exposure out (the paper's task, Sec. 1): the
deblurred image, the N frames as PNGs, an animated GIF, an MP4 and a side-by-side strip per photo.

Decisions this module makes:
- Photos of any size are padded to a multiple of 16 (`methods.layers.pad_to_multiple`) and cropped back.
- Memory: a probe forward pass at 32x32 measures the largest activation per pixel; the full-size estimate
  is compared with half the free memory. Too big, and the photo is cut into overlapping tiles blended with
  linear ramps; `--tile` forces a tile size. A method's frames are only defined up to time reversal (the
  Eq. 6 loss is ordering-invariant, Sec. 2.3), so each tile takes the direction that agrees best with the
  tiles already placed, else neighbouring tiles could play in opposite directions.
- Colour: 16-bit images are scaled to 8 bits, grayscale is repeated to RGB, transparency is composited over
  white (what an image viewer shows), and the EXIF orientation is applied first.
- The MP4 (OpenCV, mp4v) needs even sizes: an odd last row or column is repeated once in the video only.
- The output folder may hold the user's files: outputs go through `bench.outputs.OutputFolder`, which replaces
  or deletes only files the suite wrote (its record, `.bench-outputs.json`). A rerun replaces each photo's
  outputs as a whole: the frames of another N or a dropped format do not linger beside the new ones.
- The GIF holds N frames over one shared palette; Pillow merges consecutive frames that are identical after
  quantisation (a still scene), keeping the playback time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.infer.inputs import IMAGE_SUFFIXES, MAX_PIXELS, expand_inputs, read_photo
from bench.infer.loading import LoadedMethod, load_method
from bench.infer.outputs import FORMATS, STRIP_HEIGHT, encode_gif, encode_mp4, make_strip, write_outputs
from bench.infer.tiling import (
    MIN_TILE,
    OVERLAP,
    available_memory,
    forward_bytes_per_pixel,
    plan_tile,
    predict_photo,
)
from bench.outputs import OutputFolder

__all__ = ["FORMATS", "IMAGE_SUFFIXES", "MAX_PIXELS", "MIN_TILE", "OVERLAP", "STRIP_HEIGHT", "InferResult",
           "LoadedMethod", "available_memory", "encode_gif", "expand_inputs", "forward_bytes_per_pixel",
           "infer_photos", "load_method", "make_strip", "output_names", "plan_tile", "predict_photo",
           "read_photo", "encode_mp4", "write_outputs"]


def output_names(photos: list[Path]) -> list[str]:
    """One folder name per photo: its stem, made unique within the batch (a.png and a.jpg -> a, a-jpg).

    A stem that would name no folder of its own (`..` from `...png`, `.` from `..png`, a hidden `.x`) loses
    its leading dots (or becomes `photo`), so every output lands in its own folder inside `--out`."""
    names: list[str] = []
    used: set[str] = set()
    for p in photos:
        stem = p.stem.lstrip(".") or "photo"
        name = stem
        if name in used:
            name = f"{stem}-{p.suffix.lstrip('.').lower() or 'x'}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
    return names


@dataclass
class InferResult:
    """What a batch did: the output folder per finished photo, and `(photo, message)` per failure."""

    done: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def infer_photos(loaded: LoadedMethod, photos: list[Path], out: Path, formats: tuple[str, ...] = FORMATS,
                 tile: int | None = None, fps: float = 10.0,
                 on_photo: Callable[[Path, str | None], None] | None = None,
                 on_start: Callable[[Path], None] | None = None) -> InferResult:
    """Run `loaded` on every photo, writing `out/<name>/...`; a photo that fails is recorded (one line) and
    the batch goes on. `on_start(photo)` and `on_photo(photo, error_or_None)` are called before and after
    each, for progress and messages. `out` may hold other files: only the suite's own are ever replaced."""
    result = InferResult()
    with OutputFolder(out, "infer") as folder:
        for photo, name in zip(photos, output_names(photos), strict=True):
            if on_start is not None:
                on_start(photo)
            try:
                rgb = read_photo(photo)
                deblurred, frames = predict_photo(loaded, rgb, tile, name=str(photo))
                write_outputs(folder, out / name, rgb, deblurred, frames, formats, fps)
                result.done.append((photo, out / name))
                error = None
            except BenchError as err:
                error = str(err)
                result.failed.append((str(photo), error))
            if on_photo is not None:
                on_photo(photo, error)
    return result
