"""Whether a stored result is what this checkout's code would make.

A run records its code identity (`bench.code_identity`): the digest of the code its evaluation ran
(`RunConfig.scoring_code`) and, in the stage cache, the per-function digests of the code each training stage
ran (`stage.json` "identity" "code"). The same digests, computed now from this checkout, tell whether the
code that made a result is still the code here. Results made at several commits are then one experiment
when every one is current, and a result whose code has changed since is named at the top of the report:
a difference between methods may otherwise be a difference between code versions.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from bench.code_identity import external_code, run_code, stage_code
from bench.errors import BenchError
from bench.fileio import read_json
from bench.registry import get_method
from bench.store import EXTERNAL, RunConfig, scoring_digest
from bench.train import STAGE_JSON


def code_change(config: RunConfig, stages_dir: Path) -> str | None:
    """None when `config`'s run was made by the code of this checkout; otherwise what differs, in a few
    words (its scoring code, a stage's code, or a stage no longer in the cache to compare with)."""
    if config.family == EXTERNAL:
        return None if config.scoring_code == _external_digest() else "scoring code changed"
    model = json.dumps(config.resolved_profile.get("model"), sort_keys=True)
    try:
        scoring, stages = _current(config.method, config.frames, model)
    except BenchError:
        return "method no longer registered"
    if scoring != config.scoring_code:
        return "scoring code changed"
    if config.weights_from:  # scored from a weights file: no stage of this run trained anything
        return None
    for name, key in sorted(config.stage_keys.items()):
        recorded = _recorded_code(stages_dir / key / STAGE_JSON)
        if recorded is None:
            return f"stage {name} not in the stage cache"
        if recorded != stages.get(name):
            return f"stage {name}'s code changed"
    return None


@functools.cache
def _external_digest() -> str:
    return scoring_digest(external_code())


@functools.cache
def _current(method_name: str, frames: int, model_json: str) -> tuple[str, dict[str, dict[str, str]]]:
    """(scoring digest, {stage name: per-function digests}) of a method as this checkout computes them."""
    method = get_method(method_name, frames)
    model = json.loads(model_json)
    stages = {stage.name: stage_code(method, stage, model) for stage in method.stages}
    return scoring_digest(run_code(method, model)), stages


@functools.cache
def _recorded_code(path: Path) -> dict[str, str] | None:
    """The per-function digests a stage's `stage.json` recorded, or None where it is gone or unreadable."""
    info = read_json(path)
    identity = info.get("identity") if isinstance(info, dict) else None
    code = identity.get("code") if isinstance(identity, dict) else None
    return code if isinstance(code, dict) else None
