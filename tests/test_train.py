"""The one training loop (bench/train.py) on a toy method: budgets, data order, resume, NaN, stage cache.

The toy keeps these tests to a second or two; the real methods run through it in tests/test_run_cli.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import pytest
import torch
from torch import nn

from bench.config import apply_overrides, get_profile
from bench.env import cpu_name
from bench.errors import BenchError
from bench.store import load_payload
from bench.train import (
    CKPT,
    STAGE_JSON,
    TrainingDiverged,
    batch_plan,
    lr_factor,
    open_stage,
    stage_batch,
    stage_iterations,
    stage_key,
    stream_key,
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


class Interrupt(ToyMethod):
    """Stops training as Ctrl-C would at stage b's 3rd step: after its checkpoint at 2, before the next."""

    def stage_loss(self, stage, nets, batch):
        if len(self.calls) == 9:
            raise KeyboardInterrupt
        return super().stage_loss(stage, nets, batch)


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


# --- schedule, precision, validation, devices (bench/train.py with bench/execution.py) ---------------------

def test_lr_factor_warms_up_linearly_then_follows_the_schedule():
    t = apply_overrides(PROFILE, ["train.lr_schedule=cosine", "train.warmup_iters=4",
                                  "train.min_lr_ratio=0.1"]).train
    factors = [lr_factor(t, i, 14) for i in range(14)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[3:], factors[4:], strict=False))  # decays monotonically
    assert factors[4 + 5 - 1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 9)))
    constant = apply_overrides(PROFILE, ["train.warmup_iters=2"]).train
    assert [lr_factor(constant, i, 5) for i in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert [lr_factor(PROFILE.train, i, 3) for i in range(3)] == [1.0, 1.0, 1.0]


def test_each_step_runs_adam_at_the_scheduled_rate(tmp_path):
    profile = apply_overrides(PROFILE, ["train.lr_schedule=cosine", "train.warmup_iters=2"])
    method = ToyMethod()
    run = open_stage(method, method.stages[1], profile, tmp_path / "set", 0, tmp_path / "stages",
                     torch.device("cpu"), {"a": "a-key"}, log=lambda *a: None)
    run.build_networks()
    assert run.base_lrs == [2e-3, 1e-2]  # the stage's per-component rates (lr_scale 1)
    with run.batches(ToySet(), 0, run.total) as batches:
        for it in range(run.total):
            run.step(it, next(batches), None)
            factor = lr_factor(profile.train, it, run.total)
            rates = [g["lr"] for g in run.optimizer.param_groups]
            assert rates == pytest.approx([2e-3 * factor, 1e-2 * factor])
    assert not (tmp_path / "stages").exists()  # stepping writes nothing


SCHEDULED = apply_overrides(PROFILE, ["train.lr_schedule=cosine", "train.warmup_iters=3",
                                      "train.min_lr_ratio=0.2", "train.precision=bf16"])


def test_interrupted_bf16_cosine_training_resumes_to_identical_weights_and_curves(tmp_path):
    reference, ref_results = _train(tmp_path, ToyMethod(), sub="ref", profile=SCHEDULED, valset=ToySet())

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, Interrupt(), sub="cut", profile=SCHEDULED, valset=ToySet())
    resumed, results = _train(tmp_path, ToyMethod(), sub="cut", profile=SCHEDULED, valset=ToySet())
    assert [r.reused for r in results] == [True, False]
    for name in ("f", "g"):
        for k, v in reference[name].state_dict().items():
            assert torch.equal(v, resumed[name].state_dict()[k]), (name, k)
    assert results[1].validation["points"] == ref_results[1].validation["points"]


def test_the_same_stage_twice_in_bf16_gives_identical_weights(tmp_path):
    first, _ = _train(tmp_path, ToyMethod(), sub="one", profile=SCHEDULED)
    second, _ = _train(tmp_path, ToyMethod(), sub="two", profile=SCHEDULED)
    for name in ("f", "g"):
        for k, v in first[name].state_dict().items():
            assert torch.equal(v, second[name].state_dict()[k]), (name, k)


