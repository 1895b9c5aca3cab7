"""A careless user's commands: each one either does the right thing or stops with one exact
`error:` line and exit status 2, before any work, with nothing lost or written out of place.

The sections: data loss, writes outside the output folder, hangs, tracebacks, cryptic or
late errors. Commands run through the real entry point in-process (`faults.invoke`), on the smoke profile and
data made here; the report-folder cases are in tests/test_report.py, the mechanisms' unit tests in
tests/test_config.py and tests/test_store.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import faults
import numpy as np
import pytest
import torch

from bench.data.manifest import load_manifest
from bench.fileio import temporary_prefix
from bench.store import save_weights

SET7 = "synthetic-smoke-7f"
SMOKE = ["--profile", "smoke", "--device", "cpu"]


def error_line(code: int, err: str) -> str:
    """The one `error:` line of a refusal (exit 2, no traceback, nothing else on stderr)."""
    faults.assert_one_line_error(code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photos" / "shot.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    return path


def blurred_run(data: Path, runs: Path, *extra: str) -> tuple[int, str, str]:
    """`bench run --method blurred`: scoring only, no training, so it takes a second."""
    return faults.invoke(["run", "--method", "blurred", "--frames", "7", "--data-dir", str(data),
                          "--runs-dir", str(runs), "--set", "eval.runtime_repeats=1", *SMOKE, *extra])


# --- data loss ---------------------------------------------------------------------------------------------


def test_report_out_dot_never_replaces_the_projects_readme(tmp_path: Path, data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    assert blurred_run(data, runs)[0] == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# my project\n")
    monkeypatch.chdir(project)
    code, _, err = faults.invoke(["report", "--runs-dir", str(runs), "--out", ".", "--format", "md"])
    assert error_line(code, err) == ("error: README.md: a file that bench report did not write (or that was "
                                     "changed since) is in the way; it is kept: move it away or choose "
                                     "another --out")
    assert sorted(p.name for p in project.iterdir()) == ["README.md"]
    assert (project / "README.md").read_text() == "# my project\n"


def test_prepare_through_a_symlinked_set_touches_nothing_behind_the_link(tmp_path: Path, data: Path) -> None:
    theirs = tmp_path / "someone-else"
    shutil.move(str(data / SET7), theirs)
    (theirs / ".lock").unlink()  # copied from the session's set: this folder is someone else's now
    (theirs / ".x.tmp").write_bytes(b"their editor's state")
    (theirs / "sequences" / ".x.tmp").write_bytes(b"theirs too")
    (data / SET7).symlink_to(theirs)
    args = ["prepare", "--profile", "smoke", "--frames", "7", "--data-dir", str(data), "--workers", "1"]
    code, out, err = faults.invoke(args)  # complete and verified: used as it is, read only
    assert code == 0 and "already prepared" in out, err
    code, _, err = faults.invoke([*args, "--fresh"])
    assert error_line(code, err) == (f"error: --fresh: {data / SET7} is a symbolic link; bench prepare "
                                     "writes and deletes only in real folders under --data-dir: remove the "
                                     "link (its target is left alone), or pass the --data-dir that holds the "
                                     "real set")
    assert (theirs / ".x.tmp").read_bytes() == b"their editor's state"
    assert (theirs / "sequences" / ".x.tmp").read_bytes() == b"theirs too"
    load_manifest(theirs, verify=True)
    assert not (theirs / ".lock").exists()  # not even a lock file written through the link


def test_prepare_cleans_only_its_own_temporaries_at_known_places(data: Path) -> None:
    folder = data / SET7
    seq = folder / "sequences" / "train_000"
    mine = seq / f"{temporary_prefix(seq / '000001.png')}killed.tmp"
    mine.write_bytes(b"half a png")
    (folder / "manifest.json").unlink()  # an interrupted build: the rerun builds, cleaning as it goes
    keep = [folder / ".x.tmp", seq / ".notes.tmp", folder / "deep" / "nested" / ".session.tmp"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not the suite's")
    code, _, err = faults.invoke(["prepare", "--profile", "smoke", "--frames", "7", "--data-dir", str(data),
                                  "--workers", "1"])
    assert code == 0, err
    assert not mine.exists() and all(p.read_bytes() == b"not the suite's" for p in keep)


# --- written outside the output folder ----------------------------------------------------------------------


def test_infer_of_a_photo_named_dot_dot_png_writes_inside_out(tmp_path: Path, photo: Path) -> None:
    dots = photo.parent / "...png"
    photo.rename(dots)
    out = tmp_path / "P" / "out"
    code, _, err = faults.invoke(["infer", str(dots), "--method", "blurred", "--frames", "7", "--out",
                                  str(out), "--device", "cpu"])
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "P").iterdir()) == ["out"]
    assert sorted(p.name for p in (out / "photo").iterdir()) == ["deblurred.png", "frames", "strip.png",
                                                                 "video.gif", "video.mp4"]


# --- hangs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", ["inf", "nan", "1e-300", "0"])
def test_infer_fps_outside_its_range_is_refused_before_any_work(tmp_path: Path, photo: Path,
                                                                fps: str) -> None:
    code, _, err = faults.invoke(["infer", str(photo), "--method", "blurred", "--out", str(tmp_path / "out"),
                                  "--fps", fps])
    shown = {"inf": "inf", "nan": "nan", "1e-300": "1e-300", "0": "0.0"}[fps]
    assert error_line(code, err) == f"error: --fps {shown}: --fps takes numbers from 0.1 to 240"
    assert not (tmp_path / "out").exists()


def test_a_killed_mp4_encode_leaves_a_temporary_the_next_run_removes(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "out"
    args = ["infer", str(photo), "--method", "blurred", "--frames", "3", "--out", str(out), "--device", "cpu"]
    assert faults.invoke(args)[0] == 0
    leftover = out / "shot" / f"{temporary_prefix(out / 'shot' / 'video.mp4')}abc123.tmp.mp4"
    leftover.write_bytes(b"half a video")
    assert faults.invoke(args)[0] == 0
    assert not leftover.exists() and (out / "shot" / "video.mp4").stat().st_size > 0


# --- tracebacks, now one line -------------------------------------------------------------------------------


@pytest.mark.parametrize("item, line", [
    ("train.lr_scale=nan", "train.lr_scale=nan: train.lr_scale takes numbers from 1e-12 to 1e+36"),
    ("eval.runtime_warmup=inf", "eval.runtime_warmup='inf': expected a whole number"),
    ("data.height=0", "data.height=0: data.height takes whole numbers from 16 to 4096"),
    ("data.sequence_length=1", "data.sequence_length=1: data.sequence_length takes whole numbers from 3 to "
                               "100000"),
    ("data.motion_px=nan", "data.motion_px=nan: data.motion_px takes numbers from 0 to 1000"),
    ("data.max_layers=-1", "data.max_layers=-1: data.max_layers takes whole numbers from 1 to 64"),
    ("data.width=100000", "data.width=100000: data.width takes whole numbers from 16 to 4096"),
    ("model.dm_width=100000", "model.dm_width=100000: model.dm_width takes whole numbers from 0 to 1024"),
])
def test_run_set_values_that_crashed_are_refused_before_any_work(tmp_path: Path, item: str,
                                                                 line: str) -> None:
    empty = tmp_path / "empty-data"
    code, _, err = faults.invoke(["run", "--data-dir", str(empty), "--runs-dir", str(tmp_path / "runs"),
                                  "--set", item, *SMOKE])
    assert error_line(code, err) == f"error: --set {line}"
    assert not empty.exists() and not (tmp_path / "runs").exists()


def test_widths_that_fit_the_range_but_not_the_memory_are_refused_with_the_numbers(tmp_path: Path,
                                                                                    data: Path) -> None:
    from bench.memory import available_memory, parameter_bytes
    from methods import registry

    need = parameter_bytes(registry.get("ours"), {"dm_width": 1024, "dm_growth": 1024, "dm_rdbs": 64}) * 4
    if need <= available_memory():
        pytest.skip("this machine could hold a DM of width 1024")
    code, _, err = faults.invoke(["run", "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"),
                                  "--frames", "7", "--set", "model.dm_width=1024", "--set",
                                  "model.dm_growth=1024", "--set", "model.dm_rdbs=64", *SMOKE])
    line = error_line(code, err)
    assert line.startswith("error: training ours at these widths (") and "M parameters) needs about " in line
    assert line.endswith("free; lower the model.* widths, e.g. --set model.dm_width=16"), line
    assert not list((tmp_path / "runs").glob("*/metrics.json"))  # refused before training, nothing stored


def test_perf_resolution_out_of_range_or_memory_is_one_line() -> None:
    code, _, err = faults.invoke(["perf", "--resolution", "100000x100000", "--methods", "ours"])
    assert error_line(code, err) == ("error: --resolution 100000x100000: width and height take whole numbers "
                                     "from 16 to 16384, e.g. 1280x704")
    code, _, err = faults.invoke(["perf", "--resolution", "16384x16384", "--methods", "ours", "--device",
                                  "cpu"])
    line = error_line(code, err)
    assert line.startswith("error: --resolution 16384x16384: ours needs about ") and line.endswith(
        "free; pass a smaller --resolution, e.g. 1280x704"), line


def test_windows_longer_than_a_sequence_are_refused_by_run_and_prepare(tmp_path: Path, data: Path) -> None:
    code, _, err = faults.invoke(["run", "--method", "blurred", "--frames", "19", "--data-dir", str(data),
                                  "--runs-dir", str(tmp_path / "runs"), *SMOKE])
    assert error_line(code, err) == (
        "error: --frames 19: the smoke profile's synthetic sequences have 18 frames (data.sequence_length), "
        "fewer than one 19-frame window; choose an odd --frames up to 17, or raise data.sequence_length "
        "(bench run --set data.sequence_length=19)")
    code, _, err = faults.invoke(["prepare", "--profile", "smoke", "--frames", "21", "--data-dir", str(data)])
    assert "fewer than one 21-frame window" in error_line(code, err)
    assert not (data / "synthetic-smoke-21f").exists()


def test_a_read_only_store_still_serves_a_finished_run(tmp_path: Path, data: Path) -> None:
    runs = tmp_path / "runs"
    assert blurred_run(data, runs, "--no-floor")[0] == 0
    cmd = [faults.BENCH, "run", "--method", "blurred", "--frames", "7", "--data-dir", str(data), "--runs-dir",
           str(runs), "--set", "eval.runtime_repeats=1", "--no-floor", *SMOKE]
    if os.geteuid() != 0:
        for folder in [runs, *runs.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o555)
        prefix: list[str] = []
    else:  # root ignores permissions: a read-only bind mount in a private mount namespace instead
        prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
                  'exec "$@"', str(runs)]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip("cannot make a read-only folder here (root without mount namespaces)")
    done = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=300, env=faults.env())
    assert done.returncode == 0 and "reused the finished run" in done.stdout, done.stderr
    fresh = subprocess.run([*prefix, *cmd, "--fresh"], capture_output=True, text=True, timeout=300,
                           env=faults.env())
    assert error_line(fresh.returncode, fresh.stderr).startswith(f"error: {runs}: read-only, and blurred-")
    assert fresh.stderr.strip().endswith("pass a writable --runs-dir to train and store it")


def test_runs_dir_below_a_file_is_one_line(tmp_path: Path, data: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    code, _, err = blurred_run(data, tmp_path / "notes.txt" / "runs")
    line = error_line(code, err)
    assert line.startswith(f"error: {tmp_path / 'notes.txt' / 'runs'}/blurred-") and line.endswith(
        ": cannot lock this folder (not a directory); pass a writable --runs-dir"), line


def test_symlink_loops_are_one_line_and_prepare_repairs_the_set(tmp_path: Path, data: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    code, _, err = faults.invoke(["prepare", "--source", "gopro", "--root", str(loop), "--data-dir",
                                  str(data)])
    assert error_line(code, err) == (f"error: --root {loop}: a symbolic link loop; point --root at a real "
                                     "folder of footage")
    folder = data / SET7
    victim = folder / load_manifest(folder)["samples"][0]["blur"]
    victim.unlink()
    victim.symlink_to(victim.name)  # a link to itself
    code, out, err = faults.invoke(["list", "--datasets", "--json", "--data-dir", str(data)])
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["error"].startswith(f"{folder / 'manifest.json'}: unsafe path ") and "symbolic link loop" in \
        row["error"]
    code, _, err = blurred_run(data, tmp_path / "runs")  # run prepares, which repairs the set in place
    assert code == 0, err
    assert not victim.is_symlink()
    load_manifest(folder, verify=True)


def test_two_concurrent_fresh_prepares_take_turns(tmp_path: Path, data: Path) -> None:
    args = [faults.BENCH, "prepare", "--profile", "smoke", "--frames", "7", "--data-dir", str(data),
            "--workers", "1", "--fresh"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=faults.env()) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    load_manifest(data / SET7, verify=True)


def test_malformed_weights_and_metrics_in_the_store(tmp_path: Path, data: Path, photo: Path) -> None:
    weights = save_weights(tmp_path / "weights.pt", "ours", 7, {"dm_width": "16"},
                           {"dm": {"w": torch.zeros(1)}})
    code, _, err = faults.invoke(["infer", str(photo), "--checkpoint", str(weights), "--out",
                                  str(tmp_path / "out")])
    assert error_line(code, err) == (f"error: {weights}: model.dm_width='16': model.dm_width takes whole "
                                     "numbers from 0 to 1024")
    runs = tmp_path / "runs"
    assert blurred_run(data, runs, "--no-floor")[0] == 0
    metrics = next(runs.glob("blurred-*/metrics.json"))
    good = json.loads(metrics.read_text())
    metrics.write_text(json.dumps(dict(good, aggregate=[1, 2, 3])))
    code, out, err = faults.invoke(["list", "--runs", "--json", "--runs-dir", str(runs)])
    assert code == 0 and json.loads(out)[0]["status"] == "damaged", err
    code, out, err = blurred_run(data, runs, "--no-floor")  # redone, not reused, not a crash
    assert code == 0 and "'aggregate' is list, not dict; recomputing" in out, err
    redone = json.loads(metrics.read_text())["aggregate"]
    assert {k: redone[k] for k in faults.QUALITY} == {k: good["aggregate"][k] for k in faults.QUALITY}


# --- damaged store entries: one verdict, served by no reader, rebuilt by run --------------------------


def verdicts(runs: Path) -> tuple[dict, dict]:
    """What `bench list --runs --json` and the report's loader say of each stored run: (list rows by run,
    report rows by run)."""
    from bench.report.load import load_runs

    code, out, err = faults.invoke(["list", "--runs", "--json", "--runs-dir", str(runs)])
    assert code == 0, err
    report = {r.run_id: r for r in load_runs(runs).itertuples() if not r.eval_set}
    return {r["run"]: r for r in json.loads(out)}, report


def damage_config(folder: Path, what: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    if what == "method":
        config["method"] = "srn"
    elif what == "profile":
        config["profile"] = "quick"
    else:  # both fields that name the profile: the hash sees it
        config["profile"] = config["resolved_profile"]["name"] = "quick"
    (folder / "config.json").write_text(json.dumps(config))


def damage_weights(folder: Path) -> None:
    """One bit flipped in weights.pt, same size: only the digest sees it."""
    data = bytearray((folder / "weights.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "weights.pt").write_bytes(bytes(data))


@pytest.mark.parametrize("damage, problem", [
    ("method", "its fields give run id srn-"), ("profile", "profile 'quick' is not the one it resolved"),
    ("both", "its fields give run id blurred-"), ("weights", "weights.pt: its sha256 differs"),
])
def test_a_damaged_record_is_damaged_for_list_report_and_run(tmp_path: Path, data: Path, damage: str,
                                                             problem: str) -> None:
    runs = tmp_path / "runs"
    code, out, err = blurred_run(data, runs, "--no-floor")
    assert code == 0, err
    (folder,) = runs.glob("blurred-*")
    good = json.loads((folder / "metrics.json").read_text())
    damage_weights(folder) if damage == "weights" else damage_config(folder, damage)
    listed, reported = verdicts(runs)
    assert listed[folder.name]["status"] == "damaged" and problem in listed[folder.name]["problem"]
    assert reported[folder.name].status == "damaged" and problem in reported[folder.name].error
    assert math.isnan(reported[folder.name].eq6)  # no number of it is served, under any method's name
    code, out, err = blurred_run(data, runs, "--no-floor")
    assert code == 0 and f"{folder.name}: " in out and f"{problem}" in out and "; recomputing" in out, err
    listed, reported = verdicts(runs)
    assert listed[folder.name]["status"] == reported[folder.name].status == "finished"
    assert listed[folder.name]["method"] == "blurred"
    redone = json.loads((folder / "metrics.json").read_text())
    assert faults.quality(redone) == faults.quality(good)


def test_a_metrics_json_that_is_a_folder_is_damaged_and_rebuilt(tmp_path: Path, data: Path) -> None:
    runs = tmp_path / "runs"
    assert blurred_run(data, runs, "--no-floor")[0] == 0
    (folder,) = runs.glob("blurred-*")
    (folder / "metrics.json").unlink()
    (folder / "metrics.json").mkdir()
    listed, reported = verdicts(runs)
    assert listed[folder.name]["status"] == reported[folder.name].status == "damaged"
    assert listed[folder.name]["problem"] == f"{folder / 'metrics.json'}: not a file"
    (folder / "metrics.json" / "note.txt").write_text("the user's")
    code, _, err = blurred_run(data, runs, "--no-floor")  # refused before any work: it holds a file
    assert error_line(code, err) == (f"error: {folder / 'metrics.json'}: a folder where bench run writes a "
                                     "file, and not empty; move it away and rerun")
    assert (folder / "metrics.json" / "note.txt").read_text() == "the user's"
    (folder / "metrics.json" / "note.txt").unlink()
    code, out, err = blurred_run(data, runs, "--no-floor")  # empty: rebuilt
    assert code == 0 and "metrics.json: not a file; recomputing" in out, err
    assert verdicts(runs)[0][folder.name]["status"] == "finished"


# --- cryptic or late errors ---------------------------------------------------------------------------------


def test_a_footage_root_without_training_sequences_is_refused_before_training(tmp_path: Path) -> None:
    root = tmp_path / "footage" / "test" / "clip"
    root.mkdir(parents=True)
    for t in range(6):
        cv2.imwrite(str(root / f"{t:04d}.png"), np.full((32, 32, 3), 40 * t, np.uint8))
    data = tmp_path / "data"
    code, _, err = faults.invoke(["run", "--method", "ours", "--frames", "3", "--source", "gopro", "--root",
                                  str(root.parent.parent), "--data-dir", str(data), "--runs-dir",
                                  str(tmp_path / "runs"), *SMOKE])
    assert error_line(code, err) == (f"error: {data / 'gopro-3f'}: no training samples (every sequence is in "
                                     "the test split); give the footage train/ sequences, or score trained "
                                     "weights on it with --eval-data")
    assert not (tmp_path / "runs" / "stages").exists()  # no stage started


def test_an_opencv_message_stays_on_one_line() -> None:
    from bench.errors import BenchError

    with pytest.raises(cv2.error) as raised:
        cv2.resize(np.zeros((0, 0, 3), np.uint8), (4, 4))
    text = f"resize failed ({raised.value}); try another size"
    assert "\n" in text  # OpenCV's own text ends its line
    assert str(BenchError(text)) == " ".join(text.split())


@pytest.mark.parametrize("args, line", [
    (["run", "--frame", "9"], "error: bench run: no such option '--frame'. (Did you mean one of: '--frames', "
                              "'--fresh', '--mem'?) (see bench run --help)"),
    (["infer"], "error: bench infer: missing argument 'PHOTOS...'. (see bench infer --help)"),
    (["run", "--seeds", "-1"], "error: --seeds -1: --seeds takes whole numbers from 0 to 4294967295"),
    (["run", "--set", "train.ckpt_every=0"],
     "error: --set train.ckpt_every=0: train.ckpt_every takes whole numbers from 1 to 1000000000"),
    (["run", "--set", "train.iters_dm=-1"],
     "error: --set train.iters_dm=-1: train.iters_dm takes whole numbers from 0 to 1000000000"),
    (["run", "--set", "eval.runtime_repeats=0"],
     "error: --set eval.runtime_repeats=0: eval.runtime_repeats takes whole numbers from 1 to 100000"),
    (["run", "--set", "data.test_sequences=0"],
     "error: --set data.test_sequences=0: data.test_sequences takes whole numbers from 1 to 100000"),
    (["infer", "x.png", "--frames", "0"],
     "error: --frames 0: a blur needs at least 3 frames; use an odd N >= 3, e.g. 7,9"),
    (["infer", "x.png", "--tile", "40"], "error: --tile 40: --tile takes multiples of 16 from 32 to 8192"),
])
def test_usage_errors_share_one_format_and_exit_2(args: list[str], line: str) -> None:
    code, _, err = faults.invoke(args)
    assert error_line(code, err) == line


def test_a_full_disk_is_named_as_such(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from bench import fileio

    def enospc(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (data / SET7 / "manifest.json").unlink()
    with monkeypatch.context() as patch:
        patch.setattr(fileio.os, "fsync", enospc)
        code, _, err = faults.invoke(["prepare", "--profile", "smoke", "--frames", "7", "--data-dir",
                                      str(data), "--workers", "1"])
    assert "(no space left on device)" in error_line(code, err).lower()


def test_infer_into_an_existing_out_replaces_a_photos_outputs_as_a_whole(tmp_path: Path,
                                                                         photo: Path) -> None:
    out = tmp_path / "out"
    args = ["infer", str(photo), "--method", "blurred", "--out", str(out), "--device", "cpu", "--format",
            "png"]
    assert faults.invoke([*args, "--frames", "21"])[0] == 0
    (out / "shot" / "frames" / "my_note.txt").write_text("the user's")
    assert faults.invoke([*args, "--frames", "3"])[0] == 0
    assert sorted(p.name for p in (out / "shot" / "frames").iterdir()) == ["frame_01.png", "frame_02.png",
                                                                          "frame_03.png", "my_note.txt"]


@pytest.mark.parametrize("args, message", [
    (["run", "--dry-run", "2", "--frames", "7,9"],
     "error: --dry-run projects one N and one seed; give one --frames (not 7,9) and one --seeds"),
    (["perf", "--loader", "--train"],
     "error: --loader and --train are two measurements: run them as two commands"),
])
def test_measurements_that_would_be_silently_narrowed_are_refused_in_one_line(tmp_path, args, message):
    code, _out, err = faults.invoke([*args, "--data-dir", str(tmp_path / "data")])
    assert error_line(code, err) == message
    assert not (tmp_path / "data").exists()  # nothing prepared or timed


# --- bounds, special files, late errors -----------------------------------------------------------

HUGE = "99999999999999999999"  # past any int64: OverflowError tracebacks before the bounds
CORES = os.cpu_count() or 1


@pytest.mark.parametrize("args, line", [
    (["run", "--dry-run", HUGE], f"--dry-run {HUGE}: --dry-run takes whole numbers from 1 to 1000000"),
    (["perf", "--loader", "--workers", HUGE],
     f"--workers {HUGE}: --workers takes whole numbers from 0 to {CORES * 8}"),
    (["perf", "--loader", "--workers", "1,100000"],
     f"--workers 100000: --workers takes whole numbers from 0 to {CORES * 8}"),
    (["perf", "--loader", "--batches", "1e20"],
     "bench perf: invalid value for '--batches': '1e20' is not a valid integer. (see bench perf --help)"),
    (["perf", "--loader", "--batches", HUGE], f"--batches {HUGE}: --batches takes whole numbers from 1 to "
                                              "1000000"),
    (["perf", "--train", "--steps", "1e20"],
     "bench perf: invalid value for '--steps': '1e20' is not a valid integer. (see bench perf --help)"),
    (["perf", "--train", "--steps", HUGE], f"--steps {HUGE}: --steps takes whole numbers from 1 to 1000000"),
    (["perf", "--matmul-size", HUGE], f"--matmul-size {HUGE}: --matmul-size takes whole numbers from 64 to "
                                      "16384"),
    (["run", "--set", "train.threads=4096"], f"--set train.threads=4096: train.threads takes whole numbers "
                                             f"from 0 to {CORES * 4} on this machine ({CORES} cores)"),
    (["perf", "--train", "--set", "train.workers=100000"],
     "--set train.workers=100000: train.workers takes whole numbers from 0 to 256"),
    (["run", "--nproc", "100000"], f"--nproc 100000: --nproc takes whole numbers from 1 to {CORES * 8}"),
    (["prepare", "--workers", HUGE],
     f"--workers {HUGE}: --workers takes whole numbers from 1 to {CORES * 8}"),
    (["run", "--frames", HUGE], f"--frames {HUGE}: at most 99999 frames (data.sequence_length takes up to "
                                "100000); use an odd N >= 3, e.g. 7,9"),
    (["run", "--eval-data", ""],
     "--eval-data '': give the folder name of a prepared set (bench list --datasets), or leave "
     "--eval-data out to score on the run's own test split"),
])
def test_numbers_past_their_bounds_are_one_line_before_any_work(tmp_path: Path, args: list[str],
                                                                line: str) -> None:
    code, _, err = faults.invoke([*args, "--data-dir", str(tmp_path / "data")])
    assert error_line(code, err) == f"error: {line}"
    assert not (tmp_path / "data").exists()  # nothing prepared, no worker started


def test_threads_past_the_machines_cap_are_refused_by_every_verb_that_trains(tmp_path: Path) -> None:
    for verb in (["run"], ["run", "--dry-run", "2"], ["perf", "--train"]):
        code, _, err = faults.invoke([*verb, "--set", f"train.threads={CORES * 4 + 1}", "--data-dir",
                                      str(tmp_path / "data"), *SMOKE[:2]])
        assert error_line(code, err).startswith(f"error: --set train.threads={CORES * 4 + 1}: "), verb
    assert not (tmp_path / "data").exists()


def test_a_training_batch_that_cannot_fit_is_refused_before_allocating(tmp_path: Path, data: Path) -> None:
    from bench.memory import available_memory

    if available_memory() > 2**40:
        pytest.skip("a terabyte free: 100000 smoke crops might fit")
    runs = tmp_path / "runs"
    code, _, err = faults.invoke(["run", "--method", "ours", "--frames", "7", "--data-dir", str(data),
                                  "--runs-dir", str(runs), "--set", "train.batch_video=100000", *SMOKE])
    line = error_line(code, err)
    assert line.startswith("error: --set train.batch_video=100000: training ours stage autoencoder on 100000 "
                           "crops of 32x32 needs about "), line
    assert line.endswith(" GiB free; lower train.batch_video or train.crop"), line
    assert not (runs / "stages").exists()  # no stage started
    code, _, err = faults.invoke(["run", "--method", "ours", "--frames", "7", "--data-dir", str(data),
                                  "--runs-dir", str(runs), "--dry-run", "2", "--set",
                                  "train.batch_deblur=100000", *SMOKE])
    assert error_line(code, err).startswith("error: --set train.batch_deblur=100000: training ours stage dm ")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("source", ["gopro", "video"])
def test_a_special_file_as_root_is_one_line(tmp_path: Path, kind: str, source: str) -> None:
    root = tmp_path / "root"
    if kind == "fifo":
        os.mkfifo(root)
    else:
        root.symlink_to("/dev/zero")
    code, _, err = faults.invoke(["prepare", "--source", source, "--root", str(root), "--data-dir",
                                  str(tmp_path / "data"), *SMOKE[:2]])
    line = error_line(code, err)
    assert line.startswith("error: ") and line.endswith(": a special file (FIFO, device or socket, or a link "
                                                        "to one), not footage; remove it from --root or "
                                                        "point --root elsewhere"), line
    assert ("/dev/zero" if kind == "dev-zero" else str(root)) in line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("source, name", [("gopro", "0006.png"), ("video", "b.mp4")])
def test_a_special_file_inside_a_root_is_refused_naming_it(tmp_path: Path, source: str, name: str) -> None:
    seq = tmp_path / "footage" / "train" / "clip"
    seq.mkdir(parents=True)
    for t in range(6):
        cv2.imwrite(str(seq / f"{t:04d}.png"), np.full((32, 32, 3), 40 * t, np.uint8))
    folder = seq if source == "gopro" else seq.parent
    special = folder / name
    os.mkfifo(special)  # reading it would block for ever; skipping it would drop footage without a word
    code, _, err = faults.invoke(["prepare", "--source", source, "--root", str(tmp_path / "footage"),
                                  "--frames", "3", "--data-dir", str(tmp_path / "data"), *SMOKE[:2]])
    assert error_line(code, err) == (f"error: {special}: a special file (FIFO, device or socket, or a link "
                                     "to one), not footage; remove it from --root or point --root elsewhere")


def test_footage_too_small_for_the_networks_is_refused_when_prepared(tmp_path: Path) -> None:
    seq = tmp_path / "footage" / "train" / "clip"
    seq.mkdir(parents=True)
    for t in range(6):
        cv2.imwrite(str(seq / f"{t:04d}.png"), np.full((12, 40, 3), 40 * t, np.uint8))
    code, _, err = faults.invoke(["prepare", "--source", "gopro", "--root", str(tmp_path / "footage"),
                                  "--frames", "3", "--data-dir", str(tmp_path / "data"), "--workers", "1",
                                  *SMOKE[:2]])
    assert error_line(code, err) == (f"error: --root {tmp_path / 'footage'}: sequence clip has frames of "
                                     "40x12, but the networks need at least 16 pixels a side; use larger "
                                     "footage")
    assert not list((tmp_path / "data").glob("*/manifest.json"))


def test_perf_json_to_an_unwritable_path_is_refused_before_measuring(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import perf

    def measured(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("measured before the output path was checked")

    monkeypatch.setattr(perf, "matmul_rate", measured)
    (tmp_path / "notes.txt").write_text("a file")
    target = tmp_path / "notes.txt" / "perf.json"
    code, _, err = faults.invoke(["perf", "--methods", "blurred", "--device", "cpu", "--json", str(target)])
    assert error_line(code, err) == (f"error: --json {target}: {tmp_path / 'notes.txt'} is not a folder; "
                                     "choose another file path")
    fifo = tmp_path / "perf.fifo"
    os.mkfifo(fifo)
    code, _, err = faults.invoke(["perf", "--methods", "blurred", "--json", str(fifo)])
    assert error_line(code, err) == (f"error: --json {fifo}: not a regular file; choose another file path "
                                     "for --json")
    code, _, err = faults.invoke(["perf", "--methods", "blurred", "--store", "--runs-dir", str(target)])
    assert error_line(code, err).startswith(f"error: --runs-dir {target}: ")


def test_infer_and_report_out_are_checked_before_the_work(tmp_path: Path, photo: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    for verb in (["infer", str(photo), "--method", "blurred"], ["report", "--runs-dir", str(tmp_path)]):
        code, _, err = faults.invoke([*verb, "--out", str(notes / "out")])
        assert error_line(code, err) == (f"error: --out {notes / 'out'}: {notes} is not a folder; choose "
                                         "another folder path"), verb
    code, _, err = faults.invoke(["report", "--runs-dir", str(tmp_path), "--out", str(notes)])
    assert error_line(code, err) == (f"error: --out {notes}: not a folder; choose another folder path for "
                                     "--out")
    assert notes.read_text() == "a file"


def test_a_full_disk_during_an_mp4_write_is_named_as_a_full_disk(tmp_path: Path) -> None:
    big = tmp_path / "big.png"  # noise: its 7-frame video is megabytes, far past the 256 KiB disk below
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8))
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"', str(disk)]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here (no mount namespaces)")
    out = disk / "out"
    done = subprocess.run([*prefix, faults.BENCH, "infer", str(big), "--method", "blurred", "--frames", "7",
                           "--out", str(out), "--device", "cpu", "--format", "mp4"],
                          capture_output=True, text=True, timeout=300, env=faults.env())
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {out / 'big' / 'video.mp4'}: cannot write (no space left on device: 0 KiB free); free some "
        "space or choose another --out, then rerun", f"error: 1 of 1 input(s) failed: {big}"], done.stderr
