"""The `bench prepare` job: sources -> blur sets on disk, idempotent, resumable and parallel
(docs/DESIGN.md "Data").

Layout of a set folder (one per N; the manifest keys are in docs/DESIGN.md "Data"):

    sequences/<sequence>/<t:06d>.png      sharp frames, stored once per sequence (samples reference them)
    blur/<sequence>/w<k:03d>.png          the blur of window k (frames k*N .. k*N+N-1)
    flow/<sequence>/w<k:03d>_<j>.npy      synthetic test samples only: backward flow, centre to frame j
    packed/<sequence>/{frames,blur}.npy   the same frames and blurs decoded, for training (bench.data.packed)
    manifest.json                         written last, so its presence means the set is complete

Work is split by sequence over processes; each sequence's output depends only on its own inputs and the
manifest lists sequences in a fixed order, so the bytes do not depend on the number of workers. Every file is
written atomically, and a rerun skips files whose bytes are already right: after a SIGKILL the next run
finishes the job, and on a complete set it only verifies the digests.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench import __version__
from bench.config import Profile, get_profile
from bench.data import gopro, packed, video
from bench.data.blur import WindowBlur, center_offset, check_frames, check_gamma, window_count
from bench.data.images import decode_image, encode_png, is_plain_png
from bench.data.manifest import (
    DATA_VERSION,
    FOOTAGE_SOURCES,
    MANIFEST,
    STAT_RECORD,
    VERIFY_MODES,
    default_data_dir,
    load_manifest,
    record_stats,
    set_name,
    split_counts,
)
from bench.data.synthetic import SyntheticSequence, render_identity
from bench.data.workers import pool as workers_pool
from bench.errors import BenchError
from bench.fileio import FolderLock, atomic_write_bytes, atomic_write_json, clean_temporaries

SOURCES = ("synthetic", "gopro", "video")
DATA_SEED = 0  # prepared data is fixed across run seeds: seeds vary initialisation and batch order only
Log = Callable[[str], None]


@dataclass(frozen=True)
class _Job:
    """One sequence to build into one or more sets (picklable, for the worker processes)."""

    source: str
    name: str  # sequence name (folder name inside each set)
    split: str  # "train" | "test"
    sets: tuple[tuple[int, str], ...]  # (N, set folder) pairs to write
    gamma: float | None
    data_cfg: object = None  # synthetic: the profile's DataConfig
    index: int = 0  # synthetic: sequence index within its split
    seed: int = 0  # synthetic: generator seed
    frames: tuple[str, ...] = ()  # footage: frame files in order
    video: video.Clip | None = None  # video: the file to decode and which of its frames to keep


def _frames(job: _Job) -> Iterator[tuple[int, np.ndarray, bytes, object]]:
    """Yield (t, rgb (h, w, 3) uint8, PNG bytes to store, per-frame extra) for the frames the sets use."""
    used = max(window_count(_length(job), n) * n for n, _ in job.sets)
    if job.video is not None:
        for t, rgb in enumerate(video.read(job.video, used)):
            yield t, rgb, encode_png(rgb), None
        return
    if job.source == "synthetic":
        seq = SyntheticSequence(job.data_cfg, job.split, job.index, job.seed)
        for t in range(used):
            rgb, top = seq.render(t)
            yield t, rgb, encode_png(rgb), (seq, top)
        return
    shape = None
    for t, name in enumerate(job.frames[:used]):
        try:
            data = Path(name).read_bytes()
        except OSError as err:
            raise BenchError(f"{name}: cannot read ({err.strerror}); check the file and its access") from None
        rgb, note = decode_image(data, name)
        if shape is None:
            shape = rgb.shape
        elif rgb.shape != shape:
            raise BenchError(f"{name}: {rgb.shape[1]}x{rgb.shape[0]} but earlier frames of {job.name} are "
                             f"{shape[1]}x{shape[0]}; mixed resolutions in one sequence are refused")
        # Plain 8-bit RGB PNGs are copied byte for byte (no re-encode: faster and lossless by construction).
        yield t, rgb, data if is_plain_png(data, rgb, note) else encode_png(rgb), note


def _length(job: _Job) -> int:
    if job.video is not None:
        return job.video.kept
    return int(job.data_cfg.sequence_length) if job.source == "synthetic" else len(job.frames)


class _Writer:
    """Writes files into one set, skipping those whose bytes are already in place (resume)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.sha256: dict[str, str] = {}
        self.written = 0
        self.kept = 0

    def put(self, rel: str, data: bytes) -> str:
        path = self.folder / rel
        linked = self._unlink_links(rel)
        try:
            same = not linked and path.stat().st_size == len(data) and path.read_bytes() == data
        except OSError:
            same = False
        if same:
            self.kept += 1
        else:
            write_or_explain(path, data)
            self.written += 1
        self.sha256[rel] = hashlib.sha256(data).hexdigest()
        return rel

    def _unlink_links(self, rel: str) -> bool:
        return packed.remove_links(self.folder, rel)

    def finish_pack(self, pack: packed.SequencePack) -> None:
        for rel, (digest, wrote) in pack.finish().items():
            self.sha256[rel] = digest
            self.written += wrote
            self.kept += not wrote


