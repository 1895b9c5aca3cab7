"""Whether a stored result is what this checkout's code makes (bench/report/currency.py), on run configs
made as `bench run` and `bench score` record them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from records import DIGEST, current_code

from bench.code_identity import external_code
from bench.report.currency import code_change
from bench.store import EXTERNAL, RunConfig, scoring_digest


def _config(runs: Path, method: str, trained: bool = True, **fields: object) -> RunConfig:
    scoring, keys = current_code(runs, method, 9, trained)
    config = RunConfig(run_id=f"{method}-x", method=method, family="paper", profile="smoke", overrides=(),
                       resolved_profile={"name": "smoke"}, dataset="synthetic-smoke-9f", data_sha256=DIGEST,
                       frames=9, seed=0, stages=tuple({"name": n} for n in keys), weights_from=None,
                       weights_from_sha256=None, stage_keys=keys, scoring_code=scoring)
    return replace(config, **fields)


def test_a_run_of_this_checkouts_code_is_current_and_an_edited_digest_is_not(tmp_path: Path) -> None:
    config = _config(tmp_path, "ours")
    assert code_change(config, tmp_path / "stages") is None
    assert code_change(replace(config, scoring_code="0" * 16), tmp_path / "stages") == "scoring code changed"
    gone = replace(config, stage_keys={"dm": "dm-999999999999"})
    assert code_change(gone, tmp_path / "stages") == "stage dm not in the stage cache"


def test_a_run_scored_from_a_weights_file_is_judged_by_its_scoring_code_alone(tmp_path: Path) -> None:
    config = _config(tmp_path, "ours", trained=False, weights_from="w.pt", weights_from_sha256="e" * 64)
    assert code_change(config, tmp_path / "stages") is None  # no stage of its own to compare


def test_an_outside_methods_scores_follow_the_code_of_bench_score(tmp_path: Path) -> None:
    config = _config(tmp_path, "theirs", trained=False, family=EXTERNAL,
                     scoring_code=scoring_digest(external_code()))
    assert code_change(config, tmp_path / "stages") is None
    assert code_change(replace(config, scoring_code="1" * 16), tmp_path / "stages") == "scoring code changed"


def test_a_method_no_longer_registered_cannot_be_current(tmp_path: Path) -> None:
    config = _config(tmp_path, "retired-method", trained=False)
    assert code_change(config, tmp_path / "stages") == "method no longer registered"
