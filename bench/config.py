"""Profiles: frozen dataclasses holding every knob of a run, and `--set key=value` overrides.

A profile is data (docs/DESIGN.md "Profiles"): `smoke` (tests; tiny synthetic data and networks), `quick`
(the default; real learning on synthetic data on 2 CPU cores) and `paper` (GoPro, the paper's Sec. 3.1
hyper-parameters; a GPU).
Overrides address fields by dotted path (`train.iters_dm=200`); an unknown path is an error, so a typo can
never silently run the default.

Validation happens at the edge, before any work: `apply_overrides` ends with `validate`, which checks the
whole resolved profile, so a value that would crash (or hang, or exhaust memory) an hour later is refused in
one line naming the field and what it accepts. Every field declares its rule beside it, in its annotation:

    height: Annotated[int, Range(16, 4096)] = 128  # synthetic frame height in pixels

`Range(lo, hi)` bounds a number (finite, inclusive; `multiple=` adds a step), `OneOf(...)` lists the words a
string takes, `Text(pattern)` matches a string, `Flag()` is a bool. Adding a field is that one line: nothing
else to register, and `tests/test_config.py` fails for a field that declares no rule. Rules that tie fields
together (zoom_min <= zoom_max) and the memory a rendered frame needs are checked after the fields
(`_CROSS_CHECKS`, `check_render_memory`). The CLI options outside profiles (`--fps`, `--tile`, `--seeds`,
`--resolution`, `--frames`) use the same rules through `check_option`, so every refusal has one format.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Annotated, Any, get_type_hints

from bench.errors import BenchError
from bench.fileio import parse_json
from bench.memory import available_memory, require

# --- rules: what a field accepts, declared in its annotation ------------------------------------------------


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Range:
    """A finite number from `lo` to `hi` (inclusive); `multiple` and `odd` narrow whole numbers further."""

    lo: float
    hi: float
    multiple: int = 1
    odd: bool = False

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if not self.lo <= value <= self.hi:
            return False
        if self.multiple > 1 and (not isinstance(value, int) or value % self.multiple):
            return False
        return not self.odd or (isinstance(value, int) and value % 2 == 1)

    def allowed(self, kind: type = float) -> str:
        what = "multiples of " + str(self.multiple) if self.multiple > 1 else (
            "whole numbers" if kind is int else "numbers")
        return f"{'odd ' if self.odd else ''}{what} from {_num(self.lo)} to {_num(self.hi)}"


@dataclass(frozen=True)
class OneOf:
    """One of a few words."""

    choices: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return value in self.choices

    def allowed(self, kind: type = str) -> str:
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class Text:
    """A string matching `pattern` in full; `description` says it in words."""

    pattern: str
    description: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def allowed(self, kind: type = str) -> str:
        return self.description


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def allowed(self, kind: type = bool) -> str:
        return "true or false"


Rule = Range | OneOf | Text | Flag
_BIG = 10**9  # "unbounded" counts: far past any budget, still a plain JSON integer
SIDE_PX = Range(16, 4096)  # a synthetic frame side in pixels
COUNT = Range(1, 100_000)  # sequences, batch sizes, timed passes
ITERS = Range(0, _BIG)  # iteration budgets; 0 leaves a stage's networks as initialised (or as loaded)
WIDTH = Range(0, 1024)  # network widths; 0 = the method's paper-sized default. Memory is checked per method
DEVICE = Text(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:K or mps")
LOADERS = ("auto", "thread", "process", "main")  # train.loader: where the next batch is made


# --- profile sections ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    source: Annotated[str, OneOf(("synthetic", "gopro", "video"))] = "synthetic"  # "synthetic" (rendered
    #    here), "gopro" (frames on disk) or "video" (video files on disk); footage needs --root
    height: Annotated[int, SIDE_PX] = 128  # synthetic frame height in pixels (multiples of 16 need no pad)
    width: Annotated[int, SIDE_PX] = 160  # synthetic frame width in pixels
    train_sequences: Annotated[int, COUNT] = 48  # synthetic sequences rendered for the train split
    test_sequences: Annotated[int, COUNT] = 8  # synthetic sequences for the test split (disjoint images and
    #                                            seeds)
    sequence_length: Annotated[int, Range(3, 100_000)] = 63  # frames per synthetic sequence; 63 = 9*7 so
    #                                                          both N tile it exactly
    motion_px: Annotated[float, Range(0.0, 1000.0)] = 8.0  # typical camera path length over one 9-frame
    # window, in pixels (8 puts the quick 9-frame blur near 25 dB against its central frame, like GoPro;
    # measured, see datasets/README.md)
    max_layers: Annotated[int, Range(1, 64)] = 4  # foreground layers per sequence: drawn from 1..max_layers
    test_limit: Annotated[int, Range(0, _BIG)] = 0  # score at most this many test samples (0 = all)


@dataclass(frozen=True)
class TrainConfig:
    crop: Annotated[int, Range(16, 4096, multiple=16)] = 64  # square training crop (paper: 256); the
    #                                                          networks halve it four times
    crop_deblur: Annotated[int, Range(0, 4096, multiple=16)] = 0  # square crop of the deblurring stages (DM,
    #   srn, jin2018's centre network), whose step is far cheaper per pixel than the video stages'; 0 = crop
    zoom_min: Annotated[float, Range(0.01, 100.0)] = 0.2  # random zoom range (paper: [0.2, 2])
    zoom_max: Annotated[float, Range(0.01, 100.0)] = 2.0  # its upper end, >= zoom_min
    flip: Annotated[bool, Flag()] = True  # random horizontal flip (paper)
    batch_video: Annotated[int, COUNT] = 8  # batch for RVE-RVD, BIE-RVD and jin2018 (paper: 10)
    batch_deblur: Annotated[int, COUNT] = 8  # batch for DM and srn (paper: 16)
    iters_dm: Annotated[int, ITERS] = 1500  # DM iterations (paper: 4.5e5)
    iters_autoencoder: Annotated[int, ITERS] = 400  # stage 1, RVE-RVD (paper: 5e4)
    iters_bie: Annotated[int, ITERS] = 400  # stage 2, BIE-RVD (paper: 5e4, "the same training
    #                                         configuration")
    lr_scale: Annotated[float, Range(1e-12, 1e36)] = 1.0  # multiplies every Stage.lr of the methods, which
    #                       hold the paper's Adam rates (1e-4; stage-2 RVD 2e-5), so one knob keeps ratios;
    #                       wide on purpose: a rate that diverges is caught and recorded by training
    lr_scale_bie: Annotated[float, Range(1e-12, 1e36)] = 1.0  # multiplies the rates of the stages naming it
    #                       in `Stage.lr_keys` (the BIE-RVD stage 2 of `ours`) on top of lr_scale; quick
    #                       halves it (docs/DESIGN.md "Profiles": stage 2 stalled on some seeds at full rate)
    grad_clip: Annotated[float, Range(0.0, 1e9)] = 0.0  # clip the gradient norm at this value (0 = off; the
    #                                                     paper does not clip)
    ckpt_every: Annotated[int, Range(1, _BIG)] = 100  # iterations between atomic checkpoints (resume step)
    log_every: Annotated[int, Range(1, _BIG)] = 10  # iterations between loss-curve points
    workers: Annotated[int, Range(0, 256)] = 1  # DataLoader worker processes of the "process" loader
    loader: Annotated[str, OneOf(LOADERS)] = "auto"  # how the next batch is made while a step runs: "thread"
    #   (a background thread of the training process), "process" (`workers` DataLoader processes), "main"
    #   (in the step's thread, no prefetch); auto = thread on CPU and MPS, process on CUDA (measured, see
    #   bench/execution.py)
    precision: Annotated[str, OneOf(("auto", "fp32", "bf16"))] = "auto"  # autocast of the networks' forward
    #   passes (losses and weights stay float32): auto = bfloat16 on CUDA (float16 with a gradient scaler
    #   where bf16 is missing) and on CPUs with avx512_bf16 or amx_bf16 (measured faster), else float32
    channels_last: Annotated[bool, Flag()] = True  # train the components the registry marks
    #   `channels_last_train` in the channels-last layout (false: every network contiguous)
    compile: Annotated[bool, Flag()] = False  # torch.compile each network's forward (opt-in: minutes of
    #   compilation before the first step)
    device: Annotated[str, DEVICE] = "auto"  # auto | cpu | cuda | cuda:K | mps
    threads: Annotated[int, Range(0, 4096)] = 0  # torch intra-op CPU threads (0 = every core this process
    #   may run on). 1 is far faster on a machine shared with other jobs: spinning OpenMP threads stall on
    #   oversubscribed cores
    lr_schedule: Annotated[str, OneOf(("constant", "cosine"))] = "constant"  # the learning rate over a
    #   stage's iterations after the warm-up: the paper's constant Adam rate, or a cosine decay to
    #   min_lr_ratio times it at the last iteration
    warmup_iters: Annotated[int, ITERS] = 0  # linear warm-up from 0 over this many iterations (0 = none)
    min_lr_ratio: Annotated[float, Range(0.0, 1.0)] = 0.0  # the cosine schedule's final rate, as a share of
    #   the stage's rate
    val_every: Annotated[int, ITERS] = 100  # iterations between scores of the fixed validation batch (drawn
    #   from the test split; a curve for the reader, never used to select anything); 0 = no validation
    val_samples: Annotated[int, Range(1, 4096)] = 16  # samples in that validation batch

    def crop_of(self, batch: str) -> int:
        """The crop of a stage whose batch is "video" or "deblur": `crop_deblur` for the latter when set."""
        return int(self.crop_deblur) if batch == "deblur" and self.crop_deblur else int(self.crop)


@dataclass(frozen=True)
class ModelConfig:
    dm_width: Annotated[int, WIDTH] = 0  # DM base channels; 0 = the paper-sized default of methods/dm.py
    dm_growth: Annotated[int, WIDTH] = 0  # RDB growth rate; 0 = default
    dm_rdbs: Annotated[int, Range(0, 64)] = 0  # RDBs per encoder scale; 0 = default
    video_width: Annotated[int, WIDTH] = 16  # RVE/RVD/BIE first-block channels (paper: 16, then 32, 64, 128)
    jin_width: Annotated[int, WIDTH] = 0  # jin2018 base channels; 0 = default (about the original's 18.2 M
    #                                       parameters)
    srn_width: Annotated[int, WIDTH] = 0  # srn base channels; 0 = default (SRN-DeblurNet's 32)


@dataclass(frozen=True)
class EvalConfig:
    runtime_repeats: Annotated[int, COUNT] = 10  # timed forward passes for the runtime median (>= 10)
    runtime_warmup: Annotated[int, Range(0, 100_000)] = 2  # untimed passes before timing
    lpips: Annotated[bool, Flag()] = True  # compute LPIPS when the AlexNet backbone is cached locally
    samples_saved: Annotated[int, Range(0, 100_000)] = 2  # test samples whose outputs are written as PNGs
    #                                                       into the run


@dataclass(frozen=True)
class Profile:
    name: Annotated[str, Text(r"[a-z0-9_-]+", "a lower-case name")]  # part of every run's identity
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
                          iters_bie=12, ckpt_every=4, log_every=2, workers=0, threads=1, val_every=4,
                          val_samples=2, precision="fp32"),  # float32: the tests' 18-step learning checks
        # (losses moving by 0.1%) see the same arithmetic on every CPU; the bf16 path has tests of its own
        model=ModelConfig(dm_width=8, dm_growth=4, dm_rdbs=1, video_width=4, jin_width=4, srn_width=4),
        eval=EvalConfig(runtime_repeats=2, runtime_warmup=1, samples_saved=1),
    ),
    # Budgeted from learning curves measured on the synthetic 9-frame split (docs/DESIGN.md "Profiles"):
    # DM 64-px crops x 16 at 10x the paper's rate with warm-up and cosine gained +0.20 dB over the blurred
    # input at 1000 iterations, +0.27 at 2000, +0.33 at 3000; the video stages at 48 px x 8: pPSNR rose with
    # stage-2 iterations (600: below the floors; 1500: above them) and with stage-1 iterations (300 -> 1000:
    # +0.28 dB); motion_ratio fell as stage 2 trained longer (seed 0: 0.45 at 1500, 0.42 at 3000, 0.38
    # at 4500); the DM's blurred estimate bounds it (docs/DESIGN.md "Profiles"). Step costs (quiet 2-core
    # Xeon, bf16, channels-last, 2 threads): DM 0.09 s, RVE-RVD 0.26 s, BIE-RVD 0.23 s. Stage 2 at half rate:
    # at full rate 2 of 5 seeds lost pPSNR at N = 9 on an fp32 EPYC; at half rate all 5 cleared.
    "quick": Profile(
        name="quick",
        train=TrainConfig(crop=48, crop_deblur=64, batch_video=8, batch_deblur=16, iters_dm=2500,
                          iters_autoencoder=500, iters_bie=1500, lr_scale=10.0, lr_scale_bie=0.5,
                          lr_schedule="cosine",
                          warmup_iters=50, ckpt_every=250, log_every=25, workers=1, threads=0,
                          val_every=250),
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
                          ckpt_every=1000, log_every=100, workers=4, val_every=2000),
    ),
}

DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> Profile:
    """The named profile; a clear error listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise BenchError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


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
        return parse_json(text)
    except ValueError:  # json.JSONDecodeError included, and a value nested too deep
        raise BenchError(f"--set {path}={text!r}: expected {_KIND_WORDS.get(kind, kind.__name__)}") from None


