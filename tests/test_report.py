"""`bench report` (docs/DESIGN.md "Reports"): every table and figure written, tables equal to the stored
metrics, claims decided by the verdict rule, missing runs listed. Stores are crafted folders following the run
record (docs/DESIGN.md "Store"); a second module makes real `smoke` runs when `bench run` is available."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import faults
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from records import find, label_of, tiny_smoke_runs, write_eval, write_run

from bench.report import build_report, expected_cells, parse_formats
from bench.report.claims import HELD, NOT_HELD, NOT_MEASURED, evaluate_claims, paper_size_mb, stat
from bench.report.load import load_curves, load_runs, load_sample_images, load_samples
from bench.report.tables import deblur_methods, deblur_table, select, video_methods, video_table
from bench.store import read_config

FLOORS = ("blurred", "gt-static")  # no training: one seed stands for all
# Where a crafted run's stages were trained (`Execution.describe`'s keys that `RunMetrics.trained_on` reads).
TRAINED_ON = {"precision": "fp32", "threads": 1, "device": "cpu", "processor": "Test CPU"}


def make_run(runs: Path, method: str, frames: int, seed: int, status: str = "finished", samples: int = 1,
             overrides: tuple[str, ...] = (), commit: str = "abc1234", dirty: bool = False,
             execution: dict | None = None, **values: float) -> Path:
    """A run folder as `bench run` writes it (`records.write_run`): config, env, metrics (aggregate + four
    test samples averaging to it, each off by its own noise of sd 0.5), curves, and `samples` sets of
    sample PNGs."""
    rid = f"{method}-{frames}f-s{seed}" + ("-" + "-".join(overrides).replace("=", "") if overrides else "")
    values = dict(values, deblur_lpips_note="AlexNet weights not cached")
    jitter = np.random.default_rng([seed, frames, zlib.crc32(method.encode())]).normal(0.0, 0.5, 4)
    trained = method not in FLOORS
    # Every trained variant shares the DM stage at an N (one cache key), with its validation curve.
    validation = {"metric": "deblur_psnr", "unit": "dB", "split": "test", "samples": 2, "reference": 25.0,
                  "reference_what": "blurred input", "points": [[0, 20.0], [3, 24.0], [6, None]]}
    folder = write_run(runs, rid, method, frames, seed, values, status=status, overrides=overrides,
                       curves={"dm": [[2, 0.9], [4, 0.5], [6, 0.3]]} if trained else {}, commit=commit,
                       dirty=dirty, jitter=jitter.tolist(), trained=trained,
                       training={"dm": {"key": f"dm-{frames}f-s{seed}", "validation": validation,
                                        "execution": execution or TRAINED_ON}} if trained else {})
    rng = np.random.default_rng(seed)
    (folder / "samples").mkdir(exist_ok=True)
    for i in range(samples if status == "finished" else 0):
        def png(name: str) -> None:
            Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(folder / "samples" / name)
        png(f"s{i}_blur.png")
        png(f"s{i}_deblurred.png")
        for t in range(1, frames + 1):
            png(f"s{i}_frame{t}.png")
            png(f"s{i}_truth{t}.png")
    return folder


def base_values(method: str, seed: int) -> dict[str, float]:
    """Crafted metrics: ours beats jin2018 in Eq. 6 far beyond the seed noise (0.1 per seed)."""
    eq6 = {"ours": 60.0, "jin2018": 70.0, "blurred": 80.0, "ours-static": 90.0, "ours-gt-center": 50.0,
           "srn": math.nan, "ours-no-tv": 60.05}[method]
    psnr = {"ours": 28.0, "jin2018": 26.0, "blurred": 25.0, "ours-static": 28.0, "ours-gt-center": 28.0,
            "srn": 27.0, "ours-no-tv": 28.0}[method]
    noise = 0.1 * seed
    out = {"deblur_psnr": psnr + noise, "deblur_ssim": 0.8 + 0.001 * seed, "runtime_deblur_s": 0.01,
           "runtime_video_s": 0.05 if method != "jin2018" else 0.2, "params": 1e6, "size_mb": 4.0,
           "ppsnr": 24.0 + noise, "pwpsnr": 25.0 + noise, "mid_psnr": 26.0 + noise,
           "motion_ratio": 0.0 if method in ("blurred", "ours-static") else 0.8 + noise}
    if method == "ours-static":
        out["size_mb"] = 1.0
    if method == "srn":
        out["size_mb"] = 2.0
    if not math.isnan(eq6):
        out["eq6"] = eq6 + noise
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("store") / "runs"
    for seed in (0, 1, 2):
        for method in ("ours", "blurred", "ours-static", "ours-no-tv"):
            for frames in ((7, 9) if method != "ours-no-tv" else (9,)):
                shown = 1 if seed == 0 and method != "ours-static" else 0
                make_run(runs, method, frames, seed, samples=shown, **base_values(method, seed))
        make_run(runs, "jin2018", 7, seed, samples=1 if seed == 0 else 0, **base_values("jin2018", seed))
        make_run(runs, "srn", 9, seed, samples=0, **base_values("srn", seed))
    make_run(runs, "ours-gt-center", 9, 0, status="failed")
    (runs / "stages").mkdir(exist_ok=True)  # the shared stage cache is not a run
    write_eval(find(runs, "ours-9f-s0"), "synthetic-other-9f", "a" * 64, {"eq6": 77.5})
    return runs


@pytest.fixture(scope="module")
def report(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("reports")
    return out, build_report(store, out, parse_formats("md,csv,tex,png,pdf,gif"))


def test_load_reads_every_run_with_status(store: Path) -> None:
    runs = load_runs(store)
    assert len(runs) == 3 * 9 + 2  # 27 finished runs, 1 failed, 1 cross-dataset evaluation
    assert list(runs[runs["eval_set"] != ""]["eq6"]) == [77.5]
    samples = load_samples(runs[(runs["method"] == "ours") & (runs["status"] == "finished")
                                & (runs["eval_set"] == "")])
    assert len(samples) == 6 * 4 and set(samples["sample"]) == {"s0", "s1", "s2", "s3"}
    means = samples.groupby("run_id")["eq6"].mean()
    # Per-sample rows average to the aggregate.
    assert means[find(store, "ours-7f-s1").name] == pytest.approx(60.1)
    failed = runs[runs["status"] == "failed"]
    assert list(failed["method"]) == ["ours-gt-center"] and "out of memory" in failed["error"].iloc[0]
    ours = runs[(runs["method"] == "ours") & (runs["frames"] == 7) & (runs["seed"] == 1)].iloc[0]
    assert ours["eq6"] == pytest.approx(60.1) and ours["commit"] == "abc1234"
    assert ours["device"] == "CPU: test"
    assert ours["train_time_s"] == 12.5 and math.isnan(ours["deblur_lpips"])


def test_curves_and_samples_are_parsed(store: Path) -> None:
    curves = load_curves(find(store, "ours-7f-s0"))
    assert curves == {"dm": ([2.0, 4.0, 6.0], [0.9, 0.5, 0.3])}
    found = load_sample_images(find(store, "ours-9f-s0"))
    assert set(found) == {"s0"}
    assert found["s0"]["blur"].name == "s0_blur.png" and found["s0"]["deblurred"].name == "s0_deblurred.png"
    assert [p.name for p in found["s0"]["frame"]] == [f"s0_frame{t}.png" for t in range(1, 10)]
    assert [p.name for p in found["s0"]["truth"]] == [f"s0_truth{t}.png" for t in range(1, 10)]


def test_report_writes_every_table_and_figure(report: tuple[Path, object]) -> None:
    out, result = report
    for name in ("claims", "deblurring", "video", "ablations", "runtime", "cross_dataset", "runs"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    tex = (out / "tables" / "video.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "NOT comparable" in tex
    figs = out / "figures"
    for stem in ("bars_video", "bars_deblur", "eq6_vs_blur_size", "training_curves", "strip_7f_s0",
                 "strip_9f_s0"):
        assert (figs / f"{stem}.png").stat().st_size > 1000 and (figs / f"{stem}.pdf").exists(), stem
    assert not (figs / "video_ours-static_7f.gif").exists()  # no stored samples, no GIF
    for gif in ("video_ours_7f.gif", "video_jin2018_7f.gif", "video_blurred_9f.gif"):
        with Image.open(figs / gif) as im:
            assert im.n_frames == int(gif.split("_")[-1][0]), gif  # one GIF frame per video frame
    readme = (out / "README.md").read_text()
    assert readme.index("Provenance") < readme.index("## Claims")
    assert "NOT comparable" in readme and "abc1234 (28 results)" in readme and "smoke" in readme
    assert "Mixed provenance" not in readme and "uncommitted" not in readme  # one clean commit
    for p in result.tables + result.figures:
        assert p.relative_to(out).as_posix() in readme, p  # the index links every file
    for name in ("video", "deblurring", "ablations", "runtime", "claims"):
        head = (out / "tables" / f"{name}.md").read_text().splitlines()[2]
        assert "NOT comparable" in head, name


def test_table_numbers_equal_stored_metrics(store: Path, report: tuple[Path, object]) -> None:
    out, _ = report
    runs = load_runs(store)
    done = runs[(runs["status"] == "finished") & (runs["eval_set"] == "")]
    video = pd.read_csv(out / "tables" / "video.csv")
    assert len(video) == 7  # ours, blurred, ours-static at 7 and 9; jin2018 at 7 (gt-center failed)
    for row in video.itertuples(index=False):
        stored = done[(done["method"] == row.method) & (done["frames"] == row.frames)]
        for key in ("eq6", "ppsnr", "pwpsnr", "mid_psnr", "motion_ratio"):
            assert getattr(row, key) == pytest.approx(stored[key].mean(), abs=1e-12), (row.method, key)
            assert getattr(row, f"{key}_std") == pytest.approx(stored[key].std(ddof=1), abs=1e-12)
        assert row.n_seeds == 3
    assert set(video[video["method"] == "blurred"]["motion_ratio"]) == {0.0}  # a repeated frame: no motion
    assert "motion ratio →1" in (out / "tables" / "video.md").read_text()
    ours7 = video[(video["method"] == "ours") & (video["frames"] == 7)].iloc[0]
    assert ours7["paper_eq6_gopro"] == 44.12
    assert ours7["eq6_below_floor"] == pytest.approx(20.0)
    deblur = pd.read_csv(out / "tables" / "deblurring.csv")
    measured = deblur[deblur["source"] == "measured"]
    srn = measured[measured["method"] == "srn"].iloc[0]
    assert srn["deblur_psnr"] == pytest.approx(done[done["method"] == "srn"]["deblur_psnr"].mean())
    dm = measured[(measured["method"] == "ours") & (measured["frames"] == 9)].iloc[0]
    assert dm["size_mb"] == 1.0  # the DM alone, from ours-static
    assert set(deblur[deblur["source"] != "measured"]["deblur_psnr"]) >= {30.58, 30.10}
    runtime = pd.read_csv(out / "tables" / "runtime.csv")
    jin = runtime[runtime["method"] == "jin2018"].iloc[0]
    assert jin["runtime_video_s"] == pytest.approx(0.2) and jin["paper_runtime_video_s"] == 1.10
    cross = pd.read_csv(out / "tables" / "cross_dataset.csv")
    assert list(cross["evaluated_on"]) == ["synthetic-other-9f-aaaaaaaaaaaa"] and list(cross["eq6"]) == [77.5]
    assert video[(video["method"] == "ours") & (video["frames"] == 9)]["eq6"].iloc[0] == pytest.approx(60.1)
    runs_csv = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs_csv) == len(runs) and "failed" in set(runs_csv["status"])


def test_claims_decided_and_missing_listed(report: tuple[Path, object]) -> None:
    out, result = report
    rows = {c["claim"]: c for c in result.claims}
    verdicts = {text: c["verdict"] for text, c in rows.items()}
    assert verdicts["ours beats jin2018 in Eq. 6 at 7 frames"] == HELD  # 10 apart, sample noise 0.5
    assert verdicts["ours at 9 frames stays below jin2018 at 7 in Eq. 6"] == HELD  # other test sets: unpaired
    assert verdicts["DM beats SRN in PSNR"] == HELD  # 28 vs 27
    assert verdicts["DM beats the blurred input in PSNR"] == HELD  # the floor's one seed stands for all
    assert verdicts["the TV term helps"] == NOT_HELD  # 0.05 better: inside the noise of the samples
    assert verdicts["flow beats intensity (RVD)"] == NOT_MEASURED
    # Sizes at the paper's widths from the registry, whatever the runs stored (1 MB vs 2 MB here).
    assert verdicts["DM is smaller than SRN"] == HELD and verdicts["ours is smaller than jin2018"] == HELD
    size = rows["DM is smaller than SRN"]
    assert size["ours"] == "17.07 vs 32.25 MB" and "paper's widths (exact)" in size["evidence"]
    assert paper_size_mb("ours-static") == pytest.approx(17.07, abs=0.005)  # the DM at the paper's widths
    # Speeds need a stored `bench perf --profile paper` result: none in this store.
    assert verdicts["ours is faster than jin2018 (video)"] == NOT_MEASURED
    assert "bench perf --profile paper --store" in rows["DM is faster than SRN"]["note"]
    tv = rows["the TV term helps"]
    assert tv["seeds"] == "0,1,2" and tv["samples"] == 4 and tv["ci_low"] < 0 < tv["ci_high"]
    claims = pd.read_csv(out / "tables" / "claims.csv")
    assert list(claims["verdict"]) == [c["verdict"] for c in result.claims]
    assert {"ci_low", "ci_high"} <= set(claims.columns)
    held = claims[claims["verdict"] == HELD]
    assert (held["ci_low"] > 0).all() and (held["ci_low"] <= held["gain"]).all()
    text = (out / "tables" / "claims.md").read_text()
    assert "paired bootstrap" in text and "10,000 resamples" in text and "no spread" not in text
    readme = (out / "README.md").read_text()
    assert "`ours-intensity` at N=9: no run; make it with `bench ablate --only ours-intensity" in readme
    assert "`ours-gt-center` at N=9: failed" in readme and "out of memory" in readme
    assert "`ours-gt-center` at N=7: no run" in readme
    assert any("ours-intensity" in m for m in result.missing)


def test_results_of_two_commits_with_this_checkouts_code_are_one_experiment_and_a_dirty_tree_is_marked(
        tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "ours", 9, 0, samples=0, **base_values("ours", 0))
    make_run(runs, "ours", 9, 1, samples=0, **base_values("ours", 1))
    make_run(runs, "blurred", 9, 0, samples=0, commit="def5678", dirty=True, **base_values("blurred", 0))
    build_report(runs, tmp_path / "r", {"md"})
    readme = (tmp_path / "r" / "README.md").read_text()
    top = readme[:readme.index("## Provenance")]
    assert "Mixed provenance" not in top  # every result's recorded code is this checkout's
    assert "uncommitted changes** (def5678+dirty)" in top
    assert "abc1234 (2 results), def5678+dirty (1 results)" in readme  # the provenance table lists each
    assert "| Code | every result's code identity (bench/code_identity.py) is this checkout's |" in readme


def test_results_made_by_code_that_has_changed_since_are_named_at_the_top(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "ours", 9, 0, samples=0, **base_values("ours", 0))
    jin = make_run(runs, "jin2018", 7, 0, samples=0, commit="0ld0000", **base_values("jin2018", 0))
    srn = make_run(runs, "srn", 9, 0, samples=0, commit="0ld0000", **base_values("srn", 0))
    make_run(runs, "blurred", 9, 0, samples=0, **base_values("blurred", 0))
    stage = runs / "stages" / read_config(jin).stage_keys["jin-center"] / "stage.json"
    recorded = json.loads(stage.read_text())
    code = recorded["identity"]["code"]
    code[min(name for name in code if name.startswith("methods.jin2018."))] = "source:0123456789abcdef"
    stage.write_text(json.dumps(recorded))  # as an older checkout recorded it
    srn_stage = runs / "stages" / read_config(srn).stage_keys["srn"]
    shutil.rmtree(srn_stage)  # the stage cache was pruned: nothing to compare with
    build_report(runs, tmp_path / "r", {"md"})
    readme = (tmp_path / "r" / "README.md").read_text()
    top = readme[:readme.index("## Provenance")]
    assert ("Mixed provenance: 2 of 4 results were made by code that differs from this checkout's** "
            "(`jin2018 N=7 seed 0` (stage jin-center's code changed); `srn N=9 seed 0` (stage srn not in "
            "the stage cache))") in top
    assert "| Code | 2 result(s) made by code that differs from this checkout's (see the top) |" in readme


def test_results_trained_on_two_chips_or_precisions_are_marked_at_the_top(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "ours", 9, 0, samples=0, **base_values("ours", 0))
    make_run(runs, "ours", 9, 1, samples=0, execution={**TRAINED_ON, "precision": "bf16", "threads": 2,
                                                        "processor": "Other CPU"}, **base_values("ours", 1))
    make_run(runs, "blurred", 9, 0, samples=0, **base_values("blurred", 0))  # untrained: no setting
    build_report(runs, tmp_path / "r", {"md", "csv"})
    readme = (tmp_path / "r" / "README.md").read_text()
    top = readme[:readme.index("## Provenance")]
    assert ("Mixed machines: results trained with 2 settings of chip, precision and threads** (Other CPU · "
            "bf16 · 2 threads (1); Test CPU · fp32 · 1 thread (1))") in top
    listed = "Other CPU · bf16 · 2 threads (1 results); Test CPU · fp32 · 1 thread (1 results)"
    assert f"| Trained on | {listed} |" in readme
    table = pd.read_csv(tmp_path / "r" / "tables" / "runs.csv", keep_default_na=False)
    rows = {(m, s): t for m, s, t in zip(table["method"], table["seed"], table["trained_on"], strict=True)}
    assert rows == {("ours", 0): "Test CPU · fp32 · 1 thread", ("ours", 1): "Other CPU · bf16 · 2 threads",
                    ("blurred", 0): ""}


def test_results_trained_alike_carry_no_machine_mark(report: tuple[Path, object]) -> None:
    readme = (report[0] / "README.md").read_text()
    assert "Mixed machines" not in readme and "| Trained on | Test CPU · fp32 · 1 thread (" in readme


def test_evaluate_claims_on_crafted_summary(store: Path) -> None:
    ctx = select(load_runs(store), None, None)
    rows = {r["claim"]: r for r in evaluate_claims(ctx.samples, ctx.frames)}
    row = rows["ours beats jin2018 in Eq. 6 at 7 frames"]
    assert row["paper"] == "44.12 vs 49.06" and row["gain"] == pytest.approx(10.0)
    assert row["evidence"] == "ours@7 vs jin2018@7; seeds 0,1,2; 4 test samples per seed"
    assert rows["flow beats intensity (RVD)"]["missing"] == ["ours-intensity@9"]


def test_speed_claims_read_a_stored_paper_size_timing(store: Path, tmp_path: Path) -> None:
    from bench.store import PerfResult, RunEnv, store_perf

    runs = tmp_path / "runs"
    shutil.copytree(store, runs, symlinks=True)
    times = {"ours": ([0.02, 0.021, 0.019], [0.40, 0.41, 0.39]), "srn": ([0.40, 0.42, 0.41], [0.5, 0.5, 0.5]),
             "jin2018": ([0.45, 0.46, 0.44], [0.39, 0.42, 0.40])}  # ours's video no faster than jin2018's
    rows = tuple({"method": m, "runtime_deblur_times_s": d, "runtime_video_times_s": v, "skipped": None}
                 for m, (d, v) in times.items())
    env = RunEnv("abc1234", False, "cuda", "GPU: test", "3.11", "test", "2026-01-02T00:00:00", {})
    store_perf(runs, PerfResult("paper", 7, "1280x704", "GPU: test", 3, 1, env, rows))
    result = build_report(runs, tmp_path / "r", parse_formats("md,csv"))
    claims = {c["claim"]: c for c in result.claims}
    assert claims["DM is faster than SRN"]["verdict"] == HELD
    assert claims["ours is faster than jin2018 (video)"]["verdict"] == NOT_HELD
    assert "GPU: test at 1280x704, N=7" in claims["DM is faster than SRN"]["evidence"]
    note = (tmp_path / "r" / "tables" / "claims.md").read_text()
    assert "`bench perf --profile paper` (paper-sized networks, untrained) on GPU: test at 1280x704" in note


def test_shared_overrides_are_the_baseline_and_others_stay_apart(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    long = ("train.iters_dm=200",)
    for seed in (0, 1):
        make_run(runs, "ours", 7, seed, samples=0, overrides=long, **base_values("ours", seed))
        make_run(runs, "blurred", 7, seed, samples=0, overrides=long, **base_values("blurred", seed))
    make_run(runs, "ours", 7, 0, samples=0, eq6=1.0)  # the profile default: a different experiment
    ctx = select(load_runs(runs), None, None)
    assert ctx.overrides == "train.iters_dm=200"
    assert stat(ctx.summary, "ours", 7, "eq6").n == 2  # pooled only with its own kind
    assert stat(ctx.summary, "ours [no overrides]", 7, "eq6").mean == 1.0


def test_a_set_reprepared_with_other_content_is_reported_apart(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1):
        make_run(runs, "ours", 9, seed, samples=0, **base_values("ours", seed))
    write_run(runs, "ours-other-data", "ours", 9, 2, {"eq6": 1.0}, digest="e" * 64)  # same set name
    ctx = select(load_runs(runs), None, None)
    assert stat(ctx.summary, "ours", 9, "eq6").n == 2  # never pooled with the other content
    assert stat(ctx.summary, "ours [data eeeeeeeeeeee]", 9, "eq6").mean == 1.0


def test_the_video_and_deblurring_tables_list_the_registered_entries_in_order() -> None:
    assert video_methods() == [
        ("ours", "the paper's method"), ("jin2018", "comparison (Jin et al. 2018)"),
        ("ours-gt-center", "oracle: true central frame"), ("ours-static", "floor: DM output repeated"),
        ("blurred", "floor: blurred input repeated"), ("gt-static", "floor: true central frame repeated")]
    assert deblur_methods() == [("srn", "srn"), ("ours", "DM"), ("blurred", "blurred input"),
                                ("jin2018", "jin2018 centre")]  # Table 1's methods beside it, then the rest


@pytest.fixture()
def own_method():
    """A user's method registered at runtime with a video role and a deblurring column; removed after."""
    from dataclasses import replace

    from methods import registry

    method = registry.register(replace(registry.get("blurred"), name="mine", description="a user's method",
                                       claims=(), video_role="my method", video_rank=0, deblur_column="mine"))
    yield method
    registry.REGISTRY.pop(method.name)


