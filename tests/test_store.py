"""The results store (bench/store.py): atomic writes, run lookups, locks, portable weights."""

from __future__ import annotations

import os
import time

import pytest
import torch

from bench.errors import BenchError
from bench.store import (
    FolderLock,
    atomic_write_json,
    iter_runs,
    latest_run,
    load_weights,
    run_id,
    runs_dir,
    save_weights,
    stable_hash,
)


def test_atomic_json_is_canonical_and_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    atomic_write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "a.json", {"x": float("nan")})  # NaN is never stored as a result
    assert (tmp_path / "a.json").read_text().startswith("{")


def test_run_id_hashes_the_resolved_config_independent_of_key_order():
    a = run_id("ours", {"frames": 9, "seed": 0})
    assert a == run_id("ours", {"seed": 0, "frames": 9}) and a.startswith("ours-")
    assert a != run_id("ours", {"frames": 9, "seed": 1})
    assert stable_hash({"x": 1}) != stable_hash({"x": 2})


def test_runs_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_RUNS", str(tmp_path / "env"))
    assert runs_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert runs_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BENCH_RUNS")
    assert str(runs_dir(None)) == "runs"


def _fake_run(root, name, method, frames, status, when):
    folder = root / name
    atomic_write_json(folder / "config.json", {"method": method, "frames": frames})
    if status:
        atomic_write_json(folder / "metrics.json", {"status": status})
        os.utime(folder / "metrics.json", (when, when))
    return folder


def test_iter_and_latest_run_pick_the_newest_finished_run(tmp_path):
    now = time.time()
    old = _fake_run(tmp_path, "ours-a", "ours", 9, "finished", now - 100)
    new7 = _fake_run(tmp_path, "ours-b", "ours", 7, "finished", now - 10)
    _fake_run(tmp_path, "ours-c", "ours", 9, "failed", now)
    _fake_run(tmp_path, "ours-d", "ours", 9, None, now)
    (tmp_path / "stages" / "x").mkdir(parents=True)
    (tmp_path / "no-config").mkdir()
    runs = iter_runs(tmp_path)
    assert [r["path"].name for r in runs] == ["ours-a", "ours-b", "ours-c", "ours-d"]
    assert runs[3]["metrics"] is None
    assert latest_run(tmp_path, "ours") == new7
    assert latest_run(tmp_path, "ours", frames=9) == old
    assert latest_run(tmp_path, "srn") is None
    assert iter_runs(tmp_path / "missing") == []


def test_folder_lock_excludes_a_second_holder(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(BenchError, match="in use by another bench process"):
            with FolderLock(tmp_path, wait=False):
                pass
    with FolderLock(tmp_path, wait=False):  # released on exit
        pass


def test_weights_round_trip_and_refusals(tmp_path):
    net = torch.nn.Conv2d(3, 4, 3)
    path = save_weights(tmp_path / "weights.pt", "ours", 9, {"dm_width": 8}, {"dm": net.state_dict()})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "bmb-weights/1"
    assert set(raw) == {"format", "method", "frames", "model", "state_dicts"}
    back = load_weights(path)
    assert back["method"] == "ours" and back["frames"] == 9 and back["model"] == {"dm_width": 8}
    assert torch.equal(back["state_dicts"]["dm"]["weight"], net.weight.detach())
    with pytest.raises(BenchError, match="no such weights file"):
        load_weights(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(BenchError, match="not a bmb-weights/1 file"):
        load_weights(tmp_path / "other.pt")
    torch.save({"format": "bmb-weights/1", "evil": torch.nn.Conv2d(1, 1, 1)}, tmp_path / "code.pt")
    with pytest.raises(BenchError, match="not a loadable weights file"):
        load_weights(tmp_path / "code.pt")  # a pickled module needs code execution: refused
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(BenchError, match="not a loadable weights file"):
        load_weights(tmp_path / "trunc.pt")
