"""The user's own blurred photos to sharp videos (`bench infer`, SPEC 1).

One motion-blurred photo in, the sharp frames seen during its exposure out (the paper's task, Sec. 1): the
deblurred image, the N frames as PNGs, an animated GIF, an MP4 and a side-by-side strip per photo.

Decisions this module makes (docs/ARCHITECTURE.md leaves them open):
- Photos of any size are padded to a multiple of 16 (`methods.layers.pad_to_multiple`) and cropped back.
- Memory: a probe forward pass at 32x32 measures the largest activation per pixel; the full-size estimate
  is compared with half the free memory. Too big, and the photo is cut into overlapping tiles blended with
  linear ramps; `--tile` forces a tile size. A method's frames are only defined up to time reversal (the
  Eq. 6 loss is ordering-invariant, Sec. 2.3), so each tile takes the direction that agrees best with the
  tiles already placed, else neighbouring tiles could play in opposite directions.
- Colour: 16-bit images are scaled to 8 bits, grayscale is repeated to RGB, transparency is composited over
  white (what an image viewer shows), and the EXIF orientation is applied first.
- The MP4 (OpenCV, mp4v) needs even sizes: an odd last row or column is repeated once in the video only.
- The GIF holds N frames over one shared palette; Pillow merges consecutive frames that are identical after
  quantisation (a still scene), keeping the playback time.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.images import encode_png  # deterministic PNG bytes, shared with the data pipeline
from bench.errors import BenchError
from bench.store import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
FORMATS = ("png", "gif", "mp4")  # frame outputs; deblurred.png and strip.png are always written
MAX_PIXELS = 64_000_000  # refuse larger photos before decoding them (a forged header must not exhaust memory)
OVERLAP = 32  # pixels shared by neighbouring tiles, blended with linear ramps
MIN_TILE = 96  # smaller tiles see too little context to be worth running
PROBE = 32  # side of the probe image; per-pixel memory measured at 32, 64 and 128 agrees exactly
SMALL_PHOTO = 128 * 128  # pixels up to which a photo runs in one pass without measuring
ACTIVATION_FACTOR = 6  # live tensors at the peak, in units of the largest (inputs + output) of one layer
STRIP_HEIGHT = 240  # panel height of the side-by-side strip (never upscaled)


# --- inputs -------------------------------------------------------------------------------------------------

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
    from PIL import Image, ImageOps

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
    from PIL import Image

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


# --- the trained method -------------------------------------------------------------------------------------

@dataclass
class LoadedMethod:
    """A method ready to predict: its registry entry, its networks on `device`, and where they came from."""

    method: Any  # methods.registry.Method
    nets: Any  # nn.ModuleDict, eval mode
    frames: int  # N
    device: Any  # torch.device
    source: str  # the weights file, or "no weights (parameter-free)"
    _per_pixel: int | None = field(default=None, repr=False)  # bytes per pixel of one forward (cached)


def _train_command(method: str, frames: int, runs_option: str | None) -> str:
    extra = f" --runs-dir {runs_option}" if runs_option else ""
    return f"bench run --method {method} --frames {frames}{extra}"


def _latest_with_weights(root: Path, method: str, frames: int) -> Path | None:
    """Like `store.latest_run`, restricted to runs that hold a weights.pt."""
    from bench import store

    best: tuple[float, Path] | None = None
    for run in store.iter_runs(root):
        cfg, met, folder = run["config"], run["metrics"], run["path"]
        if cfg.get("method") != method or cfg.get("frames") != frames or not isinstance(met, dict):
            continue
        if met.get("status") != "finished" or not (folder / "weights.pt").is_file():
            continue
        mtime = (folder / "metrics.json").stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, folder)
    return best[1] if best else None


def load_method(method: str | None = None, frames: int | None = None, run: str | None = None,
                checkpoint: str | None = None, runs_option: str | None = None,
                device: str = "auto") -> LoadedMethod:
    """Resolve and load what `bench infer` runs.

    `checkpoint` (a weights.pt) or `run` (a run folder or id in the store) name the weights; with neither,
    the latest finished run of `method` (default `ours`) at `frames` (default 9) is used. Parameter-free
    methods (no training stages) need no weights. Every failure is a one-line `BenchError`.
    """
    from bench import store

    if run and checkpoint:
        raise BenchError("pass either --run or --checkpoint, not both")
    root = store.runs_dir(runs_option)
    if checkpoint or run:
        if checkpoint:
            weights = Path(checkpoint)
        else:
            folder = Path(run) if Path(run).is_dir() else root / run
            if not folder.is_dir():
                raise BenchError(f"--run {run}: no such run folder (looked in {root}/); "
                                 "list stored runs with `bench list --runs`")
            weights = folder / "weights.pt"
            if not weights.is_file():
                raise BenchError(f"{folder}: the run has no weights.pt yet; finish it by rerunning the "
                                 "bench run command that started it")
        payload = store.load_weights(weights)
        held = str(payload.get("method"))
        if method and method != held:
            raise BenchError(f"{weights} holds {held}, not {method}; drop --method or pass a run of {method}")
        n, model = payload.get("frames"), payload.get("model") or {}
        if not isinstance(n, int) or not isinstance(model, dict):
            raise BenchError(f"{weights}: malformed weights file (frames or model missing); re-export it")
        if frames and frames != n:
            raise BenchError(f"{weights} was trained for {n} frames, not {frames}; use --frames {n} or a "
                             f"run trained with {frames} frames")
        name, source = held, str(weights)
    else:
        name, n = method or "ours", frames or 9
        payload, source, model = None, "", {}
    from bench.run import get_method

    entry = get_method(name, n)
    if getattr(entry, "uses_true_center", False):
        raise BenchError(f"{name} is an oracle fed the true central frame; a photo has none, so pick another "
                         "--method (e.g. ours)")
    if payload is None and entry.stages:
        found = store.latest_run(root, name, n)
        if found is None:
            raise BenchError(f"no finished run of {name} with {n} frames in {root}/: train one with "
                             f"`{_train_command(name, n, runs_option)}`")
        weights = found / "weights.pt"
        if not weights.is_file():
            # A run evaluated on other data (--eval-data) finishes without weights; take the newest that has.
            found = _latest_with_weights(root, name, n)
            if found is None:
                raise BenchError(f"no finished run of {name} with {n} frames in {root}/ has a weights.pt: "
                                 f"train one with `{_train_command(name, n, runs_option)}`")
            weights = found / "weights.pt"
        payload = store.load_weights(weights)
        if payload.get("method") != name:
            raise BenchError(f"{weights} holds {payload.get('method')}, not {name}; the store is "
                             "inconsistent: rerun the bench run command")
        source, model = str(weights), payload.get("model") or {}
        if not isinstance(model, dict):
            raise BenchError(f"{weights}: malformed weights file (model is not a dict); rerun "
                             f"`{_train_command(name, n, runs_option)}`")
    nets = entry.build(model or None)
    if payload is not None:
        states = payload.get("state_dicts") or {}
        # Networks used only in training (the RVE) may be absent from a weights file; the rest may not.
        needed = [c for c in nets.keys() if getattr(entry.components[c], "inference", True)]
        missing = [c for c in needed if c not in states]
        if missing:
            raise BenchError(f"{source}: no weights for {', '.join(missing)} of {name}; re-export the run")
        for comp, module in nets.items():
            if comp not in states:
                continue
            try:
                module.load_state_dict(states[comp])
            except (RuntimeError, TypeError, KeyError) as err:
                first = str(err).strip().splitlines()[0]
                raise BenchError(f"{source}: the {comp} weights do not fit {name} ({first[:160]})") from None
    elif not source:
        source = "no weights (parameter-free)"
    from bench.devices import resolve_device

    dev = resolve_device((device or "auto").lower())
    nets = entry.for_inference(nets, dev)
    return LoadedMethod(method=entry, nets=nets, frames=n, device=dev, source=source)


# --- memory -------------------------------------------------------------------------------------------------

def available_memory(device: Any) -> int:
    """Bytes free for one photo's forward pass on `device` (CUDA: free device memory; else free RAM)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # unknown platform: assume a modest 8 GiB


