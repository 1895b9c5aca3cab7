"""`bench infer`: photos made here in every format go through a smoke-width `ours`; outputs are checked for
existence, size and frame count; bad input gives one-line errors while the rest of the batch is processed."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from records import write_run

from bench import infer
from bench.commands.infer import command
from bench.errors import BenchError

SMOKE_MODEL = {"dm_width": 8, "dm_growth": 4, "dm_rdbs": 1, "video_width": 4, "jin_width": 4, "srn_width": 4}
N = 3  # frames; small so the end-to-end test stays fast


# --- photos made here ---------------------------------------------------------------------------------------

def _pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB uint8 image `(h, w, 3)` (JPEG keeps it close)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.05, 0.2, size=2)
    img = np.stack([128 + 100 * np.sin(a * xx), 128 + 100 * np.cos(b * yy), (xx + yy) % 256], axis=-1)
    return img.astype(np.uint8)


def _huge_header_png() -> bytes:
    """A PNG whose (valid) header claims 100000 x 100000 pixels: must be refused before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + \
        chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One photo per supported kind, with its expected decoded (h, w)."""
    d = tmp_path_factory.mktemp("photos")
    out = {}
    Image.fromarray(_pattern(29, 37, 1)).save(d / "rgb.png")  # odd size: padded to 32x48, cropped back
    out["rgb.png"] = d / "rgb.png"
    Image.fromarray(_pattern(32, 48, 2)).save(d / "photo.jpg", quality=95)
    out["photo.jpg"] = d / "photo.jpg"
    Image.fromarray(_pattern(24, 40, 3)[:, :, 0]).save(d / "gray.png")  # mode L
    out["gray.png"] = d / "gray.png"
    rgba = np.dstack([_pattern(24, 32, 4), np.full((24, 32), 255, np.uint8)])
    rgba[:4, :4, 3] = 0  # fully transparent corner: shows as white
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    out["rgba.png"] = d / "rgba.png"
    deep = (np.arange(24 * 32 * 3, dtype=np.uint32).reshape(24, 32, 3) * 97 % 65536).astype(np.uint16)
    cv2.imwrite(str(d / "deep.png"), deep)  # 16-bit RGB
    out["deep.png"] = d / "deep.png"
    gray16 = np.full((16, 40), 257 * 100, np.uint16)
    gray16[0, 0] = 65535
    cv2.imwrite(str(d / "gray16.png"), gray16)  # 16-bit grayscale (PIL mode I;16)
    out["gray16.png"] = d / "gray16.png"
    # Stored 48 wide x 24 high, left column red; EXIF orientation 6 = rotate 90 degrees clockwise to view,
    # so the upright photo is 48 high x 24 wide with the red column on top.
    rot = np.zeros((24, 48, 3), np.uint8)
    rot[:, :, 2] = 200
    rot[:, :8] = (230, 20, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rot).save(d / "rotated.jpg", exif=exif, quality=95)
    out["rotated.jpg"] = d / "rotated.jpg"
    return out


EXPECTED_HW = {"rgb.png": (29, 37), "photo.jpg": (32, 48), "gray.png": (24, 40), "rgba.png": (24, 32),
               "deep.png": (24, 32), "gray16.png": (16, 40), "rotated.jpg": (48, 24)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A portable weights.pt of `ours` at smoke widths for N frames (untrained: shapes are what matter)."""
    import torch

    from bench.store import save_weights
    from methods import registry

    torch.manual_seed(0)
    nets = registry.get("ours").build(SMOKE_MODEL)
    path = tmp_path_factory.mktemp("weights") / "weights.pt"
    save_weights(path, "ours", N, SMOKE_MODEL, {k: m.state_dict() for k, m in nets.items()})
    return path


# --- reading ------------------------------------------------------------------------------------------------

