"""The results store: run and stage folders, the run, evaluation and perf record schemas, and the portable
weights format (docs/DESIGN.md "Store"). Files are written and hashed through `bench.fileio`; folders shared
with the user's files go through `bench.outputs`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from bench.config import ModelConfig, check_section
from bench.errors import BenchError
from bench.fileio import (
    UnreadableFile,
    atomic_torch_save,
    atomic_write_json,
    load_json,
    sha256_file,
    stable_hash,
)
from bench.metrics import COST_METRICS, SAMPLE_METRICS

# --- names --------------------------------------------------------------------------------------------------


def checked_name(name: str, what: str, fix: str = "rename it") -> str:
    """`name` when it can name one folder or file inside another: not empty, not `.` or `..`, without path
    separators, NUL or surrounding spaces; else a one-line BenchError saying `what` it is and the `fix`.
    Every name derived from a user's path goes through here before it joins a path, so `--eval-data
    <set>/x/..` (folder name `..`) can never land a result on another file."""
    bad = (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
           or "\x00" in name or name != name.strip())
    if bad:
        raise BenchError(f"{what} {name!r}: not usable as a folder or file name (empty, '.', '..', a path "
                         f"separator or surrounding spaces); {fix}")
    return name


def eval_folder_name(set_name: str, digest: str) -> str:
    """`<set>-<digest12>`: an evaluation's folder under `runs/<run-id>/evals/`, one per exact data."""
    return f"{checked_name(set_name, 'set name')}-{digest[:12]}"


# --- run and stage folders ---------------------------------------------------------------------------------

WEIGHTS_FORMAT = "bmb-weights/1"


def runs_dir(option: str | Path | None = None) -> Path:
    """Where runs live: the option, else `$BENCH_RUNS`, else `./runs`."""
    if option:
        return Path(option)
    env = os.environ.get("BENCH_RUNS")
    return Path(env) if env else Path("runs")


def iter_runs(runs_dir: Path | str) -> list[RunRecord]:
    """Every run folder under `runs_dir` (those holding a config.json), read and checked as `RunRecord`s;
    a damaged or pre-digest entry comes back with its `problem`, never raises."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    records = []
    for folder in sorted(root.iterdir()):
        if folder.name in STORE_FOLDERS or not folder.is_dir():
            continue
        record = read_record(folder)
        if record is not None:
            records.append(record)
    return records


def latest_run(runs_dir: Path | str, method: str, frames: int | None = None,
               with_weights: bool = False, match: Callable[[RunRecord], bool] | None = None
               ) -> Path | None:
    """The newest intact finished run of `method` (by metrics.json's mtime), optionally at `frames`, only
    among runs that wrote a weights.pt (`with_weights`, what `bench infer` needs) and those `match` accepts;
    None if none."""
    best: tuple[float, Path] | None = None
    for record in iter_runs(runs_dir):
        if record.status != "finished" or record.config.method != method:
            continue
        if frames is not None and record.config.frames != frames:
            continue
        if with_weights and record.metrics.weights_sha256 is None:
            continue
        if match is not None and not match(record):
            continue
        mtime = (record.path / METRICS).stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, record.path)
    return best[1] if best else None


def run_id(method: str, resolved: dict) -> str:
    """`<method>-<hash of the resolved config>`: the same command maps to the same folder."""
    return f"{method}-{stable_hash(resolved)}"


def save_weights(path: Path | str, method: str, frames: int, model: dict, state_dicts: dict) -> Path:
    """Write the portable `weights.pt` (docs/DESIGN.md "Store"): plain state dicts and the config needed to
    rebuild the networks, nothing else, so `torch.load(weights_only=True)` accepts it anywhere."""
    payload = {"format": WEIGHTS_FORMAT, "method": method, "frames": int(frames), "model": dict(model),
               "state_dicts": {k: {n: t.detach().cpu().contiguous() for n, t in sd.items()}
                               for k, sd in state_dicts.items()}}
    return atomic_torch_save(path, payload)


def load_payload(path: Path | str, fix: str, kind: str = "weights", fmt: str | None = None) -> dict:
    """Read a file written by `atomic_torch_save` (a stage checkpoint, a `weights.pt`) with
    `torch.load(weights_only=True)`: plain tensors and builtins only, so a pickled object that would need code
    is refused, never run. Every failure is one BenchError line naming the file and `fix`: missing,
    unreadable, not a dict, or (with `fmt`) of another format."""
    import torch  # late: torch-free verbs (list, report) read the store

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such {kind} file; {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged or unsafe file gets the same one-line answer
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(f"{path}: not a loadable {kind} file ({first[:160]}); {fix}") from None
    if not isinstance(payload, dict) or (fmt is not None and payload.get("format") != fmt):
        raise BenchError(f"{path}: not a {fmt or kind} file; {fix}")
    return payload


def load_weights(path: Path | str) -> dict:
    """Read a portable `weights.pt` (`load_payload` with its format checked)."""
    payload = load_payload(path, "use the weights.pt a finished bench run wrote", fmt=WEIGHTS_FORMAT)
    _check_weights(Path(path), payload)
    return payload


def _check_weights(path: Path, payload: dict) -> None:
    """Every field a reader will use, checked before use: a malformed file is one line, not a TypeError
    deep inside a network's constructor."""
    import torch  # late: torch-free verbs (list, report) read the store

    fix = "re-export it with bench run"
    method, frames, model, states = (payload.get(k) for k in ("method", "frames", "model", "state_dicts"))
    if not isinstance(method, str) or not method:
        raise BenchError(f"{path}: malformed weights file (method {method!r} is not a name); {fix}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 3 or frames % 2 == 0:
        raise BenchError(f"{path}: malformed weights file (frames {frames!r} is not an odd N >= 3); {fix}")
    if not isinstance(model, dict):
        raise BenchError(f"{path}: malformed weights file (model is not a mapping of widths); {fix}")
    check_section(ModelConfig, model, "model.", where=f"{path}: ")
    if not isinstance(states, dict) or not all(
            isinstance(sd, dict) and all(isinstance(k, str) and torch.is_tensor(t) for k, t in sd.items())
            for sd in states.values()):
        raise BenchError(f"{path}: malformed weights file (state_dicts is not a map of tensors); {fix}")
# --- the run record ----------------------------------------------------------------------------------------
# One schema for what a run folder holds, written by `bench run` and read, checked, by every reader (`list`,
# `report`, `infer`, `ablate`, the reuse check). Layout:
#   runs/<run-id>/config.json                     RunConfig: the run's identity
#   runs/<run-id>/env.json                        RunEnv of the run's own result: packages, commit, device
#   runs/<run-id>/metrics.json                    RunMetrics: finished (results) or failed (the reason)
#   runs/<run-id>/curves.json                     {stage: [[iteration, loss], ...]} of the stages trained
#   runs/<run-id>/weights.pt                      portable weights (WEIGHTS_FORMAT), digest in metrics.json
#   runs/<run-id>/samples/<id>_<role>[<n>].png    roles blur, deblurred, frame<n>, truth<n> (n = 1..N)
#   runs/<run-id>/evals/<set>-<digest12>/         metrics.json, env.json (and samples/) of a score on
#                                                 another set
#   runs/dryrun/<method>-<device>-<hash>.json      a `bench run --dry-run` timing (not a run)

DRY_RUNS = "dryrun"  # `bench run --dry-run` timings (bench/trainperf.py), never results
RECORD_VERSION = 3  # config.json "record"; 2 had no code identity, 1 no data digests: never reused
CONFIG, ENV, METRICS, CURVES, WEIGHTS = "config.json", "env.json", "metrics.json", "curves.json", "weights.pt"
STORE_FOLDERS = ("stages", "perf", DRY_RUNS)  # folders of the store that hold no run: the stage cache,
#   bench perf, bench run --dry-run
SAMPLE_ROLES = ("blur", "deblurred", "frame", "truth")  # frame and truth carry a 1-based frame number


EXTERNAL = "external"  # RunConfig.family of predictions scored by `bench score` (bench/score.py): no
#   stages, the prediction folder in `weights_from` and the digest of its files in `weights_from_sha256`


class RecordError(BenchError):
    """A store file that does not follow the run record; `kind` is "damaged" or "legacy" (pre-digest)."""

    def __init__(self, message: str, kind: str = "damaged") -> None:
        super().__init__(message)
        self.kind = kind


_KINDS = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list, "number": (int, float)}


def _get(data: dict, key: str, kind: str, path: Path) -> Any:
    """`data[key]` checked against `kind`, a `_KINDS` name with `?` when null is allowed; else RecordError."""
    if key not in data:
        raise RecordError(f"{path}: no {key!r}")
    value, base = data[key], kind.rstrip("?")
    if value is None and kind.endswith("?"):
        return None
    ok = isinstance(value, _KINDS[base]) and (base == "bool" or not isinstance(value, bool))
    if not ok or (base == "number" and not math.isfinite(value)):
        raise RecordError(f"{path}: {key!r} is {type(value).__name__}, not {kind.replace('?', ' or null')}")
    return value


def _get_all(data: dict, kinds: dict[str, str], path: Path) -> dict[str, Any]:
    return {key: _get(data, key, kind, path) for key, kind in kinds.items()}


_ANNOTATION_KINDS = {"str": "str", "int": "int", "bool": "bool", "dict": "dict", "float": "number"}


@functools.cache
def _field_kinds(record: type, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """The `_KINDS` name of each field of the record dataclass `record` but `skip`, from its annotation, so
    a record's field list is written once, in its dataclass: `tuple[...]` is a JSON list, another record
    dataclass a JSON object, `X | None` allows null. An annotation outside these is a TypeError."""
    kinds = {}
    for item in fields(record):
        if item.name in skip:
            continue
        text = str(item.type)
        base = text.removesuffix(" | None")
        kind = "list" if base.startswith("tuple[") else _ANNOTATION_KINDS.get(base)
        if kind is None and is_dataclass(globals().get(base)):
            kind = "dict"
        if kind is None:
            raise TypeError(f"{record.__name__}.{item.name}: {text} has no JSON kind in the run record")
        kinds[item.name] = kind + ("?" if base != text else "")
    return kinds


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load_object(path: Path) -> dict:
    """The JSON object in `path`; RecordError when missing, unreadable or not an object."""
    try:
        data = load_json(path)
    except UnreadableFile as err:  # missing, not a regular file, too large or deep, not JSON
        raise RecordError(str(err)) from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: holds a {type(data).__name__}, not a JSON object")
    return data


@dataclass(frozen=True)
class RunConfig:
    """config.json: what the run was asked; the run id hashes these (with the resolved profile)."""

    run_id: str  # `<method>-<hash>`, the folder's name
    method: str  # registry name
    family: str  # "paper" | "ablation" | "baseline" | EXTERNAL (`bench score`: another method's files)
    profile: str  # profile name (smoke, quick, paper)
    overrides: tuple[str, ...]  # the `--set KEY=VALUE` items, as given
    resolved_profile: dict  # every profile field after the overrides
    dataset: str  # the training set's folder name
    data_sha256: str  # the training set's content digest (`data_digest`)
    frames: int  # N
    seed: int  # initialisation and batch order (the data are fixed across seeds)
    stages: tuple[dict, ...]  # the training schedule: name, trains, lr, init_from, batch, iters_keys
    weights_from: str | None  # `--weights FILE` scored instead of training, else None
    weights_from_sha256: str | None  # that file's sha256
    stage_keys: dict  # stage name -> its cache key, which follows the stage's code (empty with --weights)
    scoring_code: str  # digest of the code its evaluation runs (`bench.code_identity.run_code`)

    def to_json(self) -> dict:
        return dict(asdict(self), record=RECORD_VERSION, overrides=list(self.overrides),
                    stages=list(self.stages))

    @classmethod
    def from_json(cls, data: dict, path: Path) -> RunConfig:
        if data.get("record") != RECORD_VERSION:
            when = "before data digests were recorded" if "record" not in data else \
                f"by an older version of the suite (record {data['record']!r}, not {RECORD_VERSION})"
            raise RecordError(f"{path}: stored {when}; it is never reused: rerun its bench run command",
                              "legacy")
        values = _get_all(data, _field_kinds(cls), path)
        if not all(isinstance(o, str) for o in values["overrides"]) or \
                not all(isinstance(s, dict) for s in values["stages"]):
            raise RecordError(f"{path}: 'overrides' must list strings and 'stages' objects")
        return cls(**dict(values, overrides=tuple(values["overrides"]), stages=tuple(values["stages"])))


@dataclass(frozen=True)
class RunEnv:
    """env.json: where and from what code the numbers came (`bench.env.environment`)."""

    git_commit: str | None  # None outside a git checkout
    git_dirty: bool | None  # tracked files differed from the commit
    device: str  # the torch device string the run used
    device_name: str  # its human name (GPU model, CPU model and threads)
    python: str
    platform: str
    date: str  # UTC, ISO 8601, when the run was configured
    packages: dict  # package -> version (None when not installed)

    @classmethod
    def from_json(cls, data: dict, path: Path) -> RunEnv:
        return cls(**_get_all(data, _field_kinds(cls), path))

    @property
    def commit_text(self) -> str:
        """The commit, with `+dirty` when uncommitted changes made the numbers; "" when unknown."""
        return (self.git_commit or "") + ("+dirty" if self.git_commit and self.git_dirty else "")


@dataclass(frozen=True)
class RunMetrics:
    """metrics.json: a finished result (scores per sample and aggregate) or a failure and its reason."""

    status: str  # "finished" | "failed"
    run_id: str
    error: str | None = None  # failed: the reason, one line
    method: str = ""
    profile: str = ""
    dataset: str = ""  # the training set's folder name ...
    data_sha256: str = ""  # ... and digest
    eval_dataset: str = ""  # the set scored (the training set unless --eval-data) ...
    eval_sha256: str = ""  # ... and its digest
    frames: int = 0
    seed: int = 0
    aggregate: dict = field(default_factory=dict)  # metrics.SAMPLE_METRICS (means), COST_METRICS, device
    samples: tuple[dict, ...] = ()  # per test sample: "id" and metrics.SAMPLE_METRICS
    metric_definitions: dict = field(default_factory=dict)  # metric -> the one-line definition used
    training: dict = field(default_factory=dict)  # per stage: key, iterations, time_s, probe_loss, the
    #   validation curve ("validation": metric, reference, points [[iteration, score or null], ...]; null for
    #   stages trained before it existed), execution (precision, threads, loader, layout, processor), ...
    training_time_s: float = 0.0  # stages summed (reused stages count their original time)
    wall_s: float = 0.0  # this command's wall time
    weights_sha256: str | None = None  # the weights.pt this run wrote; None when it wrote none
    weights_bytes: int | None = None  # its size, so a truncated file shows without hashing it

    @property
    def trained_on(self) -> tuple[str, ...]:
        """Where its stages were trained, one entry per distinct setting, "<chip> · <precision>[ · <k>
        threads]": the quick recipe's outcome can differ between CPUs, precisions and thread counts
        (docs/DESIGN.md "Profiles"), so every result names them. Stages stored before the chip was
        recorded say "chip not recorded"."""
        seen = []
        for info in self.training.values():
            e = info.get("execution") if isinstance(info, dict) else None
            if not isinstance(e, dict):
                continue
            text = f"{e.get('processor') or 'chip not recorded'} · {e.get('precision', '?')}"
            if str(e.get("device", "cpu")).startswith("cpu"):
                text += f" · {e.get('threads', '?')} thread{'' if e.get('threads') == 1 else 's'}"
            seen.append(text)
        return tuple(dict.fromkeys(seen))

    def to_json(self) -> dict:
        if self.status == "failed":
            return {"status": "failed", "run_id": self.run_id, "error": self.error}
        return dict(asdict(self), samples=list(self.samples))

    @classmethod
    def from_json(cls, data: dict, path: Path) -> RunMetrics:
        status = _get(data, "status", "str", path)
        if status == "failed":
            return cls("failed", _get(data, "run_id", "str", path), error=_get(data, "error", "str", path))
        if status != "finished":
            raise RecordError(f"{path}: status {status!r} is neither finished nor failed")
        values = _get_all(data, _field_kinds(cls, skip=("status", "error")), path)
        _check_scores(values["aggregate"], path, "aggregate", COST_METRICS)
        _get(values["aggregate"], "device", "str", path)
        for i, sample in enumerate(values["samples"]):
            if not isinstance(sample, dict) or not isinstance(sample.get("id"), str):
                raise RecordError(f"{path}: samples[{i}] is not an object with a string 'id'")
            _check_scores(sample, path, f"samples[{i}]")
        _check_validation(values["training"], path)
        return cls(status, **dict(values, samples=tuple(values["samples"]),
                                  training_time_s=float(values["training_time_s"]),
                                  wall_s=float(values["wall_s"])))


def _check_validation(training: dict, path: Path) -> None:
    """Each stage's validation curve, where there is one: a metric name and [iteration, score or null]
    points (what `bench report` plots), checked as curves.json is (`_check_curves`)."""
    curves = {stage: info["validation"] for stage, info in training.items()
              if isinstance(info, dict) and info.get("validation") is not None}
    for stage, curve in curves.items():
        if not isinstance(curve, dict) or not isinstance(curve.get("metric"), str):
            raise RecordError(f"{path}: training[{stage!r}]['validation'] is not a metric with points")
    _check_curves({stage: curve.get("points") for stage, curve in curves.items()}, path,
                  "training[{stage!r}]['validation'] points", null_scores=True)


def _check_curves(curves: dict, path: Path, where: str, null_scores: bool = False) -> None:
    """The one check of curves, stage -> [[iteration, score], ...] of numbers (scores may be null where
    `null_scores`); `where` names the curve in the error, with `{stage!r}` filled in."""
    for stage, points in curves.items():
        curve = isinstance(points, list) and all(
            isinstance(p, list) and len(p) == 2 and _is_number(p[0])
            and (_is_number(p[1]) or (null_scores and p[1] is None)) for p in points)
        if not curve:
            raise RecordError(f"{path}: {where.format(stage=stage)} are not [iteration, score] pairs")


def _check_scores(scores: dict, path: Path, where: str, extra: tuple[str, ...] = ()) -> None:
    """Every per-sample metric key (and `extra`) present, each a finite number or null."""
    for key in (*SAMPLE_METRICS, *extra):
        if key not in scores:
            raise RecordError(f"{path}: {where} has no {key!r}")
        if scores[key] is not None and not _is_number(scores[key]):
            raise RecordError(f"{path}: {where}[{key!r}] is {scores[key]!r}, not a number or null")


def read_config(folder: Path | str) -> RunConfig:
    """The checked config.json of the run in `folder`; RecordError when missing, damaged or pre-digest."""
    return RunConfig.from_json(_load_object(Path(folder) / CONFIG), Path(folder) / CONFIG)


def read_env(folder: Path | str) -> RunEnv:
    """The checked env.json of the run in `folder`; RecordError when missing or damaged."""
    return RunEnv.from_json(_load_object(Path(folder) / ENV), Path(folder) / ENV)


def read_metrics(path: Path | str) -> RunMetrics | None:
    """The checked metrics.json at `path`; None when there is none yet; RecordError when damaged."""
    path = Path(path)
    if not path.is_file() and not path.is_symlink():
        if path.exists():  # a folder or a special file where the result belongs
            raise RecordError(f"{path}: not a file")
        return None
    return RunMetrics.from_json(_load_object(path), path)


def read_curves(folder: Path | str) -> dict[str, list[tuple[float, float]]]:
    """curves.json of a run: stage -> [(iteration, loss), ...]; {} when the run wrote none (no training)."""
    path = Path(folder) / CURVES
    if not path.is_file():
        return {}
    curves = _load_object(path)
    _check_curves(curves, path, "stage {stage!r} points")
    return {stage: [(float(i), float(v)) for i, v in points] for stage, points in curves.items()}


_SAMPLE_PNG = re.compile(r"^(?P<sid>.+)_(?:(?P<image>blur|deblurred)|(?P<role>frame|truth)(?P<n>[1-9]\d*))"
                         r"\.png$")


def sample_image_name(sample_id: str, role: str, n: int | None = None) -> str:
    """The file name of one stored sample image: `<id>_blur.png`, `<id>_deblurred.png`, `<id>_frame<n>.png`,
    `<id>_truth<n>.png` (n = 1..N); the id is made file-safe."""
    if role not in SAMPLE_ROLES or (n is None) != (role in ("blur", "deblurred")):
        raise ValueError(f"sample image role {role!r} with frame {n!r}")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample_id)).strip(".") or "sample"
    return f"{safe}_{role}{'' if n is None else n}.png"


def read_sample_images(folder: Path | str) -> dict[str, dict[str, Any]]:
    """The sample images in `folder` (a run's or evaluation's `samples/`), by sample id:
    {"blur": Path, "deblurred": Path, "frame": [Path by n], "truth": [Path by n]}; other files ignored."""
    found: dict[str, dict[str, Any]] = {}
    root = Path(folder)
    if not root.is_dir():
        return found
    for png in sorted(root.iterdir()):
        m = _SAMPLE_PNG.match(png.name)
        if m is None or not png.is_file():
            continue
        entry = found.setdefault(m["sid"], {"frame": {}, "truth": {}})
        if m["image"]:
            entry[m["image"]] = png
        else:
            entry[m["role"]][int(m["n"])] = png
    for entry in found.values():
        for role in ("frame", "truth"):
            entry[role] = [entry[role][k] for k in sorted(entry[role])]
    return found


@dataclass(frozen=True)
class EvalRecord:
    """One cross-dataset evaluation of a run: `runs/<run-id>/evals/<set>-<digest12>/`."""

    path: Path
    metrics: RunMetrics | None  # None while unfinished or when `problem` is set
    problem: str | None = None  # one line: why it cannot be used
    problem_kind: str = ""  # "damaged" | "legacy"
    env: RunEnv | None = None  # where and from what code it was scored (beside its metrics.json)

    @property
    def status(self) -> str:
        """finished | failed | incomplete | damaged | legacy, as `RunRecord.status`."""
        if self.problem:
            return self.problem_kind
        return self.metrics.status if self.metrics is not None else "incomplete"


@dataclass(frozen=True)
class RunRecord:
    """A run folder, read and checked: its config, env and metrics, or the one-line `problem` that makes
    it unusable (`problem_kind` "damaged" or "legacy"; the parts read before the problem are kept, for
    display). An unusable entry is recomputed, never reused; readers check `status` first."""

    path: Path
    config: RunConfig | None
    env: RunEnv | None
    metrics: RunMetrics | None  # None while the run has not finished once
    problem: str | None = None
    problem_kind: str = ""
    evals: tuple[EvalRecord, ...] = ()

    @property
    def status(self) -> str:
        """finished | failed | incomplete (no metrics.json yet) | damaged | legacy."""
        if self.problem:
            return self.problem_kind
        return self.metrics.status if self.metrics is not None else "incomplete"


def read_record(folder: Path | str) -> RunRecord | None:
    """The run in `folder` as a RunRecord (None when the folder holds no config.json: not a run)."""
    folder = Path(folder)
    if not (folder / CONFIG).exists() and not (folder / CONFIG).is_symlink():
        return None
    places = sorted(p for p in (folder / "evals").iterdir() if p.is_dir() and not p.is_symlink()) \
        if (folder / "evals").is_dir() else []
    env = metrics = None
    try:
        config = read_config(folder)
    except RecordError as err:  # the evaluations of a pre-digest or unreadable run share its problem
        evals = tuple(EvalRecord(p, None, str(err), err.kind) for p in places)
        return RunRecord(folder, None, None, None, str(err), err.kind, evals)
    evals = tuple(_agreeing_eval(e, config) for e in map(_read_eval, places))
    try:
        if config.run_id != folder.name:
            raise RecordError(f"{folder / CONFIG}: run_id {config.run_id!r} is not the folder's name")
        check_config_identity(config, folder / CONFIG)
        metrics = read_metrics(folder / METRICS)
        env = read_env(folder) if metrics is not None else None  # the environment of the result
        if metrics is not None and metrics.run_id != folder.name:
            raise RecordError(f"{folder / METRICS}: run_id {metrics.run_id!r} is not the folder's name")
        if metrics is not None and metrics.status == "finished":
            check_metrics_agree(metrics, config, folder / METRICS, own=True)
        if metrics is not None and metrics.weights_sha256 is not None:
            _check_weights_size(folder / WEIGHTS, metrics.weights_bytes)
            _raise_problem(verify_weights(folder, metrics))  # every reader, every time: one verdict
        if metrics is not None and metrics.status == "finished":
            read_curves(folder)
    except RecordError as err:
        return RunRecord(folder, config, env, metrics, str(err), err.kind, evals)
    return RunRecord(folder, config, env, metrics, evals=evals)


def _read_eval(folder: Path) -> EvalRecord:
    try:
        metrics = read_metrics(folder / METRICS)
        env = read_env(folder) if metrics is not None else None
        if metrics is not None and metrics.status == "finished" and \
                folder.name != f"{metrics.eval_dataset}-{metrics.eval_sha256[:12]}":
            raise RecordError(f"{folder / METRICS}: scored {metrics.eval_dataset} "
                              f"({metrics.eval_sha256[:12]}), which this folder's name does not say")
    except RecordError as err:
        return EvalRecord(folder, None, str(err), err.kind)
    return EvalRecord(folder, metrics, env=env)


def _check_weights_size(path: Path, size: int | None) -> None:
    try:
        actual = path.stat().st_size
    except OSError:
        raise RecordError(f"{path}: missing; the run's metrics.json says it wrote one") from None
    if size is not None and actual != size:
        raise RecordError(f"{path}: {actual} bytes, not the {size} the run wrote (truncated or replaced)")


def verify_weights(folder: Path | str, metrics: RunMetrics) -> str | None:
    """None when the run's weights.pt is the file it wrote (sha256 as recorded); else the one-line reason."""
    if metrics.weights_sha256 is None:
        return None
    path = Path(folder) / WEIGHTS
    try:
        digest = sha256_file(path)
    except OSError as err:
        return f"{path}: unreadable ({err.strerror or err})"
    return None if digest == metrics.weights_sha256 else f"{path}: its sha256 differs from the one recorded"


def run_request(method: str, profile: dict, dataset: str, data_sha256: str, frames: int, seed: int,
                weights_sha256: str | None, stage_keys: dict, scoring_code: str) -> dict:
    """What a run id hashes (`run_id`): the request, resolved. `bench.run.identity` builds a new run's id
    from it and `check_config_identity` a stored one's, so both follow the same definition."""
    return {"method": method, "profile": profile, "dataset": dataset, "data_sha256": data_sha256,
            "frames": frames, "seed": seed, "eval_set": "test", "weights_sha256": weights_sha256,
            "stage_keys": stage_keys, "scoring_code": scoring_code}


def scoring_digest(code: dict[str, str]) -> str:
    """`RunConfig.scoring_code`: the digest of the map of code a run's evaluation runs
    (`bench.code_identity.run_code`, or `external_code` for `bench score`)."""
    return stable_hash(code, 16)


def config_run_id(config: RunConfig) -> str:
    """The run id that a config.json's own fields give."""
    return run_id(config.method, run_request(config.method, config.resolved_profile, config.dataset,
                                             config.data_sha256, config.frames, config.seed,
                                             config.weights_from_sha256, config.stage_keys,
                                             config.scoring_code))


def check_config_identity(config: RunConfig, path: Path) -> None:
    """RecordError unless config.json hashes to its own run id and names the profile it resolved: a config
    edited to another method, profile, set, N or seed (or copied from another run) never passes as this
    run."""
    derived = config_run_id(config)
    if derived != config.run_id:
        raise RecordError(f"{path}: its fields give run id {derived}, not {config.run_id} (edited, or copied "
                          "from another run)")
    if config.resolved_profile.get("name") != config.profile:
        raise RecordError(f"{path}: profile {config.profile!r} is not the one it resolved "
                          f"({config.resolved_profile.get('name')!r})")


def check_metrics_agree(metrics: RunMetrics, config: RunConfig, path: Path, own: bool) -> None:
    """RecordError unless a finished metrics.json names the run of `config`: its id, method, profile,
    training set and digest, N and seed; the run's own result (`own`) also scored that set, and records its
    weights.pt unless the run scored a `--weights` file."""
    fields = ("run_id", "method", "profile", "dataset", "data_sha256", "frames", "seed")
    for name in fields:
        if getattr(metrics, name) != getattr(config, name):
            raise RecordError(f"{path}: {name} {getattr(metrics, name)!r} is not the run's "
                              f"{getattr(config, name)!r} (config.json)")
    if not own:
        return
    if (metrics.eval_dataset, metrics.eval_sha256) != (config.dataset, config.data_sha256):
        raise RecordError(f"{path}: scored {metrics.eval_dataset}, not the run's own set {config.dataset}")
    if config.weights_from is None and metrics.weights_sha256 is None:
        raise RecordError(f"{path}: records no weights.pt for a trained run")


def _agreeing_eval(evaluation: EvalRecord, config: RunConfig) -> EvalRecord:
    """`evaluation`, or the same marked damaged when its finished metrics.json names another run."""
    metrics = evaluation.metrics
    if evaluation.problem or metrics is None or metrics.status != "finished":
        return evaluation
    try:
        check_metrics_agree(metrics, config, evaluation.path / METRICS, own=False)
    except RecordError as err:
        return EvalRecord(evaluation.path, None, str(err), err.kind)
    return evaluation


def _raise_problem(problem: str | None) -> None:
    if problem:
        raise RecordError(problem)


def stage_record_problem(stage: str, summary: dict, curve: Any, path: Path) -> str | None:
    """Why a stage's stored summary and loss curve (its stage.json) cannot go into a run's metrics.json and
    curves.json, or None when they can: the checks `read_metrics` and `read_curves` make, made before they
    are copied, so a damaged stage.json never yields a record that the next run rejects."""
    try:
        _check_validation({stage: summary}, path)
    except RecordError as err:
        return str(err)
    try:
        _check_curves({stage: curve}, path, "'curve' of stage {stage!r}")
    except RecordError as err:
        return str(err)
    if not _is_number(summary.get("time_s")):
        return f"{path}: 'time_s' is {summary.get('time_s')!r}, not a number"
    probe = summary.get("probe_loss")
    if probe is not None and not (isinstance(probe, list) and len(probe) == 2
                                  and all(map(_is_number, probe))):
        return f"{path}: 'probe_loss' is not a [before, after] pair of numbers"
    if summary.get("execution") is not None and not isinstance(summary["execution"], dict):
        return f"{path}: 'execution' is not an object"
    return None


# --- stored bench perf results -----------------------------------------------------------------------------

PERF_TIMES = ("runtime_deblur_times_s", "runtime_video_times_s")  # every timed pass of a perf row


@dataclass(frozen=True)
class PerfResult:
    """`runs/perf/<profile>-<N>f-<resolution>-<device>.json`: one `bench perf --store` measurement, read by
    the report's size and speed claims (untrained, seeded networks at the widths of `profile`)."""

    profile: str  # whose widths were built: "paper" = the paper-sized networks
    frames: int  # N of the video predictions timed
    resolution: str  # WIDTHxHEIGHT of the blurred input
    device: str  # the device's human name
    repeats: int  # timed passes per figure, after `warmup` untimed ones
    warmup: int
    env: RunEnv  # packages, commit, date of the measurement
    rows: tuple[dict, ...]  # `bench perf` rows: method, params, size_mb, runtime_*_s, PERF_TIMES, ...

    def to_json(self) -> dict:
        return dict(asdict(self), rows=list(self.rows))

    @classmethod
    def from_json(cls, data: dict, path: Path) -> PerfResult:
        values = _get_all(data, _field_kinds(cls), path)
        for i, row in enumerate(values["rows"]):
            if not isinstance(row, dict) or not isinstance(row.get("method"), str):
                raise RecordError(f"{path}: rows[{i}] is not an object with a string 'method'")
            if row.get("skipped") is None and not all(
                    isinstance(row.get(k), list) and row[k] and all(_is_number(t) for t in row[k])
                    for k in PERF_TIMES):
                raise RecordError(f"{path}: rows[{i}] ({row['method']}) lacks its timed passes")
        return cls(**dict(values, env=RunEnv.from_json(values["env"], path), rows=tuple(values["rows"])))

    def file_name(self) -> str:
        device = re.sub(r"[^A-Za-z0-9]+", "-", self.device).strip("-")[:60] or "device"
        return f"{self.profile}-{self.frames}f-{self.resolution}-{device}.json"


def store_perf(runs_dir: Path | str, result: PerfResult) -> Path:
    """Write `result` under `<runs_dir>/perf/` (one file per profile, N, resolution and device)."""
    return atomic_write_json(Path(runs_dir) / "perf" / result.file_name(), result.to_json())


def latest_perf(runs_dir: Path | str, profile: str = "paper") -> tuple[PerfResult | None, list[str]]:
    """The newest stored perf result of `profile` (by file mtime), and one line per damaged file skipped."""
    folder = Path(runs_dir) / "perf"
    found: list[tuple[float, PerfResult]] = []
    problems = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            result = PerfResult.from_json(_load_object(path), path)
        except RecordError as err:
            problems.append(str(err))
            continue
        if result.profile == profile:
            found.append((path.stat().st_mtime, result))
    return (max(found, key=lambda f: f[0])[1] if found else None), problems
