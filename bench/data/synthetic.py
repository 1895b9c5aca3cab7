"""The embedded synthetic source: rendered high-frame-rate scenes with their true optical flow
(docs/DESIGN.md "Data").

A scene is a background (a colour photograph shipped inside scikit-image, or a dead-leaves texture) seen by a
camera whose pose is a homography per frame (translation, rotation, zoom and a little perspective) on a
smooth random trajectory, with 1..`max_layers` foreground layers (dead-leaves shapes or masked photo crops)
moving on their own smooth trajectories on top, so the blur is non-uniform and layers occlude each other.

Every surface (background or layer k) has a map M_s(t) from view pixels to the surface's own coordinates,
so the renderer knows the true flow between any two frames: a pixel p of frame n shows the point
M_s(n) p of its visible surface s, which frame c shows at q = M_s(c)^-1 M_s(n) p. The stored flow is the
backward flow of docs/DESIGN.md "Conventions", frame_n(p) = center(p + flow_n(p)), so flow_n(p) = q - p (exact
except where the point is hidden in the centre frame).

Rendering is deterministic given (seed, split, index); train and test sequences use disjoint photographs and
disjoint seed streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from bench.config import DataConfig
from bench.data.images import read_image, write_png

# Colour photographs inside scikit-image's wheel, split so that no test scene shares a photo with training.
# (The motorcycle stereo pair stays on one side: its two views show the same scene.)
PHOTOS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
              "motorcycle_right.png", "retina.jpg"),
    "test": ("chelsea.png", "coffee.png", "rocket.jpg"),
}
_SPLIT_CODE = {"train": 0, "test": 1}  # part of the seed stream, so train and test seeds never coincide


def render_identity(cfg) -> dict:
    """The DataConfig fields that change the rendered pixels (the manifest records them)."""
    keys = ("height", "width", "train_sequences", "test_sequences", "sequence_length", "motion_px",
            "max_layers")
    return {k: getattr(cfg, k) for k in keys}


@lru_cache(maxsize=16)
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as RGB uint8 `(h, w, 3)`, read from the installed package."""
    # late: scikit-image is slow to import and only the synthetic source's photos need it
    import skimage

    return read_image(Path(skimage.__file__).parent / "data" / name)[0]


def dead_leaves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A dead-leaves texture `(h, w, 3)` uint8: occluding disks and rectangles with power-law sizes.

    Dead leaves have the scale-invariant statistics of natural images, so they blur like photographs do.
    """
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    rmin, rmax = 2.0, max(4.0, 0.35 * min(h, w))
    count = int(np.clip(h * w / 60, 150, 6000))
    # Inverse-CDF sampling of p(r) ~ r^-3 on [rmin, rmax].
    u = rng.random(count)
    radii = (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5
    centres = rng.random((count, 2)) * (w, h)
    colours = rng.integers(0, 256, (count, 3))
    kinds = rng.random(count)
    angles = rng.uniform(0, 180, count)
    aspect = rng.uniform(0.3, 1.0, count)
    for i in range(count):
        cx, cy = int(centres[i, 0]), int(centres[i, 1])
        r = float(radii[i])
        colour = tuple(int(c) for c in colours[i])
        if kinds[i] < 0.65:
            cv2.circle(img, (cx, cy), max(1, int(r)), colour, -1, lineType=cv2.LINE_AA)
        else:
            box = cv2.boxPoints(((cx, cy), (2 * r, 2 * r * aspect[i]), angles[i])).astype(np.int32)
            cv2.fillConvexPoly(img, box, colour, lineType=cv2.LINE_AA)
    grain = rng.normal(0, 4, (h, w, 1))  # a little luminance grain so flat leaves still carry texture
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def _photo_crop(rng: np.random.Generator, names: tuple[str, ...], h: int, w: int) -> np.ndarray:
    """A random crop of a random photograph, resized to `(h, w, 3)`."""
    src = photo(names[int(rng.integers(len(names)))])
    sh, sw = src.shape[:2]
    aspect = w / h
    ch = min(sh, sw / aspect) * rng.uniform(0.45, 1.0)
    cw = ch * aspect
    y0 = rng.uniform(0, sh - ch)
    x0 = rng.uniform(0, sw - cw)
    crop = src[int(y0):int(y0 + ch), int(x0):int(x0 + cw)]
    interp = cv2.INTER_AREA if crop.shape[0] > h else cv2.INTER_CUBIC
    out = cv2.resize(crop, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _smooth(rng: np.random.Generator, t: np.ndarray, rate: float, wobble: float) -> np.ndarray:
    """A smooth scalar signal: a drift `rate * t` plus a slow sinusoid of amplitude `wobble`."""
    period = rng.uniform(40, 160)
    phase = rng.uniform(0, 2 * math.pi)
    return rate * t + wobble * (np.sin(2 * math.pi * t / period + phase) - math.sin(phase))


def _path(rng: np.random.Generator, length: int, speed: float) -> np.ndarray:
    """A smooth 2-D path `(length, 2)` from the origin: speed and heading vary slowly, so motion is smooth."""
    t = np.arange(length, dtype=np.float64)
    heading = rng.uniform(0, 2 * math.pi) + _smooth(rng, t, 0.0, rng.uniform(0, math.pi / 2))
    pace = speed * (1 + _smooth(rng, t, 0.0, 0.3))
    steps = pace[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)
    return np.cumsum(steps, 0) - steps[0]


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def _rot_scale(angle: float, scale: float) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to points `(k, 2)`."""
    q = pts @ m[:, :2].T + m[:, 2]
    return q[:, :2] / q[:, 2:3]