def test_read_photo_converts_every_kind(photos: dict[str, Path]) -> None:
    for name, path in photos.items():
        rgb = infer.read_photo(path)
        assert rgb.dtype == np.uint8 and rgb.shape == (*EXPECTED_HW[name], 3), name
    gray = infer.read_photo(photos["gray.png"])
    assert (gray[:, :, 0] == gray[:, :, 1]).all() and (gray[:, :, 1] == gray[:, :, 2]).all()
    rgba = infer.read_photo(photos["rgba.png"])
    assert (rgba[:4, :4] == 255).all()  # transparent over white
    np.testing.assert_array_equal(rgba[4:, 4:], _pattern(24, 32, 4)[4:, 4:])
    g16 = infer.read_photo(photos["gray16.png"])
    assert g16[0, 0, 0] == 255 and g16[5, 5, 0] == 100  # 65535 -> 255, 257*k -> k
    deep = infer.read_photo(photos["deep.png"])
    raw = cv2.imread(str(photos["deep.png"]), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert np.abs(deep.astype(int) - raw.astype(int) / 257).max() <= 1  # 16 -> 8 bits, same channel order
    up = infer.read_photo(photos["rotated.jpg"])
    assert up[:6, :, 0].mean() > 180 and up[:6, :, 2].mean() < 80  # red stored left is now on top
    assert up[-6:, :, 2].mean() > 150


def test_bad_files_give_one_line_errors(tmp_path: Path, photos: dict[str, Path]) -> None:
    good = photos["rgb.png"].read_bytes()
    cases = {"empty.png": b"", "random.jpg": os.urandom(300), "truncated.png": good[: len(good) // 2],
             "truncated.jpg": photos["photo.jpg"].read_bytes()[:400], "huge.png": _huge_header_png()}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BenchError) as err:
            infer.read_photo(tmp_path / name)
        msg = str(err.value)
        assert name in msg and "\n" not in msg, (name, msg)
    assert "megapixel" in str(pytest.raises(BenchError, infer.read_photo, tmp_path / "huge.png").value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bytes_never_escape_as_other_errors(tmp_path: Path, photos: dict[str, Path],
                                                   data: st.DataObject) -> None:
    """Cut, flipped or random bytes either decode to a valid RGB image or raise BenchError: nothing else."""
    source = data.draw(st.sampled_from(["rgb.png", "photo.jpg", "gray16.png", "random"]))
    if source == "random":
        blob = data.draw(st.binary(max_size=512))
    else:
        blob = bytearray(photos[source].read_bytes())
        cut = data.draw(st.integers(0, len(blob)))
        blob = blob[:cut]
        for pos in data.draw(st.lists(st.integers(0, max(len(blob) - 1, 0)), max_size=4)):
            if blob:
                blob[pos] ^= 0xFF
        blob = bytes(blob)
    path = tmp_path / "fuzz.img"
    path.write_bytes(blob)
    try:
        rgb = infer.read_photo(path, max_pixels=1_000_000)
    except BenchError as err:
        assert "\n" not in str(err)
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


def test_expand_inputs_folders_globs_and_missing(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    found, failed = infer.expand_inputs([str(tmp_path), str(tmp_path / "*.png"), "nope.png",
                                         str(tmp_path / "empty"), str(tmp_path / "*.gif")])
    assert [p.name for p in found] == ["a.jpg", "b.png"]  # folder sorted, glob hit de-duplicated
    assert [item for item, _ in failed] == ["nope.png", str(tmp_path / "empty"), str(tmp_path / "*.gif")]
    assert infer.output_names([Path("x/a.png"), Path("y/a.png"), Path("a.jpg")]) == ["a", "a-png", "a-jpg"]


# --- the command end to end ---------------------------------------------------------------------------------

def test_infer_writes_every_output(tmp_path: Path, photos: dict[str, Path], weights: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    args = [*(str(p) for p in photos.values()), str(bad), "--checkpoint", str(weights), "--out", str(out),
            "--device", "cpu"]
    result = CliRunner().invoke(command, args)
    # The broken photo fails alone, the batch goes on, and the command fails at the end naming it.
    assert isinstance(result.exception, BenchError), result.output
    assert "1 of 8" in str(result.exception) and "broken.png" in str(result.exception)
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"wrote 7 photo(s) to {out}")
    assert any(line.startswith("error: ") and "broken.png" in line for line in lines)
    for name, (h, w) in EXPECTED_HW.items():
        folder = out / Path(name).stem
        assert cv2.imread(str(folder / "deblurred.png")).shape == (h, w, 3), name
        frames = sorted((folder / "frames").glob("frame_*.png"))
        assert len(frames) == N and all(cv2.imread(str(f)).shape == (h, w, 3) for f in frames)
        with Image.open(folder / "video.gif") as gif:
            assert gif.size == (w, h)
            distinct = 1 + sum(not np.array_equal(cv2.imread(str(a)), cv2.imread(str(b)))
                               for a, b in zip(frames, frames[1:], strict=False))
            # N frames, except that identical consecutive frames are merged by the GIF encoder.
            assert gif.n_frames == N if distinct == N else 1 <= gif.n_frames <= N
        cap = cv2.VideoCapture(str(folder / "video.mp4"))
        count, shape = 0, None
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            count, shape = count + 1, frame.shape
        cap.release()
        assert count == N and shape == (h + h % 2, w + w % 2, 3)
        strip = cv2.imread(str(folder / "strip.png"))
        assert strip.shape == (h, (N + 2) * w + (N + 1) * 4, 3)
        # The strip's first panel is the (converted) input photo itself.
        np.testing.assert_array_equal(strip[:, :w, ::-1], infer.read_photo(photos[name]))
    assert not list(out.rglob("*.tmp*"))  # no temporary files left behind
    # Hidden files: only the folder's lock and the record of what the suite wrote (bench.outputs).
    assert sorted(p.name for p in out.rglob(".*")) == [".bench-outputs.json", ".lock"]


def test_gif_holds_every_distinct_frame() -> None:
    frames = np.stack([np.full((8, 12, 3), 30 * k, np.uint8) for k in range(7)])
    data = infer.encode_gif(frames, fps=10)
    import io

    with Image.open(io.BytesIO(data)) as gif:
        assert gif.n_frames == 7 and gif.size == (12, 8) and gif.info["loop"] == 0


def test_latest_run_in_store_is_used(tmp_path: Path, photos: dict[str, Path], weights: Path) -> None:
    run = write_run(tmp_path / "runs", "ours-abc", "ours", N, weights=weights.read_bytes())
    # A newer finished run without weights (scored from a --weights file) is passed over, and so is a newer
    # one whose weights.pt is damaged (shorter than it was written).
    newer = write_run(tmp_path / "runs", "ours-def", "ours", N, weights=None)
    broken = write_run(tmp_path / "runs", "ours-ghi", "ours", N, weights=weights.read_bytes())
    (broken / "weights.pt").write_bytes(weights.read_bytes()[:100])
    stamp = (run / "metrics.json").stat().st_mtime
    for folder in (newer, broken):
        os.utime(folder / "metrics.json", (stamp + 60, stamp + 60))
    out = tmp_path / "out"
    result = CliRunner().invoke(command, [str(photos["rgb.png"]), "--frames", str(N), "--runs-dir",
                                          str(tmp_path / "runs"), "--out", str(out), "--format", "gif"])
    assert result.exception is None, result.output
    assert str(run / "weights.pt") in result.output
    assert (out / "rgb" / "video.gif").is_file() and not (out / "rgb" / "video.mp4").exists()
    assert not (out / "rgb" / "frames").exists()  # png not asked for
    # The run can also be named by id; --tile forces two 32-pixel tiles on this 29x37 photo.
    again = CliRunner().invoke(command, [str(photos["rgb.png"]), "--run", run.name, "--runs-dir",
                                         str(tmp_path / "runs"), "--out", str(out), "--format", "png",
                                         "--tile", "32"])
    assert again.exception is None, again.output
    frames = sorted((out / "rgb" / "frames").glob("*.png"))
    assert len(frames) == N and all(cv2.imread(str(f)).shape == (29, 37, 3) for f in frames)


def test_missing_run_names_the_training_command(tmp_path: Path, photos: dict[str, Path]) -> None:
    result = CliRunner().invoke(command, [str(photos["rgb.png"]), "--runs-dir", str(tmp_path / "runs")])
    assert isinstance(result.exception, BenchError)
    msg = str(result.exception)
    assert "no finished run of ours with 9 frames" in msg and "bench run --method ours --frames 9" in msg
    assert "\n" not in msg


def test_method_that_cannot_take_n(tmp_path: Path, photos: dict[str, Path]) -> None:
    result = CliRunner().invoke(command, [str(photos["rgb.png"]), "--method", "jin2018", "--frames", "9",
                                          "--runs-dir", str(tmp_path)])
    assert isinstance(result.exception, BenchError)
    assert "--frames 9" in str(result.exception) and "\n" not in str(result.exception)


def test_cli_exit_status_and_no_traceback(tmp_path: Path, photos: dict[str, Path]) -> None:
    """Through the real entry point: a bad file among good ones -> outputs for the good one, exit 2.
    The parameter-free `blurred` method keeps this subprocess cheap; the failure path is the same."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(os.urandom(64))
    code = "from bench.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "infer", str(photos["gray.png"]), str(bad),
                           "--method", "blurred", "--frames", "5", "--out", str(tmp_path / "o"),
                           "--format", "png"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "bad.jpg" in proc.stderr.splitlines()[-1]
    assert proc.stdout.strip().splitlines()[-1].startswith("wrote 1 photo(s)")
    frames = sorted((tmp_path / "o" / "gray" / "frames").glob("*.png"))
    assert len(frames) == 5  # `blurred` repeats its input N times: every frame is the photo itself
    for f in frames:
        np.testing.assert_array_equal(cv2.imread(str(f))[:, :, ::-1], infer.read_photo(photos["gray.png"]))


# --- memory and tiles ---------------------------------------------------------------------------------------

class _Pred:
    def __init__(self, deblurred, frames) -> None:  # noqa: ANN001
        self.deblurred, self.frames, self.flows = deblurred, frames, None


class _Ramp:
    """A stand-in method whose frames fade in over time; with `alternate`, every other call plays them
    backwards (an equally valid answer under Eq. 6), so the tiler must re-orient tiles to agree."""

    name = "ramp"

    def __init__(self) -> None:
        self.alternate, self.calls = False, 0

    def predict(self, nets, blur, n, center=None):  # noqa: ANN001, ANN201
        import torch

        self.calls += 1
        gain = torch.linspace(0.2, 1.0, n).view(1, n, 1, 1, 1)
        frames = blur[:, None] * gain  # (b, n, 3, h, w)
        if self.alternate and self.calls % 2 == 0:
            frames = frames.flip(1)
        return _Pred(blur, frames)


def test_tiles_blend_to_the_untiled_result_and_agree_in_time() -> None:
    import torch

    rgb = _pattern(80, 144, 7)
    ramp = _Ramp()
    loaded = infer.LoadedMethod(method=ramp, nets=torch.nn.ModuleDict(), frames=N,
                                device=torch.device("cpu"), source="test")
    whole_deb, whole_frames = infer.predict_photo(loaded, rgb, tile=None)
    ramp.alternate, ramp.calls = True, 0
    tiled_deb, tiled_frames = infer.predict_photo(loaded, rgb, tile=64)
    assert ramp.calls == 6  # 2 rows x 3 columns of 64-pixel tiles
    assert tiled_frames.shape == (N, 80, 144, 3)
    np.testing.assert_array_equal(whole_deb, rgb)
    assert np.abs(tiled_deb.astype(int) - rgb).max() <= 1
    assert np.abs(tiled_frames.astype(int) - whole_frames).max() <= 1  # same order everywhere


def test_plan_tile_follows_the_memory_budget() -> None:
    import torch

    loaded = infer.LoadedMethod(method=None, nets=torch.nn.ModuleDict(), frames=N,
                                device=torch.device("cpu"), source="test", _per_pixel=1000)
    assert infer.plan_tile(loaded, 100, 100, budget=10**8) is None  # 10 MB needed, 100 MB at hand
    side = infer.plan_tile(loaded, 2000, 3000, budget=10**9)  # 6 GB needed in one pass
    assert side is not None and side % 16 == 0 and infer.MIN_TILE <= side < 2000
    assert 1000 * side**2 + (N * 3 + 4) * 4 * 2000 * 3000 <= 10**9
    with pytest.raises(BenchError, match="downscale"):
        infer.plan_tile(loaded, 20000, 30000, budget=10**9, name="big.jpg")
    assert infer.plan_tile(loaded, 100, 300, tile=64) == 64
    with pytest.raises(BenchError):
        infer.plan_tile(loaded, 100, 300, tile=50)


class _Greedy(_Ramp):
    """Runs out of memory above `limit` pixels, with the CPU allocator's message."""

    limit = 130 * 130

    def predict(self, nets, blur, n, center=None):  # noqa: ANN001, ANN201
        if blur.shape[-1] * blur.shape[-2] > self.limit:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory")
        return super().predict(nets, blur, n, center)


def test_out_of_memory_falls_back_to_tiles() -> None:
    import torch

    rgb = _pattern(160, 256, 8)
    greedy = _Greedy()
    loaded = infer.LoadedMethod(method=greedy, nets=torch.nn.ModuleDict(), frames=N,
                                device=torch.device("cpu"), source="test")
    deblurred, frames = infer.predict_photo(loaded, rgb)  # one pass fails, then 128-pixel tiles fit
    assert greedy.calls > 1 and frames.shape == (N, 160, 256, 3)
    assert np.abs(deblurred.astype(int) - rgb).max() <= 1
    greedy.limit = 50 * 50  # not even a MIN_TILE tile fits: a clear error, no traceback
    with pytest.raises(BenchError, match="out of memory"):
        infer.predict_photo(loaded, rgb)
    greedy.limit = 10**9

    class _Broken(_Ramp):
        def predict(self, nets, blur, n, center=None):  # noqa: ANN001, ANN201
            raise RuntimeError("shape mismatch")  # a real bug is not mistaken for memory

    loaded.method = _Broken()
    with pytest.raises(RuntimeError, match="shape mismatch"):
        infer.predict_photo(loaded, rgb)
