"""Photos in: expand paths and globs, decode any common image to RGB uint8 safely."""

from __future__ import annotations

import glob
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench.errors import BenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_PIXELS = 64_000_000  # refuse larger photos before decoding them (a forged header must not exhaust memory)


def expand_inputs(items: list[str] | tuple[str, ...]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their images, sorted) and globs to a de-duplicated list of photo paths.

    Returns `(photos, failures)`; a failure is `(item, message)` for an input that names nothing readable,
    so the batch goes on without it and the command can list it at the end.
    """
    photos: list[Path] = []
    failures: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            photos.append(path)

    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                failures.append((item, f"no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images in this folder"))
            for p in found:
                add(p)
        elif path.is_file():
            add(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                failures.append((item, "the pattern matches no file"))
            for p in found:
                add(p)
        else:
            failures.append((item, "no such file or folder"))
    return photos, failures


def read_photo(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a photo to RGB uint8 `(h, w, 3)`, upright (EXIF orientation applied).

    16-bit samples are scaled to 8 bits, grayscale repeated to 3 channels, alpha composited over white.
    Anything unreadable (truncated, random bytes, empty, a header claiming more than `max_pixels`) raises
    a one-line `BenchError` naming the file; the size is checked from the header, before decoding.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow's own decompression-bomb warning is replaced by the explicit limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    raise BenchError(f"{path}: the image is empty ({w}x{h})")
                if w * h > max_pixels:
                    raise BenchError(f"{path}: {w}x{h} is over the {max_pixels / 1e6:.0f}-megapixel limit; "
                                     "downscale the photo first")
                im.load()
                upright = ImageOps.exif_transpose(im)
                return _to_rgb(upright)
    except BenchError:
        raise
    except Image.DecompressionBombError:  # a header past Pillow's own (higher) limit
        raise BenchError(f"{path}: the header claims more than the {max_pixels / 1e6:.0f}-megapixel limit; "
                         "downscale the photo first") from None
    except FileNotFoundError:
        raise BenchError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - image plugins raise many types on bad bytes; none may escape
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(f"{path}: not a readable image ({detail}); pass a PNG or JPEG photo") from None


def _to_rgb(im: Any) -> np.ndarray:
    """A decoded PIL image of any mode to RGB uint8 `(h, w, 3)`."""
    if im.mode.startswith("I"):  # "I;16*" (16-bit PNG) and "I": treated as 16-bit intensities
        a = np.asarray(im).astype(np.float64)
        gray = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