def write_or_explain(path: Path, data: bytes | dict) -> None:
    """An atomic write (bytes, or a dict as JSON), with a failed write (a full disk, a read-only folder)
    turned into a one-line BenchError: the atomic write has already left the previous file as it was and
    removed its temporary, so the message can say so."""
    try:
        if isinstance(data, dict):
            atomic_write_json(path, data)
        else:
            atomic_write_bytes(path, data)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise BenchError(f"{path}: cannot write ({reason}); the previous file is left intact; free disk "
                         "space or fix access, then rerun the same command to continue") from None


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def build_sequence(job: _Job) -> dict:
    """Build one sequence into every requested set; returns its samples, digests and notes."""
    cv2.setNumThreads(1)  # parallelism comes from the process pool; threads would only oversubscribe
    with_flow = job.source == "synthetic" and job.split == "test"  # training never needs flows
    per_set = []
    for n, folder in job.sets:
        per_set.append({"n": n, "writer": _Writer(folder), "blur": WindowBlur(n, job.gamma),
                        "limit": window_count(_length(job), n) * n, "samples": [], "sharp": [],
                        "pack": packed.SequencePack(Path(folder), job.name)})
    notes: Counter[str] = Counter()
    resolution = None
    for t, rgb, png, extra in _frames(job):
        resolution = [int(rgb.shape[0]), int(rgb.shape[1])]
        if isinstance(extra, str):
            notes[extra] += 1
        for s in per_set:
            n, w = s["n"], s["writer"]
            if t >= s["limit"]:
                continue
            s["sharp"].append(w.put(f"sequences/{job.name}/{t:06d}.png", png))
            s["pack"].frame(rgb)
            k = t // n
            if with_flow:
                seq, top = extra
                flow = seq.flow(t, k * n + center_offset(n), top).astype(np.float16)  # (h, w, 2)
                s.setdefault("flow", []).append(w.put(f"flow/{job.name}/w{k:03d}_{t - k * n + 1}.npy",
                                                      _npy_bytes(flow)))
            blur = s["blur"].add(rgb)
            if blur is not None:
                s["pack"].blur(blur)
                s["samples"].append({
                    "id": f"{job.name}-w{k:03d}",
                    "split": job.split,
                    "sequence": job.name,
                    "window": k,
                    "blur": w.put(f"blur/{job.name}/w{k:03d}.png", encode_png(blur)),
                    "sharp": s["sharp"][k * n:(k + 1) * n],
                    "flow": s["flow"][k * n:(k + 1) * n] if with_flow else None,
                    "packed": packed.entry(job.name, k, n),
                })
    for s in per_set:
        s["writer"].finish_pack(s["pack"])
    return {
        "name": job.name,
        "split": job.split,
        "resolution": resolution,
        "notes": dict(notes),
        "sets": {s["n"]: {"samples": s["samples"], "sha256": s["writer"].sha256,
                          "written": s["writer"].written, "kept": s["writer"].kept} for s in per_set},
    }


