"""The video source (`bench/data/video.py`): short clips written with OpenCV's VideoWriter (mp4v) in tmp_path,
prepared through the real `bench prepare` and compared with frames decoded here (mp4v is lossy, so the
truth is the decoded frame, not the frame that was written)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import cv2
import faults
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bench.data.video as video
from bench.data.images import read_rgb
from bench.data.manifest import describe_sets, load_manifest
from bench.errors import BenchError

FPS = 240.0


def write_video(path: Path, count: int, h: int = 32, w: int = 48, seed: int = 0, fps: float = FPS) -> Path:
    """`count` frames of a random texture sliding right by one pixel a frame (a moving pattern)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), path
    base = np.random.default_rng(seed).integers(0, 256, (h, w + count, 3), dtype=np.uint8)
    base = cv2.GaussianBlur(base, (5, 5), 0)  # smooth enough that the lossy codec keeps it recognisable
    for t in range(count):
        writer.write(np.ascontiguousarray(base[:, t:t + w]))
    writer.release()
    return path


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of the video as OpenCV decodes it, RGB uint8 (h, w, 3)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def retime(path: Path, entries: list[tuple[int, int]]) -> None:
    """Rewrite the MP4's time-to-sample table (`stts`) to `entries` of (frames, ticks per frame), making its
    frame rate variable; the edit list goes too, so every frame stays visible. The sample offsets (`stco`)
    point into `mdat`, which precedes `moov` in OpenCV's files, so resizing `moov` leaves them right."""
    def walk(buf: bytes) -> bytes:
        out, i = b"", 0
        while i < len(buf):
            size, kind = struct.unpack(">I4s", buf[i:i + 8])
            body = buf[i + 8:i + size]
            i += size
            if kind == b"edts":
                continue
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                body = walk(body)
            elif kind == b"stts":
                body = struct.pack(">II", 0, len(entries)) + b"".join(struct.pack(">II", *e) for e in entries)
            out += struct.pack(">I4s", 8 + len(body), kind) + body
        return out

    data = path.read_bytes()
    assert data.index(b"mdat") < data.index(b"moov")
    path.write_bytes(walk(data))


