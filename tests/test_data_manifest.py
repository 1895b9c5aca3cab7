"""Prepared-set manifests: the contract of docs/DESIGN.md "Data", digests, and refusal of unsafe paths."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.blur import blur_frames
from bench.data.images import read_rgb
from bench.data.manifest import MANIFEST, STAT_RECORD, damaged_files, describe_sets, load_manifest
from bench.errors import BenchError
from bench.fileio import sha256_file

KEYS = {"source", "profile", "frames", "center", "resolution", "seed", "root", "gamma", "code_version",
        "samples", "sha256"}


@pytest.mark.parametrize("n", [7, 9])
def test_manifest_follows_the_contract(smoke_data: Path, n: int) -> None:
    folder = smoke_data / f"synthetic-smoke-{n}f"
    m = json.loads((folder / MANIFEST).read_text())
    assert KEYS <= set(m)
    assert (m["source"], m["profile"], m["frames"], m["center"]) == ("synthetic", "smoke", n, (n + 1) // 2)
    assert m["resolution"] == [48, 64] and m["root"] is None and m["gamma"] is None
    splits = {s["split"] for s in m["samples"]}
    assert splits == {"train", "test"}
    listed = set()
    for s in m["samples"]:
        assert {"id", "split", "sequence", "blur", "sharp", "flow"} <= set(s)
        assert len(s["sharp"]) == n
        # Flows are stored for test samples only: training never reads them.
        assert (s["flow"] is not None) == (s["split"] == "test")
        # The packed copy (bench.data.packed) is listed with the PNGs, and digested like them.
        for rel in [s["blur"], *s["sharp"], *(s["flow"] or []), s["packed"]["frames"], s["packed"]["blur"]]:
            assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
            listed.add(rel)
    assert listed == set(m["sha256"])
    for rel, digest in m["sha256"].items():
        assert sha256_file(folder / rel) == digest
    # Sharp frames are stored once per sequence: no two samples share a window, none copies a frame.
    sharp = [p for s in m["samples"] for p in s["sharp"]]
    assert len(sharp) == len(set(sharp))
    assert load_manifest(folder, verify=True)["frames"] == n


@pytest.mark.parametrize("n", [7, 9])
def test_every_blur_is_the_rounded_mean_of_its_sharp_frames(smoke_data: Path, n: int) -> None:
    folder = smoke_data / f"synthetic-smoke-{n}f"
    m = load_manifest(folder)
    for s in m["samples"]:
        frames = np.stack([read_rgb(folder / p) for p in s["sharp"]]).astype(np.float64)
        expected = np.floor(frames.mean(0) + 0.5).astype(np.uint8)
        assert np.array_equal(read_rgb(folder / s["blur"]), expected)
        assert np.array_equal(blur_frames(frames.astype(np.uint8)), expected)
        flows = s["flow"] or []
        for j, rel in enumerate(flows):
            f = np.load(folder / rel)
            assert f.dtype == np.float16 and f.shape == (48, 64, 2)
            if j == n // 2:
                assert np.abs(f).max() < 1e-2  # the centre frame's flow to itself is zero


@pytest.fixture
def copy_set(smoke_data: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "synthetic-smoke-7f"
    shutil.copytree(smoke_data / "synthetic-smoke-7f", dst)
    return dst


def _edit(folder: Path, change) -> None:
    m = json.loads((folder / MANIFEST).read_text())
    change(m)
    (folder / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "blur/../../x.png"])
def test_unsafe_paths_are_refused(copy_set: Path, bad: str) -> None:
    def change(m: dict) -> None:
        old = m["samples"][0]["blur"]
        m["samples"][0]["blur"] = bad
        m["sha256"][bad] = m["sha256"].pop(old)

    _edit(copy_set, change)
    with pytest.raises(BenchError, match="unsafe path"):
        load_manifest(copy_set)


def test_symlink_leaving_the_set_is_refused(copy_set: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    rel = load_manifest(copy_set)["samples"][0]["blur"]
    shutil.copy(copy_set / rel, outside)
    (copy_set / rel).unlink()
    (copy_set / rel).symlink_to(outside)
    with pytest.raises(BenchError, match="outside"):
        load_manifest(copy_set)


def test_verify_names_the_damaged_file_and_the_repair(copy_set: Path) -> None:
    rel = load_manifest(copy_set)["samples"][-1]["sharp"][2]
    (copy_set / rel).write_bytes(b"not the frame")
    assert load_manifest(copy_set)  # without verify, only structure is checked
    with pytest.raises(BenchError) as err:
        load_manifest(copy_set, verify=True)
    msg = str(err.value)
    assert rel in msg and "bench prepare" in msg and "--profile smoke" in msg and "\n" not in msg


def test_missing_and_broken_manifests(tmp_path: Path, copy_set: Path) -> None:
    with pytest.raises(BenchError, match="bench prepare"):
        load_manifest(tmp_path / "synthetic-quick-9f")
    (copy_set / MANIFEST).write_text("{not json")
    with pytest.raises(BenchError, match="--fresh"):
        load_manifest(copy_set)


def test_describe_sets_lists_both_sets(smoke_data: Path) -> None:
    rows = {r["name"]: r for r in describe_sets(smoke_data)}
    assert set(rows) == {"synthetic-smoke-7f", "synthetic-smoke-9f"}
    for n in (7, 9):
        row = rows[f"synthetic-smoke-{n}f"]
        m = load_manifest(smoke_data / row["name"])
        assert row["frames"] == n and row["resolution"] == [48, 64] and row["source"] == "synthetic"
        assert row["splits"]["train"] == sum(s["split"] == "train" for s in m["samples"]) > 0
        assert row["splits"]["test"] == sum(s["split"] == "test" for s in m["samples"]) > 0


# --- the stat record: verification that hashes only what changed ----------------------------------


def _hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files hashed from now on (the manifest itself is hashed to pin the record)."""
    import bench.data.manifest as manifest

    seen: list[str] = []

    def counting(path: Path | str) -> str:
        if Path(path).name != MANIFEST:
            seen.append(Path(path).name)
        return sha256_file(path)

    monkeypatch.setattr(manifest, "sha256_file", counting)
    return seen


