"""Video files as footage: each video is one sequence whose frames come from a decoder.

`bench prepare --source video --root PATH` takes one video file or a folder of them (any container and codec
OpenCV's bundled FFmpeg decodes: mp4, mov, m4v, avi, mkv, webm, ...). The split is by video: the videos
directly inside `train/` and `test/` when those folders exist, else those directly inside the folder, a
seeded third of them for test (`bench.data.gopro.seeded_splits`, as for folders of frames). A sequence is
named after its file stem, with every character outside `A-Z a-z 0-9 _ -` replaced by `_`, so a name can
never hold a separator or `..`; two files that would share a name are refused.

Each video is read twice with `cv2.VideoCapture`, one frame at a time, so memory holds one frame and the
blur accumulators whatever the clip's length or resolution:
1. `scan` grabs (decodes without converting) the frames up to the last one kept, checks their timestamps
   and counts the frames kept, so a bad video is refused before any of its files is written and the job
   knows the sequence length, hence its windows, up front;
2. `read` decodes again and yields the kept frames as RGB, resized; `bench.data.prepare` streams them into
   the frame writer and the blur windows (`bench.data.blur.WindowBlur`), exactly as frames read from files.

Frame selection (`VideoOptions`), in this order: the frames with 0-based index from round(start * fps) up to,
not including, round(end * fps) (fps as the file declares it); every `stride`-th of those; at most
`max_frames` of them. Kept frame t of a sequence is source frame `first_frame + t * stride` (both in the
manifest's `clips`). `resize` shrinks frames whose long side exceeds it with area averaging
(`cv2.INTER_AREA`); it never enlarges.

What OpenCV lets us detect about a bad video, each refused with one line naming the file and the fix:
- an empty file (0 bytes), or one the FFmpeg backend cannot open: an unknown format or codec, or a container
  cut short before its index (an MP4 whose copy stopped half-way loses its `moov` box);
- no frame decodes, or fewer frames are kept than the largest N;
- a stream cut short: the decoder stops more than max(2, 1 %) frames before the count the container
  declares (an AVI cut short still opens); the margin absorbs counts a container only estimates. An edit
  list that hides more frames than that (a trim stored without re-encoding) reads the same and is refused;
- a variable frame rate: the presentation times OpenCV reports (`CAP_PROP_POS_MSEC`) of the decoded frames
  from the first to the last one kept must lie on a uniform grid: each step within half an interval of
  the mean step, and no frame more than half an interval off the line from the first time to the last.
  That catches dropped or repeated frames and rate changes (phones lower the rate in dim light). Not
  detectable: a stream without timestamps (all times equal; not checked), and a camera that stamped
  irregular captures evenly when it wrote the file;
- a frame size that changes mid-stream: OpenCV's FFmpeg backend rescales every frame to the size the stream
  started with, so such a stream arrives at one size and cannot be told apart. Every decoded frame is still
  checked against the size of the first, so a backend that handed frames through as they come could never
  mix sizes in a set. Rotation metadata (phones) is applied by OpenCV: frames arrive upright.
A video that fails leaves nothing of its own in the sets (`remove_sequence`) and no sample in the manifest;
the others are prepared and `bench prepare` exits with status 2 at the end, listing the failures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.data.gopro import check_special, entries, seeded_splits
from bench.errors import BenchError

# FFmpeg writes its own diagnostics ("moov atom not found", "ac-tex damaged") straight to stderr, which
# would break the one-line error contract; OpenCV reads this before it first opens a video. A user can
# still set it (e.g. to 32) to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".mts", ".m2ts", ".ts",
                    ".3gp", ".wmv", ".flv", ".mxf")
GRID_TOLERANCE = 0.5  # share of the frame interval a timestamp may sit off a constant rate
TRUNCATION_MARGIN = 0.01  # share of the declared frame count the decoder may fall short by (at least 2)
MIN_SIDE = 16  # the networks halve a frame four times: a set's frames need at least this many pixels a side
MAX_STRIDE = 100_000  # --stride: past this no video keeps a second frame
MAX_SIDE = 16384  # --resize: the largest long side (a 16K frame)
MAX_KEPT = 10**9  # --max-frames: far past any video, still a plain integer
FIX_VIDEO = "check that it plays, export it again (MP4 is safe), or remove it from --root"


@dataclass(frozen=True)
class VideoOptions:
    """Which frames of each video become its sequence; part of a video set's identity (manifest `video`)."""

    stride: int = 1  # keep every stride-th decoded frame (2 turns 240 fps footage into 120 fps)
    resize: int | None = None  # shrink so the long side is this many pixels (area-averaged); None keeps size
    max_frames: int | None = None  # keep at most this many frames per video (after start and stride)
    start: float | None = None  # seconds: the first frame kept is index round(start * fps)
    end: float | None = None  # seconds: frames from index round(end * fps) on are dropped

    def __post_init__(self) -> None:
        def whole(value: object) -> bool:
            return isinstance(value, int | np.integer) and not isinstance(value, bool)

        if not whole(self.stride) or not 1 <= self.stride <= MAX_STRIDE:
            raise BenchError(f"--stride {self.stride!r}: expected a whole number from 1 (every frame) to "
                             f"{MAX_STRIDE}")
        if self.resize is not None and (not whole(self.resize) or not MIN_SIDE <= self.resize <= MAX_SIDE):
            raise BenchError(f"--resize {self.resize!r}: expected the long side in pixels, from {MIN_SIDE} "
                             f"(the networks' smallest frame) to {MAX_SIDE}")
        kept = self.max_frames
        if kept is not None and (not whole(kept) or not 1 <= kept <= MAX_KEPT):
            raise BenchError(f"--max-frames {kept!r}: expected a whole number from 1 to {MAX_KEPT}")
        for flag, value in (("--start", self.start), ("--end", self.end)):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise BenchError(f"{flag} {value}: expected seconds >= 0")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise BenchError(f"--end {self.end} is not after --start {self.start}; give --end > --start")

    def identity(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_identity(cls, data: object) -> VideoOptions | None:
        """The options a manifest records, or None when it holds none it can use."""
        try:
            return cls(**data) if isinstance(data, dict) else None
        except (TypeError, BenchError):
            return None


def requested(source: str, root: object, options: VideoOptions | None) -> VideoOptions | None:
    """The options `bench prepare` uses for `source` (the defaults for video; None for the others), refusing
    video flags on another source and a video source without --root."""
    if source != "video":
        if options is not None:
            raise BenchError("--stride, --resize, --max-frames, --start and --end apply to --source video "
                             "only; drop them or add --source video")
        return None
    if root is None:
        raise BenchError("--source video needs --root: a video file or a folder of videos (train/ and test/ "
                         "optional); see datasets/README.md")
    return options or VideoOptions()


def option_flags(options: dict) -> list[str]:
    """The `bench prepare` flags that rebuild a set with the manifest's `video` options."""
    flags = [] if options.get("stride", 1) == 1 else [f"--stride {options['stride']}"]
    for key in ("resize", "max_frames", "start", "end"):
        if options.get(key) is not None:
            flags.append(f"--{key.replace('_', '-')} {options[key]}")
    return flags


@dataclass(frozen=True)
class Clip:
    """One video to prepare: where it is, what `probe` read from its header, what `scan` counted."""

    name: str  # sequence name (folder name inside each set), from the file stem
    split: str  # "train" | "test"
    path: str  # the video file, absolute
    file: str  # the same, relative to --root (the file name when --root is the file), for the manifest
    options: VideoOptions  # which frames to keep
    fps: float = 0.0  # frame rate the container declares (CAP_PROP_FPS)
    declared: int = 0  # frame count the container declares or estimates (0 = unknown)
    size: tuple[int, int] = (0, 0)  # (h, w) of decoded frames
    out: tuple[int, int] = (0, 0)  # (h, w) after --resize
    first: int = 0  # index of the first frame kept (--start)
    stop: int | None = None  # index of the first frame dropped by --end (None = read to the end)
    kept: int = 0  # frames kept, counted by `scan`

    def record(self) -> dict:
        """What the manifest's `clips` says about this video."""
        return {"file": self.file, "fps": self.fps, "frames_declared": self.declared, "size": list(self.size),
                "resolution": list(self.out), "first_frame": self.first, "stride": self.options.stride,
                "frames_kept": self.kept}


def sequence_name(stem: str) -> str:
    """A folder-safe sequence name from a file stem: no separator, no `..`, no leading dot."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")


def video_files(folder: Path) -> list[Path]:
    """Video files directly inside `folder`, by name; hidden files skipped."""
    return sorted(p for p in entries(folder) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def discover(root: Path, seed: int, options: VideoOptions) -> list[Clip]:
    """The videos under `root` (a file or a folder; see the module docstring), each with its split."""
    root = Path(root)
    if not root.exists():
        raise BenchError(f"--root {root}: no such file or folder; point --root at a video or a folder of "
                         "videos")
    check_special(root)
    found: list[tuple[Path, str | None]]
    if root.is_file():
        found = [(root, None)]
    else:
        split_dirs = [s for s in ("train", "test") if (root / s).is_dir()]
        if split_dirs:
            found = [(p, split) for split in split_dirs for p in video_files(root / split)]
        else:
            found = [(p, None) for p in video_files(root)]
    if not found:
        where = "train/ or test/" if (root / "train").is_dir() or (root / "test").is_dir() else "it"
        raise BenchError(f"--root {root}: no video files ({', '.join(VIDEO_EXTENSIONS[:6])}, ...) directly "
                         f"inside {where}; point --root at a video or a folder of them")
    names: dict[str, Path] = {}
    for path, _ in found:
        name = sequence_name(path.stem)
        if not name:
            raise BenchError(f"{path}: no letter or digit in its name to name a sequence after; rename it")
        if name in names:
            raise BenchError(f"{path} and {names[name]} would both be sequence {name!r}; rename one")
        names[name] = path
    splits = {sequence_name(p.stem): s for p, s in found}
    splits.update(seeded_splits([n for n, s in splits.items() if s is None], seed))
    base = root.parent if root.is_file() else root
    return [Clip(name, splits[name], str(path), path.relative_to(base).as_posix(), options)
            for name, path in names.items()]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence OpenCV's own log while decoding: a damaged file makes it print warnings and errors
    ("Could not find decoder") straight to stderr, beside the one line that says what is wrong."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _open(path: str) -> object:
    """An opened `cv2.VideoCapture` on the FFmpeg backend (never the image-sequence one, which would read a
    `%d` in a file name as a pattern)."""
    with _quiet():
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise BenchError(f"{path}: cannot be opened as a video (unreadable, corrupt, cut short, or a codec "
                         f"OpenCV's FFmpeg lacks); {FIX_VIDEO}")
    return cap


def probe(clip: Clip) -> Clip:
    """Read the header (frame rate, declared count) and the first frame (its size); place --start/--end and
    --resize."""
    if os.path.getsize(clip.path) == 0:
        raise BenchError(f"{clip.path}: empty file (0 bytes); copy or export it again, or remove it")
    cap = _open(clip.path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        with _quiet():
            ok, first = cap.read()  # the size as decoded: after the rotation a phone records, if any
    finally:
        cap.release()
    if not ok or first is None or first.ndim < 2:
        raise BenchError(f"{clip.path}: no frame could be decoded (zero frames); {FIX_VIDEO}")
    if not math.isfinite(fps) or fps <= 0:
        raise BenchError(f"{clip.path}: no frame rate in the file; {FIX_VIDEO}")
    h, w = int(first.shape[0]), int(first.shape[1])
    opt = clip.options
    first = round(opt.start * fps) if opt.start is not None else 0
    stop = round(opt.end * fps) if opt.end is not None else None
    if stop is not None and stop <= first:
        raise BenchError(f"{clip.path}: --start {opt.start} and --end {opt.end} select no frame at "
                         f"{fps:g} fps; widen the interval")
    out = (h, w)
    if opt.resize is not None and max(h, w) > opt.resize:
        scale = opt.resize / max(h, w)
        out = (max(1, round(h * scale)), max(1, round(w * scale)))
    if min(out) < MIN_SIDE:
        fix = (f"raise --resize to at least {math.ceil(MIN_SIDE * max(h, w) / min(h, w))}" if out != (h, w)
               else "use footage of a larger size")
        raise BenchError(f"{clip.path}: frames of {out[1]}x{out[0]}, but the networks need at least "
                         f"{MIN_SIDE} pixels a side; {fix}")
    declared = int(count) if math.isfinite(count) and 0 < count < 2**31 else 0
    return dataclasses.replace(clip, fps=fps, declared=declared, size=(h, w), out=out, first=first, stop=stop)


def timing_problem(stamps: Sequence[float]) -> str | None:
    """Why presentation times `stamps` (ms, consecutive decoded frames) are not a constant frame rate, or
    None. The grid is the mean step, not the declared rate, so a rate stored rounded is no false alarm."""
    times = np.asarray(stamps, dtype=np.float64)
    if len(times) < 3 or times[-1] <= times[0]:
        return None  # too few frames, or no timestamps to judge
    step = (times[-1] - times[0]) / (len(times) - 1)
    steps = np.diff(times)
    off_step = np.flatnonzero(np.abs(steps - step) > GRID_TOLERANCE * step)
    if off_step.size:
        i = int(off_step[0])
        return (f"frame {i + 1} of the kept span comes {steps[i]:.2f} ms after the one before, against "
                f"{step:.2f} ms on average (a dropped or repeated frame, or a variable frame rate)")
    off_grid = np.abs(times - (times[0] + step * np.arange(len(times))))
    worst = int(np.argmax(off_grid))
    if off_grid[worst] > GRID_TOLERANCE * step:
        return (f"frame {worst} of the kept span is {off_grid[worst]:.1f} ms off a constant "
                f"{1000 / step:.4g} fps (a variable frame rate)")
    return None


def _wanted(clip: Clip, t: int, kept: int) -> tuple[bool, bool]:
    """(keep frame t, go on reading after it), given `kept` frames kept before it."""
    opt = clip.options
    if (clip.stop is not None and t >= clip.stop) or (opt.max_frames is not None and kept >= opt.max_frames):
        return False, False
    return t >= clip.first and (t - clip.first) % opt.stride == 0, True


def scan(clip: Clip) -> Clip:
    """First pass: decode up to the last frame kept (no conversion), check timing, count what is kept."""
    cap = _open(clip.path)
    stamps: list[float] = []  # ms, every decoded frame from the first kept one on
    decoded = kept = 0
    at_end = False
    try:
        with _quiet():
            while True:
                keep, more = _wanted(clip, decoded, kept)
                if not more:
                    break
                if not cap.grab():
                    at_end = True
                    break
                if decoded >= clip.first:
                    stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC))
                kept += keep
                decoded += 1
    finally:
        cap.release()
    return _judge(dataclasses.replace(clip, kept=kept), decoded, at_end, stamps)


def _judge(clip: Clip, decoded: int, at_end: bool, stamps: list[float]) -> Clip:
    """The verdict of `scan`: the clip with its count, or a one-line BenchError."""
    if decoded == 0:
        raise BenchError(f"{clip.path}: no frame could be decoded (zero frames); {FIX_VIDEO}")
    if clip.kept == 0:
        raise BenchError(f"{clip.path}: --start {clip.options.start} is past its end ({decoded} frames, "
                         f"{decoded / clip.fps:.2f} s); choose an earlier --start")
    span = (clip.kept - 1) * clip.options.stride + 1  # decoded frames from the first kept to the last
    problem = timing_problem(stamps[:span])
    if problem:
        raise BenchError(f"{clip.path}: timestamps are not a constant frame rate: {problem}; a blur needs "
                         "evenly spaced frames: export it again at a constant frame rate, or remove it")
    if at_end and clip.declared and decoded < clip.declared - max(2, clip.declared * TRUNCATION_MARGIN):
        raise BenchError(f"{clip.path}: the stream ends after {decoded} of the {clip.declared} frames the "
                         f"file declares (truncated or corrupt); copy or export it again, or remove it")
    return clip


def read(clip: Clip, limit: int) -> Iterator[np.ndarray]:
    """Second pass: the first `limit` kept frames, RGB uint8 `(h, w, 3)` at `clip.out`, one at a time."""
    cap = _open(clip.path)
    try:
        decoded = kept = 0
        while kept < limit:
            keep, _ = _wanted(clip, decoded, kept)
            with _quiet():  # per call: the log level must not stay changed while this generator waits
                grabbed = cap.grab()
                ok, bgr = cap.retrieve() if grabbed and keep else (grabbed, None)
            if not grabbed:
                raise BenchError(f"{clip.path}: the stream ended after {kept} of the {limit} frames the "
                                 "first pass counted (did the file change?); rerun the same command")
            if keep:
                if not ok or bgr is None:
                    raise BenchError(f"{clip.path}: frame {decoded} does not decode; {FIX_VIDEO}")
                yield to_rgb(bgr, clip, decoded)
                kept += 1
            decoded += 1
    finally:
        cap.release()


def to_rgb(bgr: np.ndarray, clip: Clip, index: int) -> np.ndarray:
    """A decoded BGR frame as RGB uint8 at the set's size; a frame of another size is refused."""
    h, w = clip.size
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise BenchError(f"{clip.path}: frame {index} decodes as {bgr.dtype} {bgr.shape}, not 8-bit colour; "
                         f"{FIX_VIDEO}")
    if bgr.shape[:2] != (h, w):
        raise BenchError(f"{clip.path}: frame {index} is {bgr.shape[1]}x{bgr.shape[0]} but the stream "
                         f"starts at {w}x{h}; a frame size that changes mid-stream is refused; export it at "
                         "one size")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (h, w, 3)
    if clip.out != clip.size:
        rgb = cv2.resize(rgb, (clip.out[1], clip.out[0]), interpolation=cv2.INTER_AREA)  # area average
    return rgb


def plan(clips: list[Clip]) -> tuple[list[Clip], list[dict]]:
    """Probe every video (headers only); returns the clips to build and the failures (`{file, error}`).

    A set holds one resolution: videos whose (resized) size differs from the most common one fail with the
    fix, instead of failing the whole set after every video was decoded.
    """
    ready, failed = [], []
    for clip in clips:
        try:
            ready.append(probe(clip))
        except BenchError as err:
            failed.append({"file": clip.file, "error": str(err)})
    if ready:
        common = Counter(c.out for c in ready).most_common(1)[0][0]  # ties: the first in name order
        for clip in [c for c in ready if c.out != common]:
            ready.remove(clip)
            failed.append({"file": clip.file, "error": (
                f"{clip.path}: frames of {clip.out[1]}x{clip.out[0]} but most videos here give "
                f"{common[1]}x{common[0]}; one set holds one resolution: prepare it from its own --root, or "
                "pass --resize with videos of one aspect ratio")})
    return ready, failed


def partition(results: list[dict], failed: list[dict], root: Path, say: Callable[[str], None],
              ) -> tuple[list[dict], list[dict]]:
    """Split the sequence builders' results into built ones and failures (`{file, error}`, after those
    `plan` found), saying one `error:` line per failure; refuse a set with nothing left to hold."""
    failed = failed + [{"file": r["file"], "error": r["error"]} for r in results if "error" in r]
    for item in failed:
        say(f"error: {item['error']}")
    built = [r for r in results if "error" not in r]
    if not built:
        raise BenchError(f"--root {root}: none of its {len(failed)} video(s) could be prepared (errors "
                         "above); fix or remove them")
    return built, failed


def failures(failed: list[dict], built: int) -> BenchError:
    """The error `bench prepare` ends with after writing a set without the videos in `failed`."""
    return BenchError(f"{len(failed)} of {len(failed) + built} videos failed "
                      f"({', '.join(f['file'] for f in failed)}); the others are prepared; fix or remove "
                      "those and rerun the same command")


def remove_sequence(folder: Path, name: str) -> None:
    """Delete whatever a set folder holds of sequence `name`: each `<part>/<name>/` folder and each
    `<part>/<name>.<ext>` file directly under the set. Names hold no dot (`sequence_name`), so this never
    touches another sequence's files."""
    if not folder.is_dir():
        return
    for part in folder.iterdir():
        if not part.is_dir() or part.is_symlink():
            continue
        for entry in part.iterdir():
            if entry.name == name or entry.name.startswith(name + "."):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def build(job: object, build_sequence: Callable[[object], dict]) -> dict:
    """Worker side of one video: scan it, then build it with `build_sequence` (the one sequence builder).

    Returns that result with the video's `clip` record, or `{name, file, error}` after removing whatever
    files of the sequence the sets hold, so a bad video leaves nothing half-way.
    """
    clip: Clip = job.video
    n_max = max(n for n, _ in job.sets)
    try:
        clip = scan(clip)
        if clip.kept < n_max:
            chosen = " ".join(option_flags(clip.options.identity()))
            raise BenchError(f"{clip.path}: {clip.kept} frames{' kept with ' + chosen if chosen else ''}, "
                             f"fewer than N={n_max}; use a longer clip, fewer frames per blur (--frames) or "
                             "keep more frames")
        result = build_sequence(dataclasses.replace(job, video=clip))
    except BenchError as err:
        for _, folder in job.sets:
            remove_sequence(Path(folder), job.name)
        return {"name": job.name, "file": clip.file, "error": str(err)}
    result["clip"] = clip.record()
    return result


def stale(manifest: dict, clips: list[Clip], where: Path) -> str | None:
    """Why a complete video set must be built again in place (videos that failed last time, or new
    ones under --root), or None. A video it was built from that is gone is refused: its samples would stay."""
    known = {c["file"] for c in (manifest.get("clips") or {}).values()}
    here = {c.file for c in clips}
    gone = sorted(known - here)
    if gone:
        raise BenchError(f"{where}: built from {gone[0]}, which is no longer under --root; add --fresh to "
                         "rebuild the set from the videos there now")
    if manifest.get("failed"):
        return f"retrying {len(manifest['failed'])} video(s) that failed last time"
    new = sorted(here - known)
    if new:
        return f"adding {len(new)} new video(s) ({', '.join(new[:3])})"
    return None
