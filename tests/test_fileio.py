"""File I/O on the bottom floor (bench/fileio.py): modes that follow the umask, JSON read within limits,
hashing of regular files only, the one atomic writer."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from records import write_run

from bench import fileio
from bench.errors import BenchError
from bench.fileio import (
    MAX_JSON_DEPTH,
    AtomicFile,
    FolderLock,
    UnreadableFile,
    WriteFailed,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    file_mode,
    load_json,
    parse_json,
    read_json,
    sha256_file,
)

UMASKS = [0o022, 0o002]


@pytest.fixture(params=UMASKS, ids=["umask022", "umask002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes_under(root: Path) -> dict[str, int]:
    """Permission bits of `root` and of every file and folder below it, by path relative to its parent."""
    found = {root.name: stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root.parent))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_modes_follow(root: Path, mask: int) -> None:
    wrong = {rel: oct(mode) for rel, mode in modes_under(root).items()
             if mode != (0o777 if (root.parent / rel).is_dir() else 0o666) & ~mask}
    assert not wrong, f"under umask {mask:03o}: {wrong}"


# --- modes ------------------------------------------------------------------------------------------------


def test_every_kind_of_write_gets_the_mode_open_would_give(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "out"
    atomic_write_bytes(root / "a" / "bytes.bin", b"x")
    atomic_write_json(root / "record.json", {"v": 1})
    atomic_torch_save(root / "ckpt.pt", {"w": torch.ones(2)})
    with AtomicFile(root / "streamed.bin") as out:
        out.write(b"head")
        out.write(b"tail")
    with FolderLock(root / "locked"):
        pass
    assert file_mode() == 0o666 & ~umask
    assert_modes_follow(root, umask)
    atomic_write_bytes(root / "a" / "bytes.bin", b"replaced")  # a replacement gets the mode again
    assert stat.S_IMODE((root / "a" / "bytes.bin").stat().st_mode) == 0o666 & ~umask


def test_without_proc_the_umask_read_at_import_is_used(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setattr(fileio, "_PROC_STATUS", str(tmp_path / "no-proc"))
    monkeypatch.setattr(fileio, "_IMPORT_UMASK", 0o027)
    assert file_mode() == 0o640
    atomic_write_bytes(tmp_path / "f", b"x")
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_writes_read_the_umask_without_setting_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A set-and-restore per write would open a window in which another thread's new file gets that umask.
    def refuse(_mask: int) -> int:
        raise AssertionError("os.umask called during a write")

    monkeypatch.setattr(fileio.os, "umask", refuse)
    atomic_write_bytes(tmp_path / "f", b"x")
    with AtomicFile(tmp_path / "g") as out:
        out.write(b"y")
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == file_mode()


def test_a_store_a_prepared_set_a_report_and_an_infer_output_follow_the_umask(tmp_path: Path,
                                                                              umask: int) -> None:
    from bench.commands.infer import command as infer_command
    from bench.data.prepare import prepare
    from bench.report import build_report, parse_formats
    from bench.store import WEIGHTS, save_weights
    from methods import registry

    data = tmp_path / "data"
    prepare(source="synthetic", frames=(3,), profile="smoke", data_dir=data, seed=0, workers=1)
    runs = tmp_path / "runs"
    folder = write_run(runs, "ours-3f", "ours", 3, values={"deblur_psnr": 28.0, "eq6": 60.0}, samples=1)
    model = {"dm_width": 8, "dm_growth": 4, "dm_rdbs": 1, "video_width": 4, "jin_width": 4, "srn_width": 4}
    nets = registry.get("ours").build(model)
    save_weights(folder / WEIGHTS, "ours", 3, model, {k: m.state_dict() for k, m in nets.items()})
    build_report(runs, tmp_path / "report", parse_formats("md,csv,png,gif"))
    photo = tmp_path / "input" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(np.full((16, 20, 3), 120, np.uint8)).save(photo)
    result = CliRunner().invoke(infer_command, [str(photo), "--checkpoint", str(folder / WEIGHTS), "--out",
                                                str(tmp_path / "infer"), "--device", "cpu", "--format",
                                                "png,gif,mp4"])
    assert result.exit_code == 0, result.output
    for root in ("data", "runs", "report", "infer"):
        assert any((tmp_path / root).rglob("*.*")), root
        assert_modes_follow(tmp_path / root, umask)


# --- reading JSON within limits --------------------------------------------------------------------------


def test_a_deeply_nested_json_is_refused_without_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 5_000 + "]" * 5_000)
    with pytest.raises(UnreadableFile, match=r"deep.json: unreadable \(ValueError: nested 5000 levels"):
        load_json(path)
    assert read_json(path) is None
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(ok) is not None
    with pytest.raises(ValueError, match="over the limit"):
        parse_json("[" + ok + "]")
    # Brackets inside strings are text, not nesting.
    assert parse_json(json.dumps({"k": "[" * 1000})) == {"k": "[" * 1000}
    # Malformed text whose brackets the count misreads is refused as well, never a RecursionError.
    with pytest.raises(ValueError):
        parse_json('"\\' + "[" * 100_000)


def test_an_oversized_or_special_json_is_refused_at_once(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(UnreadableFile, match=r"big.json: \d+ bytes, over the limit of 1000"):
        load_json(big, limit=1000)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(UnreadableFile, match=r"fifo.json: not a regular file \(a FIFO\)"):
        load_json(fifo)
    assert time.monotonic() - start < 5
    with pytest.raises(UnreadableFile, match="missing.json: missing"):
        load_json(tmp_path / "missing.json")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(UnreadableFile, match=r"not a regular file \(a folder\)"):
        load_json(tmp_path / "folder.json")


def test_deep_records_are_damaged_entries_for_every_reader(tmp_path: Path) -> None:
    from bench.data.manifest import load_manifest
    from bench.store import METRICS, iter_runs

    runs = tmp_path / "runs"
    folder = write_run(runs, "ours-9f", "ours", 9, values={"deblur_psnr": 28.0})
    (folder / METRICS).write_text("[" * 100_000 + "]" * 100_000)
    (record,) = iter_runs(runs)
    assert record.status == "damaged" and "nested 100000 levels" in record.problem
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.json").write_text("{\"a\":" * 50_000 + "1" + "}" * 50_000)
    with pytest.raises(BenchError, match=r"manifest.json: manifest unreadable \(ValueError: nested"):
        load_manifest(tmp_path / "set")


# --- hashing regular files only ---------------------------------------------------------------------------


def test_a_weights_symlink_to_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    from bench.store import WEIGHTS, read_metrics, verify_weights

    folder = write_run(tmp_path / "runs", "ours-9f", "ours", 9, values={"deblur_psnr": 28.0})
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).symlink_to("/dev/zero")
    start = time.monotonic()
    with pytest.raises(UnreadableFile, match=r"weights.pt: not a regular file \(a character device\)"):
        sha256_file(folder / WEIGHTS)
    reason = verify_weights(folder, read_metrics(folder / "metrics.json"))
    assert reason is not None and "not a regular file (a character device)" in reason
    assert "\n" not in reason and time.monotonic() - start < 5


def test_hashing_refuses_a_fifo_and_a_file_over_the_limit(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnreadableFile, match=r"not a regular file \(a FIFO\)"):
        sha256_file(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 100)
    with pytest.raises(UnreadableFile, match="100 bytes, over the limit of 99"):
        sha256_file(tmp_path / "big", limit=99)
    assert sha256_file(tmp_path / "big", limit=100) == sha256_file(tmp_path / "big")
    assert isinstance(UnreadableFile("p", "r"), OSError)  # callers that catch OSError catch it


# --- the one writer ---------------------------------------------------------------------------------------


def test_a_streamed_file_left_unfinished_leaves_no_temporary_and_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    out = AtomicFile(target)
    out.write(b"new bytes")
    assert out.temporary.exists() and target.read_bytes() == b"old"
    del out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"] and target.read_bytes() == b"old"
    with pytest.raises(RuntimeError), AtomicFile(target) as out:
        out.write(b"half")
        raise RuntimeError("stopped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"] and target.read_bytes() == b"old"
    with AtomicFile(target) as out:
        out.write(b"0123456789")
        out.overwrite(2, b"ab")
        out.write(b"!")
    assert target.read_bytes() == b"01ab456789!"


def test_a_full_disk_in_a_streamed_write_is_one_write_failure(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.data.packed import NpyStream

    def enospc(*_args: object) -> None:
        raise OSError(28, os.strerror(28))

    stream = NpyStream(tmp_path / "frames.npy")
    stream.append(np.zeros((4, 6, 3), np.uint8))
    monkeypatch.setattr(fileio.os, "fsync", enospc)
    with pytest.raises(WriteFailed, match=r"frames.npy: cannot write \(no space left on device\); the "
                                          "previous version is left intact"):
        stream.finish()
    assert list(tmp_path.iterdir()) == []
