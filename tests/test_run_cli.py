"""`bench run` end to end on the smoke profile: learning, the stored results, reuse, resume after SIGKILL,
determinism, failures, overrides, loaded weights, cross-set scoring and every comparison method.

One trained `ours` run (module scope) is shared; the other methods reuse its cached stages where the registry
says they share them, which keeps the file to about a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.cli import cli
from bench.data.manifest import data_digest
from bench.metrics import COST_METRICS, SAMPLE_METRICS
from bench.store import eval_folder_name

pytestmark = pytest.mark.slow

BENCH = str(Path(sys.executable).parent / "bench")
# A few more iterations than the smoke default so the loss curve has room to fall; checkpoints every 3.
SETS = ("train.iters_dm=18", "train.iters_autoencoder=18", "train.iters_bie=18", "train.log_every=6",
        "train.ckpt_every=3")
# Every aggregate key of metrics.json, from the metric vocabulary; "device" last (the one that is no number).
AGGREGATE = (*SAMPLE_METRICS, *COST_METRICS, "device")
QUALITY = SAMPLE_METRICS


def _args(method: str, data_dir: Path, runs: Path, *extra: str, frames: int = 9) -> list[str]:
    out = ["run", "--method", method, "--profile", "smoke", "--frames", str(frames),
           "--data-dir", str(data_dir), "--runs-dir", str(runs), "--device", "cpu"]
    for item in SETS:
        out += ["--set", item]
    return out + list(extra)


def invoke(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    return result


def run_ok(*args: str) -> str:
    result = invoke(*args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def metrics_of(runs: Path, method: str) -> tuple[Path, dict]:
    found = [p for p in runs.iterdir() if p.name.startswith(f"{method}-") and (p / "metrics.json").is_file()
             and json.loads((p / "config.json").read_text())["method"] == method]
    assert len(found) == 1, found
    return found[0], json.loads((found[0] / "metrics.json").read_text())


def quality(metrics: dict) -> dict:
    """The metrics that must reproduce exactly (timings are measurements, not results)."""
    return {"aggregate": {k: metrics["aggregate"][k] for k in QUALITY},
            "samples": [{k: s[k] for k in ("id", *QUALITY)} for s in metrics["samples"]]}


@pytest.fixture(scope="module")
def data_dir(smoke_data) -> Path:
    return Path(smoke_data)


@pytest.fixture(scope="module")
def ours(data_dir, tmp_path_factory) -> tuple[Path, Path, dict, str]:
    runs = tmp_path_factory.mktemp("runs")
    output = run_ok(*_args("ours", data_dir, runs))
    folder, metrics = metrics_of(runs, "ours")
    return runs, folder, metrics, output


def test_ours_trains_and_stores_every_aggregate_metric(ours):
    runs, folder, metrics, output = ours
    assert metrics["status"] == "finished"
    agg = metrics["aggregate"]
    for key in AGGREGATE:
        assert key in agg, key
    for key in AGGREGATE[:-1]:
        if key == "deblur_lpips" and agg[key] is None:
            assert agg["deblur_lpips_note"]  # missing only with its one-line reason
            continue
        assert isinstance(agg[key], (int, float)) and math.isfinite(agg[key]), key
    assert metrics["samples"] and all("eq6" in s and "id" in s for s in metrics["samples"])
    # The loss falls: every stage's loss on its fixed probe batch, before against after training (window
    # means of 2-sample batches are too noisy to judge 18 steps by). The curve is stored for the report.
    curves = json.loads((folder / "curves.json").read_text())
    assert set(curves) == {s["name"] for s in json.loads((folder / "config.json").read_text())["stages"]}
    for stage, curve in curves.items():
        assert len(curve) == 3 and all(math.isfinite(v) for _, v in curve), (stage, curve)
    for stage, info in metrics["training"].items():
        before, after = info["probe_loss"]
        assert math.isfinite(before) and after < before, (stage, info["probe_loss"])
    assert "loss on a fixed batch" in output
    # Training time per stage is recorded (the report shows time per method).
    assert all(t["time_s"] > 0 and t["iterations"] == 18 for t in metrics["training"].values())
    config = json.loads((folder / "config.json").read_text())
    assert {k: config[k] for k in ("method", "profile", "dataset", "frames", "seed")} == {
        "method": "ours", "profile": "smoke", "dataset": "synthetic-smoke-9f", "frames": 9, "seed": 0}
    assert config["overrides"] == list(SETS)
    env = json.loads((folder / "env.json").read_text())
    assert env["packages"]["torch"] and env["device"] == "cpu" and "python" in env
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert weights["format"] == "bmb-weights/1" and weights["method"] == "ours" and weights["frames"] == 9
    assert set(weights["state_dicts"]) >= {"dm", "bie", "rvd"}
    # The table sits beside the `blurred` floor, itself stored as its own run, and names the path.
    assert "blurred (floor)" in output and str(folder / "metrics.json") in output.replace("\n", "")
    assert metrics_of(runs, "blurred")[1]["status"] == "finished"


def test_same_command_reuses_and_fresh_reproduces_identical_metrics(ours, data_dir):
    runs, folder, metrics, _ = ours
    out = run_ok(*_args("ours", data_dir, runs, "--no-floor"))
    assert "reused the finished run" in out
    assert json.loads((folder / "metrics.json").read_text()) == metrics  # untouched
    # --fresh retrains the (shared) DM stage from scratch: the same command gives identical metrics.
    run_ok(*_args("ours-static", data_dir, runs, "--no-floor"))
    static_folder, first = metrics_of(runs, "ours-static")
    run_ok(*_args("ours-static", data_dir, runs, "--no-floor", "--fresh"))
    again = json.loads((static_folder / "metrics.json").read_text())
    assert [t["reused"] for t in again["training"].values()] == [False]  # really retrained
    assert quality(again) == quality(first)


def test_sigkill_mid_training_resumes_to_the_same_metrics(ours, data_dir, tmp_path):
    runs = tmp_path / "runs"
    cmd = [BENCH, *_args("ours-static", data_dir, runs, "--no-floor")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        # Kill as soon as the DM stage has written its first checkpoint (of 6).
        while time.time() < deadline and proc.poll() is None:
            if any((p / "ckpt.pt").exists() for p in (runs / "stages").glob("dm-*")):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    stage = next((runs / "stages").glob("dm-*"))
    assert json.loads((stage / "stage.json").read_text())["status"] == "running"
    assert torch.load(stage / "ckpt.pt", weights_only=True)["iteration"] < 18
    assert not list(runs.glob("ours-static-*/metrics.json"))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resuming stage dm" in out.stdout
    # The uninterrupted reference: the same stage trained in one go by the `ours` fixture.
    run_ok(*_args("ours-static", data_dir, ours[0], "--no-floor"))
    assert quality(metrics_of(runs, "ours-static")[1]) == quality(metrics_of(ours[0], "ours-static")[1])


def test_weights_file_round_trip_only_evaluates(ours, data_dir, tmp_path):
    _, folder, metrics, _ = ours
    runs = tmp_path / "runs"
    run_ok(*_args("ours", data_dir, runs, "--no-floor", "--weights", str(folder / "weights.pt")))
    loaded_folder, loaded = metrics_of(runs, "ours")
    assert not (runs / "stages").exists() and loaded["training"] == {}
    assert quality(loaded) == quality(metrics)
    result = invoke(*_args("srn", data_dir, runs, "--no-floor", "--weights", str(folder / "weights.pt")))
    assert result.exit_code != 0 and "holds ours weights" in str(result.exception)


def test_eval_data_is_stored_as_its_own_evaluation(ours, data_dir):
    runs, folder, metrics, _ = ours
    run_ok(*_args("ours", data_dir, runs, "--no-floor", "--eval-data", "synthetic-smoke-9f"))
    named = eval_folder_name("synthetic-smoke-9f", data_digest(data_dir / "synthetic-smoke-9f"))
    scored = json.loads((folder / "evals" / named / "metrics.json").read_text())
    assert scored["eval_dataset"] == "synthetic-smoke-9f" and quality(scored) == quality(metrics)
    result = invoke(*_args("ours", data_dir, runs, "--no-floor", "--eval-data", "no-such-set"))
    assert result.exit_code != 0 and "no prepared set" in str(result.exception)


@pytest.mark.parametrize("method, frames", [("ours-static", 9), ("ours-gt-center", 9), ("srn", 9),
                                            ("blurred", 9), ("jin2018", 7)])
def test_every_comparison_method_runs_end_to_end(ours, data_dir, method, frames):
    runs = ours[0]
    # jin2018 trains four networks of its own at 7 frames: a shorter budget keeps this test quick.
    short = ("--set", "train.iters_dm=6", "--set", "train.iters_autoencoder=3", "--set", "train.iters_bie=3")
    short = short if method == "jin2018" else ()
    run_ok(*_args(method, data_dir, runs, "--no-floor", *short, frames=frames))
    folder, metrics = metrics_of(runs, method)
    assert metrics["status"] == "finished" and metrics["frames"] == frames
    for key in ("eq6", "ppsnr", "deblur_psnr", "params"):
        assert math.isfinite(metrics["aggregate"][key])
    if method == "blurred":
        assert metrics["training"] == {} and metrics["aggregate"]["params"] == 0
    if method == "ours-gt-center":  # shares every stage with ours: reused, not retrained
        assert all(t["reused"] for t in metrics["training"].values()) and metrics["training"]


def test_the_torchrun_command_line_carries_every_option_but_nproc(tmp_path):
    import click

    from bench.commands.run import command, relaunch_argv

    given = ["--method", "srn", "--profile", "smoke", "--frames", "7,9", "--seeds", "0,1",
             "--set", "train.iters_dm=3", "--set", "train.lr=0.001", "--data-dir", str(tmp_path / "d"),
             "--runs-dir", str(tmp_path / "r"), "--source", "gopro", "--root", str(tmp_path / "f"),
             "--device", "cpu", "--weights", str(tmp_path / "w.pt"), "--eval-data", "other", "--nproc", "3",
             "--fresh", "--no-floor"]
    ctx = command.make_context("run", list(given))
    argv = relaunch_argv(ctx)
    assert argv[0] == "run" and "--nproc" not in argv and "3" not in argv
    pairs = [given[i:i + 2] for i, word in enumerate(given) if word.startswith("--") and i + 1 < len(given)
             and not given[i + 1].startswith("--") and word != "--nproc"]
    assert len(pairs) == 13
    for pair in pairs:  # each given option with its value, next to each other, both --set items included
        assert any(argv[i:i + 2] == pair for i in range(len(argv))), pair
    assert "--fresh" in argv and "--no-floor" in argv and "--floor" not in argv
    assert command.make_context("run", argv[1:]).params == {**ctx.params, "nproc": 1}  # parses back the same
    # An option added to the command is carried with no edit to the builder.
    grown = click.Command("run", params=[*command.params, click.Option(["--new-knob"], default=None),
                                         click.Option(["--verbose"], is_flag=True)])
    argv = relaunch_argv(grown.make_context("run", ["--nproc", "2", "--new-knob", "7", "--verbose"]))
    assert argv[-3:] == ["--new-knob", "7", "--verbose"] and "--nproc" not in argv


def test_jin2018_refuses_nine_frames_with_one_line_and_exit_2(data_dir, tmp_path):
    out = subprocess.run([BENCH, *_args("jin2018", data_dir, tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "7" in lines[0]


def test_unknown_override_is_refused_before_any_work(data_dir, tmp_path):
    result = invoke(*_args("blurred", data_dir, tmp_path / "runs", "--set", "train.iters=3"))
    assert result.exit_code != 0 and "unknown field 'iters'" in str(result.exception)
    assert not (tmp_path / "runs").exists()


def test_a_failed_run_is_recorded_and_retried_not_reused(ours, data_dir, tmp_path):
    runs = tmp_path / "runs"
    # An absurd learning rate drives the DM's loss to inf/NaN within a few steps.
    args = _args("ours-static", data_dir, runs, "--no-floor", "--set", "train.lr_scale=1e30")
    first = invoke(*args)
    assert first.exit_code != 0 and "diverged" in str(first.exception)
    folder = next(runs.glob("ours-static-*"))
    failed = json.loads((folder / "metrics.json").read_text())
    assert failed["status"] == "failed" and "diverged" in failed["error"]
    second = invoke(*args)
    assert "retrying" in second.output and second.exit_code != 0


def test_several_seeds_make_several_runs(data_dir, tmp_path):
    run_ok("run", "--method", "blurred", "--profile", "smoke", "--seeds", "0,1", "--data-dir", str(data_dir),
           "--runs-dir", str(tmp_path))
    seeds = sorted(json.loads(p.read_text())["seed"] for p in tmp_path.glob("blurred-*/config.json"))
    assert seeds == [0, 1]
