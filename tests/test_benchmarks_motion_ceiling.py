"""benchmarks/motion_ceiling.py: the motion ratio a perfect-flow decoder reaches from a given centre image."""

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import torch
from click.testing import CliRunner

_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "motion_ceiling.py"
_spec = importlib.util.spec_from_file_location("motion_ceiling", _SCRIPT)
motion_ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(motion_ceiling)


def test_zero_flows_repeat_the_centre_and_a_shift_moves_it() -> None:
    centre = torch.rand(3, 12, 16)
    still = motion_ceiling.warp_video(centre, torch.zeros(5, 2, 12, 16))
    assert still.shape == (5, 3, 12, 16) and torch.allclose(still, centre.expand(5, -1, -1, -1), atol=1e-6)
    shift = torch.zeros(1, 2, 12, 16)
    shift[:, 0] = 1.0  # one pixel in x: out(p) = centre(p + 1)
    moved = motion_ceiling.warp_video(centre, shift)[0]
    assert torch.allclose(moved[:, :, :-1], centre[:, :, 1:], atol=1e-6)


def test_a_sharp_centre_allows_more_motion_than_the_blurred_input(smoke_data) -> None:
    rows = motion_ceiling.ceilings(smoke_data / "synthetic-smoke-9f", {
        "true": lambda item: item["sharp"][item["sharp"].shape[0] // 2],
        "blur": lambda item: item["blur"],
    })
    by = {r["centre"]: r for r in rows}
    assert by["true"]["samples"] > 0
    # True flows on the true centre rebuild the video up to occlusions; the blurred input has less texture
    # to move, so the same flows move it less and match the truth worse.
    assert by["true"]["motion_ratio"] > 0.6
    assert by["blur"]["motion_ratio"] < by["true"]["motion_ratio"]
    assert by["blur"]["frame_psnr"] < by["true"]["frame_psnr"]


def test_the_command_scores_a_weights_file(smoke_data, tmp_path: Path) -> None:
    from bench.config import get_profile
    from bench.store import save_weights
    from methods import registry

    model = asdict(get_profile("smoke").model)
    torch.manual_seed(0)
    nets = registry.get("ours").build(model)
    weights = tmp_path / "weights.pt"
    save_weights(weights, "ours", 9, model, {k: m.state_dict() for k, m in nets.items()})
    out = tmp_path / "rows.json"
    result = CliRunner().invoke(motion_ceiling.main, ["--set", str(smoke_data / "synthetic-smoke-9f"),
                                                      "--checkpoint", str(weights), "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["centre"] for r in rows][:2] == ["true central frame", "blurred input"]
    assert rows[2]["centre"].startswith("ours estimate") and 0 <= rows[2]["motion_ratio"] < 10
    assert len(result.output.strip().splitlines()) == 3


def test_a_missing_run_is_one_error_line(smoke_data, tmp_path: Path) -> None:
    result = CliRunner().invoke(motion_ceiling.main, ["--set", str(smoke_data / "synthetic-smoke-9f"),
                                                      "--run", "nope", "--runs-dir", str(tmp_path)])
    err = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(err) == 1 and err[0].startswith("error: --run nope")
