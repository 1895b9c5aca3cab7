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


def test_only_the_named_components_present_in_both_are_copied() -> None:
    nets = nn.ModuleDict({"f": nn.Conv2d(1, 1, 1), "g": nn.Conv2d(1, 1, 1)})
    states = {name: {k: torch.full_like(v, 3.0) for k, v in net.state_dict().items()}
              for name, net in nets.items()}
    states["extra"] = {"weight": torch.zeros(1)}  # no such network: skipped, not an error
    before_g = nets["g"].weight.detach().clone()
    load_components(nets, states, names=["f", "extra"])
    assert torch.equal(nets["f"].weight, torch.full_like(nets["f"].weight, 3.0))
    assert torch.equal(nets["g"].weight, before_g)
