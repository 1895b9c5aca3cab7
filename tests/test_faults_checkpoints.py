"""Checkpoints: a truncated, corrupted or bit-flipped stage checkpoint, or another stage's,
is retrained with one line saying why; a finished stage.json that a result would reject is rebuilt from the
checkpoint; a checkpoint carrying a pickled code payload is refused by `weights_only=True` and the payload
never runs, for the stage checkpoints, `bench run --weights FILE` and `bench infer --checkpoint FILE`.

The payload (`faults.Payload`) creates a marker file when unpickled; each test first proves the payload is
live (a plain `torch.load(weights_only=False)` of a copy does create its marker), then that the suite refused
the file and the marker never appeared. All commands run in-process through the real entry point, so a
payload that ran would run inside this very test process.

One single-stage method (`ours-static`: the DM alone) keeps this module to a few seconds.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import faults
import pytest
import torch

SETS = ["--set", "train.iters_dm=3", "--set", "train.ckpt_every=1", "--set", "eval.runtime_repeats=1",
        "--set", "eval.runtime_warmup=0"]


def run_args(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["run", "--method", "ours-static", "--profile", "smoke", "--frames", "7", "--device", "cpu",
            "--no-floor", "--data-dir", str(data), "--runs-dir", str(runs), *SETS, *extra]


@pytest.fixture(scope="module")
def trained(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One finished ours-static run; tests copy its store before damaging it."""
    runs = tmp_path_factory.mktemp("ckpt-store") / "runs"
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    (folder,) = [p for p in runs.iterdir() if p.name.startswith("ours-static-")]
    (stage,) = [p for p in (runs / "stages").iterdir() if p.is_dir()]
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"runs": runs, "folder": folder, "stage": stage, "metrics": metrics}


def copy_store(trained: dict, tmp_path: Path, interrupted: bool) -> tuple[Path, Path, Path]:
    """A private copy of the store; `interrupted` makes it look like a run killed mid-stage (no result yet,
    the stage marked running), so the next command resumes from the checkpoint instead of reusing it."""
    runs = tmp_path / "runs"
    shutil.copytree(trained["runs"], runs)
    folder, stage = runs / trained["folder"].name, runs / "stages" / trained["stage"].name
    if interrupted:
        (folder / "metrics.json").unlink()
        info = json.loads((stage / "stage.json").read_text())
        info["status"] = "running"
        (stage / "stage.json").write_text(json.dumps(info))
    return runs, folder, stage


def prove_payload_is_live(ckpt: Path, tmp_path: Path) -> None:
    """The unsafe loader would run the payload: without this, 'the marker never appeared' proves nothing."""
    probe_marker = tmp_path / "probe-marker"
    probe = faults.write_payload_checkpoint(tmp_path / "probe.pt", probe_marker)
    torch.load(probe, weights_only=False)
    assert probe_marker.exists()
    # The planted file carries the same payload class with another marker path.
    assert b"exec" in ckpt.read_bytes()