def parse_int_list(text: str, option: str, example: str = "7,9", rule: Range | None = None) -> list[int]:
    """`7,9` -> [7, 9] (`--frames`, `--seeds`); a one-line error naming `option` for anything else, or for
    a value outside `rule`."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"{option} {text!r}: expected integers separated by commas, e.g. {option} "
                         f"{example}") from None
    if not values:
        raise BenchError(f"{option} {text!r}: give at least one value")
    for value in values:
        if rule is not None:
            check_option(option, value, rule)
    return values


# Rules of the CLI options that are not profile fields; the commands check them with `check_option`.
TIMED = Range(1, 1_000_000)  # --dry-run K, perf --steps, --batches, --repeats: timed iterations (a
#                              million 10-ms steps is a day of timing: more is a typo, never a measurement)
WARMUP = Range(0, 1_000_000)  # perf --warmup: untimed passes before timing
MATMUL = Range(64, 16384)  # perf --matmul-size: three float32 squares of 16384 are 3 GiB
SEED = Range(0, 2**32 - 1)  # --seeds of run and ablate, --seed of prepare (numpy and torch seeds)
FPS = Range(0.1, 240.0)  # --fps of bench infer: 0.1 (10 s a frame) to 240 (a GIF shows at most 50)
TILE = Range(32, 8192, multiple=16)  # --tile of bench infer: the networks need multiples of 16
SIDE = Range(16, 16384)  # each side of bench perf --resolution


def cores() -> int:
    """Logical cores of this machine: the unit of the thread and process caps."""
    return os.cpu_count() or 1


def threads_rule() -> Range:
    """Threads of one process (train.threads): up to 4 per core; more only stall on each other."""
    return Range(0, cores() * 4)


def processes_rule(lo: int = 0) -> Range:
    """Worker processes (train.workers, perf --workers, run --nproc): up to 8 per core."""
    return Range(lo, cores() * 8)


def check_option(option: str, value: Any, rule: Rule) -> Any:
    """`value` when `rule` accepts it, else the suite's one-line error: `--fps nan: --fps takes ...`."""
    if not rule.accepts(value):
        raise BenchError(f"{option} {value}: {option} takes {rule.allowed(type(value))}")
    return value


