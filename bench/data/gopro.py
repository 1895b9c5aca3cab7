"""Footage on disk: the GoPro dataset of Nah et al. 2017, or any folder of frame sequences (docs/DESIGN.md
"Data").

Accepted layouts under `--root`:
- `GOPRO_Large_all`: `train/<sequence>/*.png` and `test/<sequence>/*.png` (consecutive 240 fps frames);
- `GOPRO_Large`: the same with `<sequence>/sharp/*.png` (the sharp frames are used; blur/ is ignored);
- other footage: `<sequence>/*.{png,jpg,...}` with or without `train/` and `test/`, or a single folder of
  frames (one sequence).
The split of a sequence comes from `datasets/splits/gopro_{train,test}.txt` when it is named there, else
from its `train/` or `test/` parent, else from a seeded shuffle by sequence (a third of them for test).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.images import IMAGE_EXTENSIONS
from bench.errors import BenchError

SPLITS_DIR = Path(__file__).resolve().parents[2] / "datasets" / "splits"
OBTAIN = "see datasets/README.md for how to get GoPro"


@dataclass(frozen=True)
class FootageSequence:
    name: str  # unique sequence name, used as its folder name inside the prepared set
    split: str  # "train" | "test"
    folder: Path  # where its frames are
    frames: tuple[Path, ...]  # frame files in temporal order


def check_special(path: Path) -> None:
    """Refuse a FIFO, device or socket (or a link to one) where footage is read: reading one blocks or never
    ends, and skipping it would drop footage without a word. A dangling link is left to the callers."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BenchError(f"{path}: a special file (FIFO, device or socket, or a link to one), not footage; "
                         "remove it from --root or point --root elsewhere")


def entries(folder: Path) -> list[Path]:
    """The visible entries of `folder` (hidden ones skipped), refusing special files among them."""
    found = [p for p in folder.iterdir() if not p.name.startswith(".")]
    for path in found:
        check_special(path)
    return found


def _natural_key(path: Path) -> list:
    """Sort `frame2.png` before `frame10.png`."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, in temporal (natural) order; hidden files skipped."""
    files = [p for p in entries(folder) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_natural_key)


def split_lists(splits_dir: Path = SPLITS_DIR) -> dict[str, str]:
    """Sequence name -> split, from the shipped GoPro split files (empty when they are absent)."""
    table: dict[str, str] = {}
    for split in ("train", "test"):
        path = splits_dir / f"gopro_{split}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                name = line.split("#", 1)[0].strip()
                if name:
                    table[name] = split
    return table


def _sequence_dir(folder: Path) -> Path | None:
    """The folder holding a sequence's frames: itself, or its `sharp/` (GOPRO_Large)."""
    if frame_files(folder):
        return folder
    sharp = folder / "sharp"
    if sharp.is_dir() and frame_files(sharp):
        return sharp
    return None


def discover(root: Path | str, seed: int = 0, splits_dir: Path = SPLITS_DIR) -> list[FootageSequence]:
    """Find the sequences under `root` and assign each a split (see the module docstring). A folder that
    cannot be listed (permissions, a link loop) is a one-line error naming it."""
    try:
        return _discover(Path(root).expanduser(), seed, splits_dir)
    except OSError as err:
        where = err.filename or root
        raise BenchError(f"--root {root}: cannot read {where} ({(err.strerror or str(err)).lower()}); fix "
                         "its permissions or point --root at another folder") from None


def _discover(root: Path, seed: int, splits_dir: Path) -> list[FootageSequence]:
    if not root.exists():
        raise BenchError(f"--root {root}: no such folder; {OBTAIN}, or point --root at sequence folders")
    check_special(root)
    if not root.is_dir():
        raise BenchError(f"--root {root}: not a folder; point --root at a folder of sequence folders")
    found: list[tuple[str, str | None, Path]] = []  # (name, folder split, frames folder)
    split_dirs = [s for s in ("train", "test") if (root / s).is_dir()]
    if split_dirs:
        for split in split_dirs:
            for sub in sorted(entries(root / split)):
                if sub.is_dir() and (where := _sequence_dir(sub)):
                    found.append((sub.name, split, where))
    elif frame_files(root):
        found.append((root.name, None, root))  # a single folder of frames is one sequence
    else:
        for sub in sorted(entries(root)):
            if sub.is_dir() and (where := _sequence_dir(sub)):
                found.append((sub.name, None, where))
    if not found:
        raise BenchError(f"--root {root}: no sequence folders of frames found inside (empty root); {OBTAIN}")
    names = [name for name, _, _ in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BenchError(f"--root {root}: sequence {dupes[0]!r} is under train/ and test/; keep one")
    listed = split_lists(splits_dir)
    splits = {name: listed.get(name, folder_split) for name, folder_split, _ in found}
    splits.update(seeded_splits([n for n, s in splits.items() if s is None], seed))
    return [FootageSequence(name, splits[name], where, tuple(frame_files(where))) for name, _, where in found]


def seeded_splits(names: list[str], seed: int) -> dict[str, str]:
    """Name -> split for sequences no folder or list assigns: a seeded shuffle of the sorted names sends a
    third (at least one) to test. By sequence, never by frame, so no scene is in both train and test; a
    lone sequence goes to test (it can score a run through --eval-data, but trains nothing)."""
    unassigned = sorted(names)
    order = [unassigned[i] for i in np.random.default_rng(seed).permutation(len(unassigned))]
    n_test = max(1, round(len(order) / 3)) if len(order) >= 2 else 1
    return {name: "test" if i < n_test else "train" for i, name in enumerate(order)}


def check_lengths(sequences: list[FootageSequence], n_max: int) -> None:
    """Every sequence must hold at least one window of the largest N."""
    for seq in sequences:
        if len(seq.frames) < n_max:
            raise BenchError(f"{seq.folder}: {len(seq.frames)} frames, fewer than N={n_max}; remove that "
                             f"sequence or choose a smaller --frames")
