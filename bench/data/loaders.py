"""Torch datasets over a prepared set (docs/DESIGN.md "Loaders" and "Packed frames").

`TrainSet` applies the paper's augmentation (Sec. 3.1: random crops, horizontal flips, zoom in [0.2, 2]) with
one random transform shared by every field of a sample. Its pixels come from the set's packed copy
(`bench.data.packed`) through memory maps: a crop reads the rows and columns of its box and decodes
nothing. It returns uint8 tensors, so worker processes ship a quarter of the bytes of float32 and the
device does the conversion (`to_float`). `TestSet` gives whole frames decoded from the PNGs, float32 in
[0, 1]. Images are `(3, h, w)`; flows are `(2, h, w)` float32 pixels, backward from the centre frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.images import read_rgb
from bench.data.manifest import load_manifest, repair_command, safe_path
from bench.errors import BenchError

FIELDS = ("blur", "sharp", "center", "flow")  # what a TrainSet item can hold, see TrainSet
PREFETCH = 4  # batches each worker prepares ahead: uint8 batches are small, and the steps of a GPU vary


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)  # (3, h, w)


def to_float(batch: dict) -> dict:
    """A batch of `TrainSet` items with its uint8 images turned into float32 in [0, 1], where they are (call
    it after moving the batch to the device); other values (flows, float tensors) unchanged.

    `x.float().div_(255)` is the arithmetic the loader used when it returned float32, so on the same device
    the training inputs are bit-identical to those of float32 loading.
    """
    return {k: v.float().div_(255.0) if torch.is_tensor(v) and v.dtype == torch.uint8 else v
            for k, v in batch.items()}


def make_loader(dataset: Dataset, workers: int, device: torch.device | str) -> torch.utils.data.DataLoader:
    """The training loop's DataLoader over a dataset whose items are whole batches (`batch_size=None`).

    Workers stay alive across the loader's life, prefetch `PREFETCH` batches each, and pin memory when the
    batches go to a CUDA device, so `.to(device, non_blocking=True)` overlaps the copy with the step.
    With workers, OpenCV is set to one thread here, in the parent, and the forked workers inherit it: one
    worker per core is the parallelism, and more OpenCV threads per worker oversubscribe the cores. It
    cannot be set in a worker: `cv2.setNumThreads` in a process forked after the parent's OpenCV threads
    went idle waits forever on their condition variable (measured with OpenCV 5.0).
    """
    if workers > 0:
        cv2.setNumThreads(1)
    pin = torch.device(device).type == "cuda"
    extra = {"persistent_workers": True, "prefetch_factor": PREFETCH} if workers > 0 else {}
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=int(workers),
                                       pin_memory=pin, **extra)


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
    """Random crop + zoom + flip, identical for every field of a sample; deterministic per (index, seed).

    `ds[(index, aug_seed)]` (or `ds[index]`, meaning aug_seed = index) returns the requested `fields`:
    `"blur"` (3,c,c) and `"sharp"` (N,3,c,c) and `"center"` (3,c,c), uint8; `"flow"` (N,2,c,c) float32
    pixels (synthetic test samples only). `fields=None` means blur and sharp, and flow where the split has
    flows. The zoom is drawn uniformly from `zoom`, raised where needed so a crop of `crop` pixels fits the
    frame. The draw does not depend on `fields`: a sample's DM crop and its video crop are the same box.
    """

    def __init__(self, folder: str | Path, crop: int, zoom: tuple[float, float] = (0.2, 2.0),
                 flip: bool = True, split: str = "train", fields: Sequence[str] | None = None) -> None:
        super().__init__(folder, split)
        self.crop, self.zoom, self.flip = int(crop), (float(zoom[0]), float(zoom[1])), bool(flip)
        h, w = self.manifest["resolution"]
        if min(h, w) * self.zoom[1] < self.crop:
            raise BenchError(f"{self.folder}: a {crop}-pixel crop does not fit its {h}x{w} frames even at "
                             f"zoom {self.zoom[1]}; lower train.crop or raise train.zoom_max")
        if fields is None:
            with_flow = bool(self.samples) and all(s["flow"] for s in self.samples)
            fields = ("blur", "sharp", "flow") if with_flow else ("blur", "sharp")
        self.fields = tuple(fields)
        unknown = [f for f in self.fields if f not in FIELDS]
        if unknown or not self.fields:  # a method declaring a field the loader lacks: a bug, not bad input
            raise ValueError(f"TrainSet fields {unknown or self.fields}: choose from {', '.join(FIELDS)}")
        fix = repair_command(self.folder, self.manifest)
        if any(not isinstance(s.get("packed"), dict) for s in self.samples):
            raise BenchError(f"{self.folder}: prepared before the packed training copy existed; run `{fix}` "
                             "to add it (it decodes the set's PNGs once; nothing is rendered again)")
        if "flow" in self.fields and any(not s["flow"] for s in self.samples):
            raise BenchError(f"{self.folder}: the {split} split has no flows (only synthetic test samples "
                             "do); leave 'flow' out of fields")
        self._maps: dict[str, np.ndarray] = {}
        self._pid = -1

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = {}  # memory maps are reopened by each process that unpickles the set
        return state

    def _array(self, rel: str, kind: str) -> np.ndarray:
        """The memory map of a packed file (`kind` "images") or a flow (`kind` "flow"), opened once per
        process and checked against the manifest's resolution."""
        if self._pid != os.getpid():  # maps opened before a fork are not shared with the new process
            self._pid = os.getpid()
            self._maps = {}
        arr = self._maps.get(rel)
        if arr is None:
            path = safe_path(self.folder, rel, self.folder / "manifest.json")
            h, w = self.manifest["resolution"]
            want = (h, w, 3) if kind == "images" else (h, w, 2)
            fix = f"run `{repair_command(self.folder, self.manifest)}` to repair the set"
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise BenchError(f"{path}: unreadable ({type(err).__name__}); {fix}") from None
            ndim = 4 if kind == "images" else 3
            if arr.ndim != ndim or tuple(arr.shape[-3:]) != want:
                raise BenchError(f"{path}: shape {arr.shape}, not (..., {h}, {w}, {want[2]}); {fix}")
            self._maps[rel] = arr
        return arr

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

    def _crop(self, images: np.ndarray, x0: int, y0: int, box: int, flip: bool, out: np.ndarray) -> None:
        """Images `(k, H, W, 3)` uint8 (a memory map) -> their transformed crops, written into `out`
        `(k, 3, c, c)` uint8."""
        c = self.crop
        # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
        interp = cv2.INTER_AREA if box > c else cv2.INTER_LINEAR
        for i in range(len(images)):
            part = images[i, y0:y0 + box, x0:x0 + box]  # (box, box, 3): only these rows are read
            if box != c:
                # OpenCV resizes at most 4 channels per call, so the N frames go one by one.
                part = cv2.resize(part, (c, c), interpolation=interp)  # (c, c, 3)
            if flip:
                part = part[:, ::-1]
            out[i] = part.transpose(2, 0, 1)  # one strided copy does the flip and the layout

    def _flows(self, sample: dict, x0: int, y0: int, box: int, flip: bool, out: np.ndarray) -> None:
        """The sample's flows, transformed, written into `out` `(N, 2, c, c)` float32."""
        c = self.crop
        for i, rel in enumerate(sample["flow"]):
            part = self._array(rel, "flow")[y0:y0 + box, x0:x0 + box].astype(np.float32)  # (box, box, 2)
            if box != c:
                part = cv2.resize(part, (c, c), interpolation=cv2.INTER_AREA if box > c else cv2.INTER_LINEAR)
            g = part * (c / box)  # displacements grow with the zoom
            if flip:
                g = g[:, ::-1]
                g[:, :, 0] = -g[:, :, 0]  # a mirrored scene moves the other way in x
            out[i] = g.transpose(2, 0, 1)

    def shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Shape and dtype of each requested field of one item."""
        c, n = self.crop, self.frames
        table = {"blur": ((3, c, c), torch.uint8), "sharp": ((n, 3, c, c), torch.uint8),
                 "center": ((3, c, c), torch.uint8), "flow": ((n, 2, c, c), torch.float32)}
        return {f: table[f] for f in self.fields}

    def _fill(self, key: int | tuple[int, int], out: dict[str, np.ndarray]) -> None:
        """Write item `key` into the arrays of `out` (one per field, the shapes of `shapes()`)."""
        index, aug_seed = key if isinstance(key, tuple) else (key, key)
        sample = self.samples[int(index)]
        rng = np.random.default_rng([int(index), int(aug_seed) & 0xFFFFFFFF])
        x0, y0, box, flip = self.transform(tuple(self.manifest["resolution"]), rng)
        where = sample["packed"]
        n, first, k = self.frames, where["first"], where["index"]
        frames = self._array(where["frames"], "images")  # (T, H, W, 3)
        blurs = self._array(where["blur"], "images")  # (K, H, W, 3)
        if first + n > len(frames) or k >= len(blurs):
            raise BenchError(f"{self.folder / where['frames']}: sample {sample['id']} lies outside the "
                             f"packed file; run `{repair_command(self.folder, self.manifest)}` to repair it")
        if "blur" in out:
            self._crop(blurs[k:k + 1], x0, y0, box, flip, out["blur"][None])
        if "sharp" in out:
            self._crop(frames[first:first + n], x0, y0, box, flip, out["sharp"])
        if "center" in out:  # from the sharp crops when they are there: one resize per frame
            if "sharp" in out:
                out["center"][...] = out["sharp"][self.center - 1]
            else:
                mid = first + self.center - 1
                self._crop(frames[mid:mid + 1], x0, y0, box, flip, out["center"][None])
        if "flow" in out:
            self._flows(sample, x0, y0, box, flip, out["flow"])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        out = {f: torch.empty(shape, dtype=dtype) for f, (shape, dtype) in self.shapes().items()}
        self._fill(key, {f: t.numpy() for f, t in out.items()})
        return out

    def collate(self, keys: list[tuple[int, int]], fields: Sequence[str] | None = None
                ) -> dict[str, torch.Tensor]:
        """The items of `keys` stacked into one batch, `(b, ...)` per field (`fields`, a subset of the set's,
        else all of them), written in place.

        In a DataLoader worker the batch is allocated in shared memory before it is filled: a batch built
        elsewhere would be copied there again when it is sent to the main process, and a separate stack of
        the items would copy it once more (together about a fifth of the time of a 720p video batch).
        """
        shared = torch.utils.data.get_worker_info() is not None
        shapes = self.shapes()
        missing = [f for f in fields or () if f not in shapes]
        if missing:
            raise ValueError(f"collate: fields {missing} are not among this TrainSet's {self.fields}")
        out = {}
        for f in fields or self.fields:
            shape, dtype = shapes[f]
            t = torch.empty((len(keys), *shape), dtype=dtype)
            out[f] = t.share_memory_() if shared else t
        views = {f: t.numpy() for f, t in out.items()}
        for j, key in enumerate(keys):
            self._fill(key, {f: v[j] for f, v in views.items()})
        return out


def collate(dataset: Dataset, keys: list[tuple[int, int]], fields: Sequence[str]) -> dict[str, torch.Tensor]:
    """One training batch of `fields`: `TrainSet.collate` for a TrainSet, else those fields of the items
    stacked (the training loop's test doubles)."""
    if isinstance(dataset, TrainSet):
        return dataset.collate(keys, fields)
    items = [dataset[key] for key in keys]
    return {k: torch.stack([it[k] for it in items]) for k in fields}


class TestSet(_SetBase):
    """Whole frames of one split: `{"id", "blur": (3,H,W), "sharp": (N,3,H,W), "flow": (N,2,H,W) | None}`.

    Frames come unpadded, float32 in [0, 1]; the caller pads to a multiple of 16 and crops back
    (methods.layers).
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
