"""benchmarks/make_footage.py: a GoPro-layout root of rendered frames that `bench prepare` reads."""

import importlib.util
from pathlib import Path

from click.testing import CliRunner

from bench.data.images import read_rgb

_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "make_footage.py"
_spec = importlib.util.spec_from_file_location("make_footage", _SCRIPT)
make_footage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_footage)


def test_the_script_writes_the_root_it_is_asked_for(tmp_path: Path) -> None:
    args = [str(tmp_path / "root"), "--height", "20", "--width", "36", "--train", "1", "--test", "1",
            "--length", "3"]
    result = CliRunner().invoke(make_footage.main, args)
    assert result.exit_code == 0, result.output
    frames = sorted(p.relative_to(tmp_path / "root").as_posix() for p in (tmp_path / "root").rglob("*.png"))
    want = [f"{split}/synth_{split}_000/{t:06d}.png" for split in ("test", "train") for t in (1, 2, 3)]
    assert frames == want
    assert read_rgb(tmp_path / "root" / frames[0]).shape == (20, 36, 3)
    refused = CliRunner().invoke(make_footage.main, [str(tmp_path / "none"), "--train", "0", "--test", "0"])
    assert refused.exit_code == 2 and not (tmp_path / "none").exists()