def forward_bytes_per_pixel(loaded: LoadedMethod) -> int:
    """Bytes of activation memory per input pixel at the peak of one forward pass (measured, then cached).

    A 32x32 probe runs with hooks on every leaf layer; the largest `inputs + output` of one layer (dense
    blocks concatenate, so a layer's input can be far wider than its output) times ACTIVATION_FACTOR stands
    for the tensors alive at once (skip connections, recurrent state), plus the N output frames and flows.
    Conservative on purpose: an overestimate only tiles earlier, an underestimate can kill the process.
    """
    if loaded._per_pixel is not None:
        return loaded._per_pixel
    import torch

    peak = 0

    def hook(_module: Any, inputs: tuple, output: Any) -> None:
        nonlocal peak
        total = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        outs = output if isinstance(output, (tuple, list)) else (output,)
        total += sum(t.numel() * t.element_size() for t in outs if torch.is_tensor(t))
        peak = max(peak, total)

    handles = [m.register_forward_hook(hook) for m in loaded.nets.modules() if not list(m.children())]
    try:
        probe = torch.rand(1, 3, PROBE, PROBE, device=loaded.device)
        with torch.inference_mode():
            loaded.method.predict(loaded.nets, probe, loaded.frames)
    finally:
        for h in handles:
            h.remove()
    pixels = PROBE * PROBE
    # frames (n,3) + flows (n,2) + deblurred + input, float32, twice: the uint8 conversion makes temporaries.
    outputs = (loaded.frames * 5 + 3 + 3) * 4 * 2
    loaded._per_pixel = int(np.ceil(peak * ACTIVATION_FACTOR / pixels)) + outputs
    return loaded._per_pixel


