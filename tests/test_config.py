"""Profiles and `--set` overrides (bench/config.py, SPEC 7)."""

from __future__ import annotations

import dataclasses

import pytest

from bench.config import DEFAULT_PROFILE, PROFILES, apply_overrides, get_profile, to_dict
from bench.errors import BenchError


def test_overrides_are_typed_and_leave_the_original_untouched():
    base = get_profile("smoke")
    p = apply_overrides(base, ["train.iters_dm=7", "train.lr_scale=0.5", "train.flip=false",
                               "data.motion_px=3", "train.device=cpu"])
    assert (p.train.iters_dm, p.train.lr_scale, p.train.flip, p.data.motion_px) == (7, 0.5, False, 3.0)
    assert p.train.device == "cpu" and isinstance(p.data.motion_px, float)
    assert base.train.iters_dm != 7  # frozen dataclasses: overrides return a new profile
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.train.iters_dm = 1


@pytest.mark.parametrize("item, message", [
    ("train.iters=5", "unknown field 'iters'"),
    ("trian.iters_dm=5", "unknown field 'trian'"),
    ("train=5", "is a section"),
    ("train.iters_dm=five", "expected a whole number"),
    ("train.flip=maybe", "expected true or false"),
    ("train.iters_dm", "expected key=value"),
    ("name=x", "unknown field 'name'"),
])
def test_bad_overrides_are_one_line_errors(item, message):
    with pytest.raises(BenchError, match=message):
        apply_overrides(get_profile("quick"), [item])


def test_profiles_state_budgets_and_the_paper_hyper_parameters():
    assert DEFAULT_PROFILE == "quick" and set(PROFILES) == {"smoke", "quick", "paper"}
    paper = get_profile("paper").train
    # Sec. 3.1: 256x256 crops, batch 10 (video) and 16 (DM), 5e4 autoencoder and 4.5e5 DM iterations.
    assert (paper.crop, paper.batch_video, paper.batch_deblur) == (256, 10, 16)
    assert (paper.iters_autoencoder, paper.iters_dm) == (50_000, 450_000)
    assert (paper.zoom_min, paper.zoom_max, paper.flip) == (0.2, 2.0, True)
    assert get_profile("paper").data.source == "gopro"
    for p in PROFILES.values():
        t = p.train
        assert min(t.iters_dm, t.iters_autoencoder, t.iters_bie, t.batch_video, t.batch_deblur) > 0
        assert t.crop % 16 == 0 and to_dict(p)["name"] == p.name
    with pytest.raises(BenchError, match="unknown profile"):
        get_profile("fast")


def test_parse_int_list_names_the_option():
    from bench.config import parse_int_list

    assert parse_int_list("0, 1,2", "--seeds") == [0, 1, 2]
    for bad in ("", "a,b", "1.5"):
        with pytest.raises(BenchError, match="--seeds"):
            parse_int_list(bad, "--seeds")
