"""`bench score`: outside predictions scored as a run, equal to the suite's own scoring (the `blurred` floor
written as files, `ours` through `bench run --save-predictions`), shown by `bench report` with derived
claims; and every bad prediction refused in one line with nothing stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_export import bench

from bench.data.images import encode_png, read_rgb
from bench.data.manifest import load_manifest
from bench.errors import BenchError
from bench.export import frame_name
from bench.metrics import SAMPLE_METRICS, VOCABULARY
from bench.score import check_label, natural_key
from bench.store import EXTERNAL, iter_runs

pytestmark = pytest.mark.slow
SET = "synthetic-smoke-9f"
PSNR_TYPE = [k for k in SAMPLE_METRICS if VOCABULARY[k].unit == "dB"]  # every PSNR-type metric


@pytest.fixture(scope="module")
def store(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store holding smoke runs of `blurred` and `ours` at N = 9, `ours`'s predictions saved by `bench run
    --save-predictions`, and the test split exported."""
    root = tmp_path_factory.mktemp("score")
    mp = pytest.MonkeyPatch()
    capsys = _Capture()
    common = ("--profile", "smoke", "--frames", "9", "--data-dir", str(smoke_data), "--runs-dir",
              str(root / "runs"), "--device", "cpu", "--no-floor")
    for args in (("run", "--method", "blurred", *common),
                 ("run", "--method", "ours", *common, "--save-predictions", str(root / "ours-pred")),
                 ("export", "--set", SET, "--out", str(root / "export"), "--data-dir", str(smoke_data))):
        code, _, err = bench(capsys, mp, *args)
        assert code == 0, err
    mp.undo()
    return {"root": root, "runs": root / "runs", "data": smoke_data}


class _Capture:
    """capsys for a module-scoped fixture: the output is not checked there, only the exit status."""

    def readouterr(self) -> object:
        return type("Out", (), {"out": "", "err": ""})()


def _metrics(runs: Path, method: str) -> dict:
    [record] = [r for r in iter_runs(runs) if r.config.method == method and r.status == "finished"]
    return json.loads((record.path / "metrics.json").read_text())


def _blurred_predictions(export: Path, out: Path) -> Path:
    """The `blurred` floor written as an outside method would: each exported blur.png repeated N times."""
    for sample in sorted(p for p in export.iterdir() if p.is_dir()):
        (out / sample.name).mkdir(parents=True)
        for n in range(1, 10):
            shutil.copyfile(sample / "blur.png", out / sample.name / frame_name(n, 9))
    return out


def _score(capsys, monkeypatch, store: dict, pred: Path, label: str, runs: Path | None = None) -> tuple:
    return bench(capsys, monkeypatch, "score", "--set", SET, "--pred", str(pred), "--name", label,
                 "--data-dir", str(store["data"]), "--runs-dir", str(runs or store["runs"]))


def test_natural_order_and_labels() -> None:
    names = ["frame_10.png", "frame_2.png", "frame_1.png"]
    assert sorted(names, key=natural_key) == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert check_label("my-method_v2.1", ["ours"]) == "my-method_v2.1"
    for bad in ("", ".hidden", "a/b", "two words", "x" * 64):
        with pytest.raises(BenchError, match="not a valid label"):
            check_label(bad, ["ours"])
    with pytest.raises(BenchError, match="registered method ours"):
        check_label("OURS", ["ours"])


def test_blurred_written_as_files_scores_exactly_as_the_blurred_run(store, tmp_path, capsys,
                                                                   monkeypatch) -> None:
    pred = _blurred_predictions(store["root"] / "export", tmp_path / "pred")
    code, out, err = _score(capsys, monkeypatch, store, pred, "blur-files")
    assert code == 0, err
    mine, theirs = _metrics(store["runs"], "blur-files"), _metrics(store["runs"], "blurred")
    assert mine["samples"] == theirs["samples"]  # every per-sample metric, exactly (epe null on both)
    assert {k: mine["aggregate"][k] for k in SAMPLE_METRICS} == {k: theirs["aggregate"][k]
                                                                 for k in SAMPLE_METRICS}
    config = json.loads((store["runs"] / mine["run_id"] / "config.json").read_text())
    assert config["family"] == EXTERNAL and config["stages"] == [] and config["weights_from_sha256"]
    assert mine["aggregate"]["deblurred_from"] == "the middle predicted frame (2)"
    # the same files again: reused; one frame changed: a new id
    assert _score(capsys, monkeypatch, store, pred, "blur-files")[1].count("reused the finished run") == 1
    first = next(pred.iterdir()) / frame_name(1, 9)
    first.write_bytes(encode_png(255 - read_rgb(first)))
    code, _, err = _score(capsys, monkeypatch, store, pred, "blur-files")
    assert code == 2 and "holds other predictions scored as blur-files" in err


