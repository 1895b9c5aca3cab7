"""Device choice, shared by training, evaluation, inference and `bench perf`."""

from __future__ import annotations

import torch

from bench.errors import BenchError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device that is absent is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: no CUDA device visible to torch; use --device cpu or auto")
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise BenchError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise BenchError(f"--device {name!r}: choose auto, cpu, cuda or mps")
