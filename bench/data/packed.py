"""The packed copy of a prepared set: each sequence's frames decoded once, into uint8 `.npy` files that
training reads through memory maps (docs/DESIGN.md "Packed frames").

Inside a set folder, per sequence:

    packed/<sequence>/frames.npy   (T, H, W, 3) uint8: frames 0 .. T-1 of the sequence, T = K * N
    packed/<sequence>/blur.npy     (K, H, W, 3) uint8: the blur of windows 0 .. K-1

Each manifest sample says where its pixels sit, `"packed": {"frames": rel, "first": k * N, "blur": rel,
"index": k}`, and both files are listed in the manifest's sha256 map like every other file. The PNGs stay:
they are what people look at and what whole-frame scoring reads.

Why: reading a 1280x720 PNG costs tens of milliseconds of CPU (42 ms through `read_rgb` on the shared
development machine), so a training batch of 10 windows of 9 frames decoded from PNGs costs seconds of
CPU against a GPU step of tens of milliseconds. Sliced from a memory map, a crop reads only the rows and
columns of its box.

Files are streamed one frame at a time (a 720p sequence of 1000 frames is 2.8 GB) through the suite's one
atomic writer, `bench.fileio.AtomicFile` (what `atomic_write_bytes` uses for whole buffers): a temporary
beside the target that replaces it only when complete; bytes equal to `np.save` of the whole array.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from bench.data.images import read_rgb
from bench.data.manifest import damaged_files
from bench.data.workers import pool as workers_pool
from bench.errors import BenchError
from bench.fileio import AtomicFile, sha256_file

PACKED_DIR = "packed"


def frames_rel(sequence: str) -> str:
    return f"{PACKED_DIR}/{sequence}/frames.npy"


def blur_rel(sequence: str) -> str:
    return f"{PACKED_DIR}/{sequence}/blur.npy"


def entry(sequence: str, window: int, n: int) -> dict:
    """Where window `window` of `sequence` sits in the packed files of a set of N-frame windows (the keys
    `bench.data.manifest.ENTRY_KEYS` checks)."""
    return {"frames": frames_rel(sequence), "first": window * n, "blur": blur_rel(sequence), "index": window}


def is_packed_path(rel: str) -> bool:
    return rel.startswith(PACKED_DIR + "/")


def complete(manifest: dict) -> bool:
    """True when every sample of the manifest points into the packed copy (sets prepared before it existed
    have no `packed` entries)."""
    return all(isinstance(s.get("packed"), dict) for s in manifest["samples"])


def _header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue()


class NpyStream:
    """One `.npy` of uint8 images `(h, w, 3)` written image by image through the suite's one atomic writer
    (`bench.fileio.AtomicFile`); `finish()` puts it in place.

    numpy pads the header of a 4-d uint8 array to 128 bytes whatever the length of the first axis, so the
    header is written for 0 images first and rewritten with the count at the end. An unfinished stream
    (an exception, a dropped object) removes its temporary; a killed process leaves one that the next
    `bench prepare` clears.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._shape: tuple[int, ...] | None = None
        self._file = AtomicFile(self.path)

    def append(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.path}: expected (h, w, 3) uint8 images, got {image.shape} {image.dtype}")
        if self._shape is None:
            self._shape = image.shape
            self._file.write(_header((0, *image.shape)))
        elif image.shape != self._shape:
            raise ValueError(f"{self.path}: image {image.shape} after images {self._shape}")
        self._file.write(memoryview(np.ascontiguousarray(image)).cast("B"))
        self.count += 1

    def finish(self) -> tuple[str, bool]:
        """Complete the file; returns (sha256, written). An identical file already in place is kept (its
        timestamp too), as the prepare job keeps the PNGs that are already right."""
        if self._shape is None:
            self.discard()
            raise ValueError(f"{self.path}: no images were written")
        self._file.overwrite(0, _header((self.count, *self._shape)))  # same length as the placeholder
        temporary = self._file.complete()
        try:
            digest = sha256_file(temporary)
            old = self.path
            same = (old.is_file() and not old.is_symlink() and old.stat().st_size == temporary.stat().st_size
                    and sha256_file(old) == digest)
        except OSError as err:
            raise self._file.failed(err) from None
        if same:
            self.discard()
            return digest, False
        self._file.commit()
        return digest, True

    def discard(self) -> None:
        self._file.discard()


def remove_links(folder: Path, rel: str) -> bool:
    """Remove any symlink on the way from the set folder to `rel` (the links themselves, never what they
    point at). A set holds real files only: a link could lead outside it, where a rerun must neither trust
    bytes (the manifest check refuses such links) nor write through it. True if one was removed."""
    here = Path(folder)
    for part in Path(rel).parts:
        here = here / part
        if here.is_symlink():
            here.unlink()
            return True  # everything below a removed folder link is gone from the set's view
    return False