def test_ours_saved_predictions_score_back_within_uint8_rounding(store, capsys, monkeypatch) -> None:
    pred = store["root"] / "ours-pred"
    assert sorted(p.name for p in _sample(pred).iterdir()) == \
        ["deblurred.png", *(frame_name(n, 9) for n in range(1, 10))]
    code, _, err = _score(capsys, monkeypatch, store, pred, "ours-files")
    assert code == 0, err
    mine, theirs = _metrics(store["runs"], "ours-files"), _metrics(store["runs"], "ours")
    diffs = {k: abs(mine["aggregate"][k] - theirs["aggregate"][k]) for k in PSNR_TYPE}
    print("ours round trip |difference| per PSNR-type metric (dB):", diffs)
    assert max(diffs.values()) <= 0.02
    for key in SAMPLE_METRICS:  # the frames saved are the uint8 frames scored: equal, bar the flow error
        if key != "epe":
            assert [s[key] for s in mine["samples"]] == [s[key] for s in theirs["samples"]], key


def test_the_report_shows_the_label_in_its_tables_and_judges_ours_against_it(store, tmp_path, capsys,
                                                                           monkeypatch) -> None:
    pred = _blurred_predictions(store["root"] / "export", tmp_path / "pred")
    runs = tmp_path / "runs"
    shutil.copytree(store["runs"], runs)
    assert _score(capsys, monkeypatch, store, pred, "blur-files", runs)[0] == 0
    code, _, err = bench(capsys, monkeypatch, "report", "--runs-dir", str(runs), "--out",
                         str(tmp_path / "rep"), "--format", "md,csv")
    assert code == 0, err
    tables = tmp_path / "rep" / "tables"
    video = (tables / "video.csv").read_text()
    assert "blur-files,9,outside method (bench score)" in video
    assert "blur-files (bench score) (measured, N=9)" in (tables / "deblurring.md").read_text()
    assert "blur-files" in (tables / "cross_dataset.csv").read_text()
    claims = [r for r in (tables / "claims.csv").read_text().splitlines() if "ours beats blur-files" in r]
    assert len(claims) == sum(1 for k in SAMPLE_METRICS if VOCABULARY[k].better != "one" and
                              _metrics(runs, "blur-files")["aggregate"][k] is not None)
    eq6 = next(r for r in claims if "Eq. 6" in r)
    assert "bench score" in eq6 and ("not held" in eq6 or ",held," in eq6)  # judged: both sides measured


# ------------------------------------------------------------------------------------- bad predictions


def _copy(store: dict, tmp_path: Path) -> Path:
    pred = tmp_path / "pred"
    shutil.copytree(store["root"] / "ours-pred", pred, ignore=shutil.ignore_patterns(".*"))
    return pred


def _refused(capsys, monkeypatch, store, pred: Path, tmp_path: Path, label: str = "outside") -> str:
    """The error lines a user sees for `pred`; nothing stored."""
    runs = tmp_path / "fresh-runs"
    code, out, err = _score(capsys, monkeypatch, store, pred, label, runs)
    assert code == 2, out + err
    assert not runs.exists() or not any(runs.iterdir())
    print(err.strip())
    return err


def _sample(pred: Path) -> Path:
    return sorted(p for p in pred.iterdir() if p.is_dir())[0]


def test_missing_extra_and_twice_given_samples(store, tmp_path, capsys, monkeypatch) -> None:
    pred = _copy(store, tmp_path)
    gone = _sample(pred)
    shutil.rmtree(gone)
    (pred / "not-a-sample").mkdir()
    err = _refused(capsys, monkeypatch, store, pred, tmp_path)
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "nothing stored" in lines[-1]
    assert any(f"{gone}: missing sample" in line for line in lines)
    assert any("not-a-sample: extra sample" in line for line in lines)
    shutil.rmtree(pred / "not-a-sample")
    shutil.copytree(_sample(pred), gone)
    (pred / f"{gone.name}.gif").write_bytes(b"GIF89a")
    assert "given twice" in _refused(capsys, monkeypatch, store, pred, tmp_path)


