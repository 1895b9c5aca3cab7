"""methods/registry.py and the registered entries: every method builds, predicts and trains (smoke widths)."""

import json
import subprocess
import sys

import pytest
import torch

from methods import registry
from methods.registry import REGISTRY, Method, Prediction, get, names, summary

SMOKE = {"dm_width": 8, "dm_growth": 4, "dm_rdbs": 1, "video_width": 4, "jin_width": 4, "srn_width": 4}
METHODS = list(REGISTRY)


def _frames(method: Method) -> int:
    return method.frames[0] if method.frames else 5


def _batch(n: int, fields: tuple[str, ...], size: int = 16) -> dict[str, torch.Tensor]:
    """A training batch holding exactly the fields an objective declares (the loop passes no more)."""
    sharp = torch.rand(2, n, 3, size, size)
    full = {"blur": sharp.mean(1), "sharp": sharp, "center": sharp[:, n // 2]}
    return {k: full[k] for k in fields}


def test_registry_holds_the_paper_method_its_baselines_and_ablations():
    expected = {"ours", "blurred", "ours-static", "jin2018", "srn", "ours-gt-center", "ours-intensity",
                "ours-nonrecurrent", "ours-joint", "ours-no-sharp", "ours-single-scale", "ours-no-tv",
                "ours-dm-resblocks"}
    assert expected <= set(names())
    assert names("paper") == ["ours"]
    assert any("growth" in n for n in names("ablation"))
    assert set(names("baseline")) >= {"blurred", "ours-static", "jin2018", "srn", "ours-gt-center"}


def test_get_unknown_lists_the_names():
    with pytest.raises(KeyError, match="ours"):
        get("no-such-method")


@pytest.mark.parametrize("name", METHODS)
def test_every_entry_builds_and_predicts(name):
    torch.manual_seed(0)
    method = get(name)
    nets = method.build(SMOKE)
    n = _frames(method)
    sharp = torch.rand(1, n, 3, 32, 48)
    blur = sharp.mean(1)
    nets.train()
    pred = method.predict(nets, blur, n, center=sharp[:, n // 2])
    assert isinstance(pred, Prediction)
    assert pred.deblurred.shape == (1, 3, 32, 48) and pred.frames.shape == (1, n, 3, 32, 48)
    assert pred.flows is None or pred.flows.shape == (1, n, 2, 32, 48)
    assert torch.isfinite(pred.frames).all()
    assert all(m.training for m in nets.modules())  # predict restores the training flags
    assert torch.equal(method.deblur(nets, blur), pred.deblurred)
    repeated = all(torch.equal(pred.frames[:, i], pred.frames[:, 0]) for i in range(n))
    assert repeated == method.still  # `still` (not judged against the floors) says what predict does


def _stage_cases() -> list[tuple[str, str]]:
    """(method, stage) pairs, one per distinct stage identity (equal identity = same networks and loss)."""
    seen, cases = set(), []
    for name, method in REGISTRY.items():
        for stage in method.stages:
            key = json.dumps(method.stage_identity(stage.name, SMOKE), sort_keys=True)
            if key not in seen:
                seen.add(key)
                cases.append((name, stage.name))
    return cases


@pytest.mark.parametrize(("name", "stage_name"), _stage_cases())
def test_gradients_reach_every_trained_parameter(name, stage_name):
    torch.manual_seed(0)
    method = get(name)
    stage = method.stage(stage_name)
    nets = method.build(SMOKE)
    for key, net in nets.items():
        net.requires_grad_(key in stage.trains)
    loss, logs = method.stage_loss(stage, nets, _batch(_frames(method), stage.objective.fields))
    assert torch.isfinite(loss) and loss.item() > 0 and logs["loss"] == pytest.approx(loss.item())
    loss.backward()
    for key in stage.trains:
        for pname, p in nets[key].named_parameters():
            reached = p.grad is not None and p.grad.abs().sum() > 0
            assert reached, f"{name}/{stage_name}: no gradient at {key}.{pname}"


def _what_trains(method: Method, stage_name: str) -> tuple:
    """What the gradient test exercises in a stage, read from the entry itself rather than its stage identity:
    the objective, the loss configuration it reads, and the networks it trains and runs (class, arguments)."""
    stage = method.stage(stage_name)

    def networks(keys: tuple[str, ...]) -> tuple:
        return tuple((k, method.components[k].cls, repr(sorted(method.components[k].resolve(SMOKE).items())))
                     for k in keys)

    loss = repr(method.loss) if stage.objective.video_loss else None
    return stage.objective, loss, networks(stage.trains), networks(stage.uses)


def test_the_gradient_cases_cover_every_distinct_stage():
    # The cases are deduplicated by stage identity; a stage identity that missed a difference (a loss knob, a
    # network argument) would drop a stage from the gradient test, and this names it.
    checked = {_what_trains(get(n), s) for n, s in _stage_cases()}
    missed = [f"{name}/{stage.name}" for name, method in REGISTRY.items() for stage in method.stages
              if _what_trains(method, stage.name) not in checked]
    assert not missed, f"stages no gradient case trains: {missed}"
    assert len(checked) < sum(len(m.stages) for m in REGISTRY.values())  # shared stages are checked once


def _ident(name: str, stage: str, model: dict | None = None) -> str:
    return json.dumps(get(name).stage_identity(stage, model), sort_keys=True)


@pytest.mark.parametrize("model", [None, SMOKE])
def test_stage_identities_share_what_is_shared(model):
    dm = _ident("ours", "dm", model)
    for other in ("ours-static", "ours-gt-center", "ours-no-sharp", "ours-no-tv", "ours-joint"):
        assert _ident(other, "dm", model) == dm
    for other in ("ours-dm-resblocks", "ours-dm-growth32", "ours-dm-growth96"):
        assert _ident(other, "dm", model) != dm
        assert _ident(other, "autoencoder", model) == _ident("ours", "autoencoder", model)
        assert _ident(other, "bie", model) == _ident("ours", "bie", model)
    assert _ident("ours-no-sharp", "autoencoder", model) == _ident("ours", "autoencoder", model)
    assert _ident("ours-no-sharp", "bie", model) != _ident("ours", "bie", model)
    assert _ident("ours-gt-center", "bie", model) == _ident("ours", "bie", model)
    for other in ("ours-single-scale", "ours-no-tv", "ours-intensity"):
        assert _ident(other, "autoencoder", model) != _ident("ours", "autoencoder", model)
    assert _ident("ours-joint", "bie", model) != _ident("ours", "bie", model)


def test_stage_identity_contents():
    ident = get("ours").stage_identity("bie")
    assert ident["stage"] == "bie" and ident["loss"]["mu"] == 0.02
    assert ident["lr"] == {"bie": 1e-4, "rvd": 2e-5}
    assert set(ident["trains"]) == {"bie", "rvd"} and "autoencoder" in ident["init_from"]
    assert get("ours").stage_identity("dm")["loss"] is None  # the DM's L1 does not read Eq. 4's config
    pairs = get("jin2018").stage_identity("jin-pairs")
    assert "center" in pairs["uses"] and "jin-center" in pairs["init_from"]
    json.dumps(ident)


def test_joint_schedule_has_the_budget_of_both_stages():
    joint = get("ours-joint")
    assert [s.name for s in joint.stages] == ["dm", "bie"]
    bie = joint.stage("bie")
    assert bie.init_from == () and bie.lr == {"bie": 1e-4, "rvd": 1e-4}
    assert bie.iters_keys == ("iters_autoencoder", "iters_bie")


def test_jin2018_refuses_other_frame_counts():
    jin = get("jin2018")
    jin.check_frames(7)
    msg = "jin2018 is defined for N=7 only (its four networks output frames 1-7); use --frames 7"
    for n in (3, 5, 9):
        with pytest.raises(ValueError) as err:
            jin.check_frames(n)
        assert str(err.value) == msg
    nets = jin.build(SMOKE)
    with pytest.raises(ValueError, match="N=7 only"):
        jin.predict(nets, torch.rand(1, 3, 16, 16), 9)


def test_ours_needs_odd_frames_and_the_oracle_needs_the_centre():
    with pytest.raises(ValueError, match="odd"):
        get("ours").check_frames(8)
    oracle = get("ours-gt-center")
    nets = oracle.build(SMOKE)
    with pytest.raises(ValueError, match="true central frame"):
        oracle.predict(nets, torch.rand(1, 3, 16, 16), 3)


def test_oracle_warps_the_true_centre():
    torch.manual_seed(0)
    oracle = get("ours-gt-center")
    nets = oracle.build(SMOKE)
    blur, center = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    pred = oracle.predict(nets, blur, 3, center=center)
    from methods.layers import warp

    assert torch.allclose(pred.frames[:, 0], warp(center, pred.flows[:, 0]), atol=1e-6)


def test_summary_rows():
    rows = summary(SMOKE)
    by_name = {r["name"]: r for r in rows}
    for name in REGISTRY:
        row = by_name[name]
        assert {"name", "family", "params", "size_mb"} <= set(row)
        assert row["size_mb"] == pytest.approx(row["params"] * 4 / 1e6, abs=1e-3)
    comps = [r for r in rows if r["family"] == "component"]
    expected = {"dm", "rve", "rvd", "bie", "srn", "center", "pair35", "pair26", "pair17"}
    assert expected <= {r["name"] for r in comps}
    ours = by_name["ours"]
    assert ours["params"] == sum(by_name[c]["params"] for k, c in ours["components"].items() if k != "rve")
    assert by_name["blurred"]["params"] == 0
    json.dumps(rows)


def test_default_dm_is_the_papers_size():
    dm = next(r for r in summary() if r["name"] == "dm")
    assert abs(dm["size_mb"] - 17.9) / 17.9 < 0.10


def test_methods_is_self_contained():
    code = "import sys, methods.registry; assert not [m for m in sys.modules if m.split('.')[0] == 'bench']"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="twice"):
        registry.register(get("ours"))


@pytest.mark.parametrize("name", ["ours", "ours-static", "srn", "jin2018"])
def test_for_inference_changes_the_layout_not_the_output(name):
    torch.manual_seed(0)
    method = get(name)
    nets = method.build(SMOKE)
    n = _frames(method)
    blur = torch.rand(1, 3, 32, 48)
    before = method.predict(nets, blur, n)
    nets = method.for_inference(nets, "cpu")
    assert not any(m.training for m in nets.modules())
    for key, comp in method.components.items():
        weights = [p for p in nets[key].parameters() if p.dim() == 4]
        # channels-last and no longer contiguous (a 1x1 or single-channel kernel is both, so it says nothing)
        layout = [p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                  for p in weights if p.shape[-1] > 1 and p.shape[1] > 1]
        assert layout and all(v == comp.channels_last for v in layout), key
    after = method.predict(nets, blur, n)
    assert torch.allclose(before.frames, after.frames, atol=1e-5)
    assert torch.allclose(before.deblurred, after.deblurred, atol=1e-5)
    assert any(c.channels_last for c in get("ours").components.values())  # the fast path is in use


def test_every_entry_names_metrics_and_entries_that_bench_knows():
    """methods/ cannot import bench's metric vocabulary, so this keeps the registry's metric keys (claims,
    paper figures) and its report fields (deblur_alone, floor) inside what bench reads."""
    from bench.metrics import CLAIMABLE, VOCABULARY

    claims = [(m.name, c) for m in REGISTRY.values() for c in m.claims]
    assert len(claims) >= 10
    for owner, claim in claims:
        assert claim.metric in CLAIMABLE, (owner, claim.text)
        assert set(claim.sides(owner)) <= set(REGISTRY), (owner, claim.text)
    figures = [(m.name, f) for m in REGISTRY.values() for f in m.paper]
    assert {name for name, _ in figures} == {"ours", "ours-static", "jin2018", "srn"}
    for name, fig in figures:
        assert fig.metric in VOCABULARY and fig.source in ("Table 1", "Sec. 3.3"), (name, fig)
    for method in REGISTRY.values():
        if method.deblur_alone:  # holds this entry's deblurring network and nothing else
            alone = get(method.deblur_alone)
            assert list(alone.components) == ["dm"] and alone.components["dm"] == method.components["dm"]
    assert [m.name for m in REGISTRY.values() if m.floor] == ["blurred"]


def test_published_picks_the_figure_by_metric_frames_and_source():
    ours = get("ours")
    assert ours.published("eq6", 7) == 44.12 and ours.published("eq6", 9) == 48.24
    assert ours.published("eq6", 5) is None  # the paper gives no N=5 figure
    assert ours.published("size_mb") == 45.0 and ours.published("size_mb", source="Table 1") is None
    assert get("ours-static").published("size_mb", source="Table 1") == 17.9  # Table 1 prints the DM's
    assert ours.published("deblur_psnr", 9, "Table 1") == get("ours-static").published("deblur_psnr") == 30.58
    assert get("blurred").published("deblur_psnr") is None
