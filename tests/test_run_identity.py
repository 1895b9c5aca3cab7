"""Content-addressed results (bench/run.py with the run record of bench/store.py): a result is reused only
for byte-identical data and intact files. Two footage roots made here, prepared into two data homes under
the same set name (`gopro-3f`), must never share a result; damaged and pre-digest entries are recomputed.

`blurred` (no training) keeps most checks to a second each; `ours-static` with two DM iterations covers
the trained path (stage cache, weights.pt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import edits
import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.data.manifest import data_digest
from bench.data.prepare import prepare
from bench.store import eval_folder_name

BENCH = str(Path(sys.executable).parent / "bench")
TINY = ("--set", "train.iters_dm=2", "--set", "eval.runtime_repeats=1", "--set", "eval.runtime_warmup=0")


def write_footage(root: Path, seed: int) -> Path:
    """A footage root: one training and one test sequence of a texture sliding right, 40x48 frames."""
    rng = np.random.default_rng(seed)
    for split, name, count in (("train", "seq_a", 12), ("test", "seq_b", 9)):
        folder = root / split / name
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, (40, 48 + 2 * count, 3), dtype=np.uint8)
        for t in range(count):
            cv2.imwrite(str(folder / f"{t + 1:06d}.png"), np.ascontiguousarray(base[:, 2 * t:2 * t + 48]))
    return root


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Footage roots A and B, each prepared into its own data home as `gopro-3f`."""
    base = tmp_path_factory.mktemp("identity")
    out = {}
    for key, seed in (("A", 1), ("B", 2)):
        out[f"root{key}"] = write_footage(base / f"root{key}", seed)
        out[key] = base / f"data{key}"
        prepare(source="gopro", root=out[f"root{key}"], frames=(3,), profile="smoke", data_dir=out[key],
                workers=1, progress=False)
    assert data_digest(out["A"] / "gopro-3f") != data_digest(out["B"] / "gopro-3f")
    return out


def run(method: str, data: Path, runs: Path, *extra: str) -> tuple[str, dict]:
    """`bench run` on the footage set in `data`; returns its output and the metrics.json it names."""
    args = ["run", "--method", method, "--profile", "smoke", "--frames", "3", "--source", "gopro",
            "--data-dir", str(data), "--runs-dir", str(runs), "--device", "cpu", "--no-floor", *TINY, *extra]
    result = CliRunner().invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    written = result.output.replace("\n", "").rsplit(": ", 1)[1].strip()
    return result.output, json.loads(Path(written).read_text())