def test_a_registered_method_gets_its_rows_with_no_change_to_the_report(own_method, tmp_path: Path) -> None:
    assert video_methods()[-1] == ("mine", "my method")  # unranked: after the ranked rows
    assert deblur_methods()[-1] == ("mine", "mine")
    runs = tmp_path / "runs"
    for method in ("ours", "blurred", "mine"):
        make_run(runs, method, 9, 0, samples=0, **base_values("blurred" if method == "mine" else method, 0))
    ctx = select(load_runs(runs), None, None)
    video = video_table(ctx).numeric
    assert list(video["method"]) == ["ours", "blurred", "mine"]
    assert video[video["method"] == "mine"]["role"].iloc[0] == "my method"
    deblur = deblur_table(ctx).numeric
    measured = deblur[deblur["source"] == "measured"]
    assert list(measured["method"]) == ["ours", "blurred", "mine"]
    assert list(measured["column"])[-1] == "mine (measured, N=9)"
    missing = [(m, n) for m, n, _ in expected_cells(ctx)]  # what a complete report still needs
    assert ("mine", 7) in missing and ("mine", 9) in missing
    assert ("jin2018", 7) in missing and ("jin2018", 9) not in missing  # only the N it is defined for
    assert ("srn", ctx.frames["deblur"]) in missing  # a deblurring-only row, at the deblurring table's N