def test_precision_and_schedule_join_the_stage_key_only_when_they_change_the_weights():
    method, stage = ToyMethod(), ToyMethod().stages[0]
    key, identity = stage_key(method, stage, PROFILE, "set:1", 0, {})
    assert "precision" not in identity and "schedule" not in identity  # keys of stages cached before stay
    bf16_key, bf16_identity = stage_key(method, stage, PROFILE, "set:1", 0, {}, precision="bf16")
    cosine = apply_overrides(PROFILE, ["train.lr_schedule=cosine"])
    cosine_key, cosine_identity = stage_key(method, stage, cosine, "set:1", 0, {})
    assert len({key, bf16_key, cosine_key}) == 3
    # ... but not the random streams: same batches and initial weights, so comparisons isolate the setting
    assert stream_key(identity) == stream_key(bf16_identity) == stream_key(cosine_identity)
    layout = apply_overrides(PROFILE, ["train.channels_last=false", "train.loader=main", "train.threads=2",
                                       "train.val_every=3", "train.compile=true"])
    assert stage_key(method, stage, layout, "set:1", 0, {})[0] == key  # how, not what, it computes


def test_a_stage_rate_factor_slows_only_the_stage_naming_it_and_keys_it_when_it_is_not_one(tmp_path):
    a, b = ToyMethod().stages
    method = ToyMethod(stages=(a, replace(b, lr_keys=("lr_scale_bie",))))
    half = apply_overrides(PROFILE, ["train.lr_scale=3", "train.lr_scale_bie=0.5"])
    run = open_stage(method, method.stages[1], half, tmp_path / "set", 0, tmp_path / "stages",
                     torch.device("cpu"), {"a": "a-key"}, log=lambda *a: None)
    run.build_networks()
    assert run.base_lrs == pytest.approx([2e-3 * 3 * 0.5, 1e-2 * 3 * 0.5])
    first = open_stage(method, a, half, tmp_path / "set", 0, tmp_path / "stages", torch.device("cpu"), {},
                       log=lambda *a: None)
    first.build_networks()
    assert first.base_lrs == pytest.approx([1e-2 * 3])  # stage a names no factor
    halved_only = apply_overrides(PROFILE, ["train.lr_scale_bie=0.5"])
    full_key, full = stage_key(method, method.stages[1], PROFILE, "set:1", 0, {"a": "a-key"})
    half_key, halved = stage_key(method, method.stages[1], halved_only, "set:1", 0, {"a": "a-key"})
    assert "stage_lr" not in full and halved["stage_lr"] == 0.5 and full_key != half_key
    assert stream_key(full) == stream_key(halved)  # same batches and initial weights: the rate is isolated
    assert stage_key(method, a, halved_only, "set:1", 0, {})[0] == stage_key(method, a, PROFILE, "set:1", 0,
                                                                              {})[0]
    unknown = replace(b, lr_keys=("lr_scale_nowhere",))
    with pytest.raises(BenchError, match="train.lr_scale_nowhere"):
        stage_key(method, unknown, PROFILE, "set:1", 0, {"a": "a-key"})


def test_validation_curve_is_scored_at_the_start_every_val_every_and_the_end(tmp_path):
    profile = apply_overrides(PROFILE, ["train.val_every=4", "train.val_samples=3"])
    _nets, results = _train(tmp_path, ToyMethod(), profile=profile, valset=ToySet())
    a, b = results
    assert [p[0] for p in a.validation["points"]] == [0, 4, 6]  # 6 iterations
    assert [p[0] for p in b.validation["points"]] == [0, 4, 5]  # 5 iterations
    assert a.validation["metric"] == "loss" and a.validation["split"] == "test"
    assert a.validation["samples"] == 3 and a.validation["reference"] is None
    assert a.validation["points"][-1][1] < a.validation["points"][0][1]  # the toy learns
    stored = json.loads((a.folder / STAGE_JSON).read_text())
    assert stored["validation"] == a.validation and a.summary()["validation"] == a.validation
    assert stored["execution"]["precision"] == "fp32" and stored["execution"]["loader"] == "thread"
    assert stored["execution"]["processor"] == cpu_name()  # the chip that trained it, named in every result
    _nets, again = _train(tmp_path, ToyMethod(), profile=profile, valset=ToySet())
    assert again[0].reused and again[0].validation == a.validation  # reused stages report their curve
    _nets, none = _train(tmp_path, ToyMethod(), sub="noval", profile=profile)
    assert none[0].validation is None  # a test set without a validation split: no curve


