"""The bench side of the method registry (`methods/registry.py`): a method looked up by the name a user
typed, refused in one line naming the known methods or the frame counts it takes."""

from __future__ import annotations

from bench.errors import BenchError
from methods import registry
from methods.registry import MethodAPI


def get_method(name: str, frames: int | None = None) -> MethodAPI:
    """The registered method, or a one-line error listing the names; with `frames`, one that can take N."""
    try:
        method = registry.get(name)
    except KeyError:
        raise BenchError(f"unknown method {name!r}; choose one of {', '.join(registry.names())} "
                         "(see bench list --methods)") from None
    if frames is not None:
        try:
            method.check_frames(frames)
        except ValueError as err:
            first = (str(err).splitlines() or [f"{name} cannot run N={frames}"])[0]
            raise BenchError(f"--frames {frames}: {first}") from None
    return method
