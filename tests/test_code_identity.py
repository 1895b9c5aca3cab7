"""bench/code_identity.py: a stage's key follows the code the stage runs, per class and per function, in
`methods/` and in the harness (`bench/`); a run's id follows its stages' keys and its scoring code.

The edit tests change a copy of the source on disk and compute the keys in a fresh interpreter, as a
developer's edit would reach the next `bench run`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import edits
import pytest
import torch

from bench.code_identity import closure_digests, harness_names, run_code, stage_code
from bench.config import get_profile
from bench.train import stage_key
from methods import registry

ROOT = Path(__file__).resolve().parents[1]
SMOKE = get_profile("smoke")
KEYS_SCRIPT = """
import json
from bench.config import get_profile
from bench.train import stage_key
from methods import registry

profile, out = get_profile("smoke"), {}
for name in registry.names():
    method, keys = registry.get(name), {}
    for stage in method.stages:
        prior = {k: keys[k] for k in stage.init_from}
        keys[stage.name] = stage_key(method, stage, profile, "set:x", 0, prior)[0]
        out[name + "/" + stage.name] = keys[stage.name]
print(json.dumps(out))
"""


def all_keys() -> dict[str, str]:
    """Every registered stage's key on the smoke profile (this interpreter's `methods`)."""
    out = {}
    for name in registry.names():
        method, keys = registry.get(name), {}
        for stage in method.stages:
            prior = {k: keys[k] for k in stage.init_from}
            keys[stage.name] = stage_key(method, stage, SMOKE, "set:x", 0, prior)[0]
            out[f"{name}/{stage.name}"] = keys[stage.name]
    return out


def keys_after_edit(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """Copy `methods/`, apply (old, new) text replacements per file, compute the keys in a fresh process."""
    shutil.copytree(ROOT / "methods", tmp_path / "methods", ignore=shutil.ignore_patterns("__pycache__"))
    for rel, replacements in edits.items():
        path = tmp_path / "methods" / rel
        text = path.read_text()
        for old, new in replacements:
            assert old in text, f"{rel}: {old!r} not found; update this test's edit"
            text = text.replace(old, new, 1)
        path.write_text(text)
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", KEYS_SCRIPT], env=env, cwd=tmp_path, capture_output=True,
                          text=True, check=True)  # cwd: `python -c` puts it first on the path
    return json.loads(done.stdout)


def test_a_new_variant_and_helpers_leave_every_existing_key(tmp_path: Path) -> None:
    before = all_keys()
    new_row = ('    "ours-no-tv": dict(',
               '    "ours-mu-half": dict(family="ablation", loss={"mu": 0.01}, description="mu/2",\n'
               '                         claims=_video_claim("the paper\'s TV weight beats half of it")),\n'
               '    "ours-no-tv": dict(')
    helper = ("def make_ours(", "def unused_helper(x: int) -> int:\n    return 2 * x\n\n\ndef make_ours(")
    layer = ("def count_params(", "def halve(x: Tensor) -> Tensor:\n    return x / 2\n\n\ndef count_params(")
    after = keys_after_edit(tmp_path, {"ours.py": [new_row, helper], "layers.py": [layer]})
    assert {k: after[k] for k in before} == before
    assert {k for k in after if k.startswith("ours-mu-half/")} == {
        "ours-mu-half/dm", "ours-mu-half/autoencoder", "ours-mu-half/bie"}
    assert after["ours-mu-half/dm"] == before["ours/dm"]  # its DM is ours's: trained once for both
    assert after["ours-mu-half/bie"] != before["ours/bie"]


def test_registering_a_variant_at_runtime_changes_no_key() -> None:
    from methods.ours import make_ours
    from methods.registry import Claim

    before = all_keys()
    claim = Claim("the TV weight 0.02 beats 0.01 without recurrence", "supp.", "eq6")
    registry.register(make_ours("ours-runtime", "ablation", "runtime variant", rvd={"recurrent": False},
                                loss={"mu": 0.01}, claims=(claim,)))
    try:
        after = all_keys()
    finally:
        registry.REGISTRY.pop("ours-runtime")
    assert {k: after[k] for k in before} == before
    assert after["ours-runtime/dm"] == before["ours/dm"] and after["ours-runtime/bie"] not in before.values()


def test_editing_a_function_the_dm_uses_changes_the_keys_that_use_it_only(tmp_path: Path) -> None:
    before = all_keys()
    edit = ("return F.pixel_unshuffle(x, factor)", "return F.pixel_unshuffle(x, int(factor))")
    after = keys_after_edit(tmp_path, {"layers.py": [edit]})
    changed = {k for k in before if after[k] != before[k]}
    dm_users = {k for k in before if k.endswith("/dm")} | {"jin2018/jin-center", "jin2018/jin-pairs"}
    assert changed == dm_users  # space_to_depth: the DM and Jin's networks; never the RVD, BIE or SRN


def test_stage_code_reaches_through_containers_constants_and_submodules() -> None:
    ours = registry.get("ours")
    dm = stage_code(ours, ours.stage("dm"), asdict(SMOKE.model))
    assert {"methods.dm.DM", "methods.layers.RDB", "methods.layers.space_to_depth",
            "methods.common.deblur_loss", "methods.losses.deblur_l1"} <= set(dm)
    assert not any(k.startswith("methods.video") for k in dm)
    video = stage_code(ours, ours.stage("autoencoder"), asdict(SMOKE.model))
    # The Eq. 5 and Eq. 6 terms are reached through the DATA_TERMS dict, the slope by value.
    assert {"methods.losses.l1_video", "methods.losses.eq6", "methods.video.RVE", "methods.video.FlowDecoder",
            "methods.layers.warp"} <= set(video)
    assert video["methods.layers.LEAKY_SLOPE"] == "value:0.2"
    assert "methods.dm.DM" not in video


def test_stage_code_leaves_the_random_state_alone() -> None:
    ours = registry.get("ours")
    torch.manual_seed(3)
    state = torch.get_rng_state()
    stage_code(ours, ours.stage("bie"), asdict(SMOKE.model))
    assert torch.equal(torch.get_rng_state(), state)


def _load(path: Path, text: str) -> object:
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"methods._scratch_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


def test_digests_ignore_comments_and_docstrings_not_code(tmp_path: Path) -> None:
    base = _load(tmp_path / "a.py", "def f(x):\n    return x + 1\n")
    noted = _load(tmp_path / "b.py", '# why\ndef f(x):\n    """What f does."""\n    return x + 1  # why\n')
    edited = _load(tmp_path / "c.py", "def f(x):\n    return x + 2\n")
    digest = list(closure_digests([base]).values())
    assert digest == list(closure_digests([noted]).values())
    assert digest != list(closure_digests([edited]).values())
    assert closure_digests([torch.nn.Conv2d]) == {}  # code outside methods/ is not followed


def test_digests_ignore_error_messages_not_what_raises(tmp_path: Path) -> None:
    def digest(name: str, body: str) -> str:
        return list(closure_digests([_load(tmp_path / f"{name}.py", f"def f(x):\n{body}")]).values())[0]

    base = digest("a", '    assert x > 0, "x must be positive"\n    raise ValueError(f"bad {x}")\n')
    assert base == digest("b", '    assert x > 0, "give a positive x"\n    raise ValueError("no", x)\n')
    assert base != digest("c", '    assert x > 1, "x must be positive"\n    raise ValueError(f"bad {x}")\n')
    assert base != digest("d", '    assert x > 0, "x must be positive"\n    raise TypeError(f"bad {x}")\n')


# --- the harness code a stage runs, and the run ids (tests/edits.py: edits on a copy of bench/ and methods/)

TRAINED = {"ours", "ours-static", "srn"}  # of tests.edits.METHODS; `blurred` has no stage


@pytest.fixture(scope="module")
def unedited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return edits.keys_after(tmp_path_factory.mktemp("unedited"), {})


def test_every_stage_follows_the_named_harness_code_and_no_progress_code() -> None:
    names = {n.replace(":", ".") for n in harness_names()}
    model = asdict(SMOKE.model)
    for name in registry.names():
        method = registry.get(name)
        for stage in method.stages:
            code = stage_code(method, stage, model)
            assert names <= set(code), f"{name}/{stage.name}"
            assert "bench.data.loaders.collate" in code and "bench.fileio.stable_hash" in code  # reached
            assert not {"bench.train._progress", "bench.train.StageRun.train", "bench.train.StageRun.finish",
                        "bench.train.CKPT_FIX", "bench.data.manifest.repair_command"} & set(code)
        scoring = run_code(method, model)
        assert {"bench.evaluate.score_set", "bench.metrics.psnr", "bench.data.loaders.TestSet.__getitem__",
                "methods.registry.Method.predict", "bench.metrics._load_lpips_cached"} <= set(scoring)
        assert not {"bench.evaluate.evaluate", "bench.evaluate._progress",
                    "bench.evaluate._write_samples"} & set(scoring)


@pytest.mark.parametrize("rel, edit", [
    ("bench/train.py", ("factor = lr_factor(self.profile.train, it, self.total)",
                        "factor = 1.0 * lr_factor(self.profile.train, it, self.total)")),  # the step
    ("bench/train.py", ("    if t.lr_schedule == \"constant\":\n        return 1.0",
                        "    if t.lr_schedule == \"constant\":\n        return 0.5")),  # the schedule
    ("bench/data/loaders.py", ("flip = self.flip and bool(rng.random() < 0.5)",
                               "flip = self.flip and bool(rng.random() < 0.25)")),  # augmentation
])
def test_editing_the_harness_a_stage_runs_changes_every_stage_and_trained_run(
        tmp_path: Path, unedited: dict[str, str], rel: str, edit: tuple[str, str]) -> None:
    after = edits.keys_after(tmp_path, {rel: [edit]})
    stages = {k for k in unedited if "/" in k}
    assert edits.changed(unedited, after) == stages | TRAINED  # `blurred` trains nothing: its id stays


def test_editing_a_network_changes_the_stages_and_runs_that_use_it(tmp_path: Path,
                                                                    unedited: dict[str, str]) -> None:
    after = edits.keys_after(tmp_path, {"methods/dm.py": [("return blur + self.tail(d)",
                                                           "return blur + 1.0 * self.tail(d)")]})
    assert edits.changed(unedited, after) == {"ours/dm", "ours-static/dm", "ours", "ours-static"}


def test_editing_progress_and_messages_changes_no_key(tmp_path: Path, unedited: dict[str, str]) -> None:
    after = edits.keys_after(tmp_path, {
        "bench/train.py": [("it/s  loss {task.fields[loss]}", "it/s, loss {task.fields[loss]}"),
                           ("% of step time waiting for data", "% of the step time waiting for data"),
                           ("resuming stage {self.stage.name}", "resuming the stage {self.stage.name}"),
                           ('CKPT_FIX = "delete the stage folder', 'CKPT_FIX = "remove the stage folder')],
        "bench/evaluate.py": [('f"{method.name} on {set_folder.name}"',
                               'f"{method.name} scored on {set_folder.name}"')],
        "bench/data/loaders.py": [("lower train.crop or raise train.zoom_max", "lower train.crop")],
    })
    assert after == unedited
