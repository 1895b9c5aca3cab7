"""Training speed through the loop's own code (bench/trainperf.py): `time_stage` on a toy method, and
`bench run --profile paper --dry-run` on a tiny GoPro-layout footage root, on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bench.cli import cli
from bench.config import apply_overrides, get_profile
from bench.data.synthetic import write_footage_root
from bench.store import iter_runs
from bench.trainperf import project, time_stage
from methods.registry import Component, Objective, Stage


def toy_loss(method, stage, nets, batch):
    out = nets["g"](nets["f"](batch["blur"]))  # (b, 3, c, c)
    return (out - batch["sharp"][:, 0]).abs().mean(), {}


CONV = Component(nn.Conv2d, {"in_channels": 3, "out_channels": 3, "kernel_size": 1})


TOY = Objective("toy", toy_loss, fields=("blur", "sharp"))


class Toy:
    name = "toy"
    components = {"f": CONV, "g": CONV}
    stages = (Stage("a", ("f",), {"f": 1e-2}, TOY),
              Stage("b", ("f", "g"), {"f": 1e-2, "g": 1e-2}, TOY, init_from=("a",)))

    def __init__(self):
        self.steps = 0

    def build(self, model=None):
        return nn.ModuleDict({"f": nn.Conv2d(3, 3, 1), "g": nn.Conv2d(3, 3, 1)})

    def stage_identity(self, stage_name, model=None):
        return {"stage": stage_name}

    def stage_loss(self, stage, nets, batch):
        self.steps += torch.is_grad_enabled()
        return stage.objective.fn(self, stage, nets, batch)


class Items:
    def __len__(self):
        return 5

    def __getitem__(self, key):
        g = torch.Generator().manual_seed(key[0])
        sharp = torch.rand(3, 3, 8, 8, generator=g)
        return {"blur": sharp.mean(0), "sharp": sharp}


PROFILE = apply_overrides(get_profile("smoke"), ["train.batch_video=2"])


def test_time_stage_times_the_loops_step_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    method = Toy()
    rates = {"fp32": 2e9, "bf16": 8e9}
    row = time_stage(method, method.stages[1], PROFILE, tmp_path / "set", torch.device("cpu"), steps=3,
                     warmup=1, rates=rates, trainset=Items(), log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []  # no stage folder, no checkpoint, nothing in the store
    assert method.steps == 4  # one untimed and three timed training steps, through the loop's step
    assert row["method"] == "toy" and row["stage"] == "b" and row["steps"] == 3 and row["warmup"] == 1
    assert row["forward_macs"] == 2 * (2 * 3 * 8 * 8 * 3)  # two 1x1 convs, 3 -> 3 channels, batch 2
    assert row["train_macs"] == 3 * row["forward_macs"]
    spent = row["batch"] * row["steps"] / row["samples_per_s"]
    assert row["mac_rate"] == pytest.approx(row["train_macs"] * 3 / spent)
    assert row["mac_rate_fraction"] == pytest.approx(row["mac_rate"] / rates["fp32"])  # smoke: float32
    assert row["mac_rate_fraction_fp32"] == row["mac_rate_fraction"] and row["matmul_dtype"] == "float32"
    assert 0 <= row["data_wait_share"] <= 1 and row["step_s"] > 0 and row["cpu_s_per_step"] > 0
    assert row["precision"] == "fp32" and row["loader"] == "thread" and row["crop"] == 32
    assert row["iterations"] == PROFILE.train.iters_dm


def test_the_projection_is_iterations_times_step_time_plus_the_evaluation():
    rows = [{"stage": "dm", "iterations": 100, "step_s": 0.5}, {"stage": "bie", "iterations": 10,
                                                                 "step_s": 2.0}]
    out = project(rows, {"eval_estimate_s": 7.0})
    assert out == {"projected_stage_s": {"dm": 50.0, "bie": 20.0}, "projected_train_s": 70.0,
                   "projected_total_s": 77.0}


@pytest.mark.slow
def test_paper_dry_run_times_every_stage_projects_the_profile_and_trains_nothing(tmp_path):
    root = tmp_path / "GOPRO_Large_all"  # the GoPro layout, rendered small: train/<seq>/000001.png, test/...
    write_footage_root(root, height=48, width=64, train=2, test=1, length=18)
    runs = tmp_path / "runs"
    args = ["run", "--profile", "paper", "--dry-run", "2", "--device", "cpu", "--root", str(root),
            "--data-dir", str(tmp_path / "data"), "--runs-dir", str(runs), "--set", "train.batch_video=1",
            "--set", "train.batch_deblur=1", "--set", "train.crop=32"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "projected wall time of the full profile on this device" in result.output
    assert sorted(p.name for p in runs.iterdir()) == ["dryrun"]  # no stage cache, no run folder
    assert iter_runs(runs) == []  # and the store lists no run
    (record_path,) = (runs / "dryrun").iterdir()
    assert record_path.name.startswith("ours-cpu-") and record_path.suffix == ".json"
    record = json.loads(record_path.read_text())
    assert record["kind"] == "dry-run" and "not a result" in record["note"]
    stages = {r["stage"]: r for r in record["stages"]}
    assert list(stages) == ["dm", "autoencoder", "bie"]
    paper = get_profile("paper").train
    assert [stages[s]["iterations"] for s in stages] == [paper.iters_dm, paper.iters_autoencoder,
                                                         paper.iters_bie]
    for row in stages.values():
        assert row["steps"] == 1 and row["warmup"] == 1 and row["batch"] == 1 and row["crop"] == 32
        assert row["step_s"] > 0 and 0 <= row["data_wait_share"] <= 1 and row["peak_mem_mb"] is not None
    train = sum(r["iterations"] * r["step_s"] for r in stages.values())
    assert record["projected_train_s"] == pytest.approx(train)
    assert record["projected_total_s"] == pytest.approx(train + record["eval_estimate_s"])
    assert record["eval_estimate_s"] > 0 and record["test_samples"] == 2  # 18 test frames: two 9-frame blurs