def _build_job(job: _Job) -> dict:
    """The worker's entry: a video is scanned first and may fail alone (`bench.data.video.build`)."""
    if job.video is not None:
        return video.build(job, build_sequence)
    return build_sequence(job)


def _identity(manifest: dict) -> dict:
    keys = ("source", "profile", "seed", "root", "gamma", "data_config", "data_version", "video")
    return {k: manifest.get(k) for k in keys}


def _clean_temporaries(folder: Path, sequences: list[str]) -> None:
    """Remove the suite's temporaries that a killed run left, at the places a build writes: the set folder
    and each sequence's folders. Never a recursive search, never through a link leading out of the set."""
    base = folder.resolve()
    places = [folder] + [folder / sub / name for sub in ("sequences", "blur", "flow", packed.PACKED_DIR)
                         for name in sequences]
    for place in places:
        try:
            inside = place.resolve().is_relative_to(base)
        except (OSError, RuntimeError):  # a symlink loop: nothing there is a file to clean
            inside = False
        if inside:
            clean_temporaries(place)


def _lock_sets(held: ExitStack, folders: dict[int, Path], say: Log,
               wait: bool = True) -> dict[int, str | None]:
    """Take each set folder's exclusive lock, so two prepares of one set take turns and no set changes while
    a run reads it (runs hold the shared lock: `prepare(hold=...)`); without `wait`, a held set is refused
    in one line. Returns, per N, why the set can be read but not written (a folder that is a symlink:
    writing through it would change someone else's folder; a read-only data dir), or None."""
    why: dict[int, str | None] = {}
    for n in sorted(folders):
        folder = folders[n]
        if folder.is_symlink():
            why[n] = (f"{folder} is a symbolic link; bench prepare writes and deletes only in real folders "
                      "under --data-dir: remove the link (its target is left alone), or pass the --data-dir "
                      "that holds the real set")
            continue
        lock = FolderLock(folder, wait=wait, hint="pass a writable --data-dir", readonly_ok=True,
                          on_wait=lambda p: say(f"waiting for the runs reading {p.parent} (or another bench "
                                                "prepare) to let go of it"))
        held.enter_context(lock)
        why[n] = None if lock.held else f"{folder}: read-only; pass a writable --data-dir to build or fix it"
    return why


def _remove_set(folder: Path) -> int:
    """`--fresh`: delete the files the set's manifest lists (and the manifest), then the folders that left
    empty. A set whose manifest cannot be read proves nothing, so nothing is deleted; the rebuild then
    rewrites every file in place. Returns how many files were removed."""
    try:
        listed = list(load_manifest(folder)["sha256"])
    except BenchError:
        return 0
    removed = 0
    for rel in [*listed, MANIFEST]:
        path = folder / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed += 1
    if (folder / STAT_RECORD).is_file():
        (folder / STAT_RECORD).unlink()
    for sub in ("sequences", "blur", "flow", packed.PACKED_DIR):
        top = folder / sub
        if top.is_dir() and not top.is_symlink():
            for child in sorted(top.iterdir()):
                if child.is_dir() and not child.is_symlink() and not any(child.iterdir()):
                    child.rmdir()
            if not any(top.iterdir()):
                top.rmdir()
    return removed


