"""The method `bench infer` runs: a stored run, a weights file or a parameter-free method."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError

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


def _latest_with_weights(root: Path, method: str, frames: int) -> Path | None:
    """Like `store.latest_run`, restricted to runs that hold a weights.pt."""
    from bench import store

    best: tuple[float, Path] | None = None
    for run in store.iter_runs(root):
        cfg, met, folder = run["config"], run["metrics"], run["path"]
        if cfg.get("method") != method or cfg.get("frames") != frames or not isinstance(met, dict):
            continue
        if met.get("status") != "finished" or not (folder / "weights.pt").is_file():
            continue
        mtime = (folder / "metrics.json").stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, folder)
    return best[1] if best else None


def load_method(method: str | None = None, frames: int | None = None, run: str | None = None,
                checkpoint: str | None = None, runs_option: str | None = None,
                device: str = "auto") -> LoadedMethod:
    """Resolve and load what `bench infer` runs.

    `checkpoint` (a weights.pt) or `run` (a run folder or id in the store) name the weights; with neither,
    the latest finished run of `method` (default `ours`) at `frames` (default 9) is used. Parameter-free
    methods (no training stages) need no weights. Every failure is a one-line `BenchError`.
    """
    from bench import store

    if run and checkpoint:
        raise BenchError("pass either --run or --checkpoint, not both")
    if frames is not None:
        from bench.data.blur import check_frames

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
    from bench.run import get_method

    entry = get_method(name, n)
    if entry.uses_true_center:
        raise BenchError(f"{name} is an oracle fed the true central frame; a photo has none, so pick another "
                         "--method (e.g. ours)")
    if payload is None and entry.stages:
        found = store.latest_run(root, name, n)
        if found is None:
            raise BenchError(f"no finished run of {name} with {n} frames in {root}/: train one with "
                             f"`{_train_command(name, n, runs_option)}`")
        weights = found / "weights.pt"
        if not weights.is_file():
            # A run evaluated on other data (--eval-data) finishes without weights; take the newest that has.
            found = _latest_with_weights(root, name, n)
            if found is None:
                raise BenchError(f"no finished run of {name} with {n} frames in {root}/ has a weights.pt: "
                                 f"train one with `{_train_command(name, n, runs_option)}`")
            weights = found / "weights.pt"
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
        from bench.train import load_components

        load_components(nets, states, source=source, fix=f"re-export the {name} run")
    elif not source:
        source = "no weights (parameter-free)"
    from bench.devices import resolve_device

    dev = resolve_device((device or "auto").lower())
    nets = entry.for_inference(nets, dev)
    return LoadedMethod(method=entry, nets=nets, frames=n, device=dev, source=source)