def _flip_keeping_size_and_mtime(path: Path) -> None:
    """One bit flipped, then size and mtime as they were: what the fast path cannot see."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    with open(path, "r+b") as fh:  # in place: the inode stays
        fh.write(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_a_verified_set_is_verified_again_without_hashing(copy_set: Path, monkeypatch) -> None:
    manifest = load_manifest(copy_set)
    assert damaged_files(copy_set, manifest, full=True) == []  # records the copy's stats
    assert (copy_set / STAT_RECORD).is_file()
    hashed = _hashed(monkeypatch)
    assert damaged_files(copy_set, manifest) == [] and hashed == []
    assert damaged_files(copy_set, manifest, full=True) == [] and len(hashed) == len(manifest["sha256"])


def test_the_fast_path_catches_a_changed_file_and_hashes_only_it(copy_set: Path, monkeypatch) -> None:
    manifest = load_manifest(copy_set)
    damaged_files(copy_set, manifest, full=True)
    rel = manifest["samples"][0]["sharp"][1]
    data = bytearray((copy_set / rel).read_bytes())
    data[-20] ^= 0xFF
    (copy_set / rel).write_bytes(bytes(data))  # same size; its mtime moves
    hashed = _hashed(monkeypatch)
    bad = damaged_files(copy_set, manifest)
    assert [r for r, _ in bad] == [rel] and hashed == [Path(rel).name]


def test_a_bit_flip_with_size_and_mtime_restored_is_missed_by_fast_and_caught_by_full(copy_set: Path) -> None:
    manifest = load_manifest(copy_set)
    damaged_files(copy_set, manifest, full=True)
    rel = manifest["samples"][0]["blur"]
    _flip_keeping_size_and_mtime(copy_set / rel)
    assert damaged_files(copy_set, manifest) == []  # the documented limit of the fast path
    assert [r for r, _ in damaged_files(copy_set, manifest, full=True)] == [rel]


def test_the_stat_record_holds_only_for_its_manifest_and_never_when_malformed(copy_set: Path,
                                                                             monkeypatch) -> None:
    manifest = load_manifest(copy_set)
    damaged_files(copy_set, manifest, full=True)
    _edit(copy_set, lambda m: m.update(code_version="other"))  # another manifest: the record is stale
    hashed = _hashed(monkeypatch)
    assert damaged_files(copy_set, load_manifest(copy_set)) == [] and len(hashed) == len(manifest["sha256"])
    hashed.clear()
    (copy_set / STAT_RECORD).write_text('{"format": "bench-stat/1", "manifest": 3, "files": []}')
    assert damaged_files(copy_set, load_manifest(copy_set)) == [] and len(hashed) == len(manifest["sha256"])


def test_prepare_verify_full_repairs_what_the_fast_path_missed(copy_set: Path) -> None:
    import faults

    rel = load_manifest(copy_set)["samples"][0]["blur"]
    damaged_files(copy_set, load_manifest(copy_set), full=True)
    _flip_keeping_size_and_mtime(copy_set / rel)
    args = ["prepare", "--profile", "smoke", "--frames", "7", "--data-dir", str(copy_set.parent),
            "--workers", "1"]
    code, out, _ = faults.invoke(args)
    assert code == 0 and "nothing to do" in out
    code, out, err = faults.invoke([*args, "--verify", "full"])
    assert code == 0 and "repairing" in err and rel in err and "wrote 1 files" in out, (out, err)
    load_manifest(copy_set, verify=True)