def _check_windows(prof: Profile, ns: tuple[int, ...]) -> None:
    """Every synthetic sequence must hold at least one window of the largest N (footage: `check_lengths`)."""
    length, n = int(prof.data.sequence_length), max(ns)
    if n > length:
        largest = length if length % 2 else length - 1
        raise BenchError(f"--frames {n}: the {prof.name} profile's synthetic sequences have {length} frames "
                         f"(data.sequence_length), fewer than one {n}-frame window; choose an odd --frames "
                         f"up to {largest}, or raise data.sequence_length (bench run --set "
                         f"data.sequence_length={n})")


def _resolve_root(root: str | Path) -> Path:
    """The footage root as an absolute path; a symlink loop or an unreadable path is a one-line error."""
    try:
        return Path(root).expanduser().resolve()
    except (OSError, RuntimeError) as err:
        why = "a symbolic link loop" if isinstance(err, RuntimeError) else (err.strerror or str(err)).lower()
        raise BenchError(f"--root {root}: {why}; point --root at a real folder of footage") from None


def _run_jobs(jobs: list[_Job], workers: int, progress: bool) -> Iterator[dict]:
    """Results in job order (so the manifest does not depend on the worker count)."""
    bar = None
    if progress:
        bar = Progress(TextColumn("prepare"), BarColumn(), MofNCompleteColumn(), TextColumn("sequences"),
                       TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        task = bar.add_task("prepare", total=len(jobs))
        bar.start()
    try:
        if workers <= 1 or len(jobs) <= 1:
            results = map(_build_job, jobs)
            pool = None
        else:
            # spawn, not fork: the parent may hold threads (rich's refresher) whose locks fork would copy.
            pool = workers_pool(min(workers, len(jobs)))  # workers die with this process
            results = pool.imap(_build_job, jobs)
        try:
            for result in results:
                if bar is not None:
                    bar.advance(task)
                yield result
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        if bar is not None:
            bar.stop()


@dataclass(frozen=True)
class _Request:
    """A checked `bench prepare` request: what every later step reads."""

    source: str  # one of SOURCES
    prof: Profile  # names the sets; for synthetic, its data settings also render them
    ns: tuple[int, ...]  # N per set as asked (repeats kept: the folders returned mirror --frames)
    gamma: float | None  # checked --gamma; None averages the stored values
    seed: int  # synthetic: generator seed; footage: split assignment of unlisted sequences
    workers: int  # processes that build sequences (and pack sets)
    data_dir: Path  # holds the set folders
    video_options: video.VideoOptions | None  # video source only (its defaults when none were given)
    fresh: bool  # delete each set's listed files and build it again
    progress: bool  # show a progress bar on stderr while sequences build
    say: Log  # where one-line messages go
    verify: str = "fast"  # one of VERIFY_MODES: hash only files whose stat changed, or every file
    wait: bool = True  # wait for a set's lock (one line says so); False refuses a held set in one line

    @property
    def footage(self) -> bool:
        return self.source in FOOTAGE_SOURCES


@dataclass(frozen=True)
class _Source:
    """What discovery found; the synthetic source finds nothing, it renders its own frames."""

    root: Path | None  # the resolved footage root; None for synthetic
    sequences: tuple[gopro.FootageSequence, ...] = ()  # gopro: frame folders, each with its split
    clips: tuple[video.Clip, ...] = ()  # video: the files, each with its split


@dataclass(frozen=True)
class _Verdict:
    """What one requested set needs, decided from its folder before anything is written."""

    action: str  # "build" (missing, unreadable, damaged or stale: built in place) | "pack" | "verified"
    manifest: dict | None = None  # "pack": the set's manifest, whose PNGs verified
    only: set[str] | None = None  # "pack": the sequences to pack again (None = all)


@dataclass(frozen=True)
class _Plan:
    """The verdicts of all requested sets, in increasing N."""

    pending: tuple[int, ...]  # N of the sets to build
    to_pack: dict[int, _Verdict]  # N -> its "pack" verdict


def prepare(source: str | None = None, root: str | Path | None = None, frames: tuple[int, ...] = (7, 9),
            profile: str | Profile = "quick", data_dir: str | Path | None = None, seed: int = 0,
            gamma: float | None = None, workers: int | None = None, fresh: bool = False,
            progress: bool = False, log: Log | None = None,
            video_options: video.VideoOptions | None = None, verify: str = "fast", wait: bool = True,
            hold: ExitStack | None = None) -> list[Path]:
    """Build (or verify) one blur set per N in `frames`; returns the set folders in the order of `frames`.

    Each blur is the mean of N consecutive sharp frames (paper Sec. 3.1, `bench.data.blur`). A set whose
    manifest exists and whose digests match is left alone; one that fails verification is repaired in place;
    `fresh` deletes the files its manifest lists and rebuilds. Sets are verified holding their folders'
    shared locks, and built or repaired holding the exclusive ones (waiting for readers, or refusing
    without `wait`); a set folder that is a symlink, or in a read-only data dir, is only verified. With
    `hold`, the shared locks of the verified sets stay held until `hold` closes (`bench run` reads them).
    """
    req = _check_request(source, root, frames, profile, data_dir, seed, gamma, workers, fresh, progress, log,
                         video_options)
    if verify not in VERIFY_MODES:
        raise BenchError(f"--verify {verify!r}: choose one of {', '.join(VERIFY_MODES)}")
    req = replace(req, verify=verify, wait=wait)
    for _ in range(3):  # a set changed between the exclusive build and the shared hold: again
        if not req.fresh and (folders := _verified_shared(req, root, hold)) is not None:
            return folders
        with ExitStack() as held:
            folders = _prepare(held, req, root)
        if hold is None:
            return folders
        req = replace(req, fresh=False)
    raise BenchError(f"{folders[0]}: changed by another process each time it was prepared; rerun when the "
                     "other bench prepare is done")


def _verified_shared(req: _Request, root: str | Path | None, hold: ExitStack | None) -> list[Path] | None:
    """The set folders when every requested set verifies under its shared lock (so checking a set that is
    already right never waits for the runs reading it); None when one needs work, done under the exclusive
    lock, which is why what `_decide` says here is kept back: the exclusive pass says it again. The shared
    locks move to `hold` when given, else they are released."""
    src = _discover(req, root)
    base = _identity_fields(req, src.root)
    folders = {n: req.data_dir / set_name(req.source, req.prof.name, n) for n in req.ns}
    said: list[str] = []
    with ExitStack() as reading:
        for n in sorted(set(req.ns)):
            if not folders[n].is_symlink():  # as `_lock_sets`: never a lock file in someone else's folder
                reading.enter_context(FolderLock(
                    folders[n], wait=req.wait, shared=True, hint="pass a writable --data-dir",
                    readonly_ok=True,
                    on_wait=lambda p: req.say(f"waiting for another bench prepare writing {p.parent}")))
        for n in sorted(set(req.ns)):
            if _decide(folders[n], base, req.source, src.clips, said.append,
                       req.verify == "full").action != "verified":
                return None
        for line in said:
            req.say(line)
        req.say(f"nothing to do: {', '.join(str(folders[n]) for n in req.ns)} already prepared and verified")
        if hold is not None:
            hold.push(reading.pop_all())
    return [folders[n] for n in req.ns]


def _prepare(held: ExitStack, req: _Request, root: str | Path | None) -> list[Path]:
    """The steps of `prepare`, under the set locks that `held` releases."""
    src = _discover(req, root)
    base = _identity_fields(req, src.root)
    folders = {n: req.data_dir / set_name(req.source, req.prof.name, n) for n in req.ns}
    unwritable = _lock_sets(held, folders, req.say, req.wait)
    plan = _plan_sets(req, src, base, folders, unwritable)
    for n in (*plan.to_pack, *plan.pending):  # refused before any set is touched
        if unwritable[n]:
            raise BenchError(unwritable[n])
    for n, verdict in plan.to_pack.items():
        _pack_from_pngs(folders[n], verdict.manifest, verdict.only, req.workers, req.say)
    if not plan.pending:
        if not plan.to_pack:
            names = ", ".join(str(folders[n]) for n in req.ns)
            req.say(f"nothing to do: {names} already prepared and verified")
        return [folders[n] for n in req.ns]
    jobs, failed = _make_jobs(req, src, tuple((n, str(folders[n])) for n in plan.pending))
    for n in plan.pending:
        _clean_temporaries(folders[n], [job.name for job in jobs])
    results = list(_run_jobs(jobs, req.workers, req.progress))
    results, failed = video.partition(results, failed, src.root, req.say)
    _check_results(results, src.root, req.say)
    written, kept, splits = _write_manifests(req, base, folders, plan.pending, results, failed)
    _report(req, folders, splits, len(results), written, kept)
    if failed:
        raise video.failures(failed, len(results))
    return [folders[n] for n in req.ns]


def _check_request(source: str | None, root: str | Path | None, frames: tuple[int, ...],
                   profile: str | Profile, data_dir: str | Path | None, seed: int, gamma: float | None,
                   workers: int | None, fresh: bool, progress: bool, log: Log | None,
                   video_options: video.VideoOptions | None) -> _Request:
    """The arguments checked in the order the CLI's users meet them, each refusal naming its option."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    source = source or prof.data.source
    if source not in SOURCES:
        raise BenchError(f"--source {source!r}: unknown source; choose one of {', '.join(SOURCES)}")
    if not frames:
        raise BenchError("--frames is empty: give one or more odd numbers >= 3, e.g. --frames 7,9")
    ns = tuple(check_frames(n) for n in frames)
    gamma = check_gamma(gamma)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BenchError(f"--seed {seed!r}: expected a whole number >= 0")
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise BenchError(f"--workers {workers}: expected at least 1")
    data_dir = default_data_dir(data_dir)
    video_options = video.requested(source, root, video_options)
    return _Request(source, prof, ns, gamma, seed, workers, data_dir, video_options, fresh, progress,
                    log or (lambda _msg: None))


def _discover(req: _Request, root: str | Path | None) -> _Source:
    """Find the footage under --root (refusing a root the source cannot use), or check the synthetic
    sequences are long enough; nothing is written yet."""
    if req.source == "video":
        root = _resolve_root(root)
        return _Source(root, clips=tuple(video.discover(root, req.seed, req.video_options)))
    if req.footage:
        if root is None:
            guess = req.data_dir / "GOPRO_Large_all"
            if not guess.is_dir():
                raise BenchError(f"--source {req.source} needs --root (the folder holding train/ and test/); "
                                 f"nothing at {guess}; see datasets/README.md")
            root = guess
        root = _resolve_root(root)
        sequences = gopro.discover(root, req.seed)
        gopro.check_lengths(sequences, max(req.ns))
        return _Source(root, sequences=tuple(sequences))
    if root is not None:
        raise BenchError(f"--root {root}: the synthetic source renders its own frames; drop --root or add "
                         f"--source gopro")
    _check_windows(req.prof, req.ns)
    return _Source(None)


def _identity_fields(req: _Request, root: Path | None) -> dict:
    """The manifest fields that say what a set was built from; an existing set must match them."""
    base = {
        "source": req.source,
        "profile": None if req.footage else req.prof.name,
        "seed": req.seed,
        "root": str(root) if req.footage else None,
        "gamma": req.gamma,
        "data_config": None if req.footage else render_identity(req.prof.data),
        "data_version": DATA_VERSION,
    }
    if req.source == "video":
        base["video"] = req.video_options.identity()
    return base


def _plan_sets(req: _Request, src: _Source, base: dict, folders: dict[int, Path],
               unwritable: dict[int, str | None]) -> _Plan:
    """Per set in increasing N: `--fresh` removes it first, then its folder decides what it needs."""
    pending: list[int] = []
    to_pack: dict[int, _Verdict] = {}
    for n in sorted(set(req.ns)):
        folder = folders[n]
        if req.fresh and unwritable[n]:
            raise BenchError(f"--fresh: {unwritable[n]}")
        if req.fresh:
            _remove_set(folder)
        verdict = _decide(folder, base, req.source, src.clips, req.say, req.verify == "full")
        if verdict.action == "build":
            pending.append(n)
        elif verdict.action == "pack":
            to_pack[n] = verdict
    return _Plan(tuple(pending), to_pack)


def _decide(folder: Path, base: dict, source: str, clips: tuple[video.Clip, ...], say: Log,
            full: bool = False) -> _Verdict:
    """What one set needs, saying why unless it must simply be built; a set built from other settings is
    refused with the fix. `full` hashes every file, else only those whose stat changed."""
    if not (folder / MANIFEST).is_file():
        return _Verdict("build")
    try:
        old = load_manifest(folder)
    except BenchError:
        return _Verdict("build")  # unreadable manifest: rebuild in place (files already right are kept)
    mine, theirs = _identity(base), _identity(old)
    if mine != theirs:
        diff = next(k for k in mine if mine[k] != theirs[k])
        raise BenchError(f"{folder / MANIFEST}: prepared with {diff}={theirs[diff]!r}, not "
                         f"{mine[diff]!r}; add --fresh to rebuild it, or choose another --data-dir")
    if source == "video" and (stale := video.stale(old, list(clips), folder / MANIFEST)):
        say(f"updating {folder}: {stale}")  # before verifying: a stale set is rebuilt whatever its files hold
        return _Verdict("build")
    action, why, only = packed.plan(folder, old, full)
    if action == "rebuild":
        say(f"repairing {folder}: {why}")
        return _Verdict("build")
    if action == "pack":
        say(f"{folder}: {why}")
        return _Verdict("pack", old, only)
    say(f"{folder}: already prepared, {len(old['sha256'])} files verified")
    return _Verdict("verified")


def _make_jobs(req: _Request, src: _Source, sets: tuple[tuple[int, str], ...],
               ) -> tuple[list[_Job], list[dict]]:
    """One job per sequence, each writing into every set in `sets`; with the videos that their headers
    already rule out (`{file, error}`)."""
    failed: list[dict] = []
    if req.source == "video":
        ready, failed = video.plan(list(src.clips))
        jobs = [_Job(req.source, c.name, c.split, sets, req.gamma, video=c) for c in ready]
    elif req.footage:
        jobs = [_Job(req.source, s.name, s.split, sets, req.gamma, frames=tuple(str(f) for f in s.frames))
                for s in src.sequences]
    else:
        data = req.prof.data
        jobs = [_Job(req.source, f"{split}_{i:03d}", split, sets, req.gamma, data_cfg=data, index=i,
                     seed=req.seed)
                for split, count in (("train", data.train_sequences), ("test", data.test_sequences))
                for i in range(int(count))]
    if not jobs and req.source != "video":
        raise BenchError(f"profile {req.prof.name!r} renders no sequences; raise data.train_sequences")
    return jobs, failed


def _check_results(results: list[dict], root: Path | None, say: Log) -> None:
    """Warn about converted frames; refuse sequences of different resolutions before any manifest."""
    notes: Counter[str] = Counter()
    for r in results:
        notes.update(r["notes"])
    for kind, count in sorted(notes.items()):
        say(f"warning: {count} {kind} frame(s) converted to 8-bit RGB")
    sizes = {tuple(r["resolution"]) for r in results}
    if len(sizes) > 1:
        listing = ", ".join(f"{r['name']} {r['resolution'][1]}x{r['resolution'][0]}" for r in results[:4])
        raise BenchError(f"--root {root}: sequences differ in resolution ({listing}, ...); prepare each "
                         f"resolution from its own root")
    small = next((r for r in results if min(r["resolution"]) < video.MIN_SIDE), None)
    if small is not None:
        h, w = small["resolution"]
        raise BenchError(f"--root {root}: sequence {small['name']} has frames of {w}x{h}, but the networks "
                         f"need at least {video.MIN_SIDE} pixels a side; use larger footage")


def _write_manifests(req: _Request, base: dict, folders: dict[int, Path], pending: tuple[int, ...],
                     results: list[dict], failed: list[dict]) -> tuple[int, int, dict[int, dict[str, int]]]:
    """Write each built set's manifest; returns the files written and kept over all of them, and each
    set's samples per split."""
    written = kept = 0
    splits = {}
    for n in pending:
        samples, digests = [], {}
        for r in results:
            part = r["sets"][n]
            samples.extend(part["samples"])
            digests.update(part["sha256"])
            written += part["written"]
            kept += part["kept"]
        manifest = dict(base)
        manifest.update({
            "frames": n,
            "center": (n + 1) // 2,
            "resolution": list(results[0]["resolution"]),
            "code_version": __version__,
            "samples": samples,
            "sha256": dict(sorted(digests.items())),
        })
        if req.source == "video":
            manifest.update({"clips": {r["name"]: r["clip"] for r in results}, "failed": failed})
        # Last: its presence means the set is complete.
        write_or_explain(folders[n] / MANIFEST, manifest)
        record_stats(folders[n], manifest)
        splits[n] = split_counts(manifest)
    return written, kept, splits


def _report(req: _Request, folders: dict[int, Path], splits: dict[int, dict[str, int]], sequences: int,
            written: int, kept: int) -> None:
    """The closing line of a build: files written and kept, and each built set's samples per split."""
    done = ", ".join(f"{folders[n]} ({c['train']} train / {c['test']} test samples)"
                     for n, c in splits.items())
    req.say(f"wrote {written} files ({kept} already in place) from {sequences} {req.source} sequences: "
            f"{done}")


def _pack_from_pngs(folder: Path, old: dict, only: set[str] | None, workers: int, say: Log) -> None:
    """Add (or repair) the packed copy of a set whose PNGs verified, then rewrite its manifest."""
    _clean_temporaries(folder, sorted({s["sequence"] for s in old["samples"]}))
    manifest, wrote = packed.pack_existing(folder, old, workers, only)
    write_or_explain(folder / MANIFEST, manifest)
    record_stats(folder, manifest)
    say(f"{folder}: wrote {wrote} packed files from its PNGs, {len(manifest['sha256'])} files listed")


def ensure_prepared(source: str | None, frames: int, profile_obj: Profile, data_dir: str | Path | None,
                    seed: int = DATA_SEED, root: str | Path | None = None, progress: bool = True,
                    log: Log | None = None, verify: str = "fast", hold: ExitStack | None = None) -> Path:
    """The set folder for (source, N, profile, seed), preparing it when missing and verifying it otherwise;
    with `hold`, its shared lock stays held until `hold` closes (see `prepare`).

    Used by `bench run`. An existing set built with `--gamma` (or, from videos, `--stride` and the other video
    options) is accepted as it is (and repaired with its own settings); one built with another seed, root or
    data settings is refused with the command that fixes it.
    """
    source = source or profile_obj.data.source
    folder = default_data_dir(data_dir) / set_name(source, profile_obj.name, check_frames(frames))
    old: dict = {}
    if (folder / MANIFEST).is_file():
        try:
            old = load_manifest(folder)
        except BenchError:
            old = {}
    if root is None and source in FOOTAGE_SOURCES:
        root = old.get("root")
    options = video.VideoOptions.from_identity(old.get("video")) if source == "video" else None
    return prepare(source, root, (frames,), profile_obj, data_dir, seed, old.get("gamma"), None,
                   progress=progress, log=log, video_options=options, verify=verify, hold=hold)[0]