def test_fp32_and_bf16_loss_trajectories_of_the_dm_agree(tmp_path):
    """A few DM steps on the same batches from the same weights: bf16 autocast follows float32 closely."""
    from methods.registry import get

    method = get("ours")
    stage = method.stage("dm")

    class Blurs(ToySet):
        def __getitem__(self, key):
            item = super().__getitem__(key)
            return {"blur": item["blur"].repeat(1, 4, 4), "center": item["sharp"][1].repeat(1, 4, 4)}

    curves = {}
    for precision in ("fp32", "bf16"):
        profile = apply_overrides(PROFILE, ["train.iters_dm=8", f"train.precision={precision}",
                                            "train.lr_scale=10"])
        result = train_stage(method, stage, profile, tmp_path / "set", 0, tmp_path / precision,
                             torch.device("cpu"), {}, progress=False, log=lambda *a: None, trainset=Blurs())
        curves[precision] = [v for _, v in result.curve]
    fp32, bf16 = torch.tensor(curves["fp32"]), torch.tensor(curves["bf16"])
    assert fp32[-1] < fp32[0]  # it learns ...
    assert torch.allclose(bf16, fp32, rtol=0.02), (curves["fp32"], curves["bf16"])  # ... and bf16 with it


def test_checkpoints_hold_cpu_tensors_and_resume_from_another_device_map(tmp_path, monkeypatch):
    """A checkpoint whose tensors are tagged as CUDA tensors (as one written on a GPU) resumes on the CPU to
    the weights of an uninterrupted run: `load_payload` maps to the CPU, Adam's state follows the weights."""
    import torch.serialization as ser

    reference, _ = _train(tmp_path, ToyMethod(), sub="ref")
    tags = []

    def as_cuda(obj):
        if isinstance(obj, torch.storage.UntypedStorage) and obj.device.type == "cpu":
            tags.append("cuda:0")
            return "cuda:0"
        return None

    monkeypatch.setattr(ser, "_package_registry", [(0, as_cuda, lambda obj, loc: None),
                                                   *ser._package_registry])

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, Interrupt(), sub="cut")
    monkeypatch.setattr(ser, "_package_registry", [r for r in ser._package_registry if r[1] is not as_cuda])
    b_folder = next(p for p in (tmp_path / "cut" / "stages").iterdir() if p.name.startswith("b-"))
    found = []
    torch.load(b_folder / CKPT, map_location=lambda storage, loc: found.append(loc) or storage,
               weights_only=True)
    assert tags and set(found) == {"cuda:0"}  # written as a GPU run would have written it
    resumed, results = _train(tmp_path, ToyMethod(), sub="cut")
    assert results[1].reused is False
    state = load_payload(b_folder / CKPT, "fix")
    tensors = [*state["state_dicts"]["f"].values(),
               *(t for s in state["optimizer"]["state"].values() for t in s.values() if torch.is_tensor(t))]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    for name in ("f", "g"):
        for k, v in reference[name].state_dict().items():
            assert torch.equal(v, resumed[name].state_dict()[k]), (name, k)


@pytest.mark.slow  # compiling the toy's step with a cold inductor cache: about 20 s on 2 shared CPU cores
def test_a_compiled_stage_trains_to_the_eager_loss(tmp_path):
    eager = _train(tmp_path, ToyMethod(), sub="eager")[1]
    compiled = _train(tmp_path, ToyMethod(), sub="compiled",
                      profile=apply_overrides(PROFILE, ["train.compile=true"]))[1]
    assert compiled[0].execution["compile"] is True
    assert [v for _, v in compiled[0].curve] == pytest.approx([v for _, v in eager[0].curve], rel=1e-4)


def test_deblurring_stages_take_their_own_crop_and_key_it() -> None:
    from bench.train import stage_crop
    from methods import registry

    method = registry.get("ours")
    dm, bie = method.stage("dm"), method.stage("bie")
    both = apply_overrides(PROFILE, ["train.crop=32"])
    own = apply_overrides(both, ["train.crop_deblur=48"])
    assert stage_crop(dm, both) == stage_crop(bie, both) == 32
    assert (stage_crop(dm, own), stage_crop(bie, own)) == (48, 32)
    key = {name: {s.name: stage_key(method, s, p, "set:1", 0, {"autoencoder": "k"})[0] for s in (dm, bie)}
           for name, p in (("both", both), ("own", own))}
    same = stage_key(method, dm, apply_overrides(both, ["train.crop_deblur=32"]), "set:1", 0, {})[0]
    assert key["both"]["dm"] == same  # crop_deblur equal to crop trains the same DM: one cache entry
    assert key["both"]["dm"] != key["own"]["dm"] and key["both"]["bie"] == key["own"]["bie"]