def test_same_set_name_from_two_roots_gives_two_results(homes: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for method in ("blurred", "ours-static"):
        _, a = run(method, homes["A"], runs)
        out, b = run(method, homes["B"], runs)
        assert "reused the finished run" not in out and a["run_id"] != b["run_id"]
        assert (a["dataset"], b["dataset"]) == ("gopro-3f", "gopro-3f")
        assert a["data_sha256"] == data_digest(homes["A"] / "gopro-3f") != b["data_sha256"]
        assert a["aggregate"]["eq6"] != b["aggregate"]["eq6"]  # each scored its own data
        again, a2 = run(method, homes["A"], runs)
        assert "reused the finished run" in again and a2 == a
    # The DM trained on B's frames is a stage of its own, not A's reused.
    b_training = b["training"]["dm"]
    assert not b_training["reused"] and b_training["key"] != a["training"]["dm"]["key"]


def test_eval_data_of_the_same_name_from_two_homes_is_scored_apart(homes: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _, own = run("blurred", homes["A"], runs)
    scores = {}
    for key in ("A", "B"):
        out, scores[key] = run("blurred", homes["A"], runs, "--eval-data", str(homes[key] / "gopro-3f"))
        assert "reused the finished run" not in out
        digest = data_digest(homes[key] / "gopro-3f")
        folder = runs / own["run_id"] / "evals" / eval_folder_name("gopro-3f", digest)
        assert json.loads((folder / "metrics.json").read_text()) == scores[key]
    assert scores["A"]["samples"] == own["samples"]  # the run's own set, scored again: the same numbers
    assert scores["B"]["aggregate"]["eq6"] != scores["A"]["aggregate"]["eq6"]
    assert scores["B"]["eval_sha256"] == data_digest(homes["B"] / "gopro-3f")
    # Two data homes holding sets of one name: --eval-data by name, from each home, against one store.
    _, by_name = run("blurred", homes["B"], runs, "--eval-data", "gopro-3f")
    assert by_name["samples"] == scores["B"]["samples"] and by_name["run_id"] != own["run_id"]


def test_fresh_reprepare_from_another_root_recomputes(homes: dict[str, Path], tmp_path: Path) -> None:
    data, runs = tmp_path / "data", tmp_path / "runs"
    prepare(source="gopro", root=homes["rootA"], frames=(3,), profile="smoke", data_dir=data, workers=1,
            progress=False)
    first = {m: run(m, data, runs)[1] for m in ("blurred", "ours-static")}
    prepare(source="gopro", root=homes["rootB"], frames=(3,), profile="smoke", data_dir=data, workers=1,
            progress=False, fresh=True)
    for method in ("blurred", "ours-static"):
        out, second = run(method, data, runs)
        assert "reused the finished run" not in out and second["run_id"] != first[method]["run_id"]
        assert second["data_sha256"] == data_digest(homes["B"] / "gopro-3f")
    assert not second["training"]["dm"]["reused"]  # retrained on the new frames


def test_eval_data_whose_name_is_dot_dot_is_refused_in_one_line(homes: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    sneaky = homes["A"] / "gopro-3f" / "sequences" / ".."  # the set's own folder, named `..`
    proc = subprocess.run([BENCH, "run", "--method", "blurred", "--profile", "smoke", "--frames", "3",
                           "--source", "gopro", "--data-dir", str(homes["A"]), "--runs-dir",
                           str(tmp_path / "runs"), "--device", "cpu", "--no-floor", "--eval-data",
                           str(sneaky)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --eval-data ") and "'..'" in lines[0]
    assert "pass the prepared set's folder itself" in lines[0]
    assert not list((tmp_path / "runs").glob("*/evals"))  # nothing written under a name `..`


def _damage(folder: Path, what: str) -> None:
    if what == "config":
        (folder / "config.json").write_text("garbage")
    elif what == "env":
        (folder / "env.json").write_text("{}")
    elif what == "metrics":
        data = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps(dict(data, aggregate=[1, 2])))
    elif what == "weights-truncated":
        (folder / "weights.pt").write_bytes((folder / "weights.pt").read_bytes()[:50])
    elif what == "weights-flipped":
        raw = bytearray((folder / "weights.pt").read_bytes())
        raw[-30] ^= 0xFF  # same size: only the recorded sha256 can tell
        (folder / "weights.pt").write_bytes(bytes(raw))
    else:
        (folder / "weights.pt").unlink()


@pytest.mark.parametrize("what", ["config", "env", "metrics", "weights-truncated", "weights-flipped",
                                  "weights-missing"])
def test_a_damaged_entry_is_recomputed_never_reused(homes: dict[str, Path], tmp_path: Path,
                                                     what: str) -> None:
    runs = tmp_path / "runs"
    _, first = run("blurred", homes["A"], runs)
    folder = runs / first["run_id"]
    good_weights = (folder / "weights.pt").read_bytes()
    _damage(folder, what)
    out, second = run("blurred", homes["A"], runs)
    assert "reused the finished run" not in out and "recomputing" in out
    assert second["run_id"] == first["run_id"] and second["aggregate"]["eq6"] == first["aggregate"]["eq6"]
    assert (folder / "weights.pt").read_bytes() == good_weights  # rewritten whole
    again, _ = run("blurred", homes["A"], runs)
    assert "reused the finished run" in again  # intact once more


def test_a_pre_digest_entry_is_not_reused_and_says_so(homes: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _, current = run("blurred", homes["A"], runs)
    folder = runs / current["run_id"]
    # The same run as an older version of the suite stored it: no record version, no digests.
    old = tmp_path / "old-store" / "blurred-0123456789"
    old.mkdir(parents=True)
    config = json.loads((folder / "config.json").read_text())
    for key in ("record", "data_sha256", "weights_from", "weights_from_sha256"):
        config.pop(key)
    (old / "config.json").write_text(json.dumps(dict(config, run_id=old.name)))
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("data_sha256", "eval_sha256", "weights_sha256", "weights_bytes"):
        metrics.pop(key)
    (old / "metrics.json").write_text(json.dumps(dict(metrics, run_id=old.name)))
    out, fresh = run("blurred", homes["A"], old.parent)
    assert "reused the finished run" not in out
    assert f"{old}: stored before data digests were recorded; not reused, recomputing as" in \
        out.replace("\n", "")
    assert fresh["run_id"] == current["run_id"] and (old.parent / current["run_id"]).is_dir()
    listing = CliRunner().invoke(cli, ["list", "--runs", "--json", "--runs-dir", str(old.parent)])
    rows = {r["run"]: r for r in json.loads(listing.output)}
    assert rows[old.name]["status"] == "legacy" and rows[current["run_id"]]["status"] == "finished"


# --- the run id follows the code (tests/edits.py: edits on a copy of bench/ and methods/) -------------------


def test_editing_a_metric_changes_every_run_id_and_no_stage_key(tmp_path: Path) -> None:
    before = edits.keys_after(tmp_path / "before", {})
    after = edits.keys_after(tmp_path / "after", {"bench/metrics.py": [
        ("return _psnr_of_mse(_mse(a, b))", "return float(_psnr_of_mse(_mse(a, b)))")]})
    assert edits.changed(before, after) == set(edits.METHODS)


def cli_in(src: Path, *args: str) -> str:
    """`bench ARGS` run by the code in `src` (an edited copy), in a fresh interpreter; its output."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HOME": str(src)}
    done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args], env=env,
                          cwd=src, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_edited_schedule_has_its_own_result_and_checkout_back_reuses_the_old(homes: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    """The issue's probe: an edited learning-rate factor retrains under new keys; after the edit is undone,
    the old id and its result come back, and the edited code's result stays under its own id."""
    runs = tmp_path / "runs"
    _, first = run("ours-static", homes["A"], runs)
    src = edits.edited_copy(tmp_path / "edited", {"bench/train.py": [
        ('    if t.lr_schedule == "constant":\n        return 1.0',
         '    if t.lr_schedule == "constant":\n        return 0.5')]})
    args = ["run", "--method", "ours-static", "--profile", "smoke", "--frames", "3", "--source", "gopro",
            "--data-dir", str(homes["A"]), "--runs-dir", str(runs), "--device", "cpu", "--no-floor", *TINY]
    out = cli_in(src, *args)
    assert "reused the finished run" not in out
    edited = json.loads((Path(out.replace("\n", "").rsplit(": ", 1)[1].strip())).read_text())
    assert edited["run_id"] != first["run_id"] and not edited["training"]["dm"]["reused"]
    assert edited["training"]["dm"]["key"] != first["training"]["dm"]["key"]
    assert edited["weights_sha256"] != first["weights_sha256"]  # the halved rate gave other weights
    again, back = run("ours-static", homes["A"], runs)
    assert "reused the finished run" in again and back == first
    assert "reused the finished run" in cli_in(src, *args)  # and the edited code finds its own


# --- bench run --explain ----------------------------------------------------------------------------------


def explain(data: Path, runs: Path, method: str = "ours-static") -> dict:
    """`bench run --explain --json` of one run (no floor); its one plan."""
    args = ["run", "--method", method, "--profile", "smoke", "--frames", "3", "--source", "gopro",
            "--data-dir", str(data), "--runs-dir", str(runs), "--device", "cpu", "--no-floor", *TINY,
            "--explain", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    plans = json.loads(result.output)["runs"]
    assert len(plans) == 1
    return plans[0]


def test_explain_on_a_set_not_prepared_says_so_and_writes_nothing(tmp_path: Path) -> None:
    plan = explain(tmp_path / "data", tmp_path / "runs")
    assert not plan["prepared"] and plan["run_id"] is None and plan["action"] == "compute"
    assert "is not prepared" in plan["why"]
    [stage] = plan["stages"]
    assert (stage["name"], stage["key"], stage["action"]) == ("dm", None, "train")
    assert "bench.train.StageRun.step" in stage["code"] and "methods.dm.DM.forward" in stage["code"]
    assert "bench.metrics.psnr" in plan["scoring"]
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_explain_predicts_what_the_run_does_and_why(homes: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    before = explain(homes["A"], runs)
    assert before["prepared"] and before["action"] == "compute" and before["stages"][0]["action"] == "train"
    assert before["why"] == "no result stored under this id"
    _, done = run("ours-static", homes["A"], runs)
    assert before["run_id"] == done["run_id"] and before["stages"][0]["key"] == done["training"]["dm"]["key"]
    after = explain(homes["A"], runs)
    assert (after["action"], after["stages"][0]["action"]) == ("reuse", "skip")
    # What other code would have left: the run and its DM under other ids, the DM's lr_factor different.
    stage = runs / "stages" / done["training"]["dm"]["key"]
    info = json.loads((stage / "stage.json").read_text())
    info["identity"]["code"]["bench.train.lr_factor"] = "source:0000"
    (stage / "stage.json").write_text(json.dumps(info))
    stage.rename(stage.with_name("dm-000000000000"))
    other = runs / "ours-static-0000000000"
    (runs / done["run_id"]).rename(other)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["training"]["dm"]["key"] = "dm-000000000000"
    (other / "metrics.json").write_text(json.dumps(metrics))
    plan = explain(homes["A"], runs)
    assert plan["action"] == "compute" and plan["why"] == (
        "no result under this id; ours-static-0000000000 holds this config and data from other code "
        "(the keys of stages dm differ)")
    [dm] = plan["stages"]
    assert dm["action"] == "train"
    assert "dm-000000000000" in dm["why"] and "code (changed: bench.train.lr_factor)" in dm["why"]
    # An unfinished stage under this key resumes from its checkpoint.
    stage.with_name("dm-000000000000").rename(stage)
    (stage / "stage.json").write_text(json.dumps(dict(info, status="running")))
    [dm] = explain(homes["A"], runs)["stages"]
    assert dm["action"] == "resume" and dm["why"] == f"{stage / 'ckpt.pt'} holds iteration 2"