DAMAGES = {
    "truncated": lambda data: data[: len(data) // 3],
    "corrupted": lambda data: data[:64] + bytes(b ^ 0xA5 for b in data[64:4096]) + data[4096:],
    "empty": lambda data: b"",
    "flipped": lambda data: flip_tensor_bit(data),
}


def flip_tensor_bit(data: bytes) -> bytes:
    """One bit inside the largest tensor of a `torch.save` file: it still loads, one weight changed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def assert_retrained(trained: dict, runs: Path, folder: Path, out: str, why: str) -> None:
    """The stage was retrained after one line saying why, and the run ended with the undamaged result."""
    lines = [line for line in out.splitlines() if "retraining it from the start" in line]
    assert len(lines) == 1 and why in lines[0], out
    again = json.loads((folder / "metrics.json").read_text())
    assert again["status"] == "finished"
    assert faults.quality(again) == faults.quality(trained["metrics"])  # retrained to the same weights
    faults.verify_tree(runs)


@pytest.mark.parametrize("interrupted", [True, False], ids=["resuming", "reusing"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_stage_checkpoint_is_retrained_with_one_line(trained: dict, smoke_data: Path, tmp_path: Path,
                                                             damage: str, interrupted: bool) -> None:
    runs, folder, stage = copy_store(trained, tmp_path, interrupted)
    if not interrupted:
        (folder / "metrics.json").unlink()  # the stage is finished and reused; only the result is missing
    ckpt = stage / "ckpt.pt"
    ckpt.write_bytes(DAMAGES[damage](ckpt.read_bytes()))
    if damage == "flipped":  # torch.load alone would hand back the changed weight
        torch.load(ckpt, weights_only=True)
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    assert_retrained(trained, runs, folder, out, str(ckpt))


def test_another_stages_checkpoint_in_a_stage_folder_is_retrained(trained: dict, smoke_data: Path,
                                                                  tmp_path: Path) -> None:
    """An intact checkpoint of another stage (other components, a digest of its own) is no checkpoint of
    this stage: loading it would leave the DM at random initialisation and store the run as finished."""
    from bench.train import checkpoint_digest

    runs, folder, stage = copy_store(trained, tmp_path, interrupted=False)
    (folder / "metrics.json").unlink()
    real = torch.load(stage / "ckpt.pt", weights_only=True)
    other = dict(real, state_dicts={"rve": real["state_dicts"]["dm"]})
    torch.save(dict(other, digest=checkpoint_digest(other)), stage / "ckpt.pt")
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    assert_retrained(trained, runs, folder, out, "holds the components ['rve'], not the stage's ['dm']")


def test_loading_a_stage_checkpoint_needs_exactly_its_components() -> None:
    from torch import nn

    from bench.errors import BenchError
    from bench.train import load_components

    nets = nn.ModuleDict({"dm": nn.Linear(1, 1), "rve": nn.Linear(1, 1)})
    states = {"rve": nn.Linear(1, 1).state_dict()}
    with pytest.raises(BenchError, match=r"holds the components \['rve'\], not \['dm'\]; fix it"):
        load_components(nets, states, ["dm"], source="ckpt.pt", fix="fix it")
    with pytest.raises(BenchError, match="not \\['rve'\\]"):
        load_components(nets, dict(states, dm=states["rve"]), ["rve"], source="ckpt.pt", fix="fix it")
    load_components(nets, states, ["rve"], source="ckpt.pt", fix="fix it")  # exactly them: loads


@pytest.mark.parametrize("damage", ["validation", "curve", "time_s", "identity"])
def test_a_finished_stage_json_that_a_result_would_reject_is_rebuilt(trained: dict, smoke_data: Path,
                                                                     tmp_path: Path, damage: str) -> None:
    """A bad field of stage.json once went into every metrics.json, which the next run rejected, forever:
    now the stage is rebuilt from its checkpoint (no iteration retrained) and the result is served after."""
    runs, folder, stage = copy_store(trained, tmp_path, interrupted=False)
    (folder / "metrics.json").unlink()
    info = json.loads((stage / "stage.json").read_text())
    info[damage] = {"validation": {"metric": 3, "points": "x"}, "curve": [[1, "x"]], "time_s": "slow",
                    "identity": {"stage": "other"}}[damage]
    (stage / "stage.json").write_text(json.dumps(info))
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    lines = [line for line in out.splitlines() if "rebuilding it from its checkpoint" in line]
    assert len(lines) == 1 and str(stage / "stage.json") in lines[0], out
    assert "resuming stage dm at iteration 3/3" in out  # from the kept checkpoint: nothing retrained
    again = json.loads((folder / "metrics.json").read_text())
    assert again["status"] == "finished" and faults.quality(again) == faults.quality(trained["metrics"])
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0 and "reused the finished run" in out, (out, err)  # what it stored reads back


@pytest.mark.parametrize("interrupted", [True, False], ids=["resuming", "reusing"])
def test_stage_checkpoint_with_code_payload_is_retrained_and_never_runs(trained: dict, smoke_data: Path,
                                                                        tmp_path: Path,
                                                                        interrupted: bool) -> None:
    runs, folder, stage = copy_store(trained, tmp_path, interrupted)
    if not interrupted:
        (folder / "metrics.json").unlink()
    marker = tmp_path / "payload-ran"
    real = torch.load(stage / "ckpt.pt", weights_only=True)
    faults.write_payload_checkpoint(stage / "ckpt.pt", marker, like=real)
    prove_payload_is_live(stage / "ckpt.pt", tmp_path)
    code, out, err = faults.invoke(run_args(smoke_data, runs))
    assert code == 0, err
    assert not marker.exists(), "the pickled payload ran"
    assert_retrained(trained, runs, folder, out, str(stage / "ckpt.pt"))
    assert torch.load(stage / "ckpt.pt", weights_only=True)["iteration"] == 3


def test_weights_file_with_code_payload_is_refused_by_run_and_infer(trained: dict, smoke_data: Path,
                                                                    tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    real = torch.load(trained["folder"] / "weights.pt", weights_only=True)
    evil = faults.write_payload_checkpoint(tmp_path / "weights.pt", marker, like=real)
    prove_payload_is_live(evil, tmp_path)
    runs = tmp_path / "runs"
    code, _out, err = faults.invoke(run_args(smoke_data, runs, "--weights", str(evil)))
    faults.assert_one_line_error(code, err, str(evil))
    assert not marker.exists(), "bench run --weights ran the pickled payload"
    photo = tmp_path / "photo.png"
    photo.write_bytes(faults.small_png(size=(32, 48)))
    code, _out, err = faults.invoke(["infer", str(photo), "--checkpoint", str(evil), "--out",
                                     str(tmp_path / "out"), "--device", "cpu", "--format", "png"])
    faults.assert_one_line_error(code, err, str(evil))
    assert not marker.exists(), "bench infer --checkpoint ran the pickled payload"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "empty"])
def test_damaged_weights_file_is_one_line_for_run_and_infer(trained: dict, smoke_data: Path, tmp_path: Path,
                                                            damage: str) -> None:
    bad = tmp_path / "weights.pt"
    bad.write_bytes(DAMAGES[damage]((trained["folder"] / "weights.pt").read_bytes()))
    code, _out, err = faults.invoke(run_args(smoke_data, tmp_path / "runs", "--weights", str(bad)))
    faults.assert_one_line_error(code, err, str(bad))
    photo = tmp_path / "photo.png"
    photo.write_bytes(faults.small_png(size=(32, 48)))
    code, _out, err = faults.invoke(["infer", str(photo), "--checkpoint", str(bad), "--out",
                                     str(tmp_path / "out"), "--device", "cpu", "--format", "png"])
    faults.assert_one_line_error(code, err, str(bad))


def test_good_weights_file_still_loads_for_run_and_infer(trained: dict, smoke_data: Path,
                                                         tmp_path: Path) -> None:
    """The refusals above are not a loader that refuses everything."""
    weights = trained["folder"] / "weights.pt"
    code, _out, err = faults.invoke(run_args(smoke_data, tmp_path / "runs", "--weights", str(weights)))
    assert code == 0, err
    photo = tmp_path / "photo.png"
    photo.write_bytes(faults.small_png(size=(32, 48)))
    code, _out, err = faults.invoke(["infer", str(photo), "--checkpoint", str(weights), "--out",
                                     str(tmp_path / "out"), "--device", "cpu", "--format", "png"])
    assert code == 0, err
    assert (tmp_path / "out" / "photo" / "deblurred.png").is_file()
