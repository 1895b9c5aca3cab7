"""Torch datasets over a prepared set (SPEC 3 "Training batches", docs/ARCHITECTURE.md).

`TrainSet` applies the paper's augmentation (Sec. 3.1: random crops, horizontal flips, zoom in [0.2, 2]) with
one random transform shared by the blur, all N sharp frames and the flows; `TestSet` gives whole frames.
Images are float32 in [0, 1], `(3, h, w)`; flows are `(2, h, w)` pixels, backward from the centre frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.images import read_rgb
from bench.data.manifest import load_manifest
from bench.errors import BenchError


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)  # (3, h, w)


class _SetBase(Dataset):
    def __init__(self, folder: str | Path, split: str) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self.frames: int = self.manifest["frames"]
        self.center: int = self.manifest["center"]  # 1-based
        self.samples = [s for s in self.manifest["samples"] if s["split"] == split]

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, sample: dict) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray] | None]:
        blur = read_rgb(self.folder / sample["blur"])
        sharp = [read_rgb(self.folder / p) for p in sample["sharp"]]
        flow = None
        if sample["flow"]:
            flow = [np.load(self.folder / p, allow_pickle=False).astype(np.float32) for p in sample["flow"]]
        return blur, sharp, flow


class TrainSet(_SetBase):
    """Random crop + zoom + flip, identical for blur, sharp frames and flows; deterministic per (index, seed).

    `ds[(index, aug_seed)]` (or `ds[index]`, meaning aug_seed = index) returns
    `{"blur": (3,c,c), "sharp": (N,3,c,c)}` and `"flow": (N,2,c,c)` when the sample has flows.
    `fields` picks what is returned (and read from disk) instead, among "blur", "sharp", "center" (the
    central sharp frame, (3,c,c)) and "flow"; the crop of each field does not depend on the others.
    The zoom is drawn uniformly from `zoom`, raised where needed so a crop of `crop` pixels fits the frame.
    """

    FIELDS = ("blur", "sharp", "center", "flow")

    def __init__(self, folder: str | Path, crop: int, zoom: tuple[float, float] = (0.2, 2.0),
                 flip: bool = True, split: str = "train", fields: tuple[str, ...] | None = None) -> None:
        super().__init__(folder, split)
        self.crop, self.zoom, self.flip = int(crop), (float(zoom[0]), float(zoom[1])), bool(flip)
        self.fields = tuple(fields) if fields else ("blur", "sharp", "flow")
        unknown = [f for f in self.fields if f not in self.FIELDS]
        if unknown:
            raise ValueError(f"TrainSet fields {unknown} unknown; choose from {self.FIELDS}")
        h, w = self.manifest["resolution"]
        if min(h, w) * self.zoom[1] < self.crop:
            raise BenchError(f"{self.folder}: a {crop}-pixel crop does not fit its {h}x{w} frames even at "
                             f"zoom {self.zoom[1]}; lower train.crop or raise train.zoom_max")

    def transform(self, shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, bool]:
        """A random (x0, y0, box, flip): a `box`-pixel square of the source is resized to the crop."""
        h, w = shape
        c = self.crop
        lo = max(self.zoom[0], c / min(h, w))  # zoom below this would need a box larger than the frame
        z = rng.uniform(lo, max(lo, self.zoom[1]))
        box = int(np.clip(round(c / z), 1, min(h, w)))
        y0 = int(rng.integers(0, h - box + 1))
        x0 = int(rng.integers(0, w - box + 1))
        flip = self.flip and bool(rng.random() < 0.5)
        return x0, y0, box, flip

    def _apply(self, img: np.ndarray, x0: int, y0: int, box: int, flip: bool) -> np.ndarray:
        part = img[y0:y0 + box, x0:x0 + box]
        c = self.crop
        if box != c:
            # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
            part = cv2.resize(part, (c, c), interpolation=cv2.INTER_AREA if box > c else cv2.INTER_LINEAR)
        if flip:
            part = part[:, ::-1]
        return np.ascontiguousarray(part)

    def _read(self, sample: dict) -> dict[str, np.ndarray | list[np.ndarray]]:
        """The images of `fields` only (a deblurring stage reads 2 files, not N + 1)."""
        out: dict[str, np.ndarray | list[np.ndarray]] = {}
        if "blur" in self.fields:
            out["blur"] = read_rgb(self.folder / sample["blur"])
        if "sharp" in self.fields:
            out["sharp"] = [read_rgb(self.folder / p) for p in sample["sharp"]]
        if "center" in self.fields:
            out["center"] = (out["sharp"][self.center - 1] if "sharp" in out
                             else read_rgb(self.folder / sample["sharp"][self.center - 1]))
        if "flow" in self.fields and sample["flow"]:
            out["flow"] = [np.load(self.folder / p, allow_pickle=False).astype(np.float32)
                           for p in sample["flow"]]
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, aug_seed = key if isinstance(key, tuple) else (key, key)
        sample = self.samples[int(index)]
        images = self._read(sample)
        first = next(iter(images.values()))
        rng = np.random.default_rng([int(index), int(aug_seed) & 0xFFFFFFFF])
        x0, y0, box, flip = self.transform((first[0] if isinstance(first, list) else first).shape[:2], rng)
        out = {}
        for name in ("blur", "center"):
            if name in images:
                out[name] = _to_tensor(self._apply(images[name], x0, y0, box, flip))  # (3, c, c)
        if "sharp" in images:
            out["sharp"] = torch.stack([_to_tensor(self._apply(f, x0, y0, box, flip))
                                        for f in images["sharp"]])  # (N, 3, c, c)
        flow = images.get("flow")
        if flow is not None:
            scale = self.crop / box  # displacements grow with the zoom
            flows = []
            for f in flow:
                g = self._apply(f, x0, y0, box, flip) * scale  # (c, c, 2)
                if flip:
                    g[:, :, 0] = -g[:, :, 0]  # a mirrored scene moves the other way in x
                flows.append(torch.from_numpy(np.ascontiguousarray(g.transpose(2, 0, 1))))
            out["flow"] = torch.stack(flows)  # (N, 2, c, c)
        return out


class TestSet(_SetBase):
    """Whole frames of one split: `{"id", "blur": (3,H,W), "sharp": (N,3,H,W), "flow": (N,2,H,W) | None}`.

    Frames come unpadded; the caller pads to a multiple of 16 and crops back (methods.layers).
    """

    __test__ = False  # not a pytest test class, despite the name the contract gives it

    def __init__(self, folder: str | Path, split: str = "test", limit: int | None = None) -> None:
        super().__init__(folder, split)
        if limit:
            self.samples = self.samples[: int(limit)]

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        blur, sharp, flow = self._load(sample)
        return {
            "id": sample["id"],
            "blur": _to_tensor(blur),  # (3, H, W)
            "sharp": torch.stack([_to_tensor(f) for f in sharp]),  # (N, 3, H, W)
            "flow": None if flow is None else torch.stack(
                [torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))) for f in flow]),  # (N, 2, H, W)
        }
