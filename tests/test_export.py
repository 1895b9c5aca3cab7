"""`bench export`: a prepared set's split as plain files (the suite's layout and blur2vid's GOPRO_7 layout),
index.csv, the output-folder rules; `frame_name` and `open_set`."""

from __future__ import annotations

import csv
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.cli import main
from bench.data.manifest import data_digest, load_manifest
from bench.errors import BenchError
from bench.export import frame_name, open_set


def bench(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the `bench` executable's entry in-process: (exit status, stdout, stderr), as a user sees them."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_frame_names_sort_as_numbers_and_widen_past_99() -> None:
    assert [frame_name(n, 9) for n in (1, 9)] == ["frame_01.png", "frame_09.png"]
    assert frame_name(7, 101) == "frame_007.png"
    assert sorted(frame_name(n, 12) for n in range(1, 13)) == [frame_name(n, 12) for n in range(1, 13)]


def test_native_export_copies_the_sets_bytes_with_an_index(smoke_data: Path, tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # the user's own file beside the export
    code, stdout, err = bench(capsys, monkeypatch, "export", "--set", "synthetic-smoke-9f", "--out", str(out),
                              "--data-dir", str(smoke_data))
    assert code == 0, err
    set_folder = smoke_data / "synthetic-smoke-9f"
    manifest = load_manifest(set_folder)
    tests = [s for s in manifest["samples"] if s["split"] == "test"]
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert [r["sample"] for r in rows] == [s["id"] for s in tests]
    h, w = manifest["resolution"]
    for row, sample in zip(rows, tests, strict=True):
        assert (row["frames"], row["height"], row["width"], row["gamma"]) == ("9", str(h), str(w), "none")
        assert (row["set"], row["set_sha256"]) == ("synthetic-smoke-9f", data_digest(set_folder))
        base = out / sample["id"]
        assert (base / "blur.png").read_bytes() == (set_folder / sample["blur"]).read_bytes()
        gt = sorted((base / "gt").iterdir())
        assert [p.name for p in gt] == [frame_name(n, 9) for n in range(1, 10)]
        assert [p.read_bytes() for p in gt] == [(set_folder / rel).read_bytes() for rel in sample["sharp"]]
    assert (out / "notes.txt").read_text() == "mine"
    assert f"{2 * 10 + 1} files" in stdout  # two test samples: blur + 9 frames each, then index.csv


def test_export_never_replaces_a_users_file(smoke_data: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    sid = next(s["id"] for s in load_manifest(smoke_data / "synthetic-smoke-9f")["samples"]
               if s["split"] == "test")
    (out / sid).mkdir(parents=True)
    (out / sid / "blur.png").write_bytes(b"the user's")
    code, _, err = bench(capsys, monkeypatch, "export", "--set", "synthetic-smoke-9f", "--out", str(out),
                         "--data-dir", str(smoke_data))
    assert code == 2 and err.count("\n") == 1 and "blur.png" in err and "is in the way" in err
    assert (out / sid / "blur.png").read_bytes() == b"the user's"
    assert not (out / "index.csv").exists()  # refused before anything was written


def test_a_second_export_replaces_its_own_files_only(smoke_data: Path, tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    out = tmp_path / "out"
    args = ("export", "--set", "synthetic-smoke-9f", "--out", str(out), "--data-dir", str(smoke_data))
    assert bench(capsys, monkeypatch, *args)[0] == 0
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert bench(capsys, monkeypatch, *args)[0] == 0
    # another set into the same folder: the first export's files that this one did not write go
    code, _, err = bench(capsys, monkeypatch, "export", "--set", "synthetic-smoke-7f", "--out", str(out),
                         "--data-dir", str(smoke_data), "--layout", "blur2vid")
    assert code == 0, err
    now = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert not {p for p in first if p.parts[0] != "index.csv" and not p.name.startswith(".")} & now


def test_blur2vid_layout_names_frames_by_their_place_in_the_sequence(smoke_data: Path, tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    out = tmp_path / "gopro7"
    code, _, err = bench(capsys, monkeypatch, "export", "--set", "synthetic-smoke-7f", "--out", str(out),
                         "--data-dir", str(smoke_data), "--layout", "blur2vid")
    assert code == 0, err
    set_folder = smoke_data / "synthetic-smoke-7f"
    tests = [s for s in load_manifest(set_folder)["samples"] if s["split"] == "test"]
    for sample in tests:
        first = sample["window"] * 7 + 1  # window k holds frames 7k+1 .. 7k+7 of its sequence, from 1
        blur = out / "test" / "blur" / sample["sequence"] / f"{first + 3:06d}.png"  # named by its centre
        assert blur.read_bytes() == (set_folder / sample["blur"]).read_bytes()
        for j, rel in enumerate(sample["sharp"]):
            sharp = out / "test" / "sharp" / sample["sequence"] / f"{first + j:06d}.png"
            assert sharp.read_bytes() == (set_folder / rel).read_bytes()
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert [(out / r["blur"]).is_file() for r in rows] == [True] * len(tests)


def test_blur2vid_layout_refuses_a_set_that_is_not_7_frames(smoke_data: Path, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    code, _, err = bench(capsys, monkeypatch, "export", "--set", "synthetic-smoke-9f", "--out",
                         str(tmp_path / "x"), "--data-dir", str(smoke_data), "--layout", "blur2vid")
    assert code == 2 and "7-frame" in err and "N=9" in err and err.count("\n") == 1
    assert not (tmp_path / "x" / "index.csv").exists()


def test_a_set_that_is_not_prepared_or_is_damaged_is_refused(data: Path, tmp_path: Path) -> None:
    with ExitStack() as hold, pytest.raises(BenchError, match="bench prepare"):
        open_set("synthetic-smoke-5f", data, hold)
    sample = load_manifest(data / "synthetic-smoke-7f")["samples"][0]
    (data / "synthetic-smoke-7f" / sample["blur"]).write_bytes(b"damaged")
    with ExitStack() as hold, pytest.raises(BenchError, match="--set synthetic-smoke-7f"):
        open_set("synthetic-smoke-7f", data, hold)