def write_avi(path: Path, frames: list[np.ndarray]) -> Path:
    """The frames (RGB) as an mp4v stream in an AVI, whose header declares the frame count up front."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (48, 32))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def cut_avi(path: Path) -> bytes:
    """The AVI cut in the middle of its frame data (`movi` .. `idx1`): it opens, then ends early."""
    data = path.read_bytes()
    start, index = data.index(b"movi"), data.index(b"idx1")
    return data[: start + (index - start) // 2]


def prepare_cli(root: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    return faults.invoke(["prepare", "--source", "video", "--root", str(root), "--data-dir", str(data),
                          "--workers", "1", *extra])


def samples_of(manifest: dict, sequence: str) -> list[dict]:
    return sorted((s for s in manifest["samples"] if s["sequence"] == sequence), key=lambda s: s["window"])


def test_a_moving_pattern_gives_windows_whose_blur_is_the_mean_of_its_decoded_frames(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "pan.mp4", 20)
    truth = decode(clip)
    assert len(truth) == 20 and not np.array_equal(truth[0], truth[5])  # the pattern moves
    code, out, err = prepare_cli(clip, tmp_path / "data", "--frames", "3,5")
    assert code == 0, err
    for n in (3, 5):
        folder = tmp_path / "data" / f"video-{n}f"
        m = load_manifest(folder, verify=True)
        assert m["source"] == "video" and m["root"] == str(clip.resolve()) and m["resolution"] == [32, 48]
        assert m["video"] == {"stride": 1, "resize": None, "max_frames": None, "start": None, "end": None}
        assert m["clips"]["pan"]["fps"] == FPS and m["clips"]["pan"]["frames_kept"] == 20
        assert m["failed"] == []
        assert {r["name"]: r["source"] for r in describe_sets(tmp_path / "data")}[folder.name] == "video"
        windows = samples_of(m, "pan")
        assert [s["window"] for s in windows] == list(range(20 // n))
        assert {s["split"] for s in windows} == {"test"}  # a lone video is a test set (for --eval-data)
        for s in windows:
            k = s["window"]
            frames = [read_rgb(folder / p) for p in s["sharp"]]
            assert all(np.array_equal(a, b) for a, b in zip(frames, truth[k * n:(k + 1) * n], strict=True))
            mean = np.stack(truth[k * n:(k + 1) * n]).astype(np.float64).mean(0)
            assert np.array_equal(read_rgb(folder / s["blur"]), np.floor(mean + 0.5).astype(np.uint8))
            assert s["flow"] is None


def test_an_idempotent_rerun_only_verifies_and_other_options_need_fresh(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clips" / "pan.mp4", 12)
    data = tmp_path / "data"
    assert prepare_cli(clip.parent, data, "--frames", "3")[0] == 0
    stamps = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    code, out, _ = prepare_cli(clip.parent, data, "--frames", "3")
    assert code == 0 and "nothing to do" in out.strip().splitlines()[-1]
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == stamps
    code, _, err = prepare_cli(clip.parent, data, "--frames", "3", "--stride", "2")
    faults.assert_one_line_error(code, err, "video-3f", "--fresh")
    code, _, err = prepare_cli(clip.parent, data, "--frames", "3", "--stride", "2", "--fresh")
    assert code == 0, err
    m = load_manifest(data / "video-3f", verify=True)
    assert m["video"]["stride"] == 2 and len(m["samples"]) == 2  # 6 kept frames, 2 windows of 3
    (data / "video-3f" / m["samples"][0]["blur"]).write_bytes(b"damaged")
    with pytest.raises(BenchError, match=f"bench prepare --source video --root {clip.parent} .*--stride 2"):
        load_manifest(data / "video-3f", verify=True)  # the repair command keeps the options
    code, out, err = prepare_cli(clip.parent, data, "--frames", "3", "--stride", "2")
    assert code == 0 and "repairing" in err and "wrote 1 files" in out


def _bad_clips(root: Path) -> dict[str, str]:
    """Each broken video under `root` and a fragment of the error line it must get."""
    write_video(root / "short.mp4", 4, seed=2)
    whole = write_video(root / "cut_mp4.mp4", 20, seed=3).read_bytes()
    (root / "cut_mp4.mp4").write_bytes(whole[: len(whole) // 2])  # the index (moov) is at the end: lost
    avi = write_avi(root / "cut_avi.avi", decode(write_video(root.parent / "whole.mp4", 20, seed=4)))
    avi.write_bytes(cut_avi(avi))  # the header still declares 20 frames
    (root / "empty.mp4").write_bytes(b"")
    retime(write_video(root / "vfr.mp4", 20, seed=5), [(10, 64), (10, 128)])  # 240 fps, then 120 fps
    return {"short.mp4": "fewer than N=5", "cut_mp4.mp4": "cannot be opened", "cut_avi.avi": "ends after",
            "empty.mp4": "empty file", "vfr.mp4": "not a constant frame rate"}


def test_bad_videos_get_one_line_each_and_the_good_ones_are_prepared(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    write_video(root / "good.mp4", 12, seed=1)
    (root / "notes.txt").write_text("not a video, ignored")
    bad = _bad_clips(root)
    data = tmp_path / "data"
    code, out, err = prepare_cli(root, data, "--frames", "5")
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and all(line.startswith("error: ") for line in lines), err
    assert len(lines) == len(bad) + 1  # one per bad video, then the summary
    for name, fragment in bad.items():
        mine = [line for line in lines[:-1] if f"{root.resolve() / name}:" in line]
        assert len(mine) == 1 and fragment in mine[0], (name, lines)
    assert f"{len(bad)} of {len(bad) + 1} videos failed" in lines[-1]
    folder = data / "video-5f"
    m = load_manifest(folder, verify=True)
    assert {s["sequence"] for s in m["samples"]} == {"good"} and len(m["samples"]) == 2
    assert sorted(f["file"] for f in m["failed"]) == sorted(bad)
    held = {p.relative_to(folder).parts[1] for p in folder.glob("*/*")}
    assert held == {"good"}  # nothing of a bad video, not even a frame
    # The same command again retries the bad videos and fails the same way; without them it completes.
    code, _, err_again = prepare_cli(root, data, "--frames", "5")
    assert code == 2 and err_again.strip().splitlines()[-1] == lines[-1]
    for name in bad:
        (root / name).unlink()
    code, out, err = prepare_cli(root, data, "--frames", "5")
    assert code == 0 and "retrying 5 video(s)" in out and not err.strip(), err
    assert load_manifest(folder, verify=True)["failed"] == []


def test_a_set_with_new_videos_is_rebuilt_without_hashing_it_first_and_ends_whole(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    from bench.data import prepare

    root, data = tmp_path / "clips", tmp_path / "data"
    write_video(root / "a.mp4", 6, seed=1)
    assert prepare_cli(root, data, "--frames", "3")[0] == 0
    packed_file = next((data / "video-3f").rglob("*.npy"))
    packed_file.write_bytes(packed_file.read_bytes()[:-7])  # damaged too: the rebuild must mend it
    write_video(root / "b.mp4", 6, seed=2)

    def no_hashing(*args: object) -> None:
        raise AssertionError("a set about to be rebuilt was hashed first")

    monkeypatch.setattr(prepare.packed, "plan", no_hashing)
    code, out, err = prepare_cli(root, data, "--frames", "3")
    assert code == 0 and "adding 1 new video(s) (b.mp4)" in out, err
    assert set(load_manifest(data / "video-3f", verify=True)["clips"]) == {"a", "b"}  # whole again


def test_reruns_add_new_videos_refuse_another_size_and_need_fresh_for_a_lost_one(tmp_path: Path) -> None:
    root, data = tmp_path / "clips", tmp_path / "data"
    write_video(root / "a.mp4", 6, seed=1)
    assert prepare_cli(root, data, "--frames", "3")[0] == 0
    write_video(root / "b.mp4", 6, seed=2)
    code, out, err = prepare_cli(root, data, "--frames", "3")
    assert code == 0 and "adding 1 new video(s) (b.mp4)" in out, err
    assert set(load_manifest(data / "video-3f", verify=True)["clips"]) == {"a", "b"}
    write_video(root / "c.mp4", 6, h=40, seed=3)  # most videos here are 48x32
    code, _, err = prepare_cli(root, data, "--frames", "3")
    faults.assert_one_line_error(code, err, "c.mp4: frames of 48x40 but most videos here give 48x32")
    assert not list((data / "video-3f").glob("*/c"))
    (root / "a.mp4").unlink()
    code, _, err = prepare_cli(root, data, "--frames", "3")
    faults.assert_one_line_error(code, err, "built from a.mp4, which is no longer under --root", "--fresh")
    assert len(err.strip().splitlines()) == 1


def test_a_video_that_fails_half_way_leaves_no_file_of_its_own(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "clips"
    write_video(root / "good.mp4", 9, seed=1)
    write_avi(root / "swapped.avi", decode(write_video(tmp_path / "src.mp4", 20, seed=2)))
    real_scan, real_remove = video.scan, video.remove_sequence
    seen: list[str] = []

    def scan_then_cut(clip: video.Clip) -> video.Clip:
        # Fault: the file is cut short after the first pass counted 20 frames (a copy over it, say).
        counted = real_scan(clip)
        if clip.name == "swapped":
            Path(clip.path).write_bytes(cut_avi(Path(clip.path)))
        return counted

    def remove(folder: Path, name: str) -> None:
        seen.extend(str(p.relative_to(folder)) for p in folder.rglob("*") if name in p.parts)
        real_remove(folder, name)

    monkeypatch.setattr(video, "scan", scan_then_cut)
    monkeypatch.setattr(video, "remove_sequence", remove)
    code, _, err = prepare_cli(root, tmp_path / "data", "--frames", "3")
    faults.assert_one_line_error(code, err, "swapped.avi", "did the file change")
    assert any(p.startswith("sequences/swapped/") for p in seen)  # it had written frames when it failed
    folder = tmp_path / "data" / "video-3f"
    m = load_manifest(folder, verify=True)
    assert {s["sequence"] for s in m["samples"]} == {"good"}
    assert not [p for p in folder.rglob("*") if "swapped" in p.name or "swapped" in p.parts]


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(keep=st.floats(0.0, 1.0), at=st.floats(0.0, 1.0), span=st.integers(0, 64), fill=st.integers(0, 255))
def test_a_damaged_video_fails_cleanly_beside_a_good_one(keep: float, at: float, span: int, fill: int,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """Bytes overwritten and the file cut short: either it still decodes (FFmpeg conceals some damage) and
    is prepared, or it gets its one error line; never a traceback, and the good video is always prepared."""
    tmp = tmp_path_factory.mktemp("fuzz")
    good = write_video(tmp / "clips" / "good.mp4", 6, seed=1)
    data = bytearray(write_video(tmp / "clips" / "bad.mp4", 12, seed=2).read_bytes())
    first = int(at * len(data))
    data[first:first + span] = bytes([fill]) * len(data[first:first + span])
    end = len(data) if keep > 0.8 else int(keep * len(data))  # a fifth of the examples keep every byte
    (tmp / "clips" / "bad.mp4").write_bytes(bytes(data[:end]))
    code, _, err = prepare_cli(good.parent, tmp / "data", "--frames", "3")
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        faults.assert_one_line_error(code, err, str(good.parent.resolve() / "bad.mp4"))
    m = load_manifest(tmp / "data" / "video-3f", verify=True)
    assert "good" in {s["sequence"] for s in m["samples"]}
    assert (code == 2) == bool(m["failed"])


def _selected(frames: list[np.ndarray], option: str) -> list[np.ndarray]:
    """The frames each option must keep, from the decoded clip (fps 240, 24 frames)."""
    if option == "stride":
        return frames[::3]
    if option == "max-frames":
        return frames[:7]
    if option == "start-end":
        return frames[6:15]  # round(0.025 * 240) = 6 up to round(0.0625 * 240) = 15
    if option == "resize":
        return [cv2.resize(f, (24, 16), interpolation=cv2.INTER_AREA) for f in frames]
    raise AssertionError(option)


@pytest.mark.parametrize(("option", "flags", "recorded"), [
    ("stride", ["--stride", "3"], {"stride": 3}),
    ("max-frames", ["--max-frames", "7"], {"max_frames": 7}),
    ("start-end", ["--start", "0.025", "--end", "0.0625"], {"start": 0.025, "end": 0.0625}),
    ("resize", ["--resize", "24"], {"resize": 24}),
])
def test_each_option_keeps_the_frames_it_says(option: str, flags: list[str], recorded: dict,
                                              tmp_path: Path) -> None:
    clip = write_video(tmp_path / "pan.mp4", 24)
    want = _selected(decode(clip), option)
    code, _, err = prepare_cli(clip, tmp_path / "data", "--frames", "3", *flags)
    assert code == 0, err
    folder = tmp_path / "data" / "video-3f"
    m = load_manifest(folder, verify=True)
    windows = samples_of(m, "pan")
    got = [read_rgb(folder / p) for s in windows for p in s["sharp"]]
    assert len(windows) == len(want) // 3 and len(got) == len(windows) * 3
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=False))
    assert m["resolution"] == list(want[0].shape[:2]) and m["clips"]["pan"]["frames_kept"] == len(want)
    assert m["video"] == {**video.VideoOptions().identity(), **recorded}


def test_resize_never_enlarges(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "pan.mp4", 6)
    assert prepare_cli(clip, tmp_path / "data", "--frames", "3", "--resize", "100")[0] == 0
    assert load_manifest(tmp_path / "data" / "video-3f")["resolution"] == [32, 48]


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--stride", "0"], "--stride 0"),
    (["--resize", "2"], "--resize 2"),
    (["--max-frames", "0"], "--max-frames 0"),
    (["--start", "-1"], "--start -1"),
    (["--start", "0.5", "--end", "0.5"], "--end 0.5 is not after --start 0.5"),
    (["--start", "1.0"], "past its end"),
])
def test_bad_options_get_a_one_line_error(flags: list[str], fragment: str, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "pan.mp4", 6)
    code, _, err = prepare_cli(clip, tmp_path / "data", "--frames", "3", *flags)
    faults.assert_one_line_error(code, err, fragment)
    assert len(err.strip().splitlines()) == (2 if fragment == "past its end" else 1)  # + the summary line


def test_video_options_belong_to_the_video_source(tmp_path: Path) -> None:
    code, _, err = faults.invoke(["prepare", "--profile", "smoke", "--data-dir", str(tmp_path),
                                  "--stride", "2"])
    faults.assert_one_line_error(code, err, "--source video only")
    code, _, err = faults.invoke(["prepare", "--source", "video", "--data-dir", str(tmp_path)])
    faults.assert_one_line_error(code, err, "needs --root")


def test_split_follows_train_and_test_folders_else_a_seeded_third(tmp_path: Path) -> None:
    split_root = tmp_path / "split"
    write_video(split_root / "train" / "a.mp4", 3)
    write_video(split_root / "test" / "b.mov", 3)
    clips = video.discover(split_root, 0, video.VideoOptions())
    assert {c.name: (c.split, c.file) for c in clips} == {"a": ("train", "train/a.mp4"),
                                                          "b": ("test", "test/b.mov")}
    flat = tmp_path / "flat"
    for i in range(6):
        write_video(flat / f"clip{i}.mp4", 3, seed=i)
    first = {c.name: c.split for c in video.discover(flat, 0, video.VideoOptions())}
    assert first == {c.name: c.split for c in video.discover(flat, 0, video.VideoOptions())}
    assert sorted(first.values()).count("test") == 2
    assert any({c.name: c.split for c in video.discover(flat, s, video.VideoOptions())} != first
               for s in range(1, 6))


def test_sequence_names_come_from_safe_stems(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    write_video(root / "my clip (1).mp4", 3)
    write_video(root / "odd..name.MOV", 3)
    write_video(root / "back\\slash.mp4", 3)
    write_video(root / ".hidden.mp4", 3)
    names = {c.name: c.file for c in video.discover(root, 0, video.VideoOptions())}
    assert names == {"my_clip_1": "my clip (1).mp4", "odd_name": "odd..name.MOV",
                     "back_slash": "back\\slash.mp4"}
    write_video(root / "my_clip_1.mkv", 3)
    with pytest.raises(BenchError, match="would both be sequence 'my_clip_1'; rename one"):
        video.discover(root, 0, video.VideoOptions())


def test_timestamps_of_a_constant_rate_pass_and_gaps_or_rate_changes_do_not() -> None:
    grid = np.arange(300) * 1000 / 240
    assert video.timing_problem(np.round(grid)) is None  # stored to the millisecond: 4 or 5 ms steps
    assert video.timing_problem(np.zeros(10)) is None  # no timestamps: nothing to judge
    dropped = np.delete(grid, 150)
    assert "dropped or repeated" in video.timing_problem(dropped)
    slower = np.concatenate([grid[:150], grid[149] + np.arange(1, 151) * 1000 / 200])  # 240 -> 200 fps
    assert "variable frame rate" in video.timing_problem(slower)


def test_a_frame_of_another_size_is_refused(tmp_path: Path) -> None:
    clip = video.Clip("c", "test", str(tmp_path / "c.mp4"), "c.mp4", video.VideoOptions(), size=(32, 48),
                      out=(32, 48))
    assert video.to_rgb(np.zeros((32, 48, 3), np.uint8), clip, 0).shape == (32, 48, 3)
    with pytest.raises(BenchError, match="frame 7 is 48x40 but the stream starts at 48x32"):
        video.to_rgb(np.zeros((40, 48, 3), np.uint8), clip, 7)


def test_a_clip_with_rotation_metadata_is_prepared_upright(tmp_path: Path) -> None:
    """Phones store portrait clips landscape with a 90-degree display matrix in the track header (`tkhd`)."""
    clip = write_video(tmp_path / "portrait.mp4", 6)
    data = bytearray(clip.read_bytes())
    matrix = data.index(b"tkhd") + 4 + 4 + 4 * 5 + 8 + 8  # version 0: after times, ids, layer, volume
    assert struct.unpack_from(">9i", data, matrix)[:5] == (0x10000, 0, 0, 0, 0x10000)  # identity
    struct.pack_into(">9i", data, matrix, 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    clip.write_bytes(bytes(data))
    upright = decode(clip)
    assert upright[0].shape == (48, 32, 3)
    assert prepare_cli(clip, tmp_path / "data", "--frames", "3")[0] == 0
    folder = tmp_path / "data" / "video-3f"
    m = load_manifest(folder, verify=True)
    assert m["resolution"] == [48, 32] and m["clips"]["portrait"]["size"] == [48, 32]
    got = [read_rgb(folder / p) for s in samples_of(m, "portrait") for p in s["sharp"]]
    assert all(np.array_equal(a, b) for a, b in zip(got, upright, strict=True))


def test_a_size_change_mid_stream_arrives_at_the_first_size(tmp_path: Path) -> None:
    """OpenCV's FFmpeg backend rescales such frames to the stream's first size (why the module docstring
    calls it undetectable): the prepared set still holds one size, never a mix."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "mixed.mjpeg"  # a raw MJPEG stream: JPEGs back to back, sizes free to change
    jpegs = [cv2.imencode(".jpg", rng.integers(0, 256, (h, 48, 3), dtype=np.uint8))[1].tobytes()
             for h in (32, 32, 32, 40, 40, 40)]
    raw.write_bytes(b"".join(jpegs))
    code, _, err = prepare_cli(raw, tmp_path / "data", "--frames", "3")
    assert code == 0, err
    folder = tmp_path / "data" / "video-3f"
    m = load_manifest(folder, verify=True)
    assert len(m["samples"]) == 2
    assert {read_rgb(folder / p).shape for s in m["samples"] for p in s["sharp"]} == {(32, 48, 3)}


