"""Manifests and paths: a manifest naming a path outside its folder (`../`, an absolute path, a
symlink out) is rejected; a digest mismatch names the file and the command that repairs it; the repair
command really repairs, and never writes through a link to outside the set.

Each test works on a private copy of the smoke 7-frame set (the `data` fixture of tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faults
import pytest

from bench.data.manifest import load_manifest
from bench.data.prepare import prepare
from bench.errors import BenchError

SET = "synthetic-smoke-7f"


def edit_manifest(folder: Path, change: object) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)  # type: ignore[operator]
    path.write_text(json.dumps(manifest))


def point_first_blur_at(manifest: dict, rel: str) -> None:
    """Make the first sample's blur (and its digest entry) name `rel`."""
    old = manifest["samples"][0]["blur"]
    manifest["samples"][0]["blur"] = rel
    manifest["sha256"][rel] = manifest["sha256"].pop(old)


UNSAFE = {
    "dotdot": "../outside.png",
    "dotdot-inside": "blur/../../outside.png",
    "absolute": "/etc/passwd",
    "home": "~/outside.png",
    "backslash": "blur\\..\\..\\outside.png",
    "nul": "blur/x\x00.png",
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_manifest_naming_a_path_outside_its_folder_is_rejected(data: Path, kind: str) -> None:
    folder = data / SET
    rel = UNSAFE[kind]
    (data / "outside.png").write_bytes(b"not part of the set")
    edit_manifest(folder, lambda m: point_first_blur_at(m, rel))
    for verify in (False, True):
        with pytest.raises(BenchError) as err:
            load_manifest(folder, verify=verify)
        message = str(err.value)
        assert "\n" not in message and "unsafe path" in message and str(folder) in message


def test_digest_entry_alone_outside_the_folder_is_rejected(data: Path) -> None:
    """A path listed only in the digest map (no sample uses it) is still checked."""
    folder = data / SET
    edit_manifest(folder, lambda m: m["sha256"].__setitem__("../../etc/hosts", "0" * 64))
    with pytest.raises(BenchError, match="unsafe path"):
        load_manifest(folder)


def test_symlinked_file_leading_out_is_rejected_even_with_the_right_digest(data: Path,
                                                                           tmp_path: Path) -> None:
    folder = data / SET
    rel = load_manifest(folder)["samples"][0]["blur"]
    outside = tmp_path / "elsewhere.png"
    shutil.copyfile(folder / rel, outside)  # same bytes, so only the link itself can be objected to
    (folder / rel).unlink()
    (folder / rel).symlink_to(outside)
    with pytest.raises(BenchError, match="leads outside") as err:
        load_manifest(folder)
    assert "\n" not in str(err.value) and rel in str(err.value)


def test_symlinked_folder_leading_out_is_rejected(data: Path, tmp_path: Path) -> None:
    folder = data / SET
    outside = tmp_path / "elsewhere"
    shutil.copytree(folder / "blur", outside)
    shutil.rmtree(folder / "blur")
    (folder / "blur").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BenchError, match="leads outside"):
        load_manifest(folder, verify=True)


def test_symlink_inside_the_set_is_accepted(data: Path) -> None:
    """The check is about leaving the folder, not about links as such."""
    folder = data / SET
    manifest = load_manifest(folder)
    a, b = manifest["samples"][0]["sharp"][0], manifest["samples"][1]["sharp"][0]
    target = (folder / b).read_bytes()
    (folder / a).unlink()
    (folder / a).write_bytes(target)
    (folder / b).unlink()
    (folder / b).symlink_to(folder / a)
    edit_manifest(folder, lambda m: m["sha256"].__setitem__(a, m["sha256"][b]))
    load_manifest(folder, verify=True)


@pytest.mark.parametrize("damage", ["changed", "missing", "truncated"])
def test_digest_mismatch_names_the_file_and_the_repairing_command(data: Path, damage: str) -> None:
    folder = data / SET
    rel = load_manifest(folder)["samples"][1]["sharp"][3]
    victim = folder / rel
    if damage == "changed":
        victim.write_bytes(faults.small_png(seed=5))
    elif damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    load_manifest(folder)  # without verify the structure is fine
    with pytest.raises(BenchError) as err:
        load_manifest(folder, verify=True)
    message = str(err.value)
    assert "\n" not in message and str(victim) in message
    command = message.split("`")[1]
    assert command.startswith("bench prepare") and "--frames 7" in command and "--profile smoke" in command
    assert f"--data-dir {data}" in command
    # The named command, run as printed, repairs the set in place.
    args = command.split()[1:]
    code, _out, err_text = faults.invoke(args)
    assert code == 0, err_text
    load_manifest(folder, verify=True)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_repair_never_keeps_or_writes_through_a_link_out(data: Path, tmp_path: Path, kind: str) -> None:
    """`bench prepare` repairing a set must replace a link that leads out, not keep it because the bytes it
    points at happen to be right, and never write into the folder a link points at."""
    folder = data / SET
    rel = load_manifest(folder)["samples"][0]["blur"]
    if kind == "file":
        outside = tmp_path / "elsewhere.png"
        shutil.copyfile(folder / rel, outside)
        (folder / rel).unlink()
        (folder / rel).symlink_to(outside)
    else:
        outside = tmp_path / "elsewhere"
        shutil.copytree(folder / "blur", outside)
        shutil.rmtree(folder / "blur")
        (folder / "blur").symlink_to(outside, target_is_directory=True)
        (outside / Path(rel).relative_to("blur")).write_bytes(b"stale bytes outside the set")
    before = {p: p.read_bytes() for p in ([outside] if kind == "file" else sorted(outside.rglob("*")))
              if p.is_file()}
    prepare(source="synthetic", frames=(7,), profile="smoke", data_dir=data, seed=0, workers=1)
    load_manifest(folder, verify=True)
    assert not (folder / rel).is_symlink() and not (folder / "blur").is_symlink()
    assert {p: p.read_bytes() for p in before} == before  # nothing outside the set was touched
