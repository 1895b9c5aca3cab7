"""Training faults: a NaN or infinite loss stops the stage with a clear one-line message, keeps
the last good checkpoint, records the run as failed with the reason (metrics.json `status: failed`), and the
next run retries, resumes from that checkpoint and ends with the metrics of a run that never failed.

Faults are injected two ways: deterministically, by wrapping `Method.stage_loss` so that iteration k returns
a NaN (or inf) loss with its graph intact; and for real, with an absurd learning rate
(`--set train.lr_scale=1e30`) that makes the network overflow. Commands run in-process through the real
entry point (the monkeypatch must reach the training loop). `ours-static` (one DM stage) keeps it cheap.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import faults
import pytest
import torch

from methods.registry import Method

ITERS, EVERY, BAD = 6, 2, 4  # the loss turns bad at iteration 4, right after the checkpoint at 4 iterations


def run_args(data: Path, runs: Path, *sets: str) -> list[str]:
    args = ["run", "--method", "ours-static", "--profile", "smoke", "--frames", "7", "--device", "cpu",
            "--no-floor", "--data-dir", str(data), "--runs-dir", str(runs)]
    for item in (f"train.iters_dm={ITERS}", f"train.ckpt_every={EVERY}", "eval.runtime_repeats=1",
                 "eval.runtime_warmup=0", *sets):
        args += ["--set", item]
    return args


def poison_loss(monkeypatch: pytest.MonkeyPatch, at: int, value: float) -> list[int]:
    """From training call `at` on, the loss is multiplied by `value` (nan or inf); returns the call counter.
    The probe scores before and after a stage run without gradients and are neither counted nor poisoned."""
    original = Method.stage_loss
    calls = [0]

    def stage_loss(self: Method, stage: object, nets: object, batch: dict) -> tuple:
        loss, parts = original(self, stage, nets, batch)
        if not torch.is_grad_enabled():
            return loss, parts
        calls[0] += 1
        if calls[0] > at:
            loss = loss * value  # still a tensor in the graph: only its value is poisoned
        return loss, parts

    monkeypatch.setattr(Method, "stage_loss", stage_loss)
    return calls


def the_run(runs: Path) -> tuple[Path, Path]:
    (folder,) = [p for p in runs.iterdir() if p.name.startswith("ours-static-")]
    (stage,) = [p for p in (runs / "stages").iterdir() if p.is_dir()]
    return folder, stage


@pytest.fixture(scope="module")
def uninterrupted(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    runs = tmp_path_factory.mktemp("nan-reference")
    code, _out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    return json.loads((the_run(runs)[0] / "metrics.json").read_text())


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_bad_loss_stops_keeps_checkpoint_records_failure_and_retry_resumes(
        smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: dict,
        value: float) -> None:
    runs = tmp_path / "runs"
    with monkeypatch.context() as patch:
        poison_loss(patch, BAD, value)
        code, _out, err = faults.invoke(run_args(smoke_data, runs))
    line = faults.assert_one_line_error(code, err, "diverged", f"iteration {BAD}")
    assert "nan" in line or "inf" in line
    folder, stage = the_run(runs)
    # The stage is marked failed with the reason, and its last good checkpoint is the one before the fault.
    info = json.loads((stage / "stage.json").read_text())
    assert info["status"] == "failed" and "diverged" in info["error"] and info["done"] == BAD
    ckpt = torch.load(stage / "ckpt.pt", weights_only=True)
    assert ckpt["iteration"] == BAD
    assert all(torch.isfinite(t).all() for sd in ckpt["state_dicts"].values() for t in sd.values())
    # The run is recorded as failed with the reason, never as a result.
    recorded = json.loads((folder / "metrics.json").read_text())
    assert recorded["status"] == "failed" and "diverged" in recorded["error"]
    assert not (folder / "weights.pt").exists()
    faults.verify_tree(runs)

    # The fault is gone: the same command retries, resumes at the kept checkpoint and finishes.
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    assert "retrying" in out and f"resuming stage dm at iteration {BAD}/{ITERS}" in out
    done = json.loads((folder / "metrics.json").read_text())
    assert done["status"] == "finished"
    assert faults.quality(done) == faults.quality(uninterrupted)  # as if it had never failed


def test_exploding_learning_rate_fails_cleanly_and_is_recorded(smoke_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, _out, err = faults.invoke(run_args(smoke_data, runs, "train.lr_scale=1e30", "train.ckpt_every=1"))
    faults.assert_one_line_error(code, err, "diverged", "lr_scale")
    folder, stage = the_run(runs)
    recorded = json.loads((folder / "metrics.json").read_text())
    assert recorded["status"] == "failed" and "diverged" in recorded["error"]
    assert json.loads((stage / "stage.json").read_text())["status"] == "failed"
    # Whatever checkpoint was kept loads safely and holds no NaN.
    if (stage / "ckpt.pt").exists():
        ckpt = torch.load(stage / "ckpt.pt", weights_only=True)
        assert not any(torch.isnan(t).any() for sd in ckpt["state_dicts"].values() for t in sd.values())


def test_divergence_message_claims_a_checkpoint_only_when_one_exists(smoke_data: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Diverging before the first checkpoint: the message must not point at a checkpoint that is not there."""
    runs = tmp_path / "runs"
    poison_loss(monkeypatch, 1, math.nan)  # iteration 1, before the first checkpoint (every 2)
    code, _out, err = faults.invoke(run_args(smoke_data, runs))
    line = faults.assert_one_line_error(code, err, "diverged")
    _folder, stage = the_run(runs)
    assert not (stage / "ckpt.pt").exists()
    assert "checkpoint kept" not in line, line
