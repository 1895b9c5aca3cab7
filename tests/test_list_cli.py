"""`bench list`: the four sections, and the stable JSON of `--methods --json` (docs/DESIGN.md "Store")."""

from __future__ import annotations

import json

from click.testing import CliRunner
from records import write_run

from bench.cli import cli
from bench.fileio import atomic_write_json


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["list", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_methods_json_lists_every_method_and_component_with_its_size():
    from methods import registry

    rows = json.loads(_run("--methods", "--json"))
    assert [r["name"] for r in rows] == [r["name"] for r in registry.summary()]
    names = {r["name"] for r in rows}
    assert {"ours", "blurred", "ours-static", "jin2018", "srn", "ours-gt-center"} <= names
    for row in rows:
        assert {"name", "family", "params", "size_mb"} <= set(row)
    ours = next(r for r in rows if r["name"] == "ours")
    assert ours["family"] == "paper" and ours["params"] > 0
    parts = {r["name"]: r for r in rows if r["family"] == "component"}
    assert {"dm", "rve", "rvd", "bie"} <= set(parts)
    # The test-time size of `ours` is its DM + BIE + RVD (the RVE only trains), as the paper counts it.
    assert ours["params"] == sum(parts[ours["components"][k]]["params"] for k in ("dm", "bie", "rvd"))


def test_runs_and_profiles_sections(tmp_path):
    folder = write_run(tmp_path / "runs", "ours-abc", "ours", 9, status="failed", digest="e" * 64)
    rows = json.loads(_run("--runs", "--json", "--runs-dir", str(tmp_path / "runs")))
    assert len(rows) == 1 and rows[0]["run"] == folder.name and rows[0]["status"] == "failed"
    assert rows[0]["data_sha256"] == "e" * 64 and rows[0]["problem"] is None
    profiles = json.loads(_run("--profiles", "--json"))
    assert [p["name"] for p in profiles] == ["smoke", "quick", "paper"]
    both = json.loads(_run("--runs", "--profiles", "--json", "--runs-dir", str(tmp_path / "runs")))
    assert set(both) == {"runs", "profiles"}


def test_runs_show_the_data_digest_and_one_line_per_unusable_entry(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ours-good", "ours", 9, values={"eq6": 12.5, "motion_ratio": 0.75}, digest="f" * 64)
    bad = write_run(runs, "ours-bad", "ours", 9)
    stored = json.loads((bad / "metrics.json").read_text())
    atomic_write_json(bad / "metrics.json", dict(stored, aggregate=[]))
    atomic_write_json(runs / "ours-old" / "config.json", {"method": "ours", "frames": 9})
    result = CliRunner().invoke(cli, ["list", "--runs", "--runs-dir", str(runs)], env={"COLUMNS": "220"})
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "ffffffffffff" in result.output and "0.75" in result.output  # digest and motion ratio columns
    lines = result.output.splitlines()
    assert any(x.startswith("damaged: ") and "'aggregate' is list, not dict" in x for x in lines)
    assert any(x.startswith("legacy: ") and "before data digests" in x for x in lines)


def test_no_flag_shows_all_four_sections(tmp_path):
    out = _run("--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    for title in ("methods", "datasets", "runs", "profiles", "(none)"):  # no datasets, no runs yet
        assert title in out
    assert "ours" in out and "quick" in out
