"""`bench run`'s verdict against the floors (bench/floor_verdict.py) on crafted stores: which floors, which
stored runs stand for them, and what is printed."""

from __future__ import annotations

from records import write_run

from bench.commands.run import print_verdicts
from bench.floor_verdict import VERDICT_METRICS, clears_every_floor, floor_verdicts, floors_of
from bench.run import RunOutcome
from bench.store import read_record
from bench.verdict import HELD, NOT_HELD

JITTER = [0.3, -0.2, 0.1, -0.4, 0.25, -0.05, 0.15, -0.15]  # per-sample spread, so the bootstrap has noise


def store(tmp_path, ours=(60.0, 24.0), static=(65.0, 23.5), blurred=(70.0, 23.0), seed=0, label="L"):
    """ours, ours-static and blurred at N = 7 on one set: (eq6, ppsnr) means each; returns ours's folder."""
    runs = tmp_path / "runs"
    common = {"frames": 7, "samples": 8, "jitter": JITTER}
    folder = write_run(runs, label, "ours", seed=seed, values={"eq6": ours[0], "ppsnr": ours[1]}, **common)
    if static is not None:
        write_run(runs, label, "ours-static", seed=seed, values={"eq6": static[0], "ppsnr": static[1]},
                  **common)
    if blurred is not None:
        write_run(runs, label, "blurred", seed=0, values={"eq6": blurred[0], "ppsnr": blurred[1]},
                  trained=False, **common)
    return runs, folder


def verdicts_of(runs, folder, scored=None):
    return floor_verdicts(folder, read_record(folder).metrics, runs, scored or {})


def test_a_video_method_is_judged_against_blurred_and_its_deblurring_network_alone():
    assert floors_of("ours") == ["blurred", "ours-static"]
    assert floors_of("blurred") == []  # a floor has no floor
    assert floors_of("ours-static") == floors_of("srn") == []  # nor has a still answer (one frame repeated)
    assert floors_of("jin2018") == ["blurred"]  # a video method without a deblurring network of its own


def test_a_run_above_both_floors_clears_them_on_both_metrics(tmp_path):
    runs, folder = store(tmp_path)
    verdicts = verdicts_of(runs, folder)
    assert [(v.floor, v.metric) for v in verdicts] == [(f, m) for f in ("blurred", "ours-static")
                                                       for m in VERDICT_METRICS]
    assert all(v.judgement.verdict == HELD for v in verdicts)
    eq6_blurred = verdicts[0].judgement
    assert eq6_blurred.better == 60.0 and eq6_blurred.worse == 70.0 and eq6_blurred.gain == 10.0
    assert clears_every_floor(verdicts) is True


def test_losing_to_the_deblurred_centre_on_ppsnr_fails_the_verdict(tmp_path):
    runs, folder = store(tmp_path, ours=(60.0, 23.2), static=(65.0, 23.8))  # N = 7 on AMD EPYC
    verdicts = {(v.floor, v.metric): v.judgement.verdict for v in verdicts_of(runs, folder)}
    assert verdicts[("ours-static", "ppsnr")] == NOT_HELD and verdicts[("ours-static", "eq6")] == HELD
    assert clears_every_floor(verdicts_of(runs, folder)) is False


def test_a_floor_stored_for_another_seed_or_profile_does_not_stand_in(tmp_path):
    runs, folder = store(tmp_path, static=None)
    write_run(runs, "L", "ours-static", seed=1, frames=7, values={"eq6": 65.0, "ppsnr": 23.5})
    write_run(runs, "other", "ours-static", seed=0, frames=7, values={"eq6": 65.0, "ppsnr": 23.5})
    missing = [v for v in verdicts_of(runs, folder) if v.floor == "ours-static"]
    assert missing and all(v.judgement is None for v in missing)
    assert missing[0].how_to_score == "bench run --method ours-static --profile smoke --frames 7 --seeds 0"
    assert clears_every_floor(verdicts_of(runs, folder)) is True  # judged only on what is stored


def test_an_untrained_floor_stored_at_one_seed_stands_for_every_seed(tmp_path):
    runs, folder = store(tmp_path, seed=3)  # blurred is stored at seed 0 only; ours and ours-static at 3
    verdicts = verdicts_of(runs, folder)
    assert [v.floor for v in verdicts if v.judgement is not None] == ["blurred"] * 2 + ["ours-static"] * 2
    write_run(runs, "L", "ours", seed=4, frames=7, values={"eq6": 60.0, "ppsnr": 24.0}, jitter=JITTER)
    lone = next(p for p in runs.iterdir() if p.name.startswith("ours-") and read_record(p).metrics.seed == 4)
    missing = [v.floor for v in verdicts_of(runs, lone) if v.judgement is None]
    assert missing == ["ours-static"] * 2  # a trained floor still needs its own seed


def test_the_floor_this_command_scored_is_used_before_the_store(tmp_path):
    runs, folder = store(tmp_path, blurred=(70.0, 23.0))
    scored_runs, scored_folder = store(tmp_path / "other", blurred=(50.0, 25.0))
    floor = read_record(next(p for p in scored_runs.iterdir() if p.name.startswith("blurred-"))).metrics
    verdicts = verdicts_of(runs, folder, {"blurred": floor})
    assert [v.judgement.verdict for v in verdicts if v.floor == "blurred"] == [NOT_HELD, NOT_HELD]


def test_bench_run_prints_each_verdict_and_the_machine(tmp_path, capsys):
    runs, folder = store(tmp_path, ours=(60.0, 23.2), static=(65.0, 23.8))
    outcome = RunOutcome(folder, read_record(folder).metrics)
    print_verdicts(outcome, None, runs)
    out = " ".join(capsys.readouterr().out.split())
    assert "pPSNR (higher is better): ours 23.200 does NOT beat ours-static 23.800" in out
    assert "Eq. 6 error (lower is better): ours 60.000 beats blurred 70.000 (gain +10.000" in out
    assert "ours does NOT clear every floor on this machine" in out
