"""Scoring a method on a prepared set's test split (docs/DESIGN.md "Evaluation").

For each test sample, in the set's order: pad the blur to a multiple of 16, run the method's eval-mode
prediction under `torch.inference_mode`, crop back, round to uint8 (`bench.metrics.to_uint8`), and score the
deblurred frame against the true central frame and the N frames against the true N frames. The aggregate is
the mean over samples. Runtimes are measured once per evaluation, at the test resolution, batch 1.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from bench import metrics
from bench.data.images import write_png
from bench.data.loaders import TestSet
from bench.errors import BenchError
from bench.perf import deblur_entry, device_name, inference_params, params_of, size_mb, time_calls
from bench.store import sample_image_name
from methods.layers import crop_to, pad_to_multiple

if TYPE_CHECKING:
    from methods.registry import MethodAPI


def _json_float(x: Any) -> float | None:
    """A plain JSON float; None for missing or non-finite values (inf PSNR of a perfect frame, NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _mean(values: list[float | None], over_defined: bool = False) -> float | None:
    """The mean over samples; None when a sample lacks the value, unless the metric is `over_defined`
    (`metrics.MEAN_OVER_DEFINED`), whose mean is over the samples where it is defined."""
    if over_defined:
        values = [v for v in values if v is not None]
    if not values or any(v is None for v in values):
        return None
    m = float(np.mean(values))
    return _json_float(m)


def _pad(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    return pad_to_multiple(x, 16)


def _crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return crop_to(x, hw)


def _progress(enabled: bool):
    return Progress(TextColumn("[bold]evaluate[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=True)


def score_sample(deblurred: np.ndarray, frames: np.ndarray, sharp: np.ndarray,
                 flows: np.ndarray | None = None, true_flows: np.ndarray | None = None,
                 lpips_model: nn.Module | None = None, blur: np.ndarray | None = None,
                 gamma: float | None = None) -> dict[str, float | None]:
    """Every per-sample metric (docs/DESIGN.md "Metrics") from uint8 arrays: deblurred `(h, w, 3)`, frames
    and sharp `(N, h, w, 3)`; flows `(N, h, w, 2)` in pixels or None; the blurred input `(h, w, 3)` and the
    set's gamma for the reblur PSNR (None without a blur). Values are raw floats (inf possible)."""
    centre = sharp[sharp.shape[0] // 2]
    return {
        "deblur_psnr": metrics.psnr(deblurred, centre),
        "deblur_ssim": metrics.ssim(deblurred, centre),
        "deblur_lpips": None if lpips_model is None
        else metrics.lpips_distance(lpips_model, deblurred, centre),
        "eq6": metrics.eq6_error(frames, sharp),
        "ppsnr": metrics.ppsnr(frames, sharp),
        "pwpsnr": metrics.pwpsnr(frames, sharp),
        "pooled_psnr": metrics.pooled_psnr(frames, sharp),
        "b2v_psnr": metrics.b2v_psnr(frames, sharp),
        "b2v_pwpsnr": metrics.b2v_pwpsnr(frames, sharp),
        "reblur_psnr": None if blur is None else metrics.reblur_psnr(frames, blur, gamma),
        "mid_psnr": metrics.mid_psnr(frames, sharp),
        "motion_ratio": metrics.motion_ratio(frames, sharp),
        "epe": None if flows is None or true_flows is None else metrics.flow_epe(flows, true_flows),
    }


def stored_row(sample_id: str, row: dict[str, float | None]) -> dict[str, Any]:
    """A "samples" row of metrics.json: the sample's id and its `score_sample` values as plain JSON floats or
    None (an infinite PSNR of a perfect frame, a NaN motion ratio)."""
    return {"id": sample_id, **{k: _json_float(v) for k, v in row.items()}}


def mean_scores(samples: list[dict]) -> dict[str, float | None]:
    """The aggregate of every per-sample metric (`metrics.SAMPLE_METRICS`) over stored rows: the mean, None
    when a sample lacks it, except the metrics averaged over the samples where they are defined."""
    return {k: _mean([s[k] for s in samples], k in metrics.MEAN_OVER_DEFINED) for k in metrics.SAMPLE_METRICS}


def _write_samples(out_dir: Path, sid: str, blur: np.ndarray, deblurred: np.ndarray, frames: np.ndarray,
                   sharp: np.ndarray) -> None:
    """The sample images of the run record (`bench.store.sample_image_name`): blur, deblurred, N frames and
    the N true frames."""
    write_png(out_dir / sample_image_name(sid, "blur"), blur)
    write_png(out_dir / sample_image_name(sid, "deblurred"), deblurred)
    for t in range(frames.shape[0]):
        write_png(out_dir / sample_image_name(sid, "frame", t + 1), frames[t])
        write_png(out_dir / sample_image_name(sid, "truth", t + 1), sharp[t])


def evaluate(method: MethodAPI, nets: nn.Module, set_folder: Path | str, profile: Any,
             device: torch.device | str, out_dir: Path | str | None = None, progress: bool = True) -> dict:
    """Score `method` (a `methods.registry.Method`) with networks `nets` on the test split of `set_folder`
    (`score_set`), showing progress. With `out_dir`, the first `profile.eval.samples_saved` samples' blur,
    deblurred image, frames and truth are written there as PNGs."""
    set_folder = Path(set_folder)
    with _progress(progress) as bar:
        task = bar.add_task(f"{method.name} on {set_folder.name}", total=None)

        def scored(i: int, total: int, item: dict, images: tuple[np.ndarray, ...]) -> None:
            if out_dir is not None and i < profile.eval.samples_saved:
                _write_samples(Path(out_dir), item["id"], metrics.to_numpy_images(item["blur"]), *images)
            bar.update(task, completed=i + 1, total=total)

        return score_set(method, nets, set_folder, profile, device, scored)


def score_set(method: MethodAPI, nets: nn.Module, set_folder: Path, profile: Any, device: torch.device | str,
              scored: Any = None) -> dict:
    """The scores of `evaluate`, without progress or images: the code a run's id follows
    (`bench.code_identity.SCORING`). `nets` are moved to `device` and put in eval mode. Returns
    `{"status": "finished", "aggregate": {...}, "samples": [{"id", ...}], "metric_definitions": {...}}` with
    the keys of docs/DESIGN.md "Store"; every value is a plain JSON float or None (never NaN).
    `scored(i, total, item, (deblurred, frames, sharp))` is called after each sample."""
    device = torch.device(device)
    data = TestSet(set_folder, split="test", limit=profile.data.test_limit or None)
    if len(data) == 0:
        raise BenchError(f"{set_folder}: the test split is empty; prepare the set again (bench prepare)")
    nets = method.for_inference(nets, device)

    lpips_model, lpips_note = (None, "LPIPS disabled by the profile (eval.lpips=false)")
    if profile.eval.lpips:
        lpips_model, lpips_note = metrics.load_lpips()

    samples: list[dict] = []
    n_frames = None
    first_inputs: tuple[torch.Tensor, torch.Tensor | None] | None = None
    resolution: list[int] = []
    for i in range(len(data)):
        item = data[i]
        sharp_t = item["sharp"]  # (N, 3, H, W)
        n = sharp_t.shape[0]
        if n_frames is None:
            n_frames = n
            method.check_frames(n)
        blur, hw = _pad(item["blur"][None].to(device))  # (1, 3, H16, W16)
        center = None
        if method.uses_true_center:
            center, _ = _pad(sharp_t[n // 2][None].to(device))  # (1, 3, H16, W16)
        if first_inputs is None:
            first_inputs, resolution = (blur, center), [int(hw[0]), int(hw[1])]
        with torch.inference_mode():
            pred = method.predict(nets, blur, n, center=center)
        deblurred = metrics.to_numpy_images(_crop(pred.deblurred, hw)[0])  # (H, W, 3) uint8
        frames = metrics.to_numpy_images(_crop(pred.frames, hw)[0])  # (N, H, W, 3) uint8
        sharp = metrics.to_numpy_images(sharp_t)  # (N, H, W, 3)
        flows = true_flows = None
        if pred.flows is not None and item.get("flow") is not None:
            flows = metrics.to_numpy_flows(_crop(pred.flows, hw)[0])  # (N, H, W, 2)
            true_flows = metrics.to_numpy_flows(item["flow"])  # (N, H, W, 2)
        blur_u8 = metrics.to_numpy_images(item["blur"])  # (H, W, 3), exactly the stored uint8 blur
        row = score_sample(deblurred, frames, sharp, flows, true_flows, lpips_model, blur_u8,
                           data.manifest["gamma"])
        samples.append(stored_row(item["id"], row))
        if scored is not None:
            scored(i, len(data), item, (deblurred, frames, sharp))

    aggregate = _aggregate(samples, method, nets, first_inputs, n_frames, device, profile, lpips_note)
    aggregate["resolution"] = resolution  # the test images' [h, w]
    return {"status": "finished", "aggregate": aggregate, "samples": samples,
            "metric_definitions": dict(metrics.DEFINITIONS)}


def _aggregate(samples: list[dict], method: Any, nets: nn.Module,
               first_inputs: tuple[torch.Tensor, torch.Tensor | None], n_frames: int, device: torch.device,
               profile: Any, lpips_note: str | None) -> dict[str, Any]:
    """The per-sample metrics averaged (`_mean`), then the costs measured once: runtimes, parameters."""
    runtime = _runtimes(method, nets, first_inputs, n_frames, device, profile)
    params = inference_params(method, nets)
    aggregate: dict[str, Any] = mean_scores(samples)
    if aggregate["deblur_lpips"] is None:
        aggregate["deblur_lpips_note"] = lpips_note or "LPIPS not computed for every sample"
    aggregate.update({
        "runtime_deblur_s": runtime["deblur"],
        "runtime_video_s": runtime["video"],
        "runtime_deblur_what": runtime["deblur_what"],
        "params": params,
        "size_mb": size_mb(params),
        "train_params": params_of(nets),  # the training-only networks (RVE) included
        "device": device_name(device),
        "frames": n_frames,
        "n_samples": len(samples),
        "runtime_resolution": [int(first_inputs[0].shape[-2]), int(first_inputs[0].shape[-1])],  # padded
    })
    return aggregate


def _runtimes(method: MethodAPI, nets: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor | None], n: int,
              device: torch.device, profile: Any) -> dict[str, Any]:
    """Median deblurring and whole-video times on the first test sample, padded, batch 1."""
    blur, center = inputs
    repeats, warmup = profile.eval.runtime_repeats, profile.eval.runtime_warmup
    video = time_calls(lambda: method.predict(nets, blur, n, center=center), device, repeats, warmup)
    fn, what = deblur_entry(method, nets)
    deblur = time_calls(lambda: fn(blur), device, repeats, warmup)
    return {"video": _json_float(statistics.median(video)), "deblur": _json_float(statistics.median(deblur)),
            "deblur_what": what}
