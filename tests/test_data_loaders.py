"""Loaders: one shared random transform (crop, zoom, flip) per sample, flows that stay true under it, crops
read from the packed copy bit-identical to crops of the decoded PNGs, and only the fields asked for."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench.data.images import read_rgb
from bench.data.loaders import TestSet, TrainSet, collate, make_loader, to_float
from bench.data.manifest import load_manifest
from bench.data.synthetic import write_footage_root
from bench.errors import BenchError


def test_train_items_have_the_contract_shapes_and_are_deterministic(smoke_data: Path) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-9f", crop=32)
    assert len(ds) > 0
    a = ds[(0, 5)]
    assert set(a) == {"blur", "sharp"}  # training samples carry no flow
    assert a["blur"].shape == (3, 32, 32) and a["sharp"].shape == (9, 3, 32, 32)
    assert a["blur"].dtype == torch.uint8 and a["sharp"].dtype == torch.uint8
    assert a["sharp"].float().std() > 10  # real pixels, not a constant
    assert torch.equal(a["sharp"], ds[(0, 5)]["sharp"])
    assert any(not torch.equal(a["blur"], ds[(0, s)]["blur"]) for s in range(6, 10))
    assert torch.equal(ds[1]["blur"], ds[(1, 1)]["blur"])


def test_fields_return_only_what_is_asked_with_the_same_crops(smoke_data: Path) -> None:
    folder = smoke_data / "synthetic-smoke-7f"
    full = TrainSet(folder, crop=24)
    deblur = TrainSet(folder, crop=24, fields=("blur", "center"))  # what the DM's objective reads
    video = TrainSet(folder, crop=24, fields=("sharp",))  # stage 1
    for key in ((0, 3), (1, 8), (2, 11)):
        a, b, c = full[key], deblur[key], video[key]
        assert set(b) == {"blur", "center"} and set(c) == {"sharp"}
        assert torch.equal(b["blur"], a["blur"]) and torch.equal(b["center"], a["sharp"][3])
        assert torch.equal(c["sharp"], a["sharp"])
    with pytest.raises(ValueError, match="mask"):
        TrainSet(folder, crop=24, fields=("mask",))


def test_same_transform_for_blur_and_frames(smoke_data: Path) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-7f", crop=24, zoom=(1.0, 1.0), flip=True)
    for seed in range(6):
        item = ds[(0, seed)]
        # At zoom 1 the crop is exact, so the cropped blur is still the mean of the cropped frames.
        mean = item["sharp"].float().mean(0)
        assert torch.allclose(item["blur"].float(), mean, atol=0.51)


def test_flows_follow_zoom_and_flip(smoke_data: Path) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-9f", crop=32, zoom=(1.5, 2.0), split="test",
                  fields=("sharp", "flow"))
    flips, errs = set(), []
    for seed in range(8):
        item = ds[(0, seed)]
        flips.add(ds.transform((48, 64), np.random.default_rng([0, seed]))[3])
        center = item["sharp"][4].permute(1, 2, 0).numpy().astype(np.float32)
        for j in (0, 8):
            frame = item["sharp"][j].permute(1, 2, 0).numpy().astype(np.float32)
            flow = item["flow"][j].permute(1, 2, 0).numpy()
            xs, ys = np.meshgrid(np.arange(32, dtype=np.float32), np.arange(32, dtype=np.float32))
            mx, my = xs + flow[..., 0], ys + flow[..., 1]
            inside = (mx >= 1) & (mx <= 30) & (my >= 1) & (my <= 30)
            warped = cv2.remap(center, mx, my, cv2.INTER_LINEAR)
            err = np.median(np.abs(warped - frame).mean(-1)[inside])
            unwarped = np.median(np.abs(center - frame).mean(-1)[inside])
            # A flow with the wrong scale or the wrong sign after a flip would not beat "no motion".
            errs.append((err, unwarped))
    assert flips == {True, False}
    err, unwarped = np.mean(errs, axis=0)
    assert err < 0.3 * unwarped, (err, unwarped)


def test_test_set_gives_whole_frames(smoke_data: Path) -> None:
    ds = TestSet(smoke_data / "synthetic-smoke-9f")
    item = ds[0]
    assert item["blur"].shape == (3, 48, 64) and item["sharp"].shape == (9, 3, 48, 64)
    assert item["flow"].shape == (9, 2, 48, 64) and item["id"].startswith("test_")
    assert len(TestSet(smoke_data / "synthetic-smoke-9f", split="train", limit=2)) == 2
    assert TestSet(smoke_data / "synthetic-smoke-9f", split="train")[0]["flow"] is None


def test_crop_larger_than_frames_is_refused(smoke_data: Path) -> None:
    with pytest.raises(BenchError, match="crop"):
        TrainSet(smoke_data / "synthetic-smoke-9f", crop=200)


# --- the packed path against the PNG path -------------------------------------------------------------------


def _old_transform(shape, rng, crop, zoom, flip):
    """The random draw of the PNG-decoding loader this suite shipped before the packed copy (kept here, not
    imported, so a change to TrainSet.transform cannot make both sides move together)."""
    h, w = shape
    lo = max(zoom[0], crop / min(h, w))
    z = rng.uniform(lo, max(lo, zoom[1]))
    box = int(np.clip(round(crop / z), 1, min(h, w)))
    y0 = int(rng.integers(0, h - box + 1))
    x0 = int(rng.integers(0, w - box + 1))
    return x0, y0, box, flip and bool(rng.random() < 0.5)


def _old_apply(img, x0, y0, box, flip, crop):
    part = img[y0:y0 + box, x0:x0 + box]
    if box != crop:
        interp = cv2.INTER_AREA if box > crop else cv2.INTER_LINEAR
        part = cv2.resize(part, (crop, crop), interpolation=interp)
    if flip:
        part = part[:, ::-1]
    return np.ascontiguousarray(part)


def _old_item(folder, sample, index, aug_seed, crop, zoom, flip):
    """A TrainSet item as the PNG-decoding loader made it: float32 in [0, 1], flows float32."""
    blur = read_rgb(folder / sample["blur"])
    rng = np.random.default_rng([index, aug_seed & 0xFFFFFFFF])
    x0, y0, box, flip = _old_transform(blur.shape[:2], rng, crop, zoom, flip)

    def tensor(rgb):
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)

    out = {"blur": tensor(_old_apply(blur, x0, y0, box, flip, crop)),
           "sharp": torch.stack([tensor(_old_apply(read_rgb(folder / p), x0, y0, box, flip, crop))
                                 for p in sample["sharp"]])}
    if sample["flow"]:
        flows = []
        for p in sample["flow"]:
            g = _old_apply(np.load(folder / p).astype(np.float32), x0, y0, box, flip, crop) * (crop / box)
            if flip:
                g[:, :, 0] = -g[:, :, 0]
            flows.append(torch.from_numpy(np.ascontiguousarray(g.transpose(2, 0, 1))))
        out["flow"] = torch.stack(flows)
    return out, box, flip


@pytest.fixture(scope="module")
def footage_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-frame set of rendered 96x128 footage: boxes up to 96 pixels for a 20-pixel crop, so shrinking
    takes OpenCV's general (non-integer ratio) area path as well as its integer one."""
    from bench.data.prepare import prepare

    tmp = tmp_path_factory.mktemp("footage")
    write_footage_root(tmp / "root", height=96, width=128, train=2, test=1, length=18, seed=3)
    return prepare("gopro", tmp / "root", (9,), "smoke", tmp / "data", workers=1)[0]


