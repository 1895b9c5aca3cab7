"""The method registry: every method, ablation and baseline is a named `Method` entry.

This module holds types only. A `Method` is data: the component networks it builds (class + keyword arguments
+ which profile width field sets which argument), its training stages (each holding its `Objective`), its
predict and deblur functions (held directly), its loss configuration, the paper's claims it is judged by,
the figures the paper publishes for it, and its rows in the report's video and deblurring tables.
Variants differ by keyword dicts, never by branches in the training or scoring code. The method modules
(`methods.ours`, `trivial`, `jin2018`, `srn`) build their entries from these types and `register` them;
`methods/__init__.py` imports them, so `import methods` (or any `methods.*` module) fills `REGISTRY`.

Stage identity (the cache key of a trained stage, docs/DESIGN.md "Methods"): the stage's name and
objective name, the loss configuration where the objective reads it, the resolved keyword arguments of the
components it trains and of those it runs without training (`uses`), the learning rates, batch kind,
iteration keys, and, recursively, the identities of its `init_from` stages. It never contains the method's
name, so methods that share a stage share its checkpoint.

Metrics are named by their metrics.json key (`Claim.metric`, `PaperFigure.metric`). Their vocabulary (labels,
directions, units) belongs to `bench/metrics.py`, which `methods/` cannot import: bench checks these keys
where it reads the registry (`bench.metrics.check_claimable`), and a test checks every registered entry.

Sizes: `size_mb` is float32 parameter bytes / 10^6 (MB = 10^6 bytes). A method's size counts the networks it
runs at test time (for `ours`: DM + BIE + RVD, as the paper's 45 MB; the RVE is training-only).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from methods.layers import count_params, eval_mode
from methods.losses import LossConfig

FAMILIES = ("paper", "ablation", "baseline")
MB = 1e6  # bytes per MB in every size this package reports
# Batch fields an objective may read: "blur" (b,3,c,c), "sharp" (b,N,3,c,c), "center" (b,3,c,c).
BATCH_FIELDS = ("blur", "sharp", "center")
CLAIM_FRAMES = ("deblur", "video", "ablation")  # N chosen by the report for the claim's table
CLAIM_KINDS = ("accuracy", "size", "speed")

Batch = dict[str, Tensor]  # a training batch: the fields its objective reads, stacked
Logs = dict[str, float]  # what an objective reports besides its loss ("loss" among them)


@dataclass(frozen=True)
class Component:
    """A network of a method: its class, fixed keyword arguments, and profile width fields.

    `widths` maps a constructor argument to a key of the profile's model dict (`dm_width`, ...); a value of 0
    there keeps the class default. `inference` is False for networks used only in training (the RVE).
    `channels_last` stores the weights channels-last at inference (`Method.for_inference`), set only where
    `bench perf` measured it faster on the CPU (DM 1.58x and the whole video 1.50x at 1280x704, against
    `--contiguous`; the BIE gained under 10%; SRN and jin2018's networks ran slower with it).
    `channels_last_train` does the same in training (`train.channels_last`), set where a training step
    (forward, backward, Adam; 1 thread, 48-pixel crops, batch 8, quick widths, bfloat16 autocast) took less
    CPU time than contiguous (`bench perf --train`, median of 3): DM 1.19x, RVE-RVD 1.27x, BIE-RVD 1.24x,
    SRN 1.24x, jin2018's centre network 1.11x; jin2018's pair networks gained under 3% (left contiguous).
    """

    cls: type[nn.Module]  # the network class (a pure nn.Module)
    kwargs: dict[str, Any] = field(default_factory=dict)  # fixed constructor arguments of this method
    widths: dict[str, str] = field(default_factory=dict)  # constructor argument -> profile model key
    inference: bool = True  # False: used only in training (left out of sizes and weights checks)
    channels_last: bool = False  # weights stored channels-last at inference
    channels_last_train: bool = False  # weights (so activations) channels-last in training

    def resolve(self, model: dict | None = None) -> dict[str, Any]:
        """Every constructor argument with its value for this profile (defaults filled in)."""
        params = inspect.signature(self.cls.__init__).parameters
        out = {k: p.default for k, p in params.items()
               if k != "self" and p.default is not inspect.Parameter.empty}
        out.update(self.kwargs)
        for arg, key in self.widths.items():
            value = (model or {}).get(key, 0)
            if value:
                out[arg] = value
        return out

    def identity(self, model: dict | None = None) -> dict[str, Any]:
        """JSON-able description: class name and resolved arguments."""
        return {"class": self.cls.__name__, "kwargs": _jsonable(self.resolve(model))}

    def build(self, model: dict | None = None) -> nn.Module:
        return self.cls(**self.resolve(model))


@dataclass(frozen=True)
class Objective:
    """The loss a stage minimises: fn(method, stage, nets, batch) -> (loss, float logs with "loss")."""

    name: str  # in the stage identity: "deblur" | "autoencoder" | "bie" | "jin-pairs" | "srn"
    fn: Callable[[Method, Stage, nn.ModuleDict, Batch], tuple[Tensor, Logs]]
    fields: tuple[str, ...]  # the batch fields fn reads (BATCH_FIELDS); the loader reads only these
    video_loss: bool = False  # fn reads the method's LossConfig (Eq. 4), which then joins the identity

    def __post_init__(self) -> None:
        unknown = [f for f in self.fields if f not in BATCH_FIELDS]
        if unknown or not self.fields:
            raise ValueError(f"objective {self.name}: fields {self.fields} must name some of {BATCH_FIELDS}")


@dataclass(frozen=True)
class Stage:
    """One training stage (Sec. 3.1). See docs/DESIGN.md "Methods" for the contract."""

    name: str  # "dm" | "autoencoder" | "bie" | "jin-center" | "jin-pairs" | "srn"
    trains: tuple[str, ...]  # components optimised in this stage
    lr: dict[str, float]  # per-component learning rate (paper: 1e-4; stage-2 RVD 2e-5)
    objective: Objective  # the loss this stage minimises
    init_from: tuple[str, ...] = ()  # earlier stages whose weights this stage starts from
    batch: str = "video"  # "video" or "deblur": profile field batch_video or batch_deblur
    iters_keys: tuple[str, ...] = ("iters_dm",)  # TrainConfig fields summed to this stage's iterations
    uses: tuple[str, ...] = ()  # components the objective runs without training them (weights from init_from)
    lr_keys: tuple[str, ...] = ()  # TrainConfig fields multiplied into this stage's rates on top of lr_scale:
    #                                a profile's correction of one stage, leaving the paper's ratios in `lr`


@dataclass(frozen=True)
class Claim:
    """'`better` beats `worse` in `metric`', as the paper states it.

    The metric's direction and unit are the metric's own (`bench.metrics.VOCABULARY`); the paper's figures
    quoted beside the claim are its two sides' `Method.paper` figures from the claim's `source`.
    """

    text: str  # the claim in words
    source: str  # where the paper states it: "Table 1", "Sec. 3.3", "supp."
    metric: str  # metrics.json key it is judged on (aggregate and per-sample)
    better: str = "ours"  # the method expected to win
    worse: str = ""  # the method expected to lose; "" = the entry carrying the claim
    frames: int | str = "ablation"  # N of both sides, or "deblur" | "video" | "ablation" (the report picks N)
    better_frames: int | None = None  # N of `better` when it differs ("ours at 9 stays below jin2018 at 7")
    kind: str = "accuracy"  # "accuracy" | "size" | "speed": size/speed are judged at the paper's sizes

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) and self.frames not in CLAIM_FRAMES:
            raise ValueError(f"claim {self.text!r}: frames must be an int or one of {CLAIM_FRAMES}")
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim {self.text!r}: kind must be one of {CLAIM_KINDS}, not {self.kind!r}")

    def sides(self, owner: str) -> tuple[str, str]:
        """(better, worse) method names, `worse` defaulting to the entry that carries the claim."""
        return self.better, self.worse or owner


@dataclass(frozen=True)
class PaperFigure:
    """A figure the paper publishes for an entry, as printed (GoPro test set, 1280x704, the authors' GPU)."""

    metric: str  # the metrics.json key it compares with
    value: float
    source: str  # where the paper prints it: "Table 1", "Sec. 3.3"
    frames: int | None = None  # the N it was measured at; None where N does not enter (deblurring, sizes)


@dataclass(frozen=True)
class Prediction:
    """What a method returns for a blurred batch: the deblurred image, N frames and (if any) finest flows."""

    deblurred: Tensor  # (b, 3, h, w)
    frames: Tensor  # (b, n, 3, h, w)
    flows: Tensor | None = None  # (b, n, 2, h, w), pixels, backward from the central frame


Predictor = Callable[["Method", nn.ModuleDict, Tensor, int, "Tensor | None"], Prediction]
Deblurrer = Callable[[nn.ModuleDict, Tensor], Tensor]


@dataclass(frozen=True)
class Method:
    """A registered method. See docs/DESIGN.md "Methods" for the contract."""

    name: str  # registry key, also the run folder prefix
    family: str  # "paper" | "ablation" | "baseline"
    description: str  # one line for `bench list`
    components: dict[str, Component]  # the networks, by key
    stages: tuple[Stage, ...]  # training schedule, in order; () for parameter-free methods
    predictor: Predictor  # fn(method, nets, blur, n, center) -> Prediction, called in eval mode
    deblurrer: Deblurrer  # fn(nets, blur) -> the deblurred image alone (timed as the deblurring step)
    frames: tuple[int, ...] | None = None  # allowed N; None = any odd N >= 3
    loss: LossConfig = field(default_factory=LossConfig)  # Eq. 4's knobs, read by video objectives
    uses_true_center: bool = False  # an oracle: predict() is given the true central frame
    frames_reason: str = ""  # why `frames` is restricted, for the error message
    claims: tuple[Claim, ...] = ()  # the paper's claims judged on this entry's runs
    video_role: str = ""  # its "Role" in the report's video table; "" = no row there (ablations have theirs)
    video_rank: int = 0  # its row's place in that table, lowest first; 0 = after the ranked rows
    deblur_column: str = ""  # its measured column's name in the deblurring table ("DM" for ours); "" = none
    deblur_alone: str = ""  # the entry holding this one's deblurring network alone (its size, and its
    # scores where this entry has no run, in the deblurring table; ours: ours-static); "" = none
    floor: bool = False  # the trivial answer the video table and the report's Eq. 6 floors measure against
    still: bool = False  # its N frames are one image repeated, a floor's kind of answer: `bench run` does
    #   not judge it against the floors (Eq. 6 rewards the mean, so a sharp frame repeated loses to the blur)
    paper: tuple[PaperFigure, ...] = ()  # the figures the paper publishes for this entry

    def build(self, model: dict | None = None) -> nn.ModuleDict:
        """The component networks for a profile's model dict (widths; 0 = default), freshly initialised."""
        return nn.ModuleDict({key: comp.build(model) for key, comp in self.components.items()})

    def check_frames(self, n: int) -> None:
        """Raise ValueError with a clear message when this method cannot produce N frames."""
        if self.frames is not None:
            if n not in self.frames:
                allowed = ", ".join(str(f) for f in self.frames)
                reason = f" ({self.frames_reason})" if self.frames_reason else ""
                raise ValueError(f"{self.name} is defined for N={allowed} only{reason}; "
                                 f"use --frames {self.frames[0]}")
            return
        if n < 3 or n % 2 == 0:
            raise ValueError(f"{self.name} needs an odd number of frames N >= 3 (a blur has a central "
                             f"frame), got {n}")

    def predict(self, nets: nn.ModuleDict, blur: Tensor, n: int, center: Tensor | None = None) -> Prediction:
        """Eval-mode forward: blur (b, 3, h, w) in [0, 1], h and w multiples of 16 -> Prediction.

        `center` (b, 3, h, w) is the true central frame, read only by `uses_true_center` methods.
        """
        self.check_frames(n)
        if self.uses_true_center and center is None:
            raise ValueError(f"{self.name} is an oracle: predict() needs the true central frame (center=...)")
        with eval_mode(nets):
            return self.predictor(self, nets, blur, n, center if self.uses_true_center else None)

    def deblur(self, nets: nn.ModuleDict, blur: Tensor) -> Tensor:
        """Eval-mode deblurring alone (the DM, SRN or Jin's centre network): blur (b,3,h,w) -> (b,3,h,w)."""
        with eval_mode(nets):
            return self.deblurrer(nets, blur)

    def for_inference(self, nets: nn.ModuleDict, device: torch.device | str) -> nn.ModuleDict:
        """`nets` on `device` in eval mode, with the `channels_last` components' weights stored channels-last.

        Convolutions follow their weights' memory format, so inputs need no conversion; outputs agree with
        the contiguous layout to float rounding.
        """
        nets = nets.to(device).eval()
        for key in self.channels_last_keys():
            if key in nets:
                nets[key].to(memory_format=torch.channels_last)
        return nets

    def channels_last_keys(self) -> list[str]:
        """The components `for_inference` stores channels-last, sorted."""
        return sorted(key for key, comp in self.components.items() if comp.channels_last)

    def inference_keys(self) -> list[str]:
        """The components run at test time (all but training-only networks such as the RVE), in order."""
        return [key for key, comp in self.components.items() if comp.inference]

    def published(self, metric: str, frames: int | None = None, source: str | None = None) -> float | None:
        """The paper's figure of `metric` for this entry (at N = `frames` where it depends on N; from
        `source` when given), or None when the paper gives none."""
        for fig in self.paper:
            if fig.metric == metric and (source is None or fig.source == source) and (
                    fig.frames is None or fig.frames == frames):
                return fig.value
        return None

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.stages)
        raise KeyError(f"{self.name} has no stage {name!r}; its stages: {known}")

    def stage_loss(self, stage: Stage | str, nets: nn.ModuleDict, batch: Batch) -> tuple[Tensor, Logs]:
        """The stage's training loss on a batch holding its objective's `fields`, and float logs."""
        if isinstance(stage, str):
            stage = self.stage(stage)
        return stage.objective.fn(self, stage, nets, batch)

    def stage_identity(self, stage_name: str, model: dict | None = None) -> dict:
        """JSON-able cache identity of a stage (module docstring); independent of the method's name."""
        stage = self.stage(stage_name)
        return {
            "stage": stage.name,
            "objective": stage.objective.name,
            "loss": self.loss.to_dict() if stage.objective.video_loss else None,
            "trains": {c: self.components[c].identity(model) for c in stage.trains},
            "uses": {c: self.components[c].identity(model) for c in stage.uses},
            "lr": {c: float(stage.lr[c]) for c in sorted(stage.lr)},
            "batch": stage.batch,
            "iters_keys": list(stage.iters_keys),
            "init_from": {s: self.stage_identity(s, model) for s in stage.init_from},
        }

    @property
    def trainable(self) -> bool:
        return bool(self.stages)


class MethodAPI(Protocol):
    """What `bench` may use of a method. `Method` is the implementation; stand-ins in tests follow it."""

    @property
    def name(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def components(self) -> dict[str, Component]: ...
    @property
    def stages(self) -> tuple[Stage, ...]: ...
    @property
    def uses_true_center(self) -> bool: ...
    @property
    def claims(self) -> tuple[Claim, ...]: ...
    @property
    def video_role(self) -> str: ...
    @property
    def video_rank(self) -> int: ...
    @property
    def deblur_column(self) -> str: ...
    @property
    def deblur_alone(self) -> str: ...
    @property
    def floor(self) -> bool: ...
    @property
    def still(self) -> bool: ...
    @property
    def paper(self) -> tuple[PaperFigure, ...]: ...

    def build(self, model: dict | None = None) -> nn.ModuleDict: ...
    def check_frames(self, n: int) -> None: ...
    def predict(self, nets: nn.ModuleDict, blur: Tensor, n: int,
                center: Tensor | None = None) -> Prediction: ...
    def deblur(self, nets: nn.ModuleDict, blur: Tensor) -> Tensor: ...
    def for_inference(self, nets: nn.ModuleDict, device: torch.device | str) -> nn.ModuleDict: ...
    def inference_keys(self) -> list[str]: ...
    def published(self, metric: str, frames: int | None = None,
                  source: str | None = None) -> float | None: ...
    def stage_loss(self, stage: Stage, nets: nn.ModuleDict, batch: Batch) -> tuple[Tensor, Logs]: ...
    def stage_identity(self, stage_name: str, model: dict | None = None) -> dict: ...


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method after checking it: a unique name, known family, stages naming its components, an
    ablation carrying a claim and training something no registered method trains. (Claim metrics are checked
    by bench, which owns the metric vocabulary: module docstring.)"""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} registered twice")
    if method.family not in FAMILIES:
        raise ValueError(f"{method.name}: family must be one of {FAMILIES}, not {method.family!r}")
    for stage in method.stages:
        missing = [c for c in (*stage.trains, *stage.uses) if c not in method.components]
        if missing or set(stage.lr) != set(stage.trains):
            raise ValueError(f"{method.name}: stage {stage.name} names unknown components or lacks their lr")
    if method.family == "ablation":
        _check_ablation(method)
    REGISTRY[method.name] = method
    return method


def _check_ablation(method: Method) -> None:
    """An ablation states the claim it tests and trains something new (else it would measure nothing)."""
    if not method.claims:
        raise ValueError(f"ablation {method.name}: give it the claim it tests (Method.claims)")
    mine = _schedule_identity(method)
    for other in REGISTRY.values():
        if mine == _schedule_identity(other):
            raise ValueError(f"ablation {method.name}: every stage equals one of {other.name}'s (same "
                             "networks, loss and schedule), so it would measure nothing new")


def _schedule_identity(method: Method) -> str:
    return json.dumps([method.stage_identity(s.name) for s in method.stages], sort_keys=True)


def get(name: str) -> Method:
    """The registered method; KeyError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def names(family: str | None = None) -> list[str]:
    """Registered method names (registration order), optionally of one family."""
    return [n for n, m in REGISTRY.items() if family is None or m.family == family]


def summary(model: dict | None = None) -> list[dict]:
    """Rows for `bench list --methods --json`: one per method, then one per distinct component.

    Method rows: name, family, description, params and size_mb (test-time networks), train_params (all
    networks), components (key -> component row name), frames, stages. Component rows: family "component",
    named by their key (`dm`, `rve`, ...) the first time a network of that key appears, `key@method` for a
    differently configured one (an ablation's DM), with params, size_mb and the methods that use it.
    """
    rows: list[dict] = []
    comp_rows: dict[str, dict] = {}
    by_identity: dict[str, str] = {}
    for method in REGISTRY.values():
        names_here: dict[str, str] = {}
        params = train_params = 0
        for key, comp in method.components.items():
            ident = repr((key, comp.identity(model)))
            if ident not in by_identity:
                row_name = key if key not in comp_rows else f"{key}@{method.name}"
                count = count_params(comp.build(model))
                comp_rows[row_name] = {"name": row_name, "family": "component", "class": comp.cls.__name__,
                                       "params": count, "size_mb": round(count * 4 / MB, 3), "used_by": []}
                by_identity[ident] = row_name
            row = comp_rows[by_identity[ident]]
            row["used_by"].append(method.name)
            names_here[key] = row["name"]
            train_params += row["params"]
            params += row["params"] if comp.inference else 0
        rows.append({"name": method.name, "family": method.family, "description": method.description,
                     "params": params, "size_mb": round(params * 4 / MB, 3), "train_params": train_params,
                     "components": names_here, "frames": list(method.frames) if method.frames else None,
                     "stages": [s.name for s in method.stages]})
    return rows + list(comp_rows.values())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)
