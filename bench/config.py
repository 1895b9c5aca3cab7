"""Profiles: frozen dataclasses holding every knob of a run, and `--set key=value` overrides.

A profile is data (SPEC 7): `smoke` (tests; tiny synthetic data and networks), `quick` (the default; real
learning on synthetic data on 2 CPU cores) and `paper` (GoPro, the paper's Sec. 3.1 hyper-parameters; a GPU).
Overrides address fields by dotted path (`train.iters_dm=200`); an unknown path is an error, so a typo can
never silently run the default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # "synthetic" (rendered here), "gopro" (frames on disk) or "video" (video
    #                            files on disk); footage needs --root
    height: int = 128  # synthetic frame height in pixels (a multiple of 16 keeps tests unpadded)
    width: int = 160  # synthetic frame width in pixels
    train_sequences: int = 48  # synthetic sequences rendered for the train split
    test_sequences: int = 8  # synthetic sequences for the test split (disjoint images and seeds)
    sequence_length: int = 63  # frames per synthetic sequence; 63 = 9*7 so both N tile it exactly
    motion_px: float = 8.0  # typical camera path length over one 9-frame window, in pixels (8 puts the
    # quick 9-frame blur near 25 dB against its central frame, like GoPro; measured, see datasets/README.md)
    max_layers: int = 4  # foreground layers per sequence are drawn from 1..max_layers
    test_limit: int = 0  # score at most this many test samples (0 = all)


@dataclass(frozen=True)
class TrainConfig:
    crop: int = 64  # square training crop (paper: 256)
    zoom_min: float = 0.2  # random zoom range (paper: [0.2, 2])
    zoom_max: float = 2.0
    flip: bool = True  # random horizontal flip (paper)
    batch_video: int = 8  # batch for RVE-RVD, BIE-RVD and jin2018 (paper: 10)
    batch_deblur: int = 8  # batch for DM and srn (paper: 16)
    iters_dm: int = 1500  # DM iterations (paper: 4.5e5)
    iters_autoencoder: int = 400  # stage 1, RVE-RVD (paper: 5e4)
    iters_bie: int = 400  # stage 2, BIE-RVD (paper: 5e4, "the same training configuration")
    lr_scale: float = 1.0  # multiplies every Stage.lr of the methods, which hold the paper's Adam rates
    #                        (1e-4; stage-2 RVD 2e-5), so one knob keeps their ratios
    grad_clip: float = 0.0  # clip the gradient norm at this value (0 = off; the paper does not clip)
    ckpt_every: int = 100  # iterations between atomic checkpoints (resume granularity)
    log_every: int = 10  # iterations between loss-curve points
    workers: int = 1  # DataLoader worker processes
    amp: bool = True  # bfloat16/float16 autocast on CUDA (ignored on CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    threads: int = 0  # torch intra-op CPU threads (0 = torch's default, all cores). 1 is far faster on a
    #                   machine shared with other jobs: spinning OpenMP threads stall on oversubscribed cores


@dataclass(frozen=True)
class ModelConfig:
    dm_width: int = 0  # DM base channels; 0 = the paper-sized default of methods/dm.py
    dm_growth: int = 0  # RDB growth rate; 0 = default
    dm_rdbs: int = 0  # RDBs per encoder scale; 0 = default
    video_width: int = 16  # RVE/RVD/BIE first-block channels (paper: 16, then 32, 64, 128)
    jin_width: int = 0  # jin2018 base channels; 0 = default (about the original's 18.2 M parameters)
    srn_width: int = 0  # srn base channels; 0 = default (SRN-DeblurNet's 32)


@dataclass(frozen=True)
class EvalConfig:
    runtime_repeats: int = 10  # timed forward passes for the runtime median (SPEC 6: at least 10)
    runtime_warmup: int = 2  # untimed passes before timing
    lpips: bool = True  # compute LPIPS when the AlexNet backbone is cached locally
    samples_saved: int = 2  # test samples whose outputs are written as PNGs into the run


@dataclass(frozen=True)
class Profile:
    name: str  # profile name, part of every run's identity
    data: DataConfig = field(default_factory=DataConfig)  # what `bench prepare` builds
    train: TrainConfig = field(default_factory=TrainConfig)  # budgets and optimiser
    model: ModelConfig = field(default_factory=ModelConfig)  # network widths
    eval: EvalConfig = field(default_factory=EvalConfig)  # scoring


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        data=DataConfig(height=48, width=64, train_sequences=3, test_sequences=1, sequence_length=18,
                        motion_px=6.0, max_layers=2),
        train=TrainConfig(crop=32, batch_video=2, batch_deblur=2, iters_dm=12, iters_autoencoder=12,
                          iters_bie=12, ckpt_every=4, log_every=2, workers=0, threads=1),
        model=ModelConfig(dm_width=8, dm_growth=4, dm_rdbs=1, video_width=4, jin_width=4, srn_width=4),
        eval=EvalConfig(runtime_repeats=2, runtime_warmup=1, samples_saved=1),
    ),
    # Sized from measured CPU seconds per iteration (1 thread, batch 8): DM at width 16 0.28 s at 64 px;
    # RVE-RVD at video width 8 0.64 s and BIE-RVD about 0.5 s at 48 px (width 16 costs 3 s at 64 px, 5x the
    # SPEC 7 prototype), so the paper's widths do not fit 15 minutes on 2 cores; see docs for the numbers.
    "quick": Profile(
        name="quick",
        # lr_scale 5 (Adam at 5e-4, stage-2 RVD 1e-4): in 200 iterations stage 1 barely moved at 2x the
        # paper's rates; at 5x its loss fell 35% and ours beat blurred in pPSNR at N=9 (measured, seed 0).
        train=TrainConfig(crop=48, batch_video=8, batch_deblur=8, iters_dm=600, iters_autoencoder=200,
                          iters_bie=200, lr_scale=5.0, ckpt_every=50, log_every=10, workers=1, threads=1),
        # Every network narrower than the paper's, so each method trains in minutes on 2 cores: DM, srn
        # and the video networks at half width; jin2018 at a quarter (at half width its four full-resolution
        # networks would still cost several times ours per iteration). `bench list --methods` shows sizes.
        model=ModelConfig(dm_width=16, video_width=8, jin_width=32, srn_width=16),
    ),
    "paper": Profile(
        name="paper",
        data=DataConfig(source="gopro", height=720, width=1280),
        train=TrainConfig(crop=256, batch_video=10, batch_deblur=16, iters_dm=450_000,
                          iters_autoencoder=50_000, iters_bie=50_000,
                          ckpt_every=1000, log_every=100, workers=4),
    ),
}

DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> Profile:
    """The named profile; a clear error listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise BenchError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def _coerce(text: str, current: Any, path: str) -> Any:
    """Parse an override value to the type of the field it replaces."""
    kind = type(current)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float, str):
            return kind(text)
        return json.loads(text)
    except (ValueError, json.JSONDecodeError):
        raise BenchError(f"--set {path}={text}: expected a {kind.__name__}") from None


