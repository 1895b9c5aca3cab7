"""The one blur builder used by every source (paper Sec. 3.1, docs/DESIGN.md "Data").

A motion-blurred image is the mean of N consecutive sharp frames, computed in float and rounded to uint8.
Windows do not overlap: a sequence of L frames gives floor(L / N) samples, window k holding frames
k*N .. k*N + N - 1, with the central frame at 1-based index (N + 1) / 2. Averaging in linear light
(`gamma=2.2`, as GoPro's `blur_gamma`) is an option; the paper averages the stored (gamma-encoded) values.
"""

from __future__ import annotations

import numpy as np

from bench.config import parse_int_list
from bench.errors import BenchError

MAX_FRAMES = 99_999  # the longest window: a sequence holds at most 100_000 frames (data.sequence_length)


def check_frames(n: int) -> int:
    """Validate a window length N: odd and at least 3 (so there is one central frame)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise BenchError(f"--frames {n!r}: expected an odd whole number >= 3, e.g. --frames 7,9")
    if n < 3:
        raise BenchError(f"--frames {n}: a blur needs at least 3 frames; use an odd N >= 3, e.g. 7,9")
    if n > MAX_FRAMES:
        raise BenchError(f"--frames {n}: at most {MAX_FRAMES} frames (data.sequence_length takes up to "
                         f"{MAX_FRAMES + 1}); use an odd N >= 3, e.g. 7,9")
    if n % 2 == 0:
        raise BenchError(f"--frames {n}: N must be odd so the blur has one central frame, e.g. --frames 7,9")
    return int(n)


def parse_frames(text: str) -> tuple[int, ...]:
    """Parse `--frames 7,9` into sorted unique odd window lengths."""
    return tuple(sorted({check_frames(v) for v in parse_int_list(str(text), "--frames")}))


def check_gamma(gamma: float | None) -> float | None:
    """None (average stored values, as the paper) or a positive gamma for linear-light averaging."""
    if gamma is None:
        return None
    if not np.isfinite(gamma) or gamma <= 0:
        raise BenchError(f"--gamma {gamma}: expected a positive number such as 2.2 (or leave it out)")
    return float(gamma)


def window_count(length: int, n: int) -> int:
    """Non-overlapping windows of N frames in a sequence of `length` frames."""
    return length // n


def center_offset(n: int) -> int:
    """0-based offset of the central frame inside a window (the paper's 1-based (N + 1) / 2)."""
    return (n - 1) // 2


class WindowBlur:
    """Streaming blur: feed frames one by one, get a blur back after every N (memory: one accumulator).

    Streaming keeps long 720p footage sequences out of memory, and is the only implementation, so every
    source shares it.
    """

    def __init__(self, n: int, gamma: float | None = None) -> None:
        self.n = check_frames(n)
        self.gamma = check_gamma(gamma)
        self._acc: np.ndarray | None = None  # (h, w, 3) float64 running sum
        self._count = 0

    def add(self, frame: np.ndarray) -> np.ndarray | None:
        """Add an RGB uint8 `(h, w, 3)` frame; returns the blur `(h, w, 3)` uint8 when a window closes."""
        x = frame.astype(np.float64)
        if self.gamma is not None:
            x = (x / 255.0) ** self.gamma  # to linear light
        if self._acc is None:
            self._acc = x
        else:
            self._acc += x
        self._count += 1
        if self._count < self.n:
            return None
        mean = self._acc / self.n  # Sec. 3.1: the average of N consecutive sharp frames
        self._acc, self._count = None, 0
        if self.gamma is not None:
            mean = 255.0 * mean ** (1.0 / self.gamma)
        # With an odd N the mean of integers never ends in exactly .5, so rint is an unbiased rounding.
        return np.clip(np.rint(mean), 0, 255).astype(np.uint8)


def blur_frames(frames: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """Blur of a whole window: `(N, h, w, 3)` uint8 -> `(h, w, 3)` uint8 (the streaming code path)."""
    acc = WindowBlur(len(frames), gamma)
    out = None
    for frame in frames:
        out = acc.add(frame)
    assert out is not None
    return out
