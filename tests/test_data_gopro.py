"""The footage source: GoPro layout and split lists, other footage split by a seed, conversions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.data.gopro import discover
from bench.data.images import read_rgb
from bench.data.manifest import load_manifest
from bench.data.prepare import prepare


def write_sequence(folder: Path, count: int, h: int = 16, w: int = 24, seed: int = 0) -> None:
    """`count` small frames of a texture sliding right, as consecutive PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    base = np.random.default_rng(seed).integers(0, 256, (h, w + count, 3), dtype=np.uint8)
    for t in range(count):
        cv2.imwrite(str(folder / f"{t + 1:06d}.png"), np.ascontiguousarray(base[:, t:t + w]))


@pytest.fixture
def gopro_root(tmp_path: Path) -> Path:
    root = tmp_path / "GOPRO_Large_all"
    write_sequence(root / "train" / "GOPR0372_07_00", 11, seed=1)
    write_sequence(root / "train" / "GOPR0374_11_00", 7, seed=2)
    write_sequence(root / "test" / "GOPR0384_11_00", 10, seed=3)
    # Listed as test in datasets/splits although it sits under train/: the split list wins.
    write_sequence(root / "train" / "GOPR0396_11_00", 5, seed=4)
    return root


def test_gopro_layout_gives_floor_frames_over_n_windows_and_honours_the_split(gopro_root: Path,
                                                                                tmp_path: Path) -> None:
    lengths = {"GOPR0372_07_00": 11, "GOPR0374_11_00": 7, "GOPR0384_11_00": 10, "GOPR0396_11_00": 5}
    splits = {"GOPR0372_07_00": "train", "GOPR0374_11_00": "train", "GOPR0384_11_00": "test",
              "GOPR0396_11_00": "test"}
    folders = prepare(source="gopro", root=gopro_root, frames=(3, 5), profile="smoke",
                      data_dir=tmp_path / "data", workers=1)
    assert [f.name for f in folders] == ["gopro-3f", "gopro-5f"]
    for n, folder in zip((3, 5), folders, strict=True):
        m = load_manifest(folder, verify=True)
        assert m["source"] == "gopro" and m["root"] == str(gopro_root.resolve())
        assert m["resolution"] == [16, 24]
        for name, length in lengths.items():
            mine = [s for s in m["samples"] if s["sequence"] == name]
            assert len(mine) == length // n
            assert {s["split"] for s in mine} == {splits[name]}
        s = next(s for s in m["samples"] if s["sequence"] == "GOPR0372_07_00" and s["window"] == 1)
        # Window 1 holds source frames n+1 .. 2n (1-based file names); plain PNGs are copied byte for byte.
        src = [gopro_root / "train" / "GOPR0372_07_00" / f"{t + 1:06d}.png" for t in range(n, 2 * n)]
        assert [(folder / p).read_bytes() for p in s["sharp"]] == [p.read_bytes() for p in src]
        mean = np.stack([read_rgb(p) for p in src]).astype(np.float64).mean(0)
        assert np.array_equal(read_rgb(folder / s["blur"]), np.floor(mean + 0.5).astype(np.uint8))
        assert s["flow"] is None


def test_other_footage_is_split_by_sequence_with_a_seed(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    for i in range(6):
        write_sequence(root / f"clip{i}", 4, seed=i)
    a = {s.name: s.split for s in discover(root, seed=0)}
    assert a == {s.name: s.split for s in discover(root, seed=0)}
    assert sorted(a.values()).count("test") == 2 and sorted(a.values()).count("train") == 4
    others = [{s.name: s.split for s in discover(root, seed=k)} for k in range(1, 6)]
    assert any(o != a for o in others)
    single = discover(root / "clip0")
    assert len(single) == 1 and len(single[0].frames) == 4


def test_grayscale_rgba_and_16_bit_frames_are_converted_with_a_warning(tmp_path: Path) -> None:
    seq = tmp_path / "odd" / "seq"
    write_sequence(seq, 3, seed=7)
    rgb = cv2.imread(str(seq / "000001.png"))
    cv2.imwrite(str(seq / "000001.png"), cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    second = cv2.imread(str(seq / "000002.png"))
    cv2.imwrite(str(seq / "000002.png"), cv2.cvtColor(second, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(seq / "000003.png"), cv2.imread(str(seq / "000003.png")).astype(np.uint16) * 257)
    messages: list[str] = []
    folder = prepare(source="gopro", root=tmp_path / "odd", frames=(3,), data_dir=tmp_path / "data",
                     workers=1, log=messages.append)[0]
    warnings = [m for m in messages if m.startswith("warning")]
    assert any("grayscale" in m for m in warnings) and any("RGBA" in m for m in warnings)
    assert any("16-bit" in m for m in warnings)
    m = load_manifest(folder, verify=True)
    frames = [read_rgb(folder / p) for p in m["samples"][0]["sharp"]]
    assert all(f.shape == (16, 24, 3) for f in frames)
    deep = cv2.imread(str(seq / "000003.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and np.array_equal(frames[2], deep[:, :, ::-1] // 257)
