"""bench ablate: verdicts from stored runs, every ablation states its claim, an ablation is one registry
entry, and a smoke run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from records import DIGEST, write_run

from bench.ablate import ablation_names, claims_of, judge, plan, table
from bench.store import iter_runs
from methods.registry import Claim


def test_every_registered_ablation_states_a_claim_against_ours() -> None:
    names = ablation_names()
    assert "ours-no-tv" in names and "ours-dm-resblocks" in names
    for name in names:
        claims = claims_of(name)
        assert claims and all(c.better == "ours" and c.metric in ("eq6", "deblur_psnr") for c in claims)
    assert plan(["ours-no-tv", "ours-joint"]) == ["ours", "ours-no-tv", "ours-joint"]


def _values(grid: list[list[float]]) -> dict[int, dict[str, float]]:
    return {seed: {f"s{i}": v for i, v in enumerate(row)} for seed, row in enumerate(grid)}


def test_judge_uses_the_reports_rule_on_paired_samples() -> None:
    eq6 = Claim("c", "supp.", "eq6")
    ours = [[50.0, 40.0, 61.0], [51.0, 41.0, 60.0], [49.0, 42.0, 62.0]]  # seeds x test samples
    worse = [[v + 5.0 for v in row] for row in ours]
    row = judge(eq6, "v", _values(ours), _values(worse))
    assert row["held"] is True and row["difference"] == pytest.approx(5.0) and row["ci_low"] > 0
    assert (row["better"], row["variant"], row["seeds"], row["samples"]) == ("ours", "v", 3, 3)
    assert row["better_mean"] == pytest.approx(sum(map(sum, ours)) / 9)
    # The variant better than ours: the claim fails; a tie is no evidence for it.
    assert judge(eq6, "v", _values(worse), _values(ours))["verdict"] == "not held"
    assert judge(eq6, "v", _values(ours), _values(ours))["held"] is False
    # Inside the noise: samples that disagree on the sign of a small difference.
    noisy = [[row[0] + 0.5, row[1] - 0.6, row[2] + 0.4] for row in ours]
    row = judge(eq6, "v", _values(ours), _values(noisy))
    assert row["held"] is False and row["ci_low"] < 0 < row["ci_high"]
    assert judge(eq6, "v", {}, _values(ours))["verdict"] == "not measured"


def _store_run(root: Path, method: str, seed: int, eq6: float, psnr: float, frames: int = 9,
               status: str = "finished", overrides: tuple = (), digest: str = DIGEST) -> None:
    write_run(root, f"{method}-s{seed}-{status}-{len(overrides)}-{frames}-{digest[:2]}", method, frames, seed,
              {"eq6": eq6, "deblur_psnr": psnr}, status=status, overrides=overrides, digest=digest)


def test_table_marks_held_and_not_held_from_stored_runs(tmp_path: Path) -> None:
    for seed, (a, b, c) in enumerate([(50.0, 60.0, 49.0), (51.0, 61.0, 50.0), (49.0, 59.0, 48.5)]):
        _store_run(tmp_path, "ours", seed, a, 30.0 + seed * 0.01)
        _store_run(tmp_path, "ours-no-tv", seed, b, 30.0)  # clearly worse: held
        _store_run(tmp_path, "ours-intensity", seed, c, 30.0)  # better than ours: not held
    # Runs that must not count: failed, another N, and one with overrides.
    _store_run(tmp_path, "ours-joint", 0, 99.0, 30.0, status="failed")
    _store_run(tmp_path, "ours-joint", 1, 99.0, 30.0, frames=7)
    _store_run(tmp_path, "ours-joint", 2, 99.0, 30.0, overrides=("train.iters_bie=1",))
    _store_run(tmp_path, "ours-joint", 0, 99.0, 30.0, digest="a" * 64)  # other data under the same set name
    variants = ["ours-no-tv", "ours-intensity", "ours-joint"]
    rows = {r["variant"]: r for r in table(iter_runs(tmp_path), variants, frames=9, profile="smoke",
                                           data_sha256=DIGEST)}
    assert rows["ours-no-tv"]["verdict"] == "held"
    assert rows["ours-no-tv"]["seeds"] == 3
    assert rows["ours-no-tv"]["variant_mean"] == pytest.approx(60.0)
    assert rows["ours-intensity"]["verdict"] == "not held"
    assert rows["ours-joint"]["verdict"] == "not measured"
    # `--seeds 0,1` judges those seeds only, though seed 2 is stored too.
    two = {r["variant"]: r for r in table(iter_runs(tmp_path), variants, frames=9, profile="smoke",
                                          data_sha256=DIGEST, seeds=[0, 1])}
    assert two["ours-no-tv"]["seeds"] == 2 and two["ours-no-tv"]["variant_mean"] == pytest.approx(60.5)


@pytest.mark.slow
def test_ablate_only_no_tv_on_smoke_end_to_end(smoke_data: Path, tmp_path: Path) -> None:
    from bench.cli import cli

    runs = tmp_path / "runs"
    args = ["ablate", "--only", "ours-no-tv", "--profile", "smoke", "--frames", "7", "--seeds", "0",
            "--data-dir", str(smoke_data), "--runs-dir", str(runs)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ours-no-tv" in result.output and "eq6" in result.output
    methods = {r.config.method: r for r in iter_runs(runs)}
    assert methods["ours"].status == "finished" and methods["ours-no-tv"].status == "finished"
    # The variant shares the DM stage with ours: one DM stage folder serves both.
    stages = [p for p in (runs / "stages").iterdir() if p.is_dir()]
    assert len(stages) < 2 * 3
    # Running it again continues (here: everything cached) and prints the same verdict.
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0
    def rows(output: str) -> list[str]:
        return [line for line in output.splitlines() if line.startswith("│ ours-no-tv")]

    assert rows(result.output) and rows(result.output) == rows(again.output)
    assert "iterations," not in again.output  # nothing was trained the second time


@pytest.fixture()
def extra_ablation():
    """One new ablation, registered at runtime as one entry and removed afterwards."""
    from methods import registry
    from methods.ours import make_ours

    claim = Claim("the paper's TV weight beats half of it", "supp.", "eq6")
    method = registry.register(make_ours("ours-mu-half", "ablation", "TV weight mu = 0.01", loss={"mu": 0.01},
                                         claims=(claim,)))
    yield method
    registry.REGISTRY.pop(method.name)


def test_a_new_ablation_is_one_registry_entry(extra_ablation, tmp_path: Path) -> None:
    from bench.report import build_report, parse_formats

    name = extra_ablation.name
    assert name in ablation_names() and plan([name]) == ["ours", name]
    for seed in (0, 1):
        _store_run(tmp_path, "ours", seed, 50.0 + seed, 30.0)
        _store_run(tmp_path, name, seed, 60.0 + seed, 30.0)
    rows = [r for r in table(iter_runs(tmp_path), ablation_names(), frames=9, profile="smoke",
                             data_sha256=DIGEST) if r["variant"] == name]
    text = extra_ablation.claims[0].text
    assert [(r["claim"], r["verdict"], r["seeds"]) for r in rows] == [(text, "held", 2)]
    out = tmp_path / "report"
    result = build_report(tmp_path, out, parse_formats("md,csv"))
    claim = {c["claim"]: c for c in result.claims}[text]
    assert claim["verdict"] == "held" and claim["source"] == "supp."
    assert text in (out / "tables" / "claims.md").read_text()
    assert name in (out / "tables" / "ablations.md").read_text()


def test_register_refuses_an_ablation_that_measures_nothing_or_states_no_claim() -> None:
    from methods import registry
    from methods.ours import make_ours

    claim = (Claim("c", "supp.", "eq6"),)
    with pytest.raises(ValueError, match="same networks"):
        registry.register(make_ours("ours-again", "ablation", "ours under another name", claims=claim))
    with pytest.raises(ValueError, match="claim"):
        registry.register(make_ours("ours-mu-third", "ablation", "no claim", loss={"mu": 0.006}))
    assert "ours-again" not in registry.names() and "ours-mu-third" not in registry.names()


def test_a_claim_on_an_unknown_metric_is_refused_where_bench_reads_it(tmp_path: Path) -> None:
    """bench owns the metric vocabulary (methods/ cannot import it): `bench ablate` refuses the entry in one
    line, and the report leaves the claim out with that line in the claims table's note."""
    from bench.errors import BenchError
    from bench.report.claims import registered_claims
    from methods import registry
    from methods.ours import make_ours

    bad = (Claim("a typo'd claim", "supp.", "eq7"),)
    registry.register(make_ours("ours-mu-third", "ablation", "typo", loss={"mu": 0.006}, claims=bad))
    try:
        with pytest.raises(BenchError, match="ours-mu-third's claim .* unknown metric 'eq7'; choose from"):
            claims_of("ours-mu-third")
        pairs, note = registered_claims()
        assert "a typo'd claim" not in {c.text for _, c in pairs} and "unknown metric 'eq7'" in note
        assert len(pairs) == sum(len(registry.get(n).claims) for n in registry.names()) - 1
    finally:
        registry.REGISTRY.pop("ours-mu-third")
