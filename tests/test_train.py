"""The one training loop (bench/train.py) on a toy method: budgets, data order, resume, NaN, stage cache.

The toy keeps these tests to a second or two; the real methods run through it in tests/test_run_cli.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pytest
import torch
from torch import nn

from bench.config import apply_overrides, get_profile
from bench.errors import BenchError
from bench.store import load_payload
from bench.train import (
    CKPT,
    STAGE_JSON,
    TrainingDiverged,
    batch_plan,
    load_components,
    stage_batch,
    stage_iterations,
    stage_key,
    train_method,
    train_stage,
)
from methods.registry import Component, Objective, Stage


def toy_loss(method, stage, nets, batch):
    out = nets["f"](batch["blur"])  # (b, 3, c, c)
    if "g" in stage.trains:
        out = nets["g"](out)
    loss = (out - batch["sharp"][:, 0]).abs().mean() + 0.0 * torch.randn(()).abs()
    return loss, {"l1": float(loss.detach())}


TOY = Objective("toy", toy_loss, fields=("blur", "sharp"))
CONV = Component(nn.Conv2d, {"in_channels": 3, "out_channels": 3, "kernel_size": 1})


@dataclass
class ToyMethod:
    """Two 1x1 convs; stage 'b' starts from stage 'a'. `poison` makes the loss NaN at one call."""

    name: str = "toy"
    stages: tuple = (Stage("a", ("f",), {"f": 1e-2}, TOY),
                     Stage("b", ("f", "g"), {"f": 2e-3, "g": 1e-2}, TOY, init_from=("a",),
                           iters_keys=("iters_autoencoder", "iters_bie")))
    components: dict = field(default_factory=lambda: {"f": CONV, "g": CONV})
    poison_at: int | None = None
    calls: list = field(default_factory=list)

    def build(self, model: dict | None = None) -> nn.ModuleDict:
        return nn.ModuleDict({"f": nn.Conv2d(3, 3, 1), "g": nn.Conv2d(3, 3, 1)})

    def stage_identity(self, stage_name: str, model: dict | None = None) -> dict:
        return {"stage": stage_name, "toy": 1}

    def stage_loss(self, stage, nets, batch):
        if torch.is_grad_enabled():  # training steps only; the probe scores run without gradients
            self.calls.append(stage.name)
        loss, logs = stage.objective.fn(self, stage, nets, batch)
        if self.poison_at is not None and len(self.calls) == self.poison_at:
            loss = loss * float("nan")
        return loss, logs


class ToySet:
    """Deterministic items from (index, aug_seed): the contract of bench.data.loaders.TrainSet."""

    def __len__(self) -> int:
        return 7

    def __getitem__(self, key):
        index, aug = key
        g = torch.Generator().manual_seed(index * 1000 + aug % 997)
        sharp = torch.rand(3, 3, 8, 8, generator=g)  # (N, 3, c, c)
        return {"blur": sharp.mean(0), "sharp": sharp, "id": f"s{index}"}


PROFILE = apply_overrides(get_profile("smoke"), ["train.iters_dm=6", "train.iters_autoencoder=3",
                                                 "train.iters_bie=2", "train.ckpt_every=2",
                                                 "train.log_every=1", "train.workers=0"])


def _train(tmp_path, method, sub="runs", profile=PROFILE, **kw):
    return train_method(method, profile, tmp_path / "set", 0, tmp_path / sub / "stages", torch.device("cpu"),
                        progress=False, log=lambda *a: None, trainset=ToySet(), **kw)


def test_budget_and_batch_come_from_the_profile_fields_the_stage_names():
    a, b = ToyMethod().stages
    assert stage_iterations(a, PROFILE) == 6
    assert stage_iterations(b, PROFILE) == 5  # iters_autoencoder + iters_bie
    assert stage_batch(a, PROFILE) == PROFILE.train.batch_video
    assert stage_batch(replace(a, batch="deblur"), PROFILE) == PROFILE.train.batch_deblur


def test_batch_plan_is_a_function_of_seed_stage_and_iteration():
    plan = batch_plan(0, "a-x", 5, 4, 10)
    assert plan == batch_plan(0, "a-x", 5, 4, 10)
    assert plan != batch_plan(0, "a-x", 6, 4, 10)
    assert plan != batch_plan(1, "a-x", 5, 4, 10)
    assert all(0 <= i < 10 for i, _ in plan)


def test_stage_key_tracks_what_changes_weights_only(tmp_path):
    method, stage = ToyMethod(), ToyMethod().stages[0]
    key = stage_key(method, stage, PROFILE, "set:1", 0, {})[0]
    quiet = apply_overrides(PROFILE, ["train.log_every=5", "train.ckpt_every=3"])
    assert key == stage_key(method, stage, quiet, "set:1", 0, {})[0]
    assert key != stage_key(method, stage, apply_overrides(PROFILE, ["train.iters_dm=7"]), "set:1", 0, {})[0]
    assert key != stage_key(method, stage, PROFILE, "set:2", 0, {})[0]
    assert key != stage_key(method, stage, PROFILE, "set:1", 1, {})[0]


def test_training_lowers_the_loss_and_a_finished_stage_is_reused(tmp_path):
    method = ToyMethod()
    profile = apply_overrides(PROFILE, ["train.iters_dm=40"])
    nets, results = _train(tmp_path, method, profile=profile)
    curve = results[0].curve
    assert len(curve) == 40 and curve[-1][1] < curve[0][1]
    before, after = results[0].probe_loss  # the same fixed batch, scored before and after training
    assert after < before and results[0].summary()["probe_loss"] == [before, after]
    assert [r.reused for r in results] == [False, False]
    calls = len(method.calls)
    _nets2, again = _train(tmp_path, method, profile=profile)
    assert [r.reused for r in again] == [True, True] and len(method.calls) == calls
    for name in ("f", "g"):
        for k, v in nets[name].state_dict().items():
            assert torch.equal(v, _nets2[name].state_dict()[k])


def test_stage_b_starts_from_stage_a_weights(tmp_path):
    method = ToyMethod()
    profile = apply_overrides(PROFILE, ["train.iters_autoencoder=0", "train.iters_bie=0"])
    nets, results = _train(tmp_path, method, profile=profile)
    a = load_payload(results[0].folder / CKPT, "fix")["state_dicts"]["f"]
    assert torch.equal(nets["f"].weight, a["weight"])  # zero-iteration stage b: f exactly as a left it


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    reference, _ = _train(tmp_path, ToyMethod(), sub="ref")

    class Interrupt(ToyMethod):
        def stage_loss(self, stage, nets, batch):
            if len(self.calls) == 9:  # stage b's 3rd step: after its checkpoint at 2, before the next
                raise KeyboardInterrupt
            return super().stage_loss(stage, nets, batch)

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, Interrupt(), sub="cut")
    stages = tmp_path / "cut" / "stages"
    b_folder = next(p for p in stages.iterdir() if p.name.startswith("b-"))
    assert json.loads((b_folder / STAGE_JSON).read_text())["status"] == "running"
    assert load_payload(b_folder / CKPT, "fix")["iteration"] == 2
    resumed, results = _train(tmp_path, ToyMethod(), sub="cut")
    assert [r.reused for r in results] == [True, False]
    _, uncut = _train(tmp_path, ToyMethod(), sub="ref")  # reused: its stored results
    assert results[1].probe_loss == uncut[1].probe_loss  # the start score survived the interruption
    for name in ("f", "g"):
        for k, v in reference[name].state_dict().items():
            assert torch.equal(v, resumed[name].state_dict()[k]), (name, k)


def test_nan_loss_stops_keeps_last_good_checkpoint_and_records_failure(tmp_path):
    method = ToyMethod(poison_at=5)
    with pytest.raises(TrainingDiverged, match="diverged at iteration 4"):
        _train(tmp_path, method)
    folder = next((tmp_path / "runs" / "stages").iterdir())
    info = json.loads((folder / STAGE_JSON).read_text())
    assert info["status"] == "failed" and "diverged" in info["error"]
    ck = load_payload(folder / CKPT, "fix")
    assert ck["iteration"] == 4 and all(torch.isfinite(v).all() for v in ck["state_dicts"]["f"].values())
    # Retried, not reused: a clean rerun resumes from the good checkpoint and finishes.
    _nets, results = _train(tmp_path, ToyMethod())
    assert results[0].reused is False and results[0].status == "finished"


def test_stage_runs_without_cache_when_fresh(tmp_path):
    method = ToyMethod()
    _train(tmp_path, method)
    stage = method.stages[0]
    res = train_stage(method, stage, PROFILE, tmp_path / "set", 0, tmp_path / "runs" / "stages",
                      torch.device("cpu"), {}, progress=False, fresh=True, log=lambda *a: None,
                      trainset=ToySet())
    assert res.reused is False and res.samples_per_s and 0 <= res.data_wait_share <= 1


def test_weights_that_do_not_fit_are_one_line_naming_the_file_and_the_fix() -> None:
    nets = nn.ModuleDict({"f": nn.Conv2d(3, 3, 1)})
    with pytest.raises(BenchError, match=r"^x\.pt: the f weights do not fit the current network \(.*\); "
                                         r"rerun it$") as err:
        load_components(nets, {"f": {"weight": torch.zeros(1)}}, source="x.pt", fix="rerun it")
    assert "\n" not in str(err.value)
