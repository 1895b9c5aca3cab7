"""The results store (bench/store.py) and the file I/O it writes through (bench/fileio.py, more in
tests/test_fileio.py): atomic writes, run lookups, locks, portable weights."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from records import metrics, write_eval, write_run

from bench.errors import BenchError
from bench.fileio import FolderLock, atomic_write_json, stable_hash
from bench.store import (
    RunRecord,
    checked_name,
    iter_runs,
    latest_run,
    load_weights,
    read_sample_images,
    run_id,
    runs_dir,
    sample_image_name,
    save_weights,
    verify_weights,
)


def test_atomic_json_is_canonical_and_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    atomic_write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "a.json", {"x": float("nan")})  # NaN is never stored as a result
    assert (tmp_path / "a.json").read_text().startswith("{")


def test_run_id_hashes_the_resolved_config_independent_of_key_order():
    a = run_id("ours", {"frames": 9, "seed": 0})
    assert a == run_id("ours", {"seed": 0, "frames": 9}) and a.startswith("ours-")
    assert a != run_id("ours", {"frames": 9, "seed": 1})
    assert stable_hash({"x": 1}) != stable_hash({"x": 2})


def test_runs_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_RUNS", str(tmp_path / "env"))
    assert runs_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert runs_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BENCH_RUNS")
    assert str(runs_dir(None)) == "runs"


def label(record: RunRecord) -> str:
    """The `records.write_run` label of a record (its folder's name for a hand-made folder)."""
    config = record.config
    return config.resolved_profile.get("label", record.path.name) if config else record.path.name


def test_iter_and_latest_run_pick_the_newest_intact_finished_run(tmp_path):
    now = time.time()
    old = write_run(tmp_path, "ours-a", "ours", 9)
    new7 = write_run(tmp_path, "ours-b", "ours", 7)
    write_run(tmp_path, "ours-c", "ours", 9, status="failed")
    write_run(tmp_path, "ours-d", "ours", 9, status="incomplete")
    scored = write_run(tmp_path, "ours-e", "ours", 9, weights=None)  # scored from a --weights file
    broken = write_run(tmp_path, "ours-f", "ours", 9)
    (broken / "weights.pt").write_bytes(b"trunc")  # shorter than recorded: damaged, never picked
    for folder, age in ((old, 100), (new7, 10), (scored, 5), (broken, 1)):
        os.utime(folder / "metrics.json", (now - age, now - age))
    (tmp_path / "stages" / "x").mkdir(parents=True)
    (tmp_path / "no-config").mkdir()
    runs = {label(r): r for r in iter_runs(tmp_path)}
    assert sorted(runs) == ["ours-a", "ours-b", "ours-c", "ours-d", "ours-e", "ours-f"]
    assert [runs[k].status for k in sorted(runs)] == ["finished", "finished", "failed", "incomplete",
                                                      "finished", "damaged"]
    assert runs["ours-d"].metrics is None and runs["ours-c"].metrics.error == "boom: out of memory"
    assert "weights.pt: 5 bytes, not the 7 the run wrote" in runs["ours-f"].problem
    assert latest_run(tmp_path, "ours") == scored
    assert latest_run(tmp_path, "ours", with_weights=True) == new7
    assert latest_run(tmp_path, "ours", frames=9, with_weights=True) == old
    assert latest_run(tmp_path, "srn") is None
    assert iter_runs(tmp_path / "missing") == []


@pytest.mark.parametrize("damage", ["garbage", "list", "aggregate-list", "nan", "no-key", "sample-id"])
def test_a_malformed_metrics_json_is_one_line_problem_not_a_traceback(tmp_path, damage):
    folder = write_run(tmp_path, "ours-a", "ours", 9, values={"eq6": 1.0})
    data = json.loads((folder / "metrics.json").read_text())
    if damage == "garbage":
        text = "{not json"
    elif damage == "list":
        text = "[1, 2]"
    else:
        if damage == "aggregate-list":
            data["aggregate"] = [1, 2]
        elif damage == "nan":
            data["aggregate"]["eq6"] = "NaN"
        elif damage == "no-key":
            del data["samples"][1]["motion_ratio"]
        else:
            data["samples"][0]["id"] = 3
        text = json.dumps(data)
    (folder / "metrics.json").write_text(text)
    (record,) = iter_runs(tmp_path)
    assert record.status == "damaged" and "\n" not in record.problem
    assert str(folder / "metrics.json") in record.problem
    assert record.config.method == "ours"  # what was read before the problem stays, for display
    assert latest_run(tmp_path, "ours") is None


def test_pre_digest_entries_are_legacy_and_unfinished_curves_or_env_damaged(tmp_path):
    old = tmp_path / "ours-old"
    atomic_write_json(old / "config.json", {"method": "ours", "frames": 9, "dataset": "synthetic-smoke-9f"})
    atomic_write_json(old / "metrics.json", {"status": "finished", "aggregate": {}})
    bad_env = write_run(tmp_path, "ours-env", "ours")
    (bad_env / "env.json").write_text('{"git_commit": 3}')
    bad_curves = write_run(tmp_path, "ours-curves", "ours")
    (bad_curves / "curves.json").write_text('{"dm": [[1, "x"]]}')
    moved = write_run(tmp_path, "ours-moved", "ours")
    (moved / "config.json").rename(moved / "c")
    atomic_write_json(moved / "config.json", dict(json.loads((moved / "c").read_text()), run_id="ours-other"))
    records = {label(r): r for r in iter_runs(tmp_path)}
    assert records["ours-old"].status == "legacy" and "before data digests" in records["ours-old"].problem
    assert records["ours-env"].status == "damaged" and "'git_commit' is int" in records["ours-env"].problem
    assert records["ours-curves"].status == "damaged" and "curves.json" in records["ours-curves"].problem
    assert "not the folder's name" in records["ours-moved"].problem


def test_verify_weights_catches_a_same_size_change(tmp_path):
    folder = write_run(tmp_path, "ours-a", "ours", weights=b"0123456789")
    (record,) = iter_runs(tmp_path)
    assert verify_weights(folder, record.metrics) is None
    (folder / "weights.pt").write_bytes(b"0123456780")
    assert "sha256 differs" in verify_weights(folder, record.metrics)  # the size check alone cannot see it
    (record,) = iter_runs(tmp_path)
    assert record.status == "damaged" and "sha256 differs" in record.problem  # every reader hashes it


def test_evaluations_are_named_by_set_and_digest(tmp_path):
    run = write_run(tmp_path, "ours-a", "ours")
    good = write_eval(run, "gopro-9f", "a" * 64, {"eq6": 3.0})
    assert good.name == "gopro-9f-" + "a" * 12
    moved = run / "evals" / "gopro-9f"  # a result under a name that does not say its data
    moved.mkdir()
    for name in ("metrics.json", "env.json"):
        (moved / name).write_bytes((good / name).read_bytes())
    (record,) = iter_runs(tmp_path)
    by_name = {e.path.name: e for e in record.evals}
    assert by_name[good.name].status == "finished" and by_name[good.name].metrics.aggregate["eq6"] == 3.0
    assert by_name["gopro-9f"].status == "damaged" and "does not say" in by_name["gopro-9f"].problem


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", " a", "a\x00"])
def test_checked_name_refuses_what_could_leave_a_folder(name):
    with pytest.raises(BenchError, match="not usable as a folder or file name") as err:
        checked_name(name, "--eval-data x/..: folder name", "pass the folder itself")
    assert "\n" not in str(err.value) and "pass the folder itself" in str(err.value)


def test_checked_name_and_sample_names_accept_ordinary_names(tmp_path):
    assert checked_name("gopro-9f", "set") == "gopro-9f"
    assert checked_name("..x", "set") == "..x"  # dots inside a name are harmless
    names = [sample_image_name("a/b", "blur"), sample_image_name("a/b", "deblurred"),
             sample_image_name("a/b", "frame", 2), sample_image_name("a/b", "truth", 1)]
    assert names == ["a_b_blur.png", "a_b_deblurred.png", "a_b_frame2.png", "a_b_truth1.png"]
    for name in [*names, "a_b_frame1.png", "notes.png", "a_b_frame0.png"]:
        (tmp_path / name).write_bytes(b"")
    found = read_sample_images(tmp_path)
    assert set(found) == {"a_b"}
    assert [p.name for p in found["a_b"]["frame"]] == ["a_b_frame1.png", "a_b_frame2.png"]
    assert found["a_b"]["blur"].name == "a_b_blur.png" and len(found["a_b"]["truth"]) == 1
    with pytest.raises(ValueError):
        sample_image_name("a", "frame")


def test_folder_lock_excludes_a_second_holder(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(BenchError, match="in use by another bench process"):
            with FolderLock(tmp_path, wait=False):
                pass
    with FolderLock(tmp_path, wait=False):  # released on exit
        pass


def test_weights_round_trip_and_refusals(tmp_path):
    net = torch.nn.Conv2d(3, 4, 3)
    path = save_weights(tmp_path / "weights.pt", "ours", 9, {"dm_width": 8}, {"dm": net.state_dict()})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "bmb-weights/1"
    assert set(raw) == {"format", "method", "frames", "model", "state_dicts"}
    back = load_weights(path)
    assert back["method"] == "ours" and back["frames"] == 9 and back["model"] == {"dm_width": 8}
    assert torch.equal(back["state_dicts"]["dm"]["weight"], net.weight.detach())
    with pytest.raises(BenchError, match="no such weights file"):
        load_weights(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(BenchError, match="not a bmb-weights/1 file"):
        load_weights(tmp_path / "other.pt")
    torch.save({"format": "bmb-weights/1", "evil": torch.nn.Conv2d(1, 1, 1)}, tmp_path / "code.pt")
    with pytest.raises(BenchError, match="not a loadable weights file"):
        load_weights(tmp_path / "code.pt")  # a pickled module needs code execution: refused
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(BenchError, match="not a loadable weights file"):
        load_weights(tmp_path / "trunc.pt")


# --- nothing lost, nothing misplaced ------------------------------------------------------------------------

def test_clean_temporaries_removes_only_the_suites_own_in_that_folder(tmp_path):
    from bench.fileio import clean_temporaries, temporary_prefix

    ours = tmp_path / f"{temporary_prefix(tmp_path / 'metrics.json')}ab12cd_x.tmp"
    video = tmp_path / f"{temporary_prefix(tmp_path / 'video.mp4')}zz9.tmp.mp4"
    others = [tmp_path / ".session.tmp", tmp_path / ".x.tmp", tmp_path / ".metrics.json.ab12cd_x.tmp",
              tmp_path / "sub" / f"{temporary_prefix(tmp_path / 'a')}nested.tmp"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = elsewhere / f"{temporary_prefix(elsewhere / 'b')}theirs.tmp"
    (tmp_path / "link").symlink_to(elsewhere)
    for path in [ours, video, *others, theirs]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert clean_temporaries(tmp_path) == 2 and not ours.exists() and not video.exists()
    assert all(p.exists() for p in others)  # another program's names, and no recursive search
    assert clean_temporaries(tmp_path / "link") == 0 and theirs.exists()  # never through a symlink


def test_folder_lock_below_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(BenchError) as err:
        with FolderLock(tmp_path / "file" / "runs" / "ours-1", hint="pass a writable --runs-dir"):
            pass
    assert str(err.value) == (f"{tmp_path / 'file' / 'runs' / 'ours-1'}: cannot lock this folder (not a "
                              "directory); pass a writable --runs-dir")


def _out(tmp_path):
    from bench.outputs import OutputFolder

    return OutputFolder(tmp_path / "out", "report")


def test_output_folder_replaces_and_deletes_only_what_it_wrote(tmp_path):
    out = tmp_path / "out"
    user = {out / "README.md": b"my project", out / "tables" / "mine.csv": b"1,2",
            out / "tables" / "claims.md": b"my own claims"}
    for path, data in user.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    with _out(tmp_path) as folder:
        folder.write(out / "tables" / "video.md", b"v1")
        folder.write(out / "figures" / "old.png", b"png")
        with pytest.raises(BenchError) as err:
            folder.write(out / "README.md", b"report")
        assert str(err.value) == (f"{out / 'README.md'}: a file that bench report did not write (or that "
                                  "was changed since) is in the way; it is kept: move it away or choose "
                                  "another --out")
        with pytest.raises(BenchError, match="claims.md: a file that bench report did not write"):
            folder.write(out / "tables" / "claims.md", b"my own claims")  # even the very same bytes
    with _out(tmp_path) as folder:
        folder.write(out / "tables" / "video.md", b"v2")  # its own: replaced
        removed = folder.remove_stale(lambda rel: True)
    assert removed == [out / "figures" / "old.png"] and not (out / "figures").exists()
    assert {p: p.read_bytes() for p in user} == user and (out / "tables" / "video.md").read_bytes() == b"v2"


def test_output_folder_keeps_a_file_the_user_changed_and_refuses_links_and_escapes(tmp_path):
    out = tmp_path / "out"
    with _out(tmp_path) as folder:
        folder.write(out / "a.md", b"ours")
    (out / "a.md").write_bytes(b"edited by the user")
    with _out(tmp_path) as folder:
        assert not folder.owns(out / "a.md")
        assert folder.remove_stale(lambda rel: True) == []
    assert (out / "a.md").read_bytes() == b"edited by the user"
    (tmp_path / "elsewhere").mkdir()
    (out / "figures").symlink_to(tmp_path / "elsewhere")
    with _out(tmp_path) as folder:
        with pytest.raises(BenchError, match="a symbolic link inside .* writes no file through a link"):
            folder.write(out / "figures" / "x.png", b"png")
        with pytest.raises(BenchError, match="outside the output folder"):
            folder.write(out / ".." / "escaped.md", b"x")
    assert list((tmp_path / "elsewhere").iterdir()) == [] and not (tmp_path / "escaped.md").exists()


def test_a_claim_made_before_a_kill_keeps_both_versions_provably_ours(tmp_path):
    out = tmp_path / "out"
    with _out(tmp_path) as folder:
        folder.write(out / "t.md", b"old")
    with _out(tmp_path) as folder:
        folder.claim({out / "t.md": b"new"})  # the process dies here, before the bytes are written
    with _out(tmp_path) as folder:
        assert folder.owns(out / "t.md")  # still the old bytes, still provably its own
        folder.write(out / "t.md", b"new")
    assert (out / "t.md").read_bytes() == b"new"


def test_malformed_weights_and_metrics_are_one_line(tmp_path):
    from bench.store import RecordError, read_metrics

    net = torch.nn.Conv2d(3, 4, 3)
    path = save_weights(tmp_path / "weights.pt", "ours", 9, {"dm_width": "16"}, {"dm": net.state_dict()})
    with pytest.raises(BenchError) as err:
        load_weights(path)
    assert str(err.value) == f"{path}: model.dm_width='16': model.dm_width takes whole numbers from 0 to 1024"
    save_weights(path, "ours", 8, {}, {"dm": net.state_dict()})
    with pytest.raises(BenchError, match="malformed weights file .frames 8 is not an odd N >= 3"):
        load_weights(path)
    atomic_write_json(tmp_path / "m.json", {"status": "failed", "run_id": "x", "error": ["not", "text"]})
    with pytest.raises(RecordError, match="'error' is list, not str"):
        read_metrics(tmp_path / "m.json")
    atomic_write_json(tmp_path / "m.json", ["not", "an", "object"])
    with pytest.raises(RecordError, match="holds a list, not a JSON object"):
        read_metrics(tmp_path / "m.json")


def test_a_stage_validation_curve_is_checked_on_read(tmp_path):
    from bench.store import RecordError, read_metrics

    good = {"dm": {"key": "dm-x", "validation": {"metric": "deblur_psnr", "reference": 25.0,
                                                 "points": [[0, 20.0], [50, None]]}},
            "bie": {"key": "bie-y", "validation": None}}  # a stage trained before curves existed
    record = metrics("ours-x", "ours", 9, 0, {}, training=good).to_json()
    atomic_write_json(tmp_path / "m.json", record)
    assert read_metrics(tmp_path / "m.json").training == good
    record["training"]["dm"]["validation"]["points"] = [[0, "high"]]
    atomic_write_json(tmp_path / "m.json", record)
    with pytest.raises(RecordError, match=r"training\['dm'\]\['validation'\] points are not "
                                          r"\[iteration, score\] pairs"):
        read_metrics(tmp_path / "m.json")
    record["training"]["dm"]["validation"] = {"points": [[0, 20.0]]}  # no metric named
    atomic_write_json(tmp_path / "m.json", record)
    with pytest.raises(RecordError, match=r"training\['dm'\]\['validation'\] is not a metric with points"):
        read_metrics(tmp_path / "m.json")


def test_curves_json_takes_the_same_curve_check_without_null_scores(tmp_path):
    from bench.store import CURVES, RecordError, read_curves

    atomic_write_json(tmp_path / CURVES, {"dm": [[0, 1.5], [10, 0.5]]})
    assert read_curves(tmp_path) == {"dm": [(0.0, 1.5), (10.0, 0.5)]}
    for bad in ([[0, None]], [[0, 1.0, 2.0]], [[True, 1.0]], "points"):
        atomic_write_json(tmp_path / CURVES, {"dm": bad})
        with pytest.raises(RecordError, match=r"stage 'dm' points are not \[iteration, score\] pairs"):
            read_curves(tmp_path)