@pytest.mark.slow
def test_a_synthetic_trained_run_scores_a_video_set_and_the_report_shows_it(smoke_data: Path,
                                                                            tmp_path: Path) -> None:
    data, runs, reports = tmp_path / "data", tmp_path / "runs", tmp_path / "reports"
    shutil.copytree(smoke_data / "synthetic-smoke-9f", data / "synthetic-smoke-9f")
    assert prepare_cli(write_video(tmp_path / "pan.mp4", 18, h=48, w=64), data, "--frames", "9")[0] == 0
    code, out, err = faults.invoke(["run", "--method", "ours", "--profile", "smoke", "--data-dir", str(data),
                                    "--runs-dir", str(runs), "--device", "cpu", "--eval-data", "video-9f"])
    assert code == 0, err
    scored = list(runs.glob("ours-*/evals/video-9f-*/metrics.json"))  # named by set and digest
    assert len(scored) == 1
    metrics = json.loads(scored[0].read_text())
    assert metrics["status"] == "finished" and metrics["dataset"] == "synthetic-smoke-9f"
    assert metrics["eval_dataset"] == "video-9f"
    assert [s["id"] for s in metrics["samples"]] == ["pan-w000", "pan-w001"]
    assert all(np.isfinite(s["deblur_psnr"]) and s["deblur_psnr"] > 10 for s in metrics["samples"])
    code, _, err = faults.invoke(["report", "--runs-dir", str(runs), "--out", str(reports),
                                  "--format", "md,csv"])
    assert code == 0, err
    table = (reports / "tables" / "cross_dataset.csv").read_text()
    assert "video-9f" in table and "synthetic-smoke-9f" in table


