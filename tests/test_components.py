"""bench/components.py: stored weights into a method's networks, a misfit refused in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.components import load_components
from bench.errors import BenchError


def test_weights_that_do_not_fit_are_one_line_naming_the_file_and_the_fix() -> None:
    nets = nn.ModuleDict({"f": nn.Conv2d(3, 3, 1)})
    with pytest.raises(BenchError, match=r"^x\.pt: the f weights do not fit the current network \(.*\); "
                                         r"rerun it$") as err:
        load_components(nets, {"f": {"weight": torch.zeros(1)}}, source="x.pt", fix="rerun it")
    assert "\n" not in str(err.value)


def test_named_components_must_be_exactly_the_stored_ones() -> None:
    nets = nn.ModuleDict({"f": nn.Conv2d(1, 1, 1), "g": nn.Conv2d(1, 1, 1)})
    states = {name: {k: torch.full_like(v, 3.0) for k, v in net.state_dict().items()}
              for name, net in nets.items()}
    before = {name: net.weight.detach().clone() for name, net in nets.items()}
    # Another stage's checkpoint (f and g where the stage trains f alone) would leave a network at random
    # initialisation without a word: refused, and nothing is copied.
    refusal = r"^ckpt\.pt: holds the components \['f', 'g'\], not \['f'\]; retrain$"
    with pytest.raises(BenchError, match=refusal):
        load_components(nets, states, names=["f"], source="ckpt.pt", fix="retrain")
    assert all(torch.equal(nets[n].weight, before[n]) for n in nets)
    load_components(nets, {"f": states["f"]}, names=["f"])
    assert torch.equal(nets["f"].weight, torch.full_like(nets["f"].weight, 3.0))
    assert torch.equal(nets["g"].weight, before["g"])


def test_without_names_every_stored_component_with_a_network_is_copied() -> None:
    nets = nn.ModuleDict({"f": nn.Conv2d(1, 1, 1)})
    states = {"f": {k: torch.full_like(v, 2.0) for k, v in nets["f"].state_dict().items()},
              "extra": {"weight": torch.zeros(1)}}  # no such network here (a weights file of a larger method)
    load_components(nets, states)
    assert torch.equal(nets["f"].weight, torch.full_like(nets["f"].weight, 2.0))
