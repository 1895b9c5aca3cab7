"""Outputs per photo: frame PNGs, an animated GIF, an MP4 and a side-by-side strip, written atomically
through the output folder's record of its own files (`bench.outputs.OutputFolder`). PNG and GIF bytes come
from `bench.data.images`, the one encoder of each that the report uses too."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from bench.data.images import encode_gif, encode_png
from bench.data.video import _quiet
from bench.errors import BenchError
from bench.outputs import OutputFolder

FORMATS = ("png", "gif", "mp4")  # frame outputs; deblurred.png and strip.png are always written
STRIP_HEIGHT = 240  # panel height of the side-by-side strip (never upscaled)
FULL_DISK = 1 << 20  # bytes free under which a failed or short video write is the disk's fault, not OpenCV's


def encode_mp4(frames: np.ndarray, fps: float, scratch: Path) -> bytes:
    """Frames `(n, h, w, 3)` uint8 -> MP4 (mp4v) bytes. OpenCV writes only to a path: `scratch`, a temporary
    of the suite's (`OutputFolder.scratch`), removed here; the caller writes the bytes atomically. Odd sizes
    get their last row/column repeated (mp4v needs even sizes)."""
    n, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    try:
        with _quiet():
            writer = cv2.VideoWriter(str(scratch), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                     (frames.shape[2], frames.shape[1]))
            opened = writer.isOpened()
            for frame in frames if opened else ():
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
            writer.release()
            complete = opened and _frames_in(scratch) == n  # OpenCV drops a failed write without a word
        if not complete:
            _check_disk(scratch)
        if not opened:
            raise BenchError(f"{scratch.parent}: OpenCV cannot write mp4v video here; use --format gif,png")
        data = scratch.read_bytes()
        if not data or not complete:
            raise BenchError(f"{scratch.parent}: OpenCV wrote an empty or unreadable video; use --format "
                             "gif,png")
        return data
    finally:
        scratch.unlink(missing_ok=True)


def free_bytes(folder: Path) -> int:
    """Bytes this user may still write on the file system holding `folder` (unknown: as good as unlimited)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _frames_in(video: Path) -> int:
    """Frames OpenCV decodes from `video` (a cut file, from a full disk, has no index and gives none)."""
    cap = cv2.VideoCapture(str(video))
    try:
        count = 0
        while cap.isOpened() and cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def _check_disk(scratch: Path) -> None:
    """A full disk named as such (not as a codec problem), with the video it was writing."""
    free = free_bytes(scratch.parent)
    if free < FULL_DISK:
        video = scratch.parent / "video.mp4"
        raise BenchError(f"{video}: cannot write (no space left on device: {free // 1024} KiB free); free "
                         "some space or choose another --out, then rerun")


def make_strip(blur: np.ndarray, deblurred: np.ndarray, frames: np.ndarray,
               height: int = STRIP_HEIGHT, gap: int = 4) -> np.ndarray:
    """blur | deblurred | frame 1 .. frame N side by side, each panel scaled to `height` (never up), with
    white gaps: `(ph, (n+2)*pw + (n+1)*gap, 3)` uint8."""
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


def write_outputs(out: OutputFolder, folder: Path, blur: np.ndarray, deblurred: np.ndarray,
                  frames: np.ndarray, formats: tuple[str, ...] = FORMATS, fps: float = 10.0) -> list[Path]:
    """Everything for one photo into `folder` (inside `out`): deblurred.png and strip.png always, and per
    `formats` frames/frame_XX.png (png), video.gif (gif), video.mp4 (mp4). Every file is claimed, then
    written atomically; what an earlier run wrote in `folder` and this one did not (the frames of another N,
    a format dropped) is removed, and files that are not the suite's are never touched."""
    items = {folder / "deblurred.png": encode_png(deblurred)}
    if "png" in formats:
        digits = max(2, len(str(len(frames))))
        for i, frame in enumerate(frames, 1):
            items[folder / "frames" / f"frame_{i:0{digits}d}.png"] = encode_png(frame)
    if "gif" in formats:
        items[folder / "video.gif"] = encode_gif(frames, fps)
    if "mp4" in formats:
        items[folder / "video.mp4"] = encode_mp4(frames, fps, out.scratch(folder / "video.mp4", ".tmp.mp4"))
    items[folder / "strip.png"] = encode_png(make_strip(blur, deblurred, frames))
    out.claim(items)
    written = [out.write(path, data) for path, data in items.items()]
    prefix = out.rel(folder) + "/"
    out.remove_stale(lambda rel: rel.startswith(prefix))
    return written
