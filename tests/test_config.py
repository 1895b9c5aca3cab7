"""Profiles and `--set` overrides (bench/config.py, docs/DESIGN.md "Profiles")."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import DEFAULT_PROFILE, PROFILES, apply_overrides, get_profile, to_dict
from bench.errors import BenchError


def test_overrides_are_typed_and_leave_the_original_untouched():
    base = get_profile("smoke")
    before = to_dict(base)
    p = apply_overrides(base, ["train.iters_dm=7", "train.lr_scale=0.5", "train.flip=false",
                               "data.motion_px=3", "train.device=cpu"])
    assert (p.train.iters_dm, p.train.lr_scale, p.train.flip, p.data.motion_px) == (7, 0.5, False, 3.0)
    assert p.train.device == "cpu" and isinstance(p.data.motion_px, float)
    # The next run in the same process (bench ablate runs several) starts from the registered profile.
    assert to_dict(base) == before and to_dict(get_profile("smoke")) == before


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


# --- validation at the edge ---------------------------------------------------------------------------------

def _leaf_paths() -> list[tuple[str, type]]:
    """Every `section.field` of a profile with the section's class."""
    from bench.config import Profile

    return [(f"{s.name}.{f.name}", type(getattr(PROFILES["quick"], s.name)))
            for s in dataclasses.fields(Profile) if s.name != "name"
            for f in dataclasses.fields(getattr(PROFILES["quick"], s.name))]


def test_every_field_declares_a_rule_and_the_profiles_obey_theirs():
    from bench.config import Profile, rules, validate

    missing = [f"{cls.__name__}.{name}" for cls in {c for _, c in _leaf_paths()} | {Profile}
               for name, (rule, _) in rules(cls).items() if rule is None and name not in
               ("data", "train", "model", "eval")]
    assert missing == [], f"declare a rule in the annotation of: {missing}"
    for profile in PROFILES.values():
        assert validate(profile) is profile


@pytest.mark.parametrize("item, message", [
    # Values that used to crash, hang or allocate tens of GB later, each refused up front.
    ("train.lr_scale=nan", "--set train.lr_scale=nan: train.lr_scale takes numbers from 1e-12 to 1e+36"),
    ("data.motion_px=inf", "--set data.motion_px=inf: data.motion_px takes numbers from 0 to 1000"),
    ("data.height=0", "--set data.height=0: data.height takes whole numbers from 16 to 4096"),
    ("data.sequence_length=1",
     "--set data.sequence_length=1: data.sequence_length takes whole numbers from 3 to 100000"),
    ("data.max_layers=-1", "--set data.max_layers=-1: data.max_layers takes whole numbers from 1 to 64"),
    ("data.width=100000", "--set data.width=100000: data.width takes whole numbers from 16 to 4096"),
    ("model.dm_width=100000",
     "--set model.dm_width=100000: model.dm_width takes whole numbers from 0 to 1024"),
    ("train.ckpt_every=0",
     "--set train.ckpt_every=0: train.ckpt_every takes whole numbers from 1 to 1000000000"),
    ("train.iters_dm=-1", "--set train.iters_dm=-1: train.iters_dm takes whole numbers from 0 to 1000000000"),
    ("eval.runtime_repeats=0",
     "--set eval.runtime_repeats=0: eval.runtime_repeats takes whole numbers from 1 to 100000"),
    ("data.test_sequences=0",
     "--set data.test_sequences=0: data.test_sequences takes whole numbers from 1 to 100000"),
    ("train.crop=40", "--set train.crop=40: train.crop takes multiples of 16 from 16 to 4096"),
    ("data.source=footage", "--set data.source='footage': data.source takes one of synthetic, gopro, video"),
    ("train.device=gpu", "--set train.device='gpu': train.device takes auto, cpu, cuda, cuda:K or mps"),
    ("train.zoom_min=3", "--set train.zoom_min=3.0: train.zoom_min must not exceed train.zoom_max (2.0); "
                         "raise train.zoom_max or lower train.zoom_min"),
])
def test_values_outside_a_rule_are_refused_with_the_field_and_its_range(item, message):
    with pytest.raises(BenchError) as err:
        apply_overrides(get_profile("smoke"), [item])
    assert str(err.value) == message


def test_check_option_and_int_lists_use_the_same_rules():
    from bench.config import FPS, SEED, check_option, parse_int_list

    assert check_option("--fps", 12.5, FPS) == 12.5
    for bad in (float("nan"), float("inf"), 1e-300, 0.0, -1.0, 1e6):
        with pytest.raises(BenchError, match=r"^--fps .*: --fps takes numbers from 0.1 to 240$"):
            check_option("--fps", bad, FPS)
    with pytest.raises(BenchError, match="^--seeds -1: --seeds takes whole numbers from 0 to 4294967295$"):
        parse_int_list("0,-1", "--seeds", "0,1,2", rule=SEED)


_TEXT = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e309", "-1e309", "1e-300", "0", "-1", "1", "2", "3",
                     "15", "16", "48", "100000", "4096", "1e3", "0.5", "-0", "", " ", "true", "false", "yes",
                     "maybe", "cpu", "cuda:1", "gopro", "synthetic", "9" * 5000, "1_000", "0x10", "\n1",
                     "[1]", "{}", "null"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(path=st.sampled_from([p for p, _ in _leaf_paths()]), text=_TEXT,
       profile=st.sampled_from(sorted(PROFILES)))
def test_any_set_value_of_any_field_is_taken_whole_or_refused_in_one_line(path, text, profile):
    """No `--set` value of any field escapes as a traceback: either the resolved profile is valid through
    and through (it stores as strict JSON), or the refusal is one line naming the field."""
    import json

    from bench.config import validate

    try:
        resolved = apply_overrides(get_profile(profile), [f"{path}={text}"])
    except BenchError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("--set ") and path in message, message
        return
    json.dumps(to_dict(resolved), allow_nan=False)
    assert validate(resolved) is resolved
