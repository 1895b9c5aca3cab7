"""`bench perf --loader` (bench/loaderperf.py): on a tiny rendered footage root it prepares the set,
measures both batch kinds through real DataLoaders and writes rows with the documented keys. No timing is
asserted beyond being measured (CONTRIBUTING: speed goals live in benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bench.config import get_profile
from bench.data.synthetic import write_footage_root


def test_perf_loader_on_a_tiny_root_writes_the_json_rows(tmp_path: Path) -> None:
    from bench.commands.perf import command
    from bench.loaderperf import ROW_KEYS

    write_footage_root(tmp_path / "root", height=40, width=56, train=2, test=1, length=10, seed=0)
    out = tmp_path / "loader.json"
    args = ["--loader", "--source", "gopro", "--root", str(tmp_path / "root"), "--data-dir",
            str(tmp_path / "data"), "--profile", "smoke", "--workers", "0,1", "--batches", "2", "--device",
            "cpu", "--breakdown", "--json", str(out)]
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "gopro-9f" / "manifest.json").is_file()  # prepared on the way
    rows = json.loads(out.read_text())
    train = get_profile("smoke").train
    assert [(r["stage"], r["workers"]) for r in rows] == [("dm", 0), ("dm", 1), ("video", 0), ("video", 1)]
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
        assert row["samples_per_s"] > 0 and row["crop"] == train.crop and row["frames"] == 9
        assert row["resolution"] == "56x40" and row["cpu"] and row["device"]
        assert row["batch"] == (train.batch_deblur if row["stage"] == "dm" else train.batch_video)
        assert row["fields"] == (["blur", "center"] if row["stage"] == "dm" else ["blur", "sharp"])
        parts = row["breakdown_ms_per_video_sample"]
        assert set(parts) == {"read", "resize", "layout", "total", "total_cpu"} and parts["total"] > 0
    assert "samples/s" in result.output


def test_perf_loader_refuses_bad_worker_lists(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    import pytest

    from bench.cli import main

    monkeypatch.setattr(sys, "argv", ["bench", "perf", "--loader", "--workers", "two", "--data-dir",
                                      str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--workers 'two'" in err[0] and "1,2,4" in err[0]