@pytest.mark.parametrize("which", ["synthetic", "footage"])
def test_packed_crops_are_bit_identical_to_crops_of_the_decoded_pngs(which, smoke_data, footage_set) -> None:
    folder, crop = (smoke_data / "synthetic-smoke-9f", 24) if which == "synthetic" else (footage_set, 20)
    zoom = (0.2, 2.0)
    ds = TrainSet(folder, crop, zoom=zoom, fields=("blur", "sharp"))
    seen = set()
    for index in range(len(ds)):
        for aug in (0, 1, 7, 12345, 2**31 - 2):
            new = ds[(index, aug)]
            old, box, flip = _old_item(folder, ds.samples[index], index, aug, crop, zoom, True)
            seen.add((box > crop, box < crop, flip))
            for key in ("blur", "sharp"):
                assert torch.equal(to_float({key: new[key]})[key], old[key]), (index, aug, key, box, flip)
                assert torch.equal(new[key], (old[key] * 255).round().to(torch.uint8))
    # Both interpolations and both flips were exercised.
    assert {(True, False), (False, True)} <= {s[:2] for s in seen} and {s[2] for s in seen} == {True, False}


def test_packed_flows_are_bit_identical_too(smoke_data) -> None:
    folder = smoke_data / "synthetic-smoke-9f"
    ds = TrainSet(folder, 32, zoom=(0.2, 2.0), split="test", fields=("blur", "sharp", "flow"))
    for aug in range(6):
        new = ds[(0, aug)]
        old, _, _ = _old_item(folder, ds.samples[0], 0, aug, 32, (0.2, 2.0), True)
        assert new["flow"].dtype == torch.float32 and torch.equal(new["flow"], old["flow"])
        assert torch.equal(to_float(new)["sharp"], old["sharp"])


