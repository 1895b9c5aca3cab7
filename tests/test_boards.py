"""bench/boards.py: `bench run --tensorboard` writes one event file per trained stage under the run folder,
read back here with TensorBoard's own event reader; without the flag nothing changes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.boards import FOLDER, Boards, StageBoard, require_tensorboard, validation_grid
from bench.config import get_profile
from bench.errors import BenchError
from bench.registry import get_method
from bench.train import stage_weights, train_stage

SMOKE = get_profile("smoke")  # DM: 12 iterations, a loss point every 2, validation at 0, 4, 8, 12
TRAIN_TAGS = {"train/loss", "train/lr/dm", "train/samples_per_s", "train/data_wait_share"}


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _train_dm(set_folder: Path, stages_dir: Path, boards: Boards | None = None):
    method = get_method("ours")
    return train_stage(method, method.stage("dm"), SMOKE, set_folder, 0, stages_dir, torch.device("cpu"), {},
                       progress=False, log=lambda *a: None, boards=boards)


def test_boards_log_scalars_and_grids_and_leave_key_and_weights_unchanged(smoke_data, tmp_path):
    set_folder = smoke_data / "synthetic-smoke-9f"
    with Boards(tmp_path / "run", SMOKE.train.log_every) as boards:
        logged = _train_dm(set_folder, tmp_path / "a", boards)
    plain = _train_dm(set_folder, tmp_path / "b")
    assert logged.key == plain.key
    for component, state in stage_weights(plain.folder).items():
        for name, value in state.items():
            assert torch.equal(value, stage_weights(logged.folder)[component][name])
    assert logged.curve == plain.curve and logged.validation == plain.validation
    [events] = list((tmp_path / "run" / FOLDER / "dm").iterdir())
    acc = _events(events.parent)
    assert set(acc.Tags()["scalars"]) == TRAIN_TAGS | {"validation/deblur_psnr"}
    for tag in TRAIN_TAGS:
        assert [e.step for e in acc.Scalars(tag)] == [2, 4, 6, 8, 10, 12]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([v for _, v in plain.curve])
    scores = acc.Scalars("validation/deblur_psnr")
    assert [e.step for e in scores] == [i for i, _ in plain.validation["points"]]
    assert [e.value for e in scores] == pytest.approx([v for _, v in plain.validation["points"]])
    grids = acc.Images("validation/grid")
    assert [e.step for e in grids] == [0, 4, 8, 12]
    assert (grids[0].width, grids[0].height) == (2 + 3 * (32 + 2), 2 + 2 * (32 + 2))  # 3 tiles x 2 samples


def test_video_grid_rows_are_blur_predicted_frames_and_true_frames():
    method = get_method("ours")
    torch.manual_seed(0)
    nets = method.build(asdict(SMOKE.model))
    batch = {"blur": torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8),
             "sharp": torch.randint(0, 256, (5, 9, 3, 32, 32), dtype=torch.uint8)}
    grid = validation_grid(method, method.stage("bie"), nets, batch, torch.device("cpu"))
    assert grid.shape == (3, 2 + 4 * 34, 2 + 19 * 34)  # at most 4 rows of 1 + 9 + 9 tiles
    assert torch.equal(grid[:, 2:34, 2:34], batch["blur"][0].float() / 255)
    assert torch.equal(grid[:, 2:34, -34:-2], batch["sharp"][0, 8].float() / 255)
    assert validation_grid(method, method.stage("autoencoder"), nets, {"sharp": batch["sharp"]},
                           torch.device("cpu")) is None  # nothing blurred to show


def test_without_the_package_the_flag_is_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(BenchError, match=r"pip install -e '\.\[tensorboard\]'"):
        require_tensorboard()


@pytest.mark.slow
def test_a_tensorboard_run_keeps_its_run_id_and_a_run_without_it_writes_no_events(smoke_data, tmp_path):
    runs = tmp_path / "runs"
    cmd = [str(Path(sys.executable).parent / "bench"), "run", "--method", "ours-static", "--profile", "smoke",
           "--device", "cpu", "--no-floor", "--data-dir", str(smoke_data), "--runs-dir", str(runs)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    [run] = [p for p in runs.iterdir() if p.name.startswith("ours-static-")]
    assert not (run / FOLDER).exists()
    logged = subprocess.run([*cmd, "--tensorboard", "--fresh"], capture_output=True, text=True, timeout=300)
    assert logged.returncode == 0, logged.stderr[-2000:]
    assert [p for p in runs.iterdir() if p.name.startswith("ours-static-")] == [run]  # the same run id
    acc = _events(run / FOLDER / "dm")
    assert TRAIN_TAGS <= set(acc.Tags()["scalars"]) and acc.Tags()["images"] == ["validation/grid"]


def test_a_resumed_stage_replaces_what_the_killed_session_logged_past_its_checkpoint(tmp_path):
    groups = [{"name": "dm", "lr": 1e-4}]
    killed = StageBoard(tmp_path, batch=2, log_every=2, total=8)
    for done in range(1, 8):  # killed after iteration 7; its checkpoint was at 4
        killed.step(done, loss=1.0, wait_s=0.0, step_s=0.1, groups=groups)
    killed.close()
    resumed = StageBoard(tmp_path, batch=2, log_every=2, total=8)
    for done in range(5, 9):
        resumed.step(done, loss=2.0, wait_s=0.0, step_s=0.1, groups=groups)
    resumed.close()
    assert len(list(tmp_path.iterdir())) == 2  # one event file per session
    points = [(e.step, e.value) for e in _events(tmp_path).Scalars("train/loss")]
    assert points == [(2, 1.0), (4, 1.0), (6, 2.0), (8, 2.0)]