def test_wrong_frame_count_size_and_unreadable_files(store, tmp_path, capsys, monkeypatch) -> None:
    pred = _copy(store, tmp_path)
    one, two = sorted(p for p in pred.iterdir() if p.is_dir())
    (one / frame_name(9, 9)).unlink()
    frame = read_rgb(two / frame_name(1, 9))
    (two / frame_name(1, 9)).write_bytes(encode_png(np.ascontiguousarray(frame[:-2])))
    (two / frame_name(2, 9)).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    lines = _refused(capsys, monkeypatch, store, pred, tmp_path).strip().splitlines()
    assert len(lines) == 4
    assert any(f"{one}: 8 frames, the set has N=9" in line for line in lines)
    h, w = frame.shape[:2]
    assert any(f"{w}x{h - 2}, the set's frames are {w}x{h}" in line for line in lines)
    assert any(frame_name(2, 9) in line and "unreadable image" in line for line in lines)


def test_grayscale_and_transparent_frames_are_refused(store, tmp_path, capsys, monkeypatch) -> None:
    pred = _copy(store, tmp_path)
    path = _sample(pred) / frame_name(3, 9)
    rgb = read_rgb(path)
    cv2.imwrite(str(path), rgb[:, :, 0])
    err = _refused(capsys, monkeypatch, store, pred, tmp_path)
    assert "a grayscale frame, refused" in err and err.count("\n") == 1
    rgba = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 10
    cv2.imwrite(str(path), rgba)
    err = _refused(capsys, monkeypatch, store, pred, tmp_path)
    assert "RGBA frame with transparent pixels, refused" in err


def test_16_bit_and_opaque_rgba_frames_are_converted_and_said(store, tmp_path, capsys, monkeypatch) -> None:
    pred = _copy(store, tmp_path)
    sample = _sample(pred)
    deep, alpha = sample / frame_name(4, 9), sample / frame_name(5, 9)
    rgb4, rgb5 = read_rgb(deep), read_rgb(alpha)
    cv2.imwrite(str(deep), rgb4[:, :, ::-1].astype(np.uint16) * 257)  # exactly the 8-bit values
    cv2.imwrite(str(alpha), np.dstack([rgb5[:, :, ::-1], np.full(rgb5.shape[:2], 255, np.uint8)]))
    runs = tmp_path / "runs"
    code, out, err = _score(capsys, monkeypatch, store, pred, "converted", runs)
    assert code == 0, err
    assert f"note: converted 16-bit: {deep}" in out and f"note: converted RGBA: {alpha}" in out
    mine, theirs = _metrics(runs, "converted"), _metrics(store["runs"], "ours")
    assert mine["aggregate"]["ppsnr"] == theirs["aggregate"]["ppsnr"]  # lossless conversions: same scores
    assert mine["aggregate"]["conversions"] == 2


def test_videos_are_read_as_frames(store, tmp_path, capsys, monkeypatch) -> None:
    pred = _copy(store, tmp_path)
    one, two = sorted(p for p in pred.iterdir() if p.is_dir())
    # the true frames, which move: GIF writers merge identical neighbouring frames into one
    truth = store["root"] / "export" / one.name / "gt"
    frames = [Image.fromarray(read_rgb(truth / frame_name(n, 9))) for n in range(1, 10)]
    frames[0].save(pred / f"{one.name}.gif", save_all=True, append_images=frames[1:])
    shutil.rmtree(one)
    runs = tmp_path / "runs"
    code, _, err = _score(capsys, monkeypatch, store, pred, "as-gif", runs)
    assert code == 0, err
    scored = _metrics(runs, "as-gif")["samples"][0]
    assert scored["id"] == one.name and scored["ppsnr"] > 30  # the truth through a 256-colour palette


def test_labels_refused_before_any_work(store, tmp_path, capsys, monkeypatch) -> None:
    pred = _copy(store, tmp_path)
    for label, says in (("ours", "taken by the registered method ours"), ("Blurred", "method blurred"),
                        ("no/slash", "not a valid label"), ("-x", "not a valid label")):
        err = _refused(capsys, monkeypatch, store, pred, tmp_path, label)
        assert says in err and err.count("\n") == 1


def test_the_test_split_of_the_set_is_what_is_scored(store) -> None:
    ids = [s["id"] for s in load_manifest(store["data"] / SET)["samples"] if s["split"] == "test"]
    assert sorted(p.name for p in (store["root"] / "ours-pred").iterdir() if not p.name.startswith(".")) == \
        sorted(ids)


def test_save_predictions_takes_one_run(store, tmp_path, capsys, monkeypatch) -> None:
    code, _, err = bench(capsys, monkeypatch, "run", "--method", "blurred", "--profile", "smoke", "--seeds",
                         "0,1", "--save-predictions", str(tmp_path / "p"), "--runs-dir", str(tmp_path / "r"))
    assert code == 2 and "one --frames and one --seeds" in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()