@pytest.mark.slow
def test_bench_run_trains_on_the_users_footage(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    write_video(root / "train" / "walk.mp4", 18, h=48, w=64, seed=1)
    write_video(root / "train" / "pan.mp4", 18, h=48, w=64, seed=2)
    write_video(root / "test" / "swing.mp4", 9, h=48, w=64, seed=3)
    data, runs = tmp_path / "data", tmp_path / "runs"
    code, out, err = faults.invoke(["run", "--method", "ours", "--profile", "smoke", "--source", "video",
                                    "--root", str(root), "--data-dir", str(data), "--runs-dir", str(runs),
                                    "--device", "cpu", "--no-floor", "--set", "train.iters_dm=4",
                                    "--set", "train.iters_autoencoder=4", "--set", "train.iters_bie=4"])
    assert code == 0, err
    metrics = json.loads(next(runs.glob("ours-*/metrics.json")).read_text())
    assert metrics["dataset"] == "video-9f" and metrics["eval_dataset"] == "video-9f"
    assert [s["id"] for s in metrics["samples"]] == ["swing-w000"]
    assert set(metrics["training"]) == {"dm", "autoencoder", "bie"}
    assert all(stage["iterations"] == 4 for stage in metrics["training"].values())
    # Without --root the set is found by name and its root read from its manifest: the same run, reused.
    code, out, err = faults.invoke(["run", "--method", "ours", "--profile", "smoke", "--source", "video",
                                    "--data-dir", str(data), "--runs-dir", str(runs), "--device", "cpu",
                                    "--no-floor", "--set", "train.iters_dm=4", "--set",
                                    "train.iters_autoencoder=4", "--set", "train.iters_bie=4"])
    assert code == 0 and "reused the finished run" in out, err


def test_a_resize_too_small_for_the_networks_fails_when_prepared(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "pan.mp4", 6)  # 48x32
    code, _, err = prepare_cli(clip, tmp_path / "data", "--frames", "3", "--resize", "9")
    assert faults.assert_one_line_error(code, err) == ("error: --resize 9: expected the long side in pixels, "
                                                       "from 16 (the networks' smallest frame) to 16384")
    code, _, err = prepare_cli(clip, tmp_path / "data", "--frames", "3", "--resize", "20")  # 20x13
    faults.assert_one_line_error(code, err)
    assert [line for line in err.splitlines() if line][0] == (
        f"error: {clip}: frames of 20x13, but the networks need at least 16 pixels a side; raise --resize to "
        "at least 24")
    assert not list((tmp_path / "data").glob("*/manifest.json"))