@dataclass
class _Layer:
    rgba: np.ndarray  # (sh, sw, 4) float32, colour premultiplied by alpha
    maps: list[np.ndarray]  # per frame: 3x3 map from view pixels to sprite pixels


class SyntheticSequence:
    """One rendered scene of `cfg.sequence_length` frames at `cfg.height` x `cfg.width`."""

    def __init__(self, cfg, split: str, index: int, seed: int) -> None:
        self.split, self.index = split, index
        self.name = f"{split}_{index:03d}"
        self.h, self.w, self.length = int(cfg.height), int(cfg.width), int(cfg.sequence_length)
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_SPLIT_CODE[split], index)))
        names = PHOTOS[split]
        h, w, length = self.h, self.w, self.length
        t = np.arange(length, dtype=np.float64)
        mid = (length - 1) / 2
        step = float(cfg.motion_px) / 8.0  # motion_px is a path length over the 8 intervals of 9 frames

        # Camera: view pixel -> canvas pixel, H(t) = T(centre + d_t) [A_t 0; g_t^T 1] T(-view centre).
        d = _path(rng, length, step * rng.uniform(0.5, 1.3))
        d -= d.mean(0)
        angle = _smooth(rng, t - mid, rng.uniform(-0.004, 0.004), rng.uniform(0, 0.02))
        zoom = np.exp(_smooth(rng, t - mid, rng.uniform(-0.003, 0.003), rng.uniform(0, 0.02)))
        persp = np.stack([_smooth(rng, t, 0.0, 3e-4) for _ in range(2)], 1) + rng.uniform(-2e-4, 2e-4, 2)
        vc = ((w - 1) / 2, (h - 1) / 2)
        core = []
        for i in range(length):
            m = _rot_scale(angle[i], zoom[i])
            m[2, :2] = persp[i]
            core.append(_translate(d[i, 0], d[i, 1]) @ m @ _translate(-vc[0], -vc[1]))
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
        reach = np.abs(np.concatenate([_apply(m, corners) for m in core])).max(0) + 4  # (x, y) half-extent
        ch, cw = 2 * int(math.ceil(reach[1])) + 1, 2 * int(math.ceil(reach[0])) + 1
        centre = _translate((cw - 1) / 2, (ch - 1) / 2)
        self.camera = [centre @ m for m in core]
        if rng.random() < 0.6:
            self.background = _photo_crop(rng, names, ch, cw)
        else:
            self.background = dead_leaves(rng, ch, cw)

        # Foreground layers: sprite -> canvas is B_k(t) = T(c_k + path_k(t)) R S T(-sprite centre), so the
        # view -> sprite map is B_k(t)^-1 H(t): layers move with the camera and on their own.
        self.layers: list[_Layer] = []
        for _ in range(int(rng.integers(1, int(cfg.max_layers) + 1))):
            rgba = self._sprite(rng, names)
            sh, sw = rgba.shape[:2]
            path = _path(rng, length, step * rng.uniform(0.3, 1.6))
            spin = _smooth(rng, t - mid, rng.uniform(-0.02, 0.02), rng.uniform(0, 0.1))
            spin = spin + rng.uniform(-0.5, 0.5)
            grow = np.exp(_smooth(rng, t - mid, rng.uniform(-0.006, 0.006), rng.uniform(0, 0.05)))
            anchor = rng.uniform(0.15, 0.85, 2) * (w, h)  # where the layer sits at mid-sequence
            im = int(round(mid))
            c = _apply(self.camera[im], anchor[None])[0] - path[im]
            maps = []
            for i in range(length):
                b = _translate(*(c + path[i])) @ _rot_scale(spin[i], grow[i]) @ _translate(-(sw - 1) / 2,
                                                                                          -(sh - 1) / 2)
                maps.append(np.linalg.inv(b) @ self.camera[i])
            self.layers.append(_Layer(rgba, maps))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        self._grid = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)], 0)  # (3, h*w) homogeneous pixels

    def _sprite(self, rng: np.random.Generator, names: tuple[str, ...]) -> np.ndarray:
        """A foreground sprite: a star polygon or ellipse mask over a photo crop or dead leaves."""
        side = min(self.h, self.w)
        sh = int(side * rng.uniform(0.25, 0.6)) + 4
        sw = int(side * rng.uniform(0.25, 0.6)) + 4
        colour = _photo_crop(rng, names, sh, sw) if rng.random() < 0.5 else dead_leaves(rng, sh, sw)
        big = 4  # draw the mask at 4x and area-downsample it, which anti-aliases the edge
        mask = np.zeros((sh * big, sw * big), np.uint8)
        cx, cy, rx, ry = sw * big / 2, sh * big / 2, (sw - 4) * big / 2, (sh - 4) * big / 2
        if rng.random() < 0.5:
            k = int(rng.integers(5, 11))
            theta = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = rng.uniform(0.5, 1.0, k)
            pts = np.stack([cx + rx * rad * np.cos(theta), cy + ry * rad * np.sin(theta)], 1)
            cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
        else:
            cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, 255, -1)
        alpha = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        rgba = np.empty((sh, sw, 4), np.float32)
        rgba[:, :, :3] = colour.astype(np.float32) * alpha[:, :, None]
        rgba[:, :, 3] = alpha
        return rgba

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t as RGB uint8 `(h, w, 3)` and the visible surface per pixel `(h, w)` (0 = background)."""
        size = (self.w, self.h)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        out = cv2.warpPerspective(self.background, self.camera[t], size, flags=flags,
                                  borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
        top = np.zeros((self.h, self.w), np.int8)
        for k, layer in enumerate(self.layers, start=1):
            warped = cv2.warpPerspective(layer.rgba, layer.maps[t], size, flags=flags,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # (h, w, 4)
            a = warped[:, :, 3:4]
            out = out * (1 - a) + warped[:, :, :3]  # "over" with premultiplied colour
            top[a[:, :, 0] > 0.5] = k
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), top

    def surface_map(self, s: int, t: int) -> np.ndarray:
        return self.camera[t] if s == 0 else self.layers[s - 1].maps[t]

    def flow(self, n: int, c: int, top: np.ndarray) -> np.ndarray:
        """Backward flow `(h, w, 2)` float32, centre frame c to frame n: frame_n(p) = frame_c(p + flow(p)).

        `top` is the visible-surface map of frame n from `render(n)`.
        """
        flow = np.zeros((self.h * self.w, 2), np.float64)
        vis = top.ravel()
        for s in range(len(self.layers) + 1):
            sel = vis == s
            if not sel.any():
                continue
            g = np.linalg.inv(self.surface_map(s, c)) @ self.surface_map(s, n)  # frame-n -> frame-c pixel
            p = self._grid[:, sel]
            q = g @ p
            flow[sel] = (q[:2] / q[2:3] - p[:2]).T
        return flow.reshape(self.h, self.w, 2).astype(np.float32)


def write_footage_root(root: str | Path, height: int = 720, width: int = 1280, train: int = 4, test: int = 1,
                       length: int = 40, seed: int = 0, motion_px: float | None = None,
                       max_layers: int = 4) -> list[Path]:
    """Render a footage root in the GoPro layout, `<split>/<sequence>/000001.png ...`; returns the
    sequence folders.

    It stands in for GOPRO_Large_all wherever real footage is not at hand (loader throughput at 720p, the
    GPU checks): `bench prepare --source gopro --root ROOT` reads it like any footage. `motion_px` (camera
    path over a 9-frame window) defaults to the quick profile's 8 px per 160 px of width, so the blur
    covers the same share of the frame at any size. Sequence names (`synth_<split>_<i>`) are in neither
    GoPro split list, so the `train/` and `test/` folders decide the split. Frames already on disk are
    rewritten (atomically): the output depends only on the arguments.
    """
    if min(height, width) < 16 or length < 3 or train < 0 or test < 0 or train + test < 1:
        raise ValueError("write_footage_root wants frames of at least 16x16, length >= 3 and a sequence")
    motion = 8.0 * width / 160 if motion_px is None else float(motion_px)
    cfg = replace(DataConfig(), height=int(height), width=int(width), sequence_length=int(length),
                  motion_px=motion, max_layers=int(max_layers))
    folders = []
    for split, count in (("train", train), ("test", test)):
        for i in range(int(count)):
            seq = SyntheticSequence(cfg, split, i, seed)
            folder = Path(root) / split / f"synth_{split}_{i:03d}"
            for t in range(seq.length):
                write_png(folder / f"{t + 1:06d}.png", seq.render(t)[0])  # GoPro numbers frames from 1
            folders.append(folder)
    return folders
