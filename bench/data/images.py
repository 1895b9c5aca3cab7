"""Safe image I/O for the data pipeline: RGB uint8 in, PNG bytes out, one-line errors on bad files.

Every frame the suite reads goes through `decode_image`, which refuses truncated or unreadable files with a
`BenchError` naming the file, and converts grayscale, RGBA and 16-bit frames to 8-bit RGB, returning a note
so the caller can warn once. PNG encoding is deterministic (fixed OpenCV settings), which is what
makes prepared sets byte-identical from one run to the next. `encode_gif` is the one GIF encoder: `bench
infer`'s videos and the report's animations.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.errors import BenchError
from bench.fileio import atomic_write_bytes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its CRC: every complete PNG ends with these bytes
_PNG_SETTINGS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast and deterministic; sets are rewritten often in tests
# Frames larger than this are refused from their header, before any pixel buffer exists: a forged or
# zip-bomb header (a few KB claiming 30000x30000) must not make the decoder allocate gigabytes. 64 MP is
# 8K video with room to spare; GoPro frames are 0.9 MP.
MAX_PIXELS = 64_000_000


def _truncated(data: bytes) -> bool:
    """True when a PNG or JPEG stream lacks its end marker (a cut-off download or a killed copy)."""
    if data.startswith(_PNG_MAGIC):
        return not data.rstrip(b"\x00").endswith(_PNG_END)
    if data.startswith(b"\xff\xd8"):
        # JPEG decoders fill a cut-off image with grey and only warn, so look for the EOI marker ourselves.
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    return False


def check_header(data: bytes, path: Path | str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image whose header claims no pixels or more than `max_pixels`, without decoding it.

    Pillow parses only the header here (it is lazy); a format it does not recognise is left to OpenCV.
    """
    too_big = (f"{path}: the header claims more than {max_pixels // 10**6} megapixels; replace the file or "
               "downscale the frames")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: the limit applied is ours
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:  # past Pillow's own, higher limit
        raise BenchError(too_big) from None
    except Exception:  # noqa: BLE001 - an unrecognised or broken header: OpenCV judges the bytes
        return
    if w < 1 or h < 1:
        raise BenchError(f"{path}: the header claims an empty {w}x{h} image; replace it")
    if w * h > max_pixels:
        raise BenchError(too_big.replace("claims more", f"claims {w}x{h}, more"))


def decode_image(data: bytes, path: Path | str) -> tuple[np.ndarray, str | None]:
    """Decode image bytes to RGB uint8 `(h, w, 3)`; the second value names a conversion done, if any."""
    if not data:
        raise BenchError(f"{path}: empty file; replace it or remove it from the sequence")
    if _truncated(data):
        raise BenchError(f"{path}: truncated image; replace it or remove it from the sequence")
    check_header(data, path)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None  # OpenCV asserts on some malformed headers instead of returning None
    if img is None or img.size == 0:
        raise BenchError(f"{path}: unreadable image; replace it or remove it from the sequence")
    notes = []
    if img.dtype == np.uint16:
        img = np.rint(img.astype(np.float32) / 257.0).astype(np.uint8)  # 65535 -> 255 exactly
        notes.append("16-bit")
    elif img.dtype != np.uint8:
        raise BenchError(f"{path}: unsupported pixel type {img.dtype}; convert it to 8-bit RGB")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        notes.append("grayscale")
        return np.ascontiguousarray(img), "+".join(notes)
    if img.shape[2] == 4:
        img = img[:, :, :3]  # alpha dropped: frames of footage are opaque
        notes.append("RGBA")
    elif img.shape[2] != 3:
        raise BenchError(f"{path}: {img.shape[2]} channels; convert it to RGB")
    rgb = np.ascontiguousarray(img[:, :, ::-1])  # OpenCV decodes to BGR
    return rgb, "+".join(notes) or None


def read_image(path: Path | str) -> tuple[np.ndarray, str | None]:
    """Read an image file as RGB uint8 `(h, w, 3)`, with the conversion note of `decode_image`."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BenchError(f"{path}: cannot read ({err.strerror}); check the file and its access") from None
    return decode_image(data, path)


def read_rgb(path: Path | str) -> np.ndarray:
    """RGB uint8 `(h, w, 3)` of a file the suite wrote itself (no conversion expected)."""
    return read_image(path)[0]


def is_plain_png(data: bytes, img: np.ndarray, note: str | None) -> bool:
    """True when `data` is already an 8-bit RGB PNG, so a prepared set may copy its bytes unchanged."""
    return note is None and data.startswith(_PNG_MAGIC) and img.ndim == 3 and img.shape[2] == 3


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 `(h, w, 3)` image; the same pixels always give the same bytes."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_png wants (h, w, 3) uint8, got {rgb.shape} {rgb.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), _PNG_SETTINGS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """Frames `(n, h, w, 3)` uint8 -> an endlessly looping GIF over one palette shared by all frames (so
    colours do not flicker from frame to frame)."""
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


def write_png(path: Path | str, rgb: np.ndarray) -> Path:
    """Atomically write an RGB uint8 image as PNG."""
    return atomic_write_bytes(path, encode_png(rgb))
