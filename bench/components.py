"""Stored weights into a method's networks, one component (network) at a time: the one loader of training
checkpoints (bench/train.py), `bench run --weights` (bench/run.py) and `bench infer` (bench/infer/)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from bench.errors import BenchError


def load_components(nets: nn.ModuleDict, state_dicts: dict[str, dict], names: Iterable[str] | None = None,
                    source: Path | str = "stored weights", fix: str = "rerun with --fresh") -> None:
    """Copy the named components' weights (all in `state_dicts` by default) into `nets`; a state dict that
    does not fit its network is a one-line error naming `source` and `fix`. With `names` (a stage's
    components), the state dicts must be exactly those: a missing one would leave its network at random
    initialisation without a word."""
    if names is not None and set(names) != set(state_dicts):
        raise BenchError(f"{source}: holds the components {sorted(state_dicts)}, not {sorted(set(names))}; "
                         f"{fix}")
    for name in names if names is not None else state_dicts:
        if name in state_dicts and name in nets:
            try:
                nets[name].load_state_dict(state_dicts[name])
            except (RuntimeError, TypeError, KeyError, ValueError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                raise BenchError(f"{source}: the {name} weights do not fit the current network ({first}); "
                                 f"{fix}") from None