def plan_tile(loaded: LoadedMethod, height: int, width: int, tile: int | None = None,
              budget: int | None = None, name: str = "photo") -> int | None:
    """The tile side for a `height` x `width` photo: None (one pass), `tile` when forced, else the largest
    multiple of 16 whose forward fits `budget` (default: half the free memory) next to the full-size
    output buffers. A photo whose outputs alone do not fit raises a one-line error."""
    if tile:
        if tile < 32 or tile % 16:
            raise BenchError(f"--tile {tile}: use a multiple of 16 of at least 32")
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
    import torch

    from methods.layers import crop_to, pad_to_multiple

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
    import torch

    from methods.layers import crop_to, pad_to_multiple

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
    import torch

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


# --- outputs ------------------------------------------------------------------------------------------------

def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """Frames `(n, h, w, 3)` uint8 -> an endlessly looping GIF over one palette shared by all frames (so
    colours do not flicker from frame to frame)."""
    from PIL import Image

    n, h, w, _ = frames.shape
    # The palette comes from about a million sampled pixels: median cut on every pixel of nine 720p frames
    # takes seconds and picks nearly the same 256 colours.
    step = max(1, int(np.ceil(np.sqrt(n * h * w / 1e6))))
    sample = frames[:, ::step, ::step]  # (n, h', w', 3)
    sheet = Image.fromarray(np.ascontiguousarray(sample.reshape(-1, sample.shape[2], 3)))
    palette = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    duration = max(20, int(round(1000 / fps / 10)) * 10)  # GIF delays are in 1/100 s
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buf.getvalue()


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Frames `(n, h, w, 3)` uint8 -> an MP4 (mp4v) at `path`, atomically: OpenCV writes a temporary file in
    the same folder, which is fsynced and renamed. Odd sizes get their last row/column repeated (mp4v
    needs even sizes)."""
    import cv2

    n, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                 (frames.shape[2], frames.shape[1]))
        if not writer.isOpened():
            raise BenchError(f"{path}: OpenCV cannot write mp4v video here; use --format gif,png")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        writer.release()
        if os.path.getsize(tmp) == 0:
            raise BenchError(f"{path}: OpenCV wrote an empty video; use --format gif,png")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def make_strip(blur: np.ndarray, deblurred: np.ndarray, frames: np.ndarray,
               height: int = STRIP_HEIGHT, gap: int = 4) -> np.ndarray:
    """blur | deblurred | frame 1 .. frame N side by side, each panel scaled to `height` (never up), with
    white gaps: `(ph, (n+2)*pw + (n+1)*gap, 3)` uint8."""
    import cv2

    h, w = blur.shape[:2]
    ph = min(h, height)
    pw = max(1, int(round(w * ph / h)))
    panels = [blur, deblurred, *frames]
    if (ph, pw) != (h, w):
        panels = [cv2.resize(p, (pw, ph), interpolation=cv2.INTER_AREA) for p in panels]
    spacer = np.full((ph, gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for i, p in enumerate(panels):
        if i:
            row.append(spacer)
        row.append(p)
    return np.concatenate(row, axis=1)


def write_outputs(folder: Path, blur: np.ndarray, deblurred: np.ndarray, frames: np.ndarray,
                  formats: tuple[str, ...] = FORMATS, fps: float = 10.0) -> list[Path]:
    """Everything for one photo into `folder`: deblurred.png and strip.png always, and per `formats`
    frames/frame_XX.png (png), video.gif (gif), video.mp4 (mp4). Every file is written atomically."""
    written = [atomic_write_bytes(folder / "deblurred.png", encode_png(deblurred))]
    if "png" in formats:
        digits = max(2, len(str(len(frames))))
        for i, frame in enumerate(frames, 1):
            target = folder / "frames" / f"frame_{i:0{digits}d}.png"
            written.append(atomic_write_bytes(target, encode_png(frame)))
    if "gif" in formats:
        written.append(atomic_write_bytes(folder / "video.gif", encode_gif(frames, fps)))
    if "mp4" in formats:
        written.append(write_mp4(folder / "video.mp4", frames, fps))
    written.append(atomic_write_bytes(folder / "strip.png", encode_png(make_strip(blur, deblurred, frames))))
    return written


def output_names(photos: list[Path]) -> list[str]:
    """One folder name per photo: its stem, made unique within the batch (a.png and a.jpg -> a, a-jpg)."""
    names: list[str] = []
    used: set[str] = set()
    for p in photos:
        name = p.stem or "photo"
        if name in used:
            name = f"{p.stem}-{p.suffix.lstrip('.').lower() or 'x'}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
    return names


@dataclass
class InferResult:
    """What a batch did: the output folder per finished photo, and `(photo, message)` per failure."""

    done: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def infer_photos(loaded: LoadedMethod, photos: list[Path], out: Path, formats: tuple[str, ...] = FORMATS,
                 tile: int | None = None, fps: float = 10.0,
                 on_photo: Callable[[Path, str | None], None] | None = None,
                 on_start: Callable[[Path], None] | None = None) -> InferResult:
    """Run `loaded` on every photo, writing `out/<name>/...`; a photo that fails is recorded (one line) and
    the batch goes on. `on_start(photo)` and `on_photo(photo, error_or_None)` are called before and after
    each, for progress and messages."""
    result = InferResult()
    for photo, name in zip(photos, output_names(photos), strict=True):
        if on_start is not None:
            on_start(photo)
        try:
            rgb = read_photo(photo)
            deblurred, frames = predict_photo(loaded, rgb, tile, name=str(photo))
            write_outputs(out / name, rgb, deblurred, frames, formats, fps)
            result.done.append((photo, out / name))
            error = None
        except BenchError as err:
            error = str(err)
            result.failed.append((str(photo), error))
        if on_photo is not None:
            on_photo(photo, error)
    return result
