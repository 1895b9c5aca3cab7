"""`bench run --explain`: what a run would do and why, without training or writing anything.

Per stage: its key, whether the stage cache would reuse, resume or train it and why, and the qualified names
in its code identity (`bench.code_identity.stage_code`). Per run: its id (which hashes the stage keys and
the scoring code, docs/DESIGN.md "Store"), whether its finished result would be reused and why, and the
qualified names of its scoring code (`bench.code_identity.run_code`). The answer uses the same functions
`bench run` decides with (`bench.run.identity`, `bench.run.stored_result`), so it cannot drift from them. A
set that is not prepared is reported as such: the keys follow its content, and preparing it is a write.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.code_identity import run_code, stage_code
from bench.config import resolve_profile
from bench.data.manifest import MANIFEST, default_data_dir, set_name
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.fileio import read_json
from bench.registry import get_method
from bench.run import _resolve_set, identity, stored_result
from bench.store import CONFIG, METRICS, load_payload, load_weights, runs_dir
from bench.train import CKPT, CKPT_FIX, STAGE_JSON, stage_keys

if TYPE_CHECKING:
    from bench.run import Identity, RunSpec
    from methods.registry import Stage

NAMES_SHOWN = 4  # changed qualified names named in a "why" line before "and N more"


@dataclass(frozen=True)
class StagePlan:
    """What `bench run` would do with one stage."""

    name: str
    key: str | None  # None while the training set is not prepared (the key follows its content)
    action: str  # "reuse" | "resume" | "train" | "skip" (the run's result is reused) | "refused"
    why: str  # one line
    code: tuple[str, ...]  # qualified names in the stage's code identity


@dataclass(frozen=True)
class RunPlan:
    """What `bench run` would do with one (method, frames, seed)."""

    method: str
    frames: int
    seed: int
    data: str  # the training set's folder
    prepared: bool  # whether that set is prepared (it is read, never verified or prepared here)
    run_id: str | None  # None while the set is not prepared
    action: str  # "reuse" | "compute"
    why: str  # one line
    stages: tuple[StagePlan, ...]
    scoring: tuple[str, ...]  # qualified names in the run's scoring code identity


def explain(spec: RunSpec) -> RunPlan:
    """The plan of one `bench run` (module docstring)."""
    method = get_method(spec.method, spec.frames)
    profile = resolve_profile(spec.profile, spec.overrides)
    device = resolve_device(spec.device or profile.train.device)
    data_dir = default_data_dir(spec.data_dir)
    set_folder = data_dir / set_name(spec.source or profile.data.source, profile.name, spec.frames)
    model = asdict(profile.model)
    scoring = tuple(run_code(method, model))
    base = {"method": method.name, "frames": spec.frames, "seed": spec.seed, "data": str(set_folder),
            "scoring": scoring}
    stages = () if spec.weights else method.stages
    if not (set_folder / MANIFEST).is_file():
        why = (f"{set_folder} is not prepared: bench run prepares it first, and the keys follow its content "
               "(run bench prepare, then --explain again)")
        plans = tuple(StagePlan(s.name, None, "train", "the training set is not prepared",
                                tuple(stage_code(method, s, model))) for s in stages)
        return RunPlan(**base, prepared=False, run_id=None, action="compute", why=why, stages=plans)
    eval_folder = _resolve_set(data_dir, spec.eval_data, spec.frames) if spec.eval_data else set_folder
    if spec.weights:
        load_weights(spec.weights)  # a missing or foreign file is one line, as in bench run
    ident = identity(spec, method, profile, set_folder, eval_folder, device)
    action, why = _run_decision(spec, ident)

    stages_dir = runs_dir(spec.runs_dir) / "stages"
    keyed = stage_keys(method, profile, set_folder, spec.seed, device) if stages else {}
    plans = tuple(_stage_plan(s, *keyed[s.name], stages_dir, spec.fresh, action == "reuse") for s in stages)
    return RunPlan(**base, prepared=True, run_id=ident.run_id, action=action, why=why, stages=plans)


def _run_decision(spec: RunSpec, ident: Identity) -> tuple[str, str]:
    """("reuse" | "compute", why) for the run's result, decided by `bench.run.stored_result`."""
    folder = runs_dir(spec.runs_dir) / ident.run_id
    out_dir = folder / "evals" / ident.evals_folder if ident.evals_folder else folder
    if spec.fresh:
        return "compute", "--fresh: every stage is retrained and the result recomputed"
    notes: list[str] = []
    if stored_result(spec, folder, out_dir, ident, notes.append) is not None:
        return "reuse", f"{out_dir / METRICS} is finished and intact, computed from these data"
    return "compute", notes[0] if notes else _other_code(runs_dir(spec.runs_dir), ident)


def _other_code(store: Path, ident: Identity) -> str:
    """Why no result is stored under this id: a run of the same config and data made by other code, named
    with the stages whose keys differ, when there is one."""
    want = ident.resolved
    for folder in sorted(store.glob(f"{want['method']}-*")):
        config, metrics = read_json(folder / CONFIG), read_json(folder / METRICS)
        if not isinstance(config, dict) or not isinstance(metrics, dict) or folder.name == ident.run_id:
            continue
        fields = ("resolved_profile", "dataset", "data_sha256", "frames", "seed", "weights_from_sha256")
        if [config.get(k) for k in fields] != \
                [want[k] for k in ("profile", "dataset", "data_sha256", "frames", "seed", "weights_sha256")]:
            continue
        training = metrics.get("training") if isinstance(metrics.get("training"), dict) else {}
        theirs = {name: (entry or {}).get("key") for name, entry in training.items()}
        differ = [name for name, key in ident.stage_keys.items() if theirs.get(name) != key]
        what = f"the keys of stages {', '.join(differ)} differ" if differ else "the scoring code differs"
        return f"no result under this id; {folder.name} holds this config and data from other code ({what})"
    return "no result stored under this id"