def check_sequence_name(folder: Path, sequence: object) -> str:
    """A sequence name becomes a folder inside the set: one plain path component only."""
    if (not isinstance(sequence, str) or sequence in ("", ".", "..") or any(c in sequence for c in "/\\\0")
            or sequence.startswith("~")):
        raise BenchError(f"{folder}: sequence name {sequence!r} is not a plain folder name; rename it (or "
                         "rebuild the set with --fresh)")
    return sequence


class SequencePack:
    """The two packed files of one sequence in one set, fed as the prepare job streams frames and blurs."""

    def __init__(self, folder: Path, sequence: str) -> None:
        check_sequence_name(folder, sequence)
        self.rels = (frames_rel(sequence), blur_rel(sequence))
        for rel in self.rels:
            remove_links(Path(folder), rel)
        self.streams = tuple(NpyStream(Path(folder) / rel) for rel in self.rels)

    def frame(self, rgb: np.ndarray) -> None:
        self.streams[0].append(rgb)  # (h, w, 3)

    def blur(self, rgb: np.ndarray) -> None:
        self.streams[1].append(rgb)  # (h, w, 3)

    def finish(self) -> dict[str, tuple[str, bool]]:
        """`{rel: (sha256, written)}` of both files."""
        return {rel: stream.finish() for rel, stream in zip(self.rels, self.streams, strict=True)}


# ---------------------------------------------------------------------------- packing an existing set


def _sequences(manifest: dict) -> dict[str, list[dict]]:
    """Samples by sequence, in window order."""
    by: dict[str, list[dict]] = {}
    for sample in manifest["samples"]:
        by.setdefault(sample["sequence"], []).append(sample)
    return {seq: sorted(samples, key=lambda s: int(s.get("window", 0))) for seq, samples in by.items()}


def pack_sequence(job: tuple[str, str, list[list[str]], list[str]]) -> dict[str, tuple[str, bool]]:
    """Decode one sequence's PNGs (already verified against their digests) into its packed files."""
    cv2.setNumThreads(1)  # parallelism comes from the process pool
    folder, sequence, windows, blurs = job
    pack = SequencePack(Path(folder), sequence)
    for frames, blur in zip(windows, blurs, strict=True):
        for rel in frames:
            pack.frame(read_rgb(Path(folder) / rel))
        pack.blur(read_rgb(Path(folder) / blur))
    return pack.finish()


def pack_existing(folder: Path, manifest: dict, workers: int = 1,
                  only: set[str] | None = None) -> tuple[dict, int]:
    """Add the packed copy to a set whose PNGs are right (prepared before the copy existed, or whose packed
    files are damaged or missing): decodes the set's own PNGs, so nothing is rendered or read from the
    footage root again. `only` limits the work to those sequences (a repair); the others must already have
    their entries. Returns the manifest to write (with `packed` entries and digests) and the number of
    files written."""
    jobs, entries = [], {}
    n = int(manifest["frames"])
    for sequence, samples in _sequences(manifest).items():
        for i, s in enumerate(samples):
            if s.get("window", i) != i:
                raise BenchError(f"{folder}: sequence {sequence} has no window {i}; rebuild it with --fresh")
            entries[s["id"]] = entry(check_sequence_name(folder, sequence), i, n)
        if only is not None and sequence not in only:
            continue
        windows = [list(s["sharp"]) for s in samples]
        jobs.append((str(folder), sequence, windows, [s["blur"] for s in samples]))
    if workers > 1 and len(jobs) > 1:
        with workers_pool(min(workers, len(jobs))) as pool:  # workers die with this process
            results = pool.map(pack_sequence, jobs)
    else:
        results = [pack_sequence(job) for job in jobs]
    digests = dict(manifest["sha256"])
    written = 0
    for result in results:
        for rel, (digest, wrote) in result.items():
            digests[rel] = digest
            written += wrote
    out = dict(manifest)
    out["samples"] = [dict(s, packed=entries[s["id"]]) for s in manifest["samples"]]
    out["sha256"] = dict(sorted(digests.items()))
    return out, written



def plan(folder: Path, manifest: dict, full: bool = False) -> tuple[str, str, set[str] | None]:
    """What `bench prepare` must do for an existing set: `("ok" | "pack" | "rebuild", why, sequences)`.

    Hashes every listed file once (`full`), or only those whose stat changed since they last verified. A
    damaged PNG or flow means a rebuild from the source (which rewrites the packed files of that sequence
    too); a set whose only fault is its packed copy (missing from an older manifest, or a packed file
    missing or damaged) is packed again from its own verified PNGs, limited to the sequences that need it
    (`None` = all).
    """
    try:
        bad = damaged_files(folder, manifest, full)
    except BenchError as err:  # a link leading out of the set: rebuilding removes it
        return "rebuild", str(err), None
    other = [msg for rel, msg in bad if not is_packed_path(rel)]
    if other:
        return "rebuild", other[0], None
    if not complete(manifest):
        return "pack", ("prepared before the packed training copy existed; adding it from the set's own "
                        "PNGs (nothing is rendered or read from the footage again)"), None
    if bad:
        sequences = {Path(rel).parts[1] for rel, _ in bad}
        return "pack", f"repacking from the set's own PNGs: {bad[0][1]}", sequences
    return "ok", "", None
