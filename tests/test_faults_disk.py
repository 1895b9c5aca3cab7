"""Full disk: a write that fails (simulated ENOSPC) leaves the previous file intact, leaves no
temporary behind, and the user is told so in one line; the same command, once space is back, completes.

The fault is injected inside `bench.fileio.atomic_write_bytes`, the one function every file write goes
through: at the fsync (the kernel reports a full disk there at the latest), or in the middle of the data
(`write` returns after part of it, then ENOSPC), or at the final rename.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import faults
import pytest

import bench.fileio as fileio
from bench.data.manifest import load_manifest


def enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class HalfWriter:
    """A file object whose write stores half of the bytes and then reports a full disk."""

    def __init__(self, fh: object) -> None:
        self._fh = fh

    def write(self, data: bytes) -> int:
        self._fh.write(data[: len(data) // 2])  # type: ignore[attr-defined]
        self._fh.flush()  # type: ignore[attr-defined]
        enospc()
        return 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._fh, name)

    def __enter__(self) -> HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()  # type: ignore[attr-defined]


def inject(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    if where == "fsync":
        monkeypatch.setattr(fileio.os, "fsync", enospc)
    elif where == "write":
        real = os.fdopen
        monkeypatch.setattr(fileio.os, "fdopen", lambda *a, **k: HalfWriter(real(*a, **k)))
    else:
        monkeypatch.setattr(fileio.os, "replace", enospc)


WHERE = ["fsync", "write", "rename"]


@pytest.mark.parametrize("where", WHERE)
def test_failed_write_keeps_the_previous_file_and_no_temporary(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               where: str) -> None:
    target = tmp_path / "metrics.json"
    fileio.atomic_write_json(target, {"status": "finished", "value": 1})
    before = target.read_bytes()
    with monkeypatch.context() as patch:
        inject(patch, where)
        with pytest.raises(OSError) as err:
            fileio.atomic_write_json(target, {"status": "finished", "value": 2, "pad": "x" * 100_000})
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert faults.stray_temporaries(tmp_path) == []
    # With space back, the same write goes through.
    fileio.atomic_write_json(target, {"status": "finished", "value": 2})
    assert json.loads(target.read_text())["value"] == 2


@pytest.mark.parametrize("where", WHERE)
def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               where: str) -> None:
    import torch

    target = tmp_path / "ckpt.pt"
    fileio.atomic_torch_save(target, {"iteration": 4, "w": torch.ones(3)})
    with monkeypatch.context() as patch:
        inject(patch, where)
        with pytest.raises(OSError):
            fileio.atomic_torch_save(target, {"iteration": 8, "w": torch.zeros(10_000)})
    assert torch.load(target, weights_only=True)["iteration"] == 4
    assert faults.stray_temporaries(tmp_path) == []


def test_failed_write_error_names_the_file_and_says_the_previous_one_is_intact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "metrics.json"
    fileio.atomic_write_json(target, {"v": 1})
    monkeypatch.setattr(fileio.os, "fsync", enospc)
    with pytest.raises(OSError) as err:
        fileio.atomic_write_json(target, {"v": 2})
    message = str(err.value)
    assert str(target) in message and "intact" in message and "\n" not in message


def test_prepare_on_a_full_disk_says_so_in_one_line_and_recovers(smoke_data: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(smoke_data / "synthetic-smoke-7f", data / "synthetic-smoke-7f")
    folder = data / "synthetic-smoke-7f"
    manifest = load_manifest(folder)
    victim = folder / manifest["samples"][0]["blur"]
    victim.write_bytes(b"damaged")  # the rerun has to rewrite this file, and the disk is full
    manifest_bytes = (folder / "manifest.json").read_bytes()
    args = ["prepare", "--profile", "smoke", "--frames", "7", "--data-dir", str(data), "--workers", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(fileio.os, "fsync", enospc)
        code, _out, err = faults.invoke(args)
    faults.assert_one_line_error(code, err, str(victim), "intact")
    assert victim.read_bytes() == b"damaged"  # the previous file, untouched
    assert (folder / "manifest.json").read_bytes() == manifest_bytes
    assert faults.stray_temporaries(data) == []
    code, _out, err = faults.invoke(args)  # space is back
    assert code == 0, err
    load_manifest(folder, verify=True)


RUN_SETS = ["--set", "train.iters_dm=2", "--set", "train.ckpt_every=1", "--set", "eval.runtime_repeats=1",
            "--set", "eval.runtime_warmup=0"]


def test_run_on_a_full_disk_says_so_in_one_line_and_keeps_the_previous_result(
        smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    args = ["run", "--method", "ours-static", "--profile", "smoke", "--frames", "7", "--device", "cpu",
            "--no-floor", "--data-dir", str(smoke_data), "--runs-dir", str(runs), *RUN_SETS]
    code, _out, err = faults.invoke(args)
    assert code == 0, err
    (folder,) = [p for p in runs.iterdir() if p.name.startswith("ours-static-")]
    kept = {name: (folder / name).read_bytes() for name in ("metrics.json", "weights.pt", "curves.json")}
    # The disk fills up once the retraining is done: the first result file cannot be written.
    real_fsync, full = os.fsync, [False]

    def fsync(fd: int) -> None:
        if full[0] or os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".weights.pt."):
            full[0] = True
            enospc()
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(fileio.os, "fsync", fsync)
        code, _out, err = faults.invoke([*args, "--fresh"])
    faults.assert_one_line_error(code, err, "weights.pt")
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    assert faults.stray_temporaries(runs) == []
