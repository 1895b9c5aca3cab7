"""The environment a run was produced in, stored as `env.json` beside its results (docs/DESIGN.md "Store";
CONTRIBUTING: every number says which device and commit produced it)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "numpy", "scikit-image", "lpips", "opencv-python-headless", "click",
            "rich", "pandas", "blurred-moments-bench")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change a number; None for one not installed."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: Path | None = None, outputs: Path | None = None) -> dict[str, object]:
    """The commit of the code (read-only git queries); `dirty` is True when tracked files differ from it.

    `outputs`: a folder the caller is writing into (the report's `--out`). Its files are not code, so a
    snapshot committed there and being rebuilt does not make the code dirty."""
    here = cwd or Path(__file__).resolve().parent.parent
    inside = outputs is not None and Path(outputs).resolve().is_relative_to(here.resolve())
    spec = ["--", ".", f":(exclude){Path(outputs).resolve()}"] if inside else []  # git refuses outer paths
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", *spec], cwd=here,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where available (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _accelerator_name(device: str) -> str | None:
    """The GPU's or Apple MPS's name for a device string on one; None for the CPU (or CUDA not present)."""
    # late: torch-free verbs (list, report) read this module, and `bench --help` must not load torch
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    if device.startswith("mps"):
        return f"Apple MPS ({platform.machine()})"
    return None


def processor_name(device: str) -> str:
    """The model of the chip a torch device string runs on, without thread counts: the GPU's name, or the
    CPU's (stored beside each trained stage, so a result names the machine that trained it)."""
    return _accelerator_name(device) or cpu_name()


def device_name(device: str) -> str:
    """Human name of a torch device string ("cuda", "cuda:1", "cpu", "mps"), for every stored figure."""
    # late: as in _accelerator_name
    import torch

    accelerator = _accelerator_name(device)
    if accelerator is not None:
        return accelerator
    threads = torch.get_num_threads()
    plural = "" if threads == 1 else "s"
    return f"CPU: {cpu_name()} ({os.cpu_count()} logical cores, {threads} thread{plural})"


def environment(device: str) -> dict:
    """The env.json payload: package versions, git commit, device, python, platform and date."""
    git = git_commit()
    return {
        "packages": package_versions(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "device": device,
        "device_name": device_name(device),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