def parse_int_list(text: str, option: str, example: str = "7,9") -> list[int]:
    """`7,9` -> [7, 9] (`--frames`, `--seeds`); a one-line error naming `option` for anything else."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"{option} {text!r}: expected integers separated by commas, e.g. {option} "
                         f"{example}") from None
    if not values:
        raise BenchError(f"{option} {text!r}: give at least one value")
    return values


def apply_overrides(profile: Profile, overrides: list[str] | tuple[str, ...]) -> Profile:
    """Return `profile` with each `section.field=value` applied; unknown fields are an error."""
    for item in overrides:
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected key=value, e.g. --set train.iters_dm=200")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        profile = _set_path(profile, parts, text, path)
    return profile


def _set_path(obj: Any, parts: list[str], text: str, path: str) -> Any:
    names = [f.name for f in fields(obj)]
    head = parts[0]
    if head not in names or head == "name":
        known = ", ".join(n for n in names if n != "name")
        raise BenchError(f"--set {path}: unknown field {head!r}; known: {known}")
    current = getattr(obj, head)
    if len(parts) == 1:
        if is_dataclass(current):
            raise BenchError(f"--set {path}: {head!r} is a section; name one of its fields")
        return replace(obj, **{head: _coerce(text, current, path)})
    if not is_dataclass(current):
        raise BenchError(f"--set {path}: {head!r} has no fields")
    return replace(obj, **{head: _set_path(current, parts[1:], text, path)})


def to_dict(profile: Profile) -> dict:
    """Plain-JSON form of a profile (stored in config.json)."""
    return dataclasses.asdict(profile)
