"""Tests of bench/perf.py and `bench perf`: MAC counts by hand, row keys, skipped methods; no timings."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bench import perf
from bench.config import get_profile
from bench.errors import BenchError


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor, steps: int = 1) -> torch.Tensor:
        x = self.up(self.conv(x))  # (1, 4, 20, 24)
        for _ in range(steps):  # a recurrent layer is counted every time it runs
            x = self.grouped(x)
        return self.fc(x)  # (1, 4, 20, 5)


def test_macs_match_a_hand_count() -> None:
    net = Tiny()
    x = torch.rand(1, 3, 10, 12)
    conv = (8 * 10 * 12) * (3 * 3 * 3)  # outputs x (in_channels * kernel)      = 25,920
    deconv = (8 * 10 * 12) * 4 * (4 * 4)  # inputs x out_channels x kernel       = 61,440
    grouped = (4 * 20 * 24) * (2 * 3 * 3)  # outputs x (in_channels/groups * k)   = 34,560
    linear = (4 * 20 * 5) * 24  # outputs x in_features                          = 9,600
    assert perf.count_macs(lambda: net(x), net) == conv + deconv + grouped + linear
    assert perf.count_macs(lambda: net(x, steps=3), net) == conv + deconv + 3 * grouped + linear
    # hooks are removed afterwards: a later forward pass is not counted anywhere
    assert all(not m._forward_hooks for m in net.modules())


def test_spread_and_params() -> None:
    s = perf.Spread.of([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.low, s.high) == (2.5, 1.0, 10.0)
    assert s.iqr > 0
    net = Tiny()
    assert perf.params_of(net) == sum(p.numel() for p in net.parameters())
    assert perf.size_mb(1_000_000) == 4.0


def test_parse_resolution() -> None:
    assert perf.parse_resolution("1280x704") == (704, 1280)
    with pytest.raises(BenchError):
        perf.parse_resolution("1280")
    with pytest.raises(BenchError):
        perf.parse_resolution("8x8")


def test_matmul_rate_is_positive() -> None:
    assert perf.matmul_rate(torch.device("cpu"), size=64, repeats=2) > 0


def _hold_and_free(mb: int, seconds: float = 0.0) -> None:
    import time

    block = bytearray(mb * 1_000_000)  # zero-filled: every page is touched, so it is resident
    time.sleep(seconds)
    del block


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from Linux's /proc")
@pytest.mark.parametrize("kernel_mark", [True, False], ids=["VmHWM", "sampled"])
def test_peak_memory_sees_an_allocation_freed_before_exit(kernel_mark, monkeypatch) -> None:
    if not kernel_mark:
        monkeypatch.setattr(perf, "_reset_peak_rss", lambda: False)
    with perf.PeakMemory(torch.device("cpu")) as mem:
        _hold_and_free(60, seconds=0.0 if kernel_mark else 0.05)
    assert ("VmHWM" in mem.how) is kernel_mark
    assert 50 <= mem.mb < 200, mem.how


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from Linux's /proc")
def test_peak_memory_counts_only_what_runs_inside(monkeypatch) -> None:
    _hold_and_free(60)  # a peak before entry must not count
    with perf.PeakMemory(torch.device("cpu")) as mem:
        pass
    assert mem.mb < 20


def test_bench_perf_json_rows(tmp_path) -> None:
    from bench.commands.perf import command
    from bench.perf import ROW_KEYS
    from methods import registry

    out = tmp_path / "perf.json"
    names = ["ours", "jin2018", "blurred"]
    args = ["--methods", ",".join(names), "--resolution", "40x24", "--device", "cpu", "--repeats", "1",
            "--warmup", "0", "--frames", "5", "--profile", "smoke", "--matmul-size", "64", "--json", str(out)]
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == names
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
        if row["method"] == "jin2018":  # fixed to N = 7: listed with the reason, not crashed
            assert row["skipped"] and row["runtime_video_s"] is None
            continue
        assert row["skipped"] is None
        assert row["resolution"] == "40x24" and row["frames"] == 5
        assert row["runtime_video_s"] > 0 and row["runtime_deblur_s"] > 0
        assert row["mac_rate_fraction"] is not None and row["mac_rate_fraction"] >= 0
    by = {r["method"]: r for r in rows}
    model = dataclasses.asdict(get_profile("smoke").model)
    listed = {r["name"]: r for r in registry.summary(model)}
    # test-time networks only, as `bench list` counts them; the training-only RVE in train_params
    assert by["ours"]["params"] == listed["ours"]["params"]
    assert by["ours"]["train_params"] == perf.params_of(registry.get("ours").build(model))
    assert by["ours"]["macs"] > by["ours"]["macs_deblur"] > 0  # the video pipeline includes the DM
    assert by["ours"]["channels_last"] == ["dm", "rvd"]  # the registry's inference layout was timed
    assert by["blurred"]["params"] == 0 and by["blurred"]["macs"] == 0


def test_bench_perf_contiguous_times_every_network_contiguous(tmp_path) -> None:
    from bench.commands.perf import command

    out = tmp_path / "perf.json"
    args = ["--methods", "ours-static", "--resolution", "32x32", "--device", "cpu", "--repeats", "1",
            "--warmup", "0", "--frames", "3", "--profile", "smoke", "--matmul-size", "64", "--contiguous",
            "--breakdown", "--json", str(out)]
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())[0]
    assert row["channels_last"] == []
    ops = row["breakdown_deblur"]
    assert any("conv" in o["op"] for o in ops) and abs(sum(o["share"] for o in ops) - 1.0) < 1e-6
    assert "deblurring time by operator" in result.output


def test_track_appends_rows_under_a_fixed_header(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "track.py"
    spec = importlib.util.spec_from_file_location("track", script)
    track = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(track)
    csv_path = tmp_path / "results.csv"
    track.append_rows(csv_path, [{"kind": "perf", "method": "ours", "runtime_video_s": 0.5,
                                  "channels_last": ["dm", "rvd"]}])
    track.append_rows(csv_path, [{"kind": "prepare", "prepare_s": 2.0, "unknown_key": 1}])
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == list(track.COLUMNS) and len(lines) == 3
    assert lines[1].split(",")[track.COLUMNS.index("method")] == "ours"
    assert lines[1].split(",")[track.COLUMNS.index("channels_last")] == "dm+rvd"
    csv_path.write_text("other,header\n")
    with pytest.raises(BenchError):
        track.append_rows(csv_path, [{"kind": "perf"}])


def test_bench_perf_store_keeps_a_result_the_report_can_read(tmp_path) -> None:
    from bench.commands.perf import command
    from bench.store import latest_perf

    runs = tmp_path / "runs"
    args = ["--methods", "blurred,ours-static", "--resolution", "32x32", "--device", "cpu", "--repeats", "3",
            "--warmup", "0", "--frames", "3", "--profile", "smoke", "--matmul-size", "64", "--store",
            "--runs-dir", str(runs)]
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stored, problems = latest_perf(runs, "smoke")
    assert problems == [] and latest_perf(runs, "paper") == (None, [])
    assert (stored.profile, stored.frames, stored.resolution, stored.repeats) == ("smoke", 3, "32x32", 3)
    assert stored.env.git_commit is not None or stored.env.git_dirty is None
    rows = {r["method"]: r for r in stored.rows}
    for row in rows.values():  # every timed pass is kept, and the median is theirs
        assert len(row["runtime_video_times_s"]) == 3 and len(row["runtime_deblur_times_s"]) == 3
        assert row["runtime_video_s"] == sorted(row["runtime_video_times_s"])[1]
    assert rows["ours-static"]["params"] > 0 and rows["blurred"]["params"] == 0
    written = next((runs / "perf").iterdir())
    assert written.name.startswith("smoke-3f-32x32-") and f"stored {written}" in result.output
    written.write_text('{"profile": "smoke"}')
    assert latest_perf(runs, "smoke")[0] is None and "no 'frames'" in latest_perf(runs, "smoke")[1][0]


@pytest.mark.slow
def test_perf_train_rows_come_from_the_training_loop_and_touch_no_store(smoke_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_RUNS", str(tmp_path / "store"))
    out = tmp_path / "train.json"
    args = ["perf", "--train", "--methods", "ours,srn", "--profile", "smoke", "--steps", "2", "--warmup", "1",
            "--data-dir", str(smoke_data), "--matmul-size", "64", "--json", str(out),
            "--set", "train.precision=bf16", "--set", "train.channels_last=false"]
    from bench.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["method"], r["stage"]) for r in rows] == [("ours", "dm"), ("ours", "autoencoder"),
                                                          ("ours", "bie"), ("srn", "srn")]
    from bench.trainperf import TRAIN_KEYS

    for row in rows:
        assert set(TRAIN_KEYS) <= set(row), set(TRAIN_KEYS) - set(row)
        assert row["samples_per_s"] > 0 and 0 <= row["data_wait_share"] <= 1
        assert 0 < row["mac_rate_fraction"] and row["matmul_dtype"] == "bfloat16"  # the step's own dtype
        assert row["precision"] == "bf16" and row["channels_last"] == []  # the overrides were applied
        assert row["crop"] == 32 and row["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]  # no runs/, no stage cache


def test_perf_train_refuses_a_method_without_stages(smoke_data):
    from bench.cli import cli

    result = CliRunner().invoke(cli, ["perf", "--train", "--methods", "blurred", "--profile", "smoke",
                                      "--data-dir", str(smoke_data)])
    assert isinstance(result.exception, BenchError)
    assert str(result.exception) == "--methods blurred: it has no training stages; name a trained method"