def apply_overrides(profile: Profile, overrides: list[str] | tuple[str, ...]) -> Profile:
    """Return `profile` with each `section.field=value` applied, then validated as a whole (`validate`);
    an unknown field or a value outside its rule is a one-line error."""
    for item in overrides:
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected key=value, e.g. --set train.iters_dm=200")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        profile = _set_path(profile, parts, text, path)
    return validate(profile)


def resolve_profile(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Profile:
    """The named profile with its `--set` overrides applied and validated: what a run or a timing uses."""
    return apply_overrides(get_profile(name), overrides)


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


def rules(cls: type) -> dict[str, tuple[Rule | None, type]]:
    """Field name -> (the rule its annotation declares, the field's type). A field that declares no rule
    gets None: a defect that tests/test_config.py reports."""
    hints = get_type_hints(cls, include_extras=True)
    found: dict[str, tuple[Rule | None, type]] = {}
    for f in fields(cls):
        hint = hints[f.name]
        meta = getattr(hint, "__metadata__", ())
        rule = next((m for m in meta if isinstance(m, Range | OneOf | Text | Flag)), None)
        found[f.name] = (rule, hint.__origin__ if meta else hint)
    return found


def check_section(cls: type, values: dict, prefix: str, where: str = "--set ") -> None:
    """Check a mapping of a section's fields (a profile section, or a weights file's `model`) against the
    rules of `cls`. Unknown keys, values of the wrong type and values outside a rule are one-line errors:
    `<where><prefix><key>=<value>: <prefix><key> takes <what the rule allows>`."""
    table = rules(cls)
    for key, value in values.items():
        if key not in table:
            raise BenchError(f"{where}{prefix}{key}: unknown field; known: {', '.join(table)}")
        rule, kind = table[key]
        wrong_type = isinstance(value, bool) != (kind is bool) or (kind is int and not isinstance(value, int))
        if wrong_type or (rule is not None and not rule.accepts(value)):
            allowed = rule.allowed(kind) if rule is not None else _KIND_WORDS.get(kind, str(kind))
            raise BenchError(f"{where}{prefix}{key}={value!r}: {prefix}{key} takes {allowed}")


def validate(profile: Profile) -> Profile:
    """The whole profile checked before any work: every field against its rule, the fields that depend on
    each other, and the memory one rendered frame needs. Returns the profile; raises a one-line BenchError
    naming the first field at fault as `--set section.field=value` would."""
    for section in fields(profile):
        value = getattr(profile, section.name)
        if is_dataclass(value):
            check_section(type(value), dataclasses.asdict(value), f"{section.name}.")
    for check in _CROSS_CHECKS:
        check(profile)
    return profile


def _zoom_order(profile: Profile) -> None:
    t = profile.train
    if t.zoom_min > t.zoom_max:
        raise BenchError(f"--set train.zoom_min={t.zoom_min}: train.zoom_min must not exceed train.zoom_max "
                         f"({t.zoom_max}); raise train.zoom_max or lower train.zoom_min")


RENDER_BYTES_PER_PIXEL = 200  # peak memory of rendering one synthetic frame and its flow, per pixel (136
#                               measured at 512x512 and 1536x1536; rounded up for the blur accumulator)


def check_render_memory(profile: Profile) -> None:
    """A synthetic frame must fit in the free memory of this machine (data.height x data.width)."""
    d = profile.data
    if d.source != "synthetic":
        return

    need = d.height * d.width * RENDER_BYTES_PER_PIXEL
    require(need, available_memory(), f"--set data.height={d.height} --set data.width={d.width}: rendering "
            "one synthetic frame", "lower data.height and data.width")


def _machine_caps(profile: Profile) -> None:
    """train.threads and train.workers against this machine's cores (their annotations bound any machine)."""
    t = profile.train
    for key, rule in (("threads", threads_rule()), ("workers", processes_rule())):
        value = getattr(t, key)
        if not rule.accepts(value):
            raise BenchError(f"--set train.{key}={value}: train.{key} takes {rule.allowed(int)} on this "
                             f"machine ({cores()} cores)")


_CROSS_CHECKS = (_zoom_order, _machine_caps, check_render_memory)  # rules over several fields, run after
#                                                                    the fields'


def to_dict(profile: Profile) -> dict:
    """Plain-JSON form of a profile (stored in config.json)."""
    return dataclasses.asdict(profile)
