"""Edited copies of the source for the code identity tests: `bench/` and `methods/` are copied to a temporary
folder, text replacements are applied there (never to the real files), and a script runs in a fresh
interpreter with the copy first on the path, as a developer's edit would reach the next `bench run`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = """
import json, sys
from pathlib import Path
import torch
from bench.config import resolve_profile
from bench.registry import get_method
from bench.run import RunSpec, identity

set_folder, out = Path(sys.argv[1]), {}
for name in sys.argv[2].split(","):
    spec, cpu = RunSpec(method=name, profile="smoke", frames=9), torch.device("cpu")
    profile = resolve_profile(spec.profile, spec.overrides)
    ident = identity(spec, get_method(name, 9), profile, set_folder, set_folder, cpu)
    out[name] = ident.run_id
    out.update({f"{name}/{stage}": key for stage, key in ident.stage_keys.items()})
print(json.dumps(out))
"""
METHODS = ("ours", "ours-static", "blurred", "srn")  # three trained methods and one with no stage


def edited_copy(base: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """`bench/` and `methods/` copied under `base/src`, with (old, new) replacements per file (relative to the
    repository root); each `old` must occur."""
    src = base / "src"
    for package in ("bench", "methods"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, replacements in edits.items():
        path = src / rel
        text = path.read_text()
        for old, new in replacements:
            assert old in text, f"{rel}: {old!r} not found; update this test's edit"
            text = text.replace(old, new, 1)
        path.write_text(text)
    return src


def fake_set(base: Path) -> Path:
    """A set folder holding only a manifest: enough for identities, which read its digest alone."""
    folder = base / "synthetic-smoke-9f"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"frames": 9}')
    return folder


def run_keys(src: Path, set_folder: Path, methods: tuple[str, ...] = METHODS) -> dict[str, str]:
    """{method: run id, method/stage: stage key} computed by the code in `src` in a fresh interpreter."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HOME": str(src)}
    done = subprocess.run([sys.executable, "-c", KEYS, str(set_folder), ",".join(methods)], env=env, cwd=src,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def keys_after(base: Path, edits: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """The run ids and stage keys of `METHODS` after `edits` (a fresh copy under `base`)."""
    return run_keys(edited_copy(base, edits), fake_set(base / "data"))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if before[k] != after[k]}
