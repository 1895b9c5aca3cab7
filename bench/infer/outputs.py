"""Outputs per photo: frame PNGs, an animated GIF, an MP4 and a side-by-side strip, written atomically."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.data.images import encode_png
from bench.errors import BenchError
from bench.store import atomic_write_bytes

FORMATS = ("png", "gif", "mp4")  # frame outputs; deblurred.png and strip.png are always written
STRIP_HEIGHT = 240  # panel height of the side-by-side strip (never upscaled)


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """Frames `(n, h, w, 3)` uint8 -> an endlessly looping GIF over one palette shared by all frames (so
    colours do not flicker from frame to frame)."""
    from PIL import Image

    n, h, w, _ = frames.shape
    # The palette comes from about a million sampled pixels: median cut on every pixel of nine 720p frames
    # takes seconds and picks nearly the same 256 colours.
    step = max(1, int(np.ceil(np.sqrt(n * h * w / 1e6))))
    sample = frames[:, ::step, ::step]  # (n, h', w', 3)
    sheet = Image.fromarray(np.ascontiguousarray(sample.reshape(-1, sample.shape[2], 3)))
    palette = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    duration = max(20, int(round(1000 / fps / 10)) * 10)  # GIF delays are in 1/100 s
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buf.getvalue()


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Frames `(n, h, w, 3)` uint8 -> an MP4 (mp4v) at `path`, atomically: OpenCV writes a temporary file in
    the same folder, which is fsynced and renamed. Odd sizes get their last row/column repeated (mp4v
    needs even sizes)."""
    import cv2

    n, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                 (frames.shape[2], frames.shape[1]))
        if not writer.isOpened():
            raise BenchError(f"{path}: OpenCV cannot write mp4v video here; use --format gif,png")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        writer.release()
        if os.path.getsize(tmp) == 0:
            raise BenchError(f"{path}: OpenCV wrote an empty video; use --format gif,png")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def make_strip(blur: np.ndarray, deblurred: np.ndarray, frames: np.ndarray,
               height: int = STRIP_HEIGHT, gap: int = 4) -> np.ndarray:
    """blur | deblurred | frame 1 .. frame N side by side, each panel scaled to `height` (never up), with
    white gaps: `(ph, (n+2)*pw + (n+1)*gap, 3)` uint8."""
    import cv2

    h, w = blur.shape[:2]
    ph = min(h, height)
    pw = max(1, int(round(w * ph / h)))
    panels = [blur, deblurred, *frames]
    if (ph, pw) != (h, w):
        panels = [cv2.resize(p, (pw, ph), interpolation=cv2.INTER_AREA) for p in panels]
    spacer = np.full((ph, gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for i, p in enumerate(panels):
        if i:
            row.append(spacer)
        row.append(p)
    return np.concatenate(row, axis=1)


def write_outputs(folder: Path, blur: np.ndarray, deblurred: np.ndarray, frames: np.ndarray,
                  formats: tuple[str, ...] = FORMATS, fps: float = 10.0) -> list[Path]:
    """Everything for one photo into `folder`: deblurred.png and strip.png always, and per `formats`
    frames/frame_XX.png (png), video.gif (gif), video.mp4 (mp4). Every file is written atomically."""
    written = [atomic_write_bytes(folder / "deblurred.png", encode_png(deblurred))]
    if "png" in formats:
        digits = max(2, len(str(len(frames))))
        for i, frame in enumerate(frames, 1):
            target = folder / "frames" / f"frame_{i:0{digits}d}.png"
            written.append(atomic_write_bytes(target, encode_png(frame)))
    if "gif" in formats:
        written.append(atomic_write_bytes(folder / "video.gif", encode_gif(frames, fps)))
    if "mp4" in formats:
        written.append(write_mp4(folder / "video.mp4", frames, fps))
    written.append(atomic_write_bytes(folder / "strip.png", encode_png(make_strip(blur, deblurred, frames))))
    return written
