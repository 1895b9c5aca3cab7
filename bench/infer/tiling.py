"""Prediction of one photo: padding, the memory estimate, and overlapping tiles when it is too big."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench import memory
from bench.config import TILE, check_option
from bench.errors import BenchError
from bench.infer.loading import LoadedMethod
from bench.memory import available_memory
from methods.layers import crop_to, pad_to_multiple

OVERLAP = 32  # pixels shared by neighbouring tiles, blended with linear ramps
MIN_TILE = 96  # smaller tiles see too little context to be worth running
SMALL_PHOTO = 128 * 128  # pixels up to which a photo runs in one pass without measuring


# --- memory -------------------------------------------------------------------------------------------------


def forward_bytes_per_pixel(loaded: LoadedMethod) -> int:
    """`bench.memory.forward_bytes_per_pixel` of the loaded method, measured once and cached on it."""
    if loaded._per_pixel is None:
        loaded._per_pixel = memory.forward_bytes_per_pixel(loaded.method, loaded.nets, loaded.frames,
                                                           loaded.device)
    return loaded._per_pixel


def plan_tile(loaded: LoadedMethod, height: int, width: int, tile: int | None = None,
              budget: int | None = None, name: str = "photo") -> int | None:
    """The tile side for a `height` x `width` photo: None (one pass), `tile` when forced, else the largest
    multiple of 16 whose forward fits `budget` (default: half the free memory) next to the full-size
    output buffers. A photo whose outputs alone do not fit raises a one-line error."""
    if tile is not None:
        check_option("--tile", tile, TILE)
        return tile if tile < max(height, width) else None
    if height * width <= SMALL_PHOTO:
        return None  # measuring would cost about as much as just running it
    per_pixel = forward_bytes_per_pixel(loaded)
    if budget is None:
        budget = available_memory(loaded.device) // 2
    buffers = (loaded.frames * 3 + 3 + 1) * 4 * height * width  # accumulators of a tiled pass, float32
    if per_pixel * height * width <= budget:
        return None
    side = int(np.sqrt(max(budget - buffers, 0) / per_pixel)) // 16 * 16
    if side < MIN_TILE:
        need = (per_pixel * MIN_TILE * MIN_TILE + buffers) / 2**30
        raise BenchError(f"{name}: {width}x{height} needs about {need:.1f} GiB, more than the "
                         f"{budget / 2**30:.1f} GiB at hand; downscale the photo or free memory")
    return side


# --- prediction ---------------------------------------------------------------------------------------------

def _forward(loaded: LoadedMethod, x: Any) -> tuple[Any, Any]:
    """One padded forward pass: `x (1,3,h,w)` -> deblurred `(3,h,w)`, frames `(n,3,h,w)`, on the CPU."""
    xp, size = pad_to_multiple(x.to(loaded.device), 16)  # (1, 3, H16, W16)
    with torch.inference_mode():
        pred = loaded.method.predict(loaded.nets, xp, loaded.frames)
    deblurred = crop_to(pred.deblurred, size)[0].float().cpu()  # (3, h, w)
    frames = crop_to(pred.frames.flatten(0, 1), size).float().cpu()  # (n, 3, h, w)
    return deblurred, frames


def _ramp(length: int, start: int, end: int, total: int, overlap: int) -> np.ndarray:
    """1-D blending weights of a tile spanning [start, end) of `total`: linear ramps on inner edges only."""
    w = np.ones(length, dtype=np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    k = min(overlap, length)
    if start > 0:
        w[:k] = np.minimum(w[:k], ramp[:k])
    if end < total:
        w[length - k:] = np.minimum(w[length - k:], ramp[:k][::-1])
    return w


def _starts(total: int, size: int, stride: int) -> list[int]:
    if size >= total:
        return [0]
    starts = list(range(0, total - size, stride))
    return starts + [total - size]


def _tiled(loaded: LoadedMethod, x: Any, tile: int, overlap: int = OVERLAP) -> tuple[Any, Any]:
    """Overlapping tiles of side `tile`, blended; each tile's frame order is made to agree with its
    already placed neighbours (time reversal is equally valid for the model, Eq. 6)."""
    xp, size = pad_to_multiple(x, 16)  # (1, 3, H, W), H and W multiples of 16
    _, _, H, W = xp.shape
    n = loaded.frames
    overlap = min(overlap, tile // 4) // 16 * 16 or 16
    th, tw = min(tile, H), min(tile, W)
    acc_frames = torch.zeros(n, 3, H, W)
    acc_deb = torch.zeros(3, H, W)
    acc_w = torch.zeros(1, H, W)
    for top in _starts(H, th, th - overlap):
        for left in _starts(W, tw, tw - overlap):
            deb, frames = _forward(loaded, xp[:, :, top:top + th, left:left + tw])
            region = (slice(None), slice(top, top + th), slice(left, left + tw))
            placed = acc_w[region] > 0  # (1, th, tw)
            if placed.any():
                current = acc_frames[(slice(None), *region)] / acc_w[region].clamp_min(1e-8)  # (n,3,th,tw)
                mask = placed.expand(3, -1, -1)
                forward_err = (frames - current).abs()[:, mask].mean()
                reverse_err = (frames.flip(0) - current).abs()[:, mask].mean()
                if reverse_err < forward_err:
                    frames = frames.flip(0)
            wy = _ramp(th, top, top + th, H, overlap)
            wx = _ramp(tw, left, left + tw, W, overlap)
            weight = torch.from_numpy(np.outer(wy, wx))[None]  # (1, th, tw)
            acc_frames[(slice(None), *region)] += frames * weight
            acc_deb[region] += deb * weight
            acc_w[region] += weight
    deblurred = crop_to((acc_deb / acc_w)[None], size)[0]  # (3, h, w)
    frames = crop_to(acc_frames / acc_w, size)  # (n, 3, h, w)
    return deblurred, frames


def _to_uint8(x: Any) -> np.ndarray:
    """`(..., 3, h, w)` float in [0, 1] -> `(..., h, w, 3)` uint8, rounded (the metrics' convention)."""
    return (x.clamp(0, 1) * 255).round().byte().movedim(-3, -1).contiguous().numpy()


def predict_photo(loaded: LoadedMethod, rgb: np.ndarray, tile: int | None = None,
                  name: str = "photo") -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 `(h, w, 3)` -> deblurred `(h, w, 3)` and frames `(n, h, w, 3)`, uint8, same size.

    Runs in one pass when it fits in memory, in tiles otherwise (or when `tile` forces it); when memory
    still runs out (CUDA, or a failed CPU allocation) the tile side is halved until it fits or falls
    below MIN_TILE.
    """
    h, w = rgb.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255)[None]  # (1, 3, h, w)
    side = plan_tile(loaded, h, w, tile, name=name)
    while True:
        try:
            deb, frames = _forward(loaded, x) if side is None else _tiled(loaded, x, side)
            return _to_uint8(deb), _to_uint8(frames)
        except RuntimeError as err:
            # CUDA raises OutOfMemoryError (a RuntimeError); the CPU allocator a plain RuntimeError.
            if not isinstance(err, torch.OutOfMemoryError) and "allocate" not in str(err):
                raise
            if loaded.device.type == "cuda":
                torch.cuda.empty_cache()
            side = (max(h, w) if side is None else side) // 2 // 16 * 16
            if side < MIN_TILE:
                raise BenchError(f"{name}: out of memory on {loaded.device} even in {MIN_TILE}-pixel tiles; "
                                 "free memory or downscale the photo") from None
