"""The packed copy (bench/data/packed.py): listed and verified by the manifest, pixel for pixel the PNGs,
repaired from the set's own PNGs when missing or damaged, and added to sets prepared before it existed
without rewriting a PNG or rendering anything."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data import packed
from bench.data.images import read_rgb
from bench.data.manifest import STAT_RECORD, load_manifest
from bench.data.prepare import prepare
from bench.data.synthetic import write_footage_root
from bench.errors import BenchError
from bench.fileio import sha256_file


def files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, less the stat records (a machine-local cache of inodes and mtimes, not data)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STAT_RECORD}


def stamps(folder: Path, suffix: str) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob(f"*{suffix}")}


@pytest.mark.parametrize("n", [7, 9])
def test_packed_files_are_listed_verified_and_hold_the_png_pixels(smoke_data: Path, n: int) -> None:
    folder = smoke_data / f"synthetic-smoke-{n}f"
    m = load_manifest(folder, verify=True)
    assert packed.complete(m)
    by_sequence: dict[str, int] = {}
    for s in m["samples"]:
        where = s["packed"]
        assert where["frames"] in m["sha256"] and where["blur"] in m["sha256"]
        frames = np.load(folder / where["frames"], mmap_mode="r")  # (T, H, W, 3)
        blurs = np.load(folder / where["blur"], mmap_mode="r")  # (K, H, W, 3)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (48, 64, 3)
        window = np.stack([read_rgb(folder / p) for p in s["sharp"]])
        assert np.array_equal(frames[where["first"]:where["first"] + n], window)
        assert np.array_equal(blurs[where["index"]], read_rgb(folder / s["blur"]))
        by_sequence[s["sequence"]] = by_sequence.get(s["sequence"], 0) + 1
    for seq, windows in by_sequence.items():  # T = K * N frames, K blurs: nothing more, nothing less
        assert np.load(folder / packed.frames_rel(seq), mmap_mode="r").shape[0] == windows * n
        assert np.load(folder / packed.blur_rel(seq), mmap_mode="r").shape[0] == windows


def test_a_stream_writes_what_np_save_writes_and_keeps_an_identical_file(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 11, 3), dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, images)
    target = tmp_path / "seq" / "frames.npy"
    stream = packed.NpyStream(target)
    for image in images:
        stream.append(image)
    digest, written = stream.finish()
    assert written and target.read_bytes() == buf.getvalue() and digest == sha256_file(target)
    before = target.stat().st_mtime_ns
    again = packed.NpyStream(target)
    for image in images:
        again.append(image)
    assert again.finish() == (digest, False) and target.stat().st_mtime_ns == before
    changed = packed.NpyStream(target)
    for image in images[:4]:
        changed.append(image)
    assert changed.finish()[1] and np.load(target).shape == (4, 7, 11, 3)
    with pytest.raises(ValueError):
        changed_shape = packed.NpyStream(target)
        changed_shape.append(images[0])
        changed_shape.append(images[0][:, :5])
    del changed_shape
    dropped = packed.NpyStream(tmp_path / "seq" / "blur.npy")
    dropped.append(images[0])
    del dropped  # never finished: its temporary goes with it, nothing is put in place
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == ["frames.npy"]


def _no_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a frame was rendered again")

    monkeypatch.setattr("bench.data.synthetic.SyntheticSequence.render", refuse)


def test_deleted_or_damaged_packed_files_are_repaired_from_the_pngs(smoke_data: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    name = "synthetic-smoke-9f"
    folder = tmp_path / name
    shutil.copytree(smoke_data / name, folder)
    (folder / packed.frames_rel("train_001")).unlink()
    (folder / packed.blur_rel("test_000")).write_bytes(b"damaged")
    pngs, untouched = stamps(folder, ".png"), (folder / packed.frames_rel("train_000")).stat().st_mtime_ns
    with pytest.raises(BenchError, match="blur.npy: content does not match"):
        load_manifest(folder, verify=True)
    _no_rendering(monkeypatch)
    said: list[str] = []
    prepare("synthetic", None, (9,), "smoke", tmp_path, workers=1, log=said.append)
    assert any("repacking" in line for line in said), said
    assert files(folder) == files(smoke_data / name)
    assert stamps(folder, ".png") == pngs  # no PNG rewritten
    assert (folder / packed.frames_rel("train_000")).stat().st_mtime_ns == untouched  # only the damaged ones
    said.clear()
    prepare("synthetic", None, (9,), "smoke", tmp_path, workers=1, log=said.append)
    assert "nothing to do" in said[-1]


def _strip_packed(folder: Path) -> None:
    """Turn a set into the layout of a set prepared before the packed copy existed."""
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    for s in m["samples"]:
        del s["packed"]
    m["sha256"] = {k: v for k, v in m["sha256"].items() if not packed.is_packed_path(k)}
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(folder / packed.PACKED_DIR)


@pytest.mark.parametrize("source", ["synthetic", "gopro"])
def test_a_set_prepared_before_the_packed_copy_gains_it_with_no_png_rewritten(source, smoke_data, tmp_path,
                                                                             monkeypatch) -> None:
    if source == "synthetic":
        args = ("synthetic", None, (7, 9), "smoke")
        reference = {n: smoke_data / f"synthetic-smoke-{n}f" for n in (7, 9)}
    else:
        root = tmp_path / "root"
        write_footage_root(root, height=32, width=48, train=2, test=1, length=14, seed=1)
        args = ("gopro", root, (7, 9), "smoke")
        reference = dict(zip((7, 9), prepare(*args, tmp_path / "reference", workers=1), strict=True))
    data = tmp_path / "data"
    for ref in reference.values():
        shutil.copytree(ref, data / ref.name)
        _strip_packed(data / ref.name)
    pngs = {n: (files(data / ref.name), stamps(data / ref.name, ".png")) for n, ref in reference.items()}
    _no_rendering(monkeypatch)

    def refuse(*a, **k):
        raise AssertionError("a footage frame was read again")

    monkeypatch.setattr("bench.data.prepare.decode_image", refuse)
    said: list[str] = []
    # Two workers for footage: the packing also runs in a process pool.
    folders = prepare(*args, data, workers=1 if source == "synthetic" else 2, log=said.append)
    assert any("packed training copy" in line for line in said), said
    for n, folder in zip((7, 9), folders, strict=True):
        old_files, old_stamps = pngs[n]
        now = files(folder)
        assert {k: now[k] for k in old_files if k != "manifest.json"} == \
            {k: v for k, v in old_files.items() if k != "manifest.json"}
        assert stamps(folder, ".png") == old_stamps  # no PNG rewritten, not even with the same bytes
        assert now == files(reference[n])  # manifest included: as if prepared with the packed copy
        assert packed.complete(load_manifest(folder, verify=True))


def test_manifest_packed_entries_are_checked(smoke_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "synthetic-smoke-7f"
    shutil.copytree(smoke_data / folder.name, folder)
    path = folder / "manifest.json"
    good = json.loads(path.read_text())
    for bad in ({"frames": "packed/train_000/frames.npy"}, dict(good["samples"][0]["packed"], first=-7),
                dict(good["samples"][0]["packed"], blur="packed/../../outside.npy")):
        m = json.loads(json.dumps(good))
        m["samples"][0]["packed"] = bad
        path.write_text(json.dumps(m))
        with pytest.raises(BenchError) as err:
            load_manifest(folder)
        assert "\n" not in str(err.value) and "--fresh" in str(err.value)


def test_sequence_names_that_are_not_plain_folder_names_are_refused(tmp_path: Path) -> None:
    for name in ("..", "a/b", "", "~x"):
        with pytest.raises(BenchError, match="plain folder name"):
            packed.SequencePack(tmp_path, name)
    assert not any(tmp_path.iterdir())


def test_a_killed_stream_leaves_a_temporary_that_the_next_prepare_removes(smoke_data, tmp_path) -> None:
    name = "synthetic-smoke-7f"
    shutil.copytree(smoke_data / name, tmp_path / name)
    target = tmp_path / name / packed.frames_rel("train_000")
    stray = target.parent / f".{target.name}.bench-killed{os.getpid()}.tmp"
    stray.write_bytes(b"half a file")  # what a SIGKILL mid-stream leaves
    target.unlink()
    prepare("synthetic", None, (7,), "smoke", tmp_path, workers=1)
    assert not stray.exists() and files(tmp_path / name) == files(smoke_data / name)