def test_cli_report_and_errors(store: Path, tmp_path: Path) -> None:
    from bench.cli import cli

    result = CliRunner().invoke(cli, ["report", "--runs-dir", str(store), "--out", str(tmp_path / "r"),
                                      "--format", "md,csv"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"wrote {tmp_path / 'r' / 'README.md'}")
    assert (tmp_path / "r" / "tables" / "video.csv").exists() and not (tmp_path / "r" / "figures").exists()
    bad = CliRunner().invoke(cli, ["report", "--runs-dir", str(store), "--out", str(tmp_path / "r"),
                                   "--format", "md,docx"])
    assert bad.exit_code != 0 and "docx" in str(bad.exception or bad.output)
    empty = CliRunner().invoke(cli, ["report", "--runs-dir", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert empty.exit_code != 0 and "no runs" in str(empty.exception or empty.output)


@pytest.fixture(scope="module")
def smoke_store(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real smoke runs: ours and ours-static at 7 and 9 frames (each also scores `blurred`)."""
    return tiny_smoke_runs(("ours", "ours-static"), "7,9", smoke_data, tmp_path_factory.mktemp("smoke-runs"))


@pytest.mark.slow
def test_report_on_real_smoke_runs(smoke_store: Path, tmp_path: Path) -> None:
    from bench.cli import cli

    out = tmp_path / "reports"
    result = CliRunner().invoke(cli, ["report", "--runs-dir", str(smoke_store), "--out", str(out),
                                      "--format", "md,csv,png,gif"])
    assert result.exit_code == 0, f"{result.output} {result.exception!r}"
    runs = load_runs(smoke_store)
    done = runs[(runs["status"] == "finished") & (runs["eval_set"] == "")]
    assert {"ours", "ours-static", "blurred"} <= set(done["method"])
    video = pd.read_csv(out / "tables" / "video.csv")
    for row in video.itertuples(index=False):
        stored = done[(done["method"] == row.method) & (done["frames"] == row.frames)]
        for key in ("eq6", "ppsnr", "pwpsnr", "mid_psnr"):
            assert getattr(row, key) == pytest.approx(stored[key].mean(), rel=1e-12), (row.method, key)
    assert {(m, n) for m in ("ours", "ours-static", "blurred") for n in (7, 9)} <= set(
        zip(video["method"], video["frames"], strict=True))
    deblur = pd.read_csv(out / "tables" / "deblurring.csv")
    dm = deblur[(deblur["source"] == "measured") & (deblur["method"] == "ours") & (deblur["frames"] == 9)]
    stored = done[(done["method"] == "ours") & (done["frames"] == 9)]
    assert dm["deblur_psnr"].iloc[0] == pytest.approx(stored["deblur_psnr"].mean(), rel=1e-12)
    figs = out / "figures"
    for stem in ("bars_video", "bars_deblur", "eq6_vs_blur_size", "training_curves"):
        assert (figs / f"{stem}.png").is_file() and not (figs / f"{stem}.pdf").exists(), stem
    assert list(figs.glob("strip_9f_*.png")) and (figs / "video_ours_9f.gif").is_file()
    readme = (out / "README.md").read_text()
    assert "train.iters_dm=2" in readme  # the shared overrides are stated in the provenance
    assert "`jin2018` at N=7: no run" in readme and "`srn` at N=9: no run" in readme


def test_claims_quote_the_papers_figures_as_the_report_holds_them(store: Path) -> None:
    from bench.report import paper
    from bench.report.claims import METRIC_LABELS, claim_cells, paper_figures, registered_claims
    from methods import registry

    pairs, note = registered_claims()
    assert not note and pairs
    for owner, claim in pairs:
        assert set(claim.sides(owner)) <= set(registry.names()) and claim.metric in METRIC_LABELS
    ctx = select(load_runs(store), None, None)
    quoted = {c.text: paper_figures(c, claim_cells(owner, c, ctx.frames)) for owner, c in pairs}
    # The paper's figures as printed (Table 1, Sec. 3.3), each stated once, on its registry entry.
    assert quoted["DM beats SRN in PSNR"] == (30.58, 30.10)
    assert quoted["DM beats SRN in SSIM"] == (0.941, 0.933)
    assert quoted["DM beats the blurred input in PSNR"] == (30.58, None)
    assert quoted["DM is smaller than SRN"] == (17.9, 27.5)
    assert quoted["DM is faster than SRN"] == (0.02, 0.4)
    assert quoted["ours beats jin2018 in Eq. 6 at 7 frames"] == (44.12, 49.06)
    assert quoted["ours at 9 frames stays below jin2018 at 7 in Eq. 6"] == (48.24, 49.06)
    assert quoted["ours is smaller than jin2018"] == (45.0, 70.0)
    assert quoted["ours is faster than jin2018 (video)"] == (0.39, 1.10)
    assert quoted["the TV term helps"] == (None, None)  # the supplement prints no figure
    # The report's Table 1 and Eq. 6 figures are the same entries' figures, not a second copy.
    dm, srn = (next(r for r in paper.table1() if r.method == m) for m in ("ours", "srn"))
    assert (dm.psnr, dm.ssim, dm.time_s, dm.size_mb) == (30.58, 0.941, 0.02, 17.9)
    assert (srn.psnr, srn.ssim, srn.time_s, srn.size_mb) == (30.10, 0.933, 0.4, 27.5)
    assert paper.eq6_figures() == {("ours", 7): 44.12, ("ours", 9): 48.24, ("jin2018", 7): 49.06}
    sources = [c.source for _, c in pairs]
    assert sources == sorted(sources, key=["Table 1", "Sec. 3.3", "supp."].index)  # the paper's order


def test_report_is_built_when_the_registry_fails(store: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from methods import registry

    def broken(family: str | None = None) -> list[str]:
        raise KeyError("a method module changed under us")

    monkeypatch.setattr(registry, "names", broken)
    result = build_report(store, tmp_path / "r", parse_formats("md"))
    assert result.claims == []
    assert "did not load" in (tmp_path / "r" / "tables" / "claims.md").read_text()
    assert (tmp_path / "r" / "tables" / "video.md").is_file()


# --- the report's folder may hold the user's files ----------------------------------------------------------

USER_FILES = {"figures/my_plot.png": b"\x89PNG user plot", "tables/data.csv": b"a,b\n1,2\n",
              "tables/notes.md": b"# my notes\n", "deep/nested/.session.tmp": b"editor state"}


def _user_folder(root: Path, readme: bool) -> dict[str, bytes]:
    files = dict(USER_FILES, **({"README.md": b"# My project\n"} if readme else {}))
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_report_into_a_folder_of_user_files_leaves_every_one_byte_identical(store: Path,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "project"
    user = _user_folder(out, readme=False)
    args = ["report", "--runs-dir", str(store), "--out", str(out), "--format", "md,csv,png"]
    code, _, err = faults.invoke(args)
    assert code == 0, err
    assert {rel: _files(out)[rel] for rel in user} == user
    assert (out / "README.md").read_text().startswith("# Blurred Moments Bench: report")
    written = set(_files(out)) - set(user)
    # A rerun without the figures' runs: the report's own stale figures go, the user's plot stays.
    smaller = tmp_path / "runs"
    smaller.mkdir()
    for folder in store.iterdir():
        if (label_of(folder) or "").startswith(("ours-9f", "blurred-9f")):
            (smaller / folder.name).symlink_to(folder)
    code, _, err = faults.invoke([*args[:2], str(smaller), *args[3:]])
    assert code == 0, err
    after = _files(out)
    assert {rel: after[rel] for rel in user} == user
    gone = written - set(after)
    assert gone and all(rel.startswith(("figures/", "tables/")) for rel in gone), gone


def test_report_refuses_to_replace_a_readme_it_did_not_write_and_writes_nothing(store: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "project"
    user = _user_folder(out, readme=True)
    code, _, err = faults.invoke(["report", "--runs-dir", str(store), "--out", str(out),
                                  "--format", "md,png"])
    faults.assert_one_line_error(code, err)
    assert err.strip() == (f"error: {out / 'README.md'}: a file that bench report did not write (or that was "
                           "changed since) is in the way; it is kept: move it away or choose another --out")
    assert _files(out) == user  # byte-identical, and not one file added (no lock, no record)


def _script_repo(tmp_path: Path) -> Path:
    """A committed git repository holding a copy of reports/regenerate.sh and one tracked file."""
    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "reports" / "regenerate.sh", repo / "reports")
    (repo / "tracked.txt").write_text("one\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                       capture_output=True)
    return repo


def _regenerate(repo: Path, bench: str, jobs: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "reports/regenerate.sh"], cwd=repo, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "BENCH": bench, "JOBS": str(jobs)}, timeout=120)


def test_regenerate_script_refuses_a_dirty_tree(tmp_path: Path) -> None:
    repo = _script_repo(tmp_path)
    (repo / "tracked.txt").write_text("two\n")  # an uncommitted change
    proc = _regenerate(repo, "/bin/false")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "uncommitted changes" in lines[0]
    (repo / "tracked.txt").write_text("one\n")  # clean again: the script goes on to its first bench command
    clean = _regenerate(repo, "/bin/false")
    assert clean.returncode == 1 and "uncommitted" not in clean.stderr  # /bin/false ran and failed


def _fake_bench(tmp_path: Path, fail: str = "") -> tuple[str, Path]:
    """A stand-in for bench that logs the cores it may use and its arguments, and fails on `fail`."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-bench"
    failing = f'case "$*" in *"{fail}"*) exit 3;; esac\n' if fail else ""
    fake.write_text("#!/bin/bash\n"
                    f'echo "$(grep Cpus_allowed_list /proc/self/status | cut -f2) $*" >> {log}\n{failing}')
    fake.chmod(0o755)
    return str(fake), log


def _calls(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]


def _training_jobs(calls: list[tuple[str, str]]) -> list[str]:
    return [args for _, args in calls if args.startswith(("run --method", "ablate"))
            and "blurred" not in args]


@pytest.mark.parametrize("jobs", [1, 2])
def test_regenerate_script_runs_every_snapshot_job_once_then_times_and_reports(tmp_path: Path,
                                                                               jobs: int) -> None:
    bench, log = _fake_bench(tmp_path)
    proc = _regenerate(_script_repo(tmp_path), bench, jobs)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(log)
    args = [a for _, a in calls]
    assert args[:2] == ["prepare", "run --method blurred --frames 7,9"]
    assert args[-2:] == ["perf --profile paper --frames 7 --repeats 5 --store",
                         "report --format md,csv,tex,png,gif,html"]
    trained = _training_jobs(calls)
    assert len(trained) == len(set(trained)) == len(args) - 4  # each once, nothing else in between
    video = [a for a in trained if "ours-gt-center" in a]  # the paper's method with its floor and oracle
    assert sorted(video) == sorted(f"run --method ours,ours-static,ours-gt-center,gt-static --frames {n} "
                                   f"--seeds {s} --no-floor" for n in (7, 9) for s in (0, 1, 2))
    assert {a.split()[2] for a in trained if a.startswith("run") and a not in video} == {"srn", "jin2018"}
    ablations = {a.split()[-1] for a in trained if a.startswith("ablate")}
    from bench.report.claims import registered_ablations

    assert ablations == set(registered_ablations())
    assert all(a.startswith("ablate --seeds 0 ") for a in trained if a.startswith("ablate"))
    cores = {c for c, a in calls if a in trained}
    if jobs == 1:
        assert trained.index(video[0]) < trained.index(next(a for a in trained if a.startswith("ablate")))
        assert len(cores) == 1 and cores == {calls[0][0]}  # every usable core, like the steps around it
    else:  # one core per worker, as many workers as asked (the usable cores permitting)
        assert all(c.isdigit() for c in cores)
        assert len(cores) == min(2, len(os.sched_getaffinity(0)))


def test_regenerate_script_goes_on_past_a_failed_job_and_then_fails_before_the_report(tmp_path: Path) -> None:
    bench, log = _fake_bench(tmp_path, fail="ours-joint")
    proc = _regenerate(_script_repo(tmp_path), bench, jobs=2)
    assert proc.returncode == 1
    assert "error: bench ablate --seeds 0 --only ours-joint failed (exit 3" in proc.stderr
    args = [a for _, a in _calls(log)]
    assert len(_training_jobs(_calls(log))) == 17  # every job was tried, once
    assert not any(a.startswith(("perf", "report")) for a in args)


def test_only_gopro_data_is_comparable_and_video_data_is_not_called_synthetic() -> None:
    from bench.report.tables import comparable, data_label

    assert comparable(["gopro"]) and not comparable([]) and not comparable(["gopro", "video"])
    assert not comparable(["synthetic-quick"]) and data_label(["synthetic-quick"]) == "Synthetic data"
    assert data_label(["video"]) == "Data from your own video clips"
    assert data_label(["gopro", "video"]) == "Data from your own video clips"
    assert data_label(["synthetic-quick", "video"]) == "Synthetic or own data"


def test_training_curves_draw_one_panel_per_trained_stage_with_its_validation_curve(store: Path) -> None:
    from bench.report import select
    from bench.report.figures import _stage_panels, _val_points

    ctx = select(load_runs(store), None, None)
    panels = _stage_panels(ctx)
    # The DM stage key is shared by every variant at an N (lowest seed): one panel per N, all its users.
    assert [(p["stage"], p["frames"]) for p in panels] == [("dm", 7), ("dm", 9)]
    nine = panels[1]
    assert nine["variants"][:2] == ["ours", "ours-static"] and {"srn", "ours-no-tv"} <= set(nine["variants"])
    assert "blurred" not in nine["variants"]  # a floor trains nothing
    assert nine["loss"] == ([2.0, 4.0, 6.0], [0.9, 0.5, 0.3])
    assert _val_points(nine["validation"]) == ([0.0, 3.0], [20.0, 24.0])  # a null score is left out
    assert nine["validation"]["reference"] == 25.0


def test_damaged_sample_images_are_skipped_with_one_line_each(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for method in ("ours", "blurred"):
        make_run(runs, method, 7, 0, samples=1, **base_values(method, 0))
    samples = find(runs, "ours-7f-s0") / "samples"
    (samples / "s0_frame2.png").write_bytes(b"not a png at all")  # garbage
    (samples / "s0_truth3.png").write_bytes((samples / "s0_truth3.png").read_bytes()[:60])  # truncated
    (samples / "s0_deblurred.png").write_bytes(b"")  # empty
    from bench.cli import cli

    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["report", "--runs-dir", str(runs), "--out", str(out),
                                      "--format", "md,png,gif"])
    assert result.exit_code == 0, f"{result.output} {result.exception!r}"
    readme = (out / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("- damaged sample image")]
    assert len(lines) == 3  # one line per damaged image, though the strip and the GIF both read them
    for name in ("s0_frame2.png", "s0_truth3.png", "s0_deblurred.png"):
        assert sum(name in line for line in lines) == 1, name
        assert "warning: " in result.output and name in result.output
    figs = out / "figures"
    assert (figs / "strip_7f_s0.png").is_file()  # the strip is drawn without the damaged panels
    assert (figs / "video_blurred_7f.gif").is_file() and not (figs / "video_ours_7f.gif").exists()


def test_each_metrics_json_is_parsed_once_per_report(store: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import Counter

    from bench.store import RunMetrics

    parsed: Counter[Path] = Counter()
    original = RunMetrics.from_json.__func__

    def counting(cls: type, data: dict, path: Path) -> RunMetrics:
        parsed[Path(path)] += 1
        return original(cls, data, path)

    monkeypatch.setattr(RunMetrics, "from_json", classmethod(counting))
    build_report(store, tmp_path / "r", parse_formats("md,csv,png,gif"))
    expected = {p for p in store.rglob("metrics.json")}
    assert set(parsed) == expected  # every run's and evaluation's metrics.json was read ...
    assert max(parsed.values()) == 1  # ... exactly once


def _read_back(path: Path) -> tuple[pd.DataFrame, list[list[str]]]:
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        return pd.read_csv(path), list(csv.reader(f))


@pytest.mark.parametrize("registry_loads", [True, False])
def test_every_csv_is_plain_data_with_its_notes_in_the_sidecar(store: Path, tmp_path: Path,
                                                               registry_loads: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    runs = tmp_path / "runs"
    shutil.copytree(store, runs, symlinks=True)
    # Cells that break naive CSV: commas, a '#', quotes and a line break inside one error message.
    error = 'cuda#0, "oom",\nretry with --batch 2'
    write_run(runs, "ours-9f-s7", "ours", 9, 7, status="failed", error=error)
    if not registry_loads:  # no claims, no video rows, no ablations: header-only tables
        from methods import registry

        monkeypatch.setattr(registry, "names", lambda family=None: (_ for _ in ()).throw(KeyError("gone")))
    out = tmp_path / "r"
    result = build_report(runs, out, parse_formats("csv"))
    sidecar = json.loads((out / "tables" / "provenance.json").read_text())["tables"]
    csvs = sorted(p for p in result.tables if p.suffix == ".csv")
    assert [p.stem for p in csvs] == sorted(sidecar) and len(csvs) == 7
    empty = 0
    for path in csvs:
        frame, rows = _read_back(path)
        entry = sidecar[path.stem]
        assert not path.read_text().startswith("#"), path.name
        assert rows[0] == list(frame.columns) == entry["columns"], path.name  # one header row
        assert frame.shape == (entry["rows"], len(entry["columns"])) == (len(rows) - 1, len(rows[0]))
        assert all(len(r) == len(rows[0]) for r in rows), path.name
        assert entry["title"] and entry["notes"] and entry["file"] == path.name
        empty += entry["rows"] == 0
    assert any("Data: " in note for note in sidecar["video"]["notes"])  # the provenance moved, not lost
    errors = pd.read_csv(out / "tables" / "runs.csv")["error"]
    assert error in set(errors)  # the cell reads back whole
    assert (empty > 0) == (not registry_loads)


def test_tables_follow_the_registry_fields_not_method_names(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from bench.metrics import COST_METRICS
    from bench.report.claims import PERF_TIMES
    from bench.report.tables import ablation_table, runtime_table
    from bench.store import PERF_TIMES as STORED_PASSES
    from methods import registry
    from methods.registry import PaperFigure

    # Another entry as the floor, and a paper figure given to an entry that had none.
    figure = PaperFigure("size_mb", 0.5, "Sec. 3.3")
    monkeypatch.setitem(registry.REGISTRY, "blurred", replace(registry.get("blurred"), floor=False,
                                                              paper=(figure,)))
    monkeypatch.setitem(registry.REGISTRY, "ours-static", replace(registry.get("ours-static"), floor=True))
    runs = tmp_path / "runs"
    for method in ("ours", "blurred", "ours-static", "ours-no-tv", "ours-dm-fancy"):
        values = base_values(method if method in ("ours", "blurred", "ours-static") else "ours", 0)
        make_run(runs, method, 9, 0, samples=0, **values)
    make_run(runs, "ours-no-tv", 9, 1, samples=0, overrides=("train.iters_bie=5",), **base_values("ours", 1))
    ctx = select(load_runs(runs), None, None)
    video = video_table(ctx)
    ours = video.numeric[video.numeric["method"] == "ours"].iloc[0]
    assert ours["eq6_below_floor"] == pytest.approx(90.0 - 60.0)  # against ours-static now, not blurred
    assert "Below `ours-static` floor by" in video.display.columns
    runtime = runtime_table(ctx).numeric.set_index("method")
    assert runtime.loc["blurred", "paper_size_mb"] == 0.5 and runtime.loc["ours", "paper_size_mb"] == 45.0
    variants = list(ablation_table(ctx).numeric["variant"])
    assert "ours-no-tv [train.iters_bie=5]" in variants  # a stored variant of a registered ablation
    assert "ours-dm-fancy" not in variants  # an unregistered name is no ablation, whatever it looks like
    # The speed claims' timed passes are the stored perf row's keys, one per speed metric.
    assert sorted(PERF_TIMES.values()) == sorted(STORED_PASSES) and set(PERF_TIMES) <= set(COST_METRICS)


def test_strips_draw_small_frames_at_their_own_width_and_large_ones_at_the_figure_resolution() -> None:
    import matplotlib.pyplot as plt

    from bench.report.figures import DPI, strip_dpi

    fig, ax = plt.subplots(figsize=(2.0, 2.0))
    ax.imshow(np.zeros((100, 160, 3)))
    ax.apply_aspect()
    drawn_in = ax.get_position().width * fig.get_figwidth()
    dpi = strip_dpi(fig)
    assert dpi < DPI and 160 <= dpi * drawn_in < 160 + drawn_in  # no frame pixel lost, none interpolated
    ax.imshow(np.zeros((720, 1280, 3)))
    assert strip_dpi(fig) == DPI  # never above the other figures' resolution
    plt.close(fig)