def test_fields_are_honoured_and_share_one_draw(smoke_data) -> None:
    folder = smoke_data / "synthetic-smoke-9f"
    full = TrainSet(folder, 32, fields=("blur", "sharp", "center"))[(2, 9)]
    assert list(full) == ["blur", "sharp", "center"]
    assert full["center"].shape == (3, 32, 32) and full["center"].dtype == torch.uint8
    assert torch.equal(full["center"], full["sharp"][4])  # the 1-based (N+1)/2-th frame
    dm = TrainSet(folder, 32, fields=("blur", "center"))[(2, 9)]
    assert list(dm) == ["blur", "center"]
    assert torch.equal(dm["blur"], full["blur"]) and torch.equal(dm["center"], full["center"])
    only = TrainSet(folder, 32, fields=("sharp",))[(2, 9)]
    assert list(only) == ["sharp"] and torch.equal(only["sharp"], full["sharp"])
    with pytest.raises(BenchError, match="no flows"):
        TrainSet(folder, 32, fields=("blur", "flow"))  # the train split has none
    with pytest.raises(ValueError, match="depth"):
        TrainSet(folder, 32, fields=("blur", "depth"))


def test_no_png_is_decoded_for_a_training_sample(smoke_data, monkeypatch) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-9f", 32, fields=("blur", "sharp", "center"))

    def refuse(*args, **kwargs):
        raise AssertionError("a PNG was decoded for a training sample")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    monkeypatch.setattr("bench.data.loaders.read_rgb", refuse)
    assert ds[(0, 3)]["sharp"].shape == (9, 3, 32, 32)


def test_to_float_converts_uint8_only() -> None:
    batch = {"blur": torch.tensor([0, 51, 255], dtype=torch.uint8), "flow": torch.tensor([-1.5, 2.0])}
    out = to_float(batch)
    assert out["blur"].dtype == torch.float32
    assert torch.equal(out["blur"], torch.tensor([0.0, 51.0, 255.0]) / 255) and out["blur"][2] == 1.0
    assert out["flow"] is batch["flow"]


def test_a_batch_is_its_items_stacked(smoke_data) -> None:
    fields = ("blur", "sharp", "center", "flow")
    ds = TrainSet(smoke_data / "synthetic-smoke-9f", 32, split="test", fields=fields)
    keys = [(0, 4), (1, 9), (0, 11)]
    batch = collate(ds, keys, fields)
    assert list(batch) == ["blur", "sharp", "center", "flow"]
    for f, t in batch.items():
        assert torch.equal(t, torch.stack([ds[k][f] for k in keys])), f
        assert not t.is_shared()  # shared memory only in DataLoader workers, where it saves two copies
    assert batch["sharp"].shape == (3, 9, 3, 32, 32) and batch["flow"].dtype == torch.float32

    class Plain:  # anything indexable by (index, aug_seed) gets its items stacked
        def __getitem__(self, key):
            return {"x": torch.full((2,), float(key[0])), "id": str(key)}

    assert collate(Plain(), [(1, 0), (2, 0)], ("x",))["x"].tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert list(collate(ds, keys, ("sharp",))) == ["sharp"]  # a subset, as a stage's objective asks
    with pytest.raises(ValueError, match="depth"):
        collate(ds, keys, ("depth",))


def test_worker_processes_give_the_items_of_the_main_process(smoke_data) -> None:
    ds = TrainSet(smoke_data / "synthetic-smoke-7f", 24, fields=("blur", "sharp"))
    keys = [(i % len(ds), 100 + i) for i in range(4)]

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(keys)

        def __getitem__(self, i):
            batch = collate(ds, keys[i:i + 1], ds.fields)
            return {k: v[0] for k, v in batch.items()} | {"shared": torch.tensor(batch["sharp"].is_shared())}

    # OpenCV's threads busy then idle in this process before the fork: the case that hung workers which set
    # their own OpenCV thread count (make_loader sets it in the parent instead).
    big = np.zeros((720, 720, 3), np.uint8)
    cv2.setNumThreads(2)
    cv2.resize(big, (256, 256), interpolation=cv2.INTER_AREA)
    cv2.resize(big, (1000, 1000), interpolation=cv2.INTER_LINEAR)
    time.sleep(1.0)
    loader = make_loader(Items(), 2, "cpu")

    def hung(*_):
        raise TimeoutError("a DataLoader worker hung")

    previous = signal.signal(signal.SIGALRM, hung)  # a hung worker fails this test, not the whole run
    signal.alarm(60)
    try:
        got = list(loader)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert cv2.getNumThreads() == 1  # and the workers inherited it
    assert loader.persistent_workers and loader.prefetch_factor >= 2 and not loader.pin_memory
    for key, item in zip(keys, got, strict=True):
        want = ds[key]
        assert all(torch.equal(item[k], want[k]) for k in want)
        assert bool(item["shared"])  # built in shared memory by the worker


def test_a_set_without_the_packed_copy_is_refused_with_the_command_that_adds_it(smoke_data, tmp_path):
    import json
    import shutil

    folder = tmp_path / "synthetic-smoke-9f"
    shutil.copytree(smoke_data / folder.name, folder)
    manifest = load_manifest(folder)
    for s in manifest["samples"]:
        s.pop("packed")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BenchError, match="bench prepare .*--profile smoke") as err:
        TrainSet(folder, 32)
    assert "packed" in str(err.value) and "\n" not in str(err.value)