def _stage_plan(stage: Stage, key: str, identity: dict, stages_dir: Path, fresh: bool, run_reused: bool
                ) -> StagePlan:
    """What the stage cache would do with one stage (`bench.train.StageRun.reuse` and `resume`)."""
    folder = stages_dir / key
    code = tuple(identity["code"])
    info = read_json(folder / STAGE_JSON)
    finished = isinstance(info, dict) and info.get("status") == "finished" and (folder / CKPT).is_file()
    if run_reused:
        held = "finished" if finished else "not finished"
        return StagePlan(stage.name, key, "skip", f"the run's result is reused, so the stage is not opened "
                                                  f"(its cache entry is {held})", code)
    if fresh:
        return StagePlan(stage.name, key, "train", "--fresh: its checkpoint is deleted first", code)
    if finished:
        return StagePlan(stage.name, key, "reuse", f"{folder} is finished", code)
    if (folder / CKPT).is_file():
        return _resume_plan(stage, key, folder, code)
    return StagePlan(stage.name, key, "train", _nearest(stages_dir, stage.name, identity), code)


def _resume_plan(stage: Stage, key: str, folder: Path, code: tuple[str, ...]) -> StagePlan:
    try:
        done = load_payload(folder / CKPT, CKPT_FIX).get("iteration")
    except BenchError as err:
        return StagePlan(stage.name, key, "refused", str(err), code)
    return StagePlan(stage.name, key, "resume", f"{folder / CKPT} holds iteration {done}", code)


def _nearest(stages_dir: Path, name: str, identity: dict) -> str:
    """Why a stage trains: the cached stage of the same name whose identity differs in the fewest entries,
    and what differs (for the code, which qualified names)."""
    best: tuple[int, Path, dict] | None = None
    for path in sorted(stages_dir.glob(f"{name}-*/{STAGE_JSON}")):
        info = read_json(path)
        other = info.get("identity") if isinstance(info, dict) else None
        if not isinstance(other, dict):
            continue
        count = sum(identity.get(k) != other.get(k) for k in identity.keys() | other.keys())
        if best is None or count < best[0]:
            best = (count, path.parent, other)
    if best is None:
        return f"no {name} stage is cached in {stages_dir}"
    _, folder, other = best
    parts = [_code_change(identity["code"], other.get("code")) if k == "code" else k
             for k in sorted(identity.keys() | other.keys()) if identity.get(k) != other.get(k)]
    return f"no cached stage with this key; the nearest, {folder.name}, differs in {'; '.join(parts)}"


def _code_change(mine: dict, theirs: Any) -> str:
    """`code (changed: a, b; new: c; gone: d)` between two code identities."""
    theirs = theirs if isinstance(theirs, dict) else {}
    groups = (("changed", [n for n in mine if n in theirs and mine[n] != theirs[n]]),
              ("new", [n for n in mine if n not in theirs]), ("gone", [n for n in theirs if n not in mine]))
    said = [f"{label}: {_some(names)}" for label, names in groups if names]
    return f"code ({'; '.join(said)})"


def _some(names: list[str]) -> str:
    more = len(names) - NAMES_SHOWN
    return ", ".join(names[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def plans_json(plans: list[RunPlan]) -> str:
    return json.dumps({"runs": [asdict(p) for p in plans]}, indent=2)


def print_plans(plans: list[RunPlan], echo: Callable[[str], None]) -> None:
    """The plans as text: one block per run, its stages indented, code names grouped by module."""
    for plan in plans:
        state = "prepared" if plan.prepared else "not prepared"
        echo(f"{plan.method} N={plan.frames} seed {plan.seed}, data {plan.data} ({state})")
        echo(f"  run {plan.run_id or '(id follows the data)'}: {plan.action}: {plan.why}")
        for stage in plan.stages:
            echo(f"  stage {stage.name} {stage.key or '(key follows the data)'}: {stage.action}: {stage.why}")
            _names(f"    code of {stage.name}", stage.code, echo)
        _names("  scoring code", plan.scoring, echo)


def _names(title: str, names: tuple[str, ...], echo: Callable[[str], None]) -> None:
    """`title (k names):` then the names grouped by module, wrapped."""
    echo(f"{title} ({len(names)} names):")
    indent = " " * (len(title) - len(title.lstrip()) + 2)
    for module, members in _by_module(names).items():
        text = f"{module}: {', '.join(members)}"
        echo(textwrap.fill(text, 110, initial_indent=indent, subsequent_indent=indent + "  "))


def _by_module(names: tuple[str, ...]) -> dict[str, list[str]]:
    """{module: [the rest of each name]}, the module being the longest imported prefix."""
    out: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(".")
        cut = next((i for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in sys.modules), 1)
        out.setdefault(".".join(parts[:cut]), []).append(".".join(parts[cut:]))
    return out
