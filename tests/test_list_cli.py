"""`bench list`: the four sections, and the SPEC 8 JSON of `--methods --json`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bench.cli import cli
from bench.store import atomic_write_json


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["list", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_methods_json_has_the_spec8_keys_and_component_rows():
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
    atomic_write_json(tmp_path / "runs" / "ours-abc" / "config.json",
                      {"method": "ours", "profile": "smoke", "dataset": "synthetic-smoke-9f", "frames": 9,
                       "seed": 0})
    atomic_write_json(tmp_path / "runs" / "ours-abc" / "metrics.json",
                      {"status": "failed", "error": "boom"})
    rows = json.loads(_run("--runs", "--json", "--runs-dir", str(tmp_path / "runs")))
    assert len(rows) == 1 and rows[0]["run"] == "ours-abc" and rows[0]["status"] == "failed"
    profiles = json.loads(_run("--profiles", "--json"))
    assert [p["name"] for p in profiles] == ["smoke", "quick", "paper"]
    both = json.loads(_run("--runs", "--profiles", "--json", "--runs-dir", str(tmp_path / "runs")))
    assert set(both) == {"runs", "profiles"}


def test_no_flag_shows_all_four_sections(tmp_path):
    out = _run("--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    for title in ("methods", "datasets", "runs", "profiles", "(none)"):  # no datasets, no runs yet
        assert title in out
    assert "ours" in out and "quick" in out
