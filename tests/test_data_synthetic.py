"""The synthetic source: deterministic, disjoint train/test, smooth motion, and a flow that is true."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench.config import PROFILES
from bench.data.manifest import load_manifest
from bench.data.synthetic import PHOTOS, SyntheticSequence

CFG = PROFILES["smoke"].data


def test_rendering_is_deterministic_and_splits_differ() -> None:
    a = SyntheticSequence(CFG, "train", 1, seed=3).render(5)[0]
    b = SyntheticSequence(CFG, "train", 1, seed=3).render(5)[0]
    c = SyntheticSequence(CFG, "test", 1, seed=3).render(5)[0]
    d = SyntheticSequence(CFG, "train", 1, seed=4).render(5)[0]
    assert a.shape == (CFG.height, CFG.width, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_train_and_test_photographs_are_disjoint() -> None:
    assert PHOTOS["train"] and PHOTOS["test"]
    assert not set(PHOTOS["train"]) & set(PHOTOS["test"])


def test_motion_is_smooth() -> None:
    seq = SyntheticSequence(CFG, "train", 0, seed=0)
    centre = np.array([[CFG.width / 2, CFG.height / 2, 1.0]]).T
    pts = []
    for m in seq.camera:
        q = m @ centre
        pts.append(q[:2, 0] / q[2, 0])
    steps = np.diff(np.array(pts), axis=0)
    assert np.linalg.norm(steps, axis=1).max() > 0.1  # the camera moves
    # Smooth: the velocity changes little from one frame to the next compared with the velocity itself.
    assert np.abs(np.diff(steps, axis=0)).max() < 0.5 * np.linalg.norm(steps, axis=1).max()


def _warp_error(center: np.ndarray, frame: np.ndarray, flow: np.ndarray, valid: np.ndarray) -> float:
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(center, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(warped.astype(np.float64) - frame)[valid].mean())


def test_flow_warps_the_centre_frame_to_every_frame() -> None:
    seq = SyntheticSequence(CFG, "test", 0, seed=0)
    n, c = 9, 4
    rendered = [seq.render(t) for t in range(n)]
    center, top_c = rendered[c]
    h, w = top_c.shape
    for t in (0, 2, 6, 8):
        frame, top = rendered[t]
        flow = seq.flow(t, c, top)  # (h, w, 2), frame_t(p) = center(p + flow(p))
        qx, qy = np.meshgrid(np.arange(w), np.arange(h))
        qx = np.rint(qx + flow[..., 0]).astype(int)
        qy = np.rint(qy + flow[..., 1]).astype(int)
        inside = (qx >= 1) & (qx < w - 1) & (qy >= 1) & (qy < h - 1)
        # Away from occlusions: the same surface is on top at p in frame t and at p + flow in the centre.
        valid = inside & (top == top_c[qy.clip(0, h - 1), qx.clip(0, w - 1)])
        valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert valid.mean() > 0.5
        err = _warp_error(center, frame, flow, valid)
        unwarped = float(np.abs(center.astype(np.float64) - frame)[valid].mean())
        assert np.abs(flow).max() > 0.5
        assert err < 5.0 and err < 0.35 * unwarped, (t, err, unwarped)


def test_stored_flows_are_the_renderers(smoke_data: Path) -> None:
    folder = smoke_data / "synthetic-smoke-9f"
    m = load_manifest(folder)
    sample = next(s for s in m["samples"] if s["split"] == "test")
    seq = SyntheticSequence(CFG, "test", int(sample["sequence"].split("_")[1]), seed=m["seed"])
    k = sample["window"]
    t = k * 9
    _, top = seq.render(t)
    stored = np.load(folder / sample["flow"][0]).astype(np.float32)
    assert np.allclose(stored, seq.flow(t, t + 4, top), atol=0.05)


def test_write_footage_root_writes_a_gopro_layout_root(tmp_path: Path) -> None:
    from bench.data import gopro
    from bench.data.images import read_rgb
    from bench.data.synthetic import write_footage_root

    folders = write_footage_root(tmp_path / "a", height=24, width=40, train=2, test=1, length=5, seed=2)
    assert [f.relative_to(tmp_path / "a").as_posix() for f in folders] == [
        "train/synth_train_000", "train/synth_train_001", "test/synth_test_000"]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == [f"{t:06d}.png" for t in range(1, 6)]
    frames = [read_rgb(folders[0] / f"{t:06d}.png") for t in range(1, 6)]
    assert frames[0].shape == (24, 40, 3) and not np.array_equal(frames[0], frames[4])  # it moves
    # The footage reader takes it as it is, splits from the train/ and test/ folders.
    found = {s.name: (s.split, len(s.frames)) for s in gopro.discover(tmp_path / "a")}
    assert found == {"synth_train_000": ("train", 5), "synth_train_001": ("train", 5),
                     "synth_test_000": ("test", 5)}
    # A function of its arguments: the same seed gives the same bytes, another seed other frames.
    write_footage_root(tmp_path / "b", height=24, width=40, train=2, test=1, length=5, seed=2)
    write_footage_root(tmp_path / "c", height=24, width=40, train=2, test=1, length=5, seed=3)
    png = "train/synth_train_000/000003.png"
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    assert (tmp_path / "a" / png).read_bytes() != (tmp_path / "c" / png).read_bytes()
