"""The method `bench infer` runs: a stored run, a weights file or a parameter-free method."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import store
from bench.components import load_components
from bench.data.blur import check_frames
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.registry import get_method

if TYPE_CHECKING:
    from methods.registry import MethodAPI


@dataclass
class LoadedMethod:
    """A method ready to predict: its registry entry, its networks on `device`, and where they came from."""

    method: MethodAPI  # the registry entry
    nets: Any  # nn.ModuleDict, eval mode
    frames: int  # N
    device: Any  # torch.device
    source: str  # the weights file, or "no weights (parameter-free)"
    _per_pixel: int | None = field(default=None, repr=False)  # bytes per pixel of one forward (cached)


def _train_command(method: str, frames: int, runs_option: str | None) -> str:
    extra = f" --runs-dir {runs_option}" if runs_option else ""
    return f"bench run --method {method} --frames {frames}{extra}"


def load_method(method: str | None = None, frames: int | None = None, run: str | None = None,
                checkpoint: str | None = None, runs_option: str | None = None,
                device: str = "auto") -> LoadedMethod:
    """Resolve and load what `bench infer` runs.

    `checkpoint` (a weights.pt) or `run` (a run folder or id in the store) name the weights; with neither,
    the latest finished run of `method` (default `ours`) at `frames` (default 9) is used. Parameter-free
    methods (no training stages) need no weights. Every failure is a one-line `BenchError`.
    """
    if run and checkpoint:
        raise BenchError("pass either --run or --checkpoint, not both")
    if frames is not None:
        check_frames(frames)
    root = store.runs_dir(runs_option)
    if checkpoint or run:
        if checkpoint:
            weights = Path(checkpoint)
        else:
            folder = Path(run) if Path(run).is_dir() else root / run
            if not folder.is_dir():
                raise BenchError(f"--run {run}: no such run folder (looked in {root}/); "
                                 "list stored runs with `bench list --runs`")
            weights = folder / "weights.pt"
            if not weights.is_file():
                raise BenchError(f"{folder}: the run has no weights.pt yet; finish it by rerunning the "
                                 "bench run command that started it")
        payload = store.load_weights(weights)
        held = str(payload.get("method"))
        if method and method != held:
            raise BenchError(f"{weights} holds {held}, not {method}; drop --method or pass a run of {method}")
        n, model = payload["frames"], payload["model"]  # types checked by load_weights
        if frames is not None and frames != n:
            raise BenchError(f"{weights} was trained for {n} frames, not {frames}; use --frames {n} or a "
                             f"run trained with {frames} frames")
        name, source = held, str(weights)
    else:
        name, n = method or "ours", 9 if frames is None else frames
        payload, source, model = None, "", {}
    entry = get_method(name, n)
    if entry.uses_true_center:
        raise BenchError(f"{name} is an oracle fed the true central frame; a photo has none, so pick another "
                         "--method (e.g. ours)")
    if payload is None and entry.stages:
        # A run scored from a --weights file stores no weights of its own: only runs that wrote one count.
        found = store.latest_run(root, name, n, with_weights=True)
        if found is None:
            raise BenchError(f"no finished run of {name} with {n} frames and an intact weights.pt in "
                             f"{root}/: train one with `{_train_command(name, n, runs_option)}`")
        weights = found / store.WEIGHTS
        payload = store.load_weights(weights)
        if payload.get("method") != name:
            raise BenchError(f"{weights} holds {payload.get('method')}, not {name}; the store is "
                             "inconsistent: rerun the bench run command")
        source, model = str(weights), payload["model"]
    nets = entry.build(model or None)
    if payload is not None:
        states = payload["state_dicts"]
        # Networks used only in training (the RVE) may be absent from a weights file; the rest may not.
        needed = entry.inference_keys()
        missing = [c for c in needed if c not in states]
        if missing:
            raise BenchError(f"{source}: no weights for {', '.join(missing)} of {name}; re-export the run")
        load_components(nets, states, source=source, fix=f"re-export the {name} run")
    elif not source:
        source = "no weights (parameter-free)"

    dev = resolve_device((device or "auto").lower())
    nets = entry.for_inference(nets, dev)
    return LoadedMethod(method=entry, nets=nets, frames=n, device=dev, source=source)

