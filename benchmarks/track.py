"""Record `bench perf` rows and the prepare throughput into benchmarks/results.csv, for tracking over time.

    .venv/bin/python benchmarks/track.py                       # paper-sized networks, 1280x704, all methods
    .venv/bin/python benchmarks/track.py --methods ours,srn --resolution 320x192 --repeats 3

Each call appends one `prepare` row (a synthetic set built from scratch in a temporary folder, timed) and
one `perf` row per method, all stamped with the date, the commit and the device. The CSV is rewritten
atomically, so an interrupted call leaves the previous file intact. Speed goals live here as ratios and
trends, never as timed assertions in tests (CONTRIBUTING).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

COLUMNS = ("date", "commit", "kind", "device", "method", "frames", "resolution", "params", "size_mb", "macs",
           "runtime_deblur_s", "runtime_video_s", "images_per_s", "peak_mem_mb", "mac_rate_fraction",
           "mac_rate_fraction_deblur", "matmul_gmacs_per_s", "skipped", "prepare_profile", "prepare_s",
           "prepare_samples_per_s", "prepare_frames_per_s", "channels_last")


def commit_id(root: Path = ROOT) -> str:
    """The checked-out commit, read from .git without running git (unknown outside a checkout)."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return "unknown"


def prepare_throughput(profile: str, frames: int) -> dict:
    """Time `bench prepare` of the synthetic source for `profile` into a fresh temporary data home."""
    import json

    from bench.data.prepare import prepare
    from bench.perf import device_name

    with tempfile.TemporaryDirectory(prefix="bmb-track-") as tmp:
        start = time.perf_counter()
        folder = prepare("synthetic", None, (frames,), profile, tmp, seed=0)[0]
        seconds = time.perf_counter() - start
        manifest = json.loads((folder / "manifest.json").read_text())
    samples = manifest["samples"]
    sharp = {p for s in samples for p in s["sharp"]}
    return {"device": device_name("cpu"), "prepare_profile": profile, "frames": frames, "prepare_s": seconds,
            "prepare_samples_per_s": len(samples) / seconds, "prepare_frames_per_s": len(sharp) / seconds}


def _cell(value: object) -> object:
    """A CSV cell: None as empty, a list (the channels-last components) joined with '+'."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value)
    return value


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append rows under the fixed header; refuse a file whose header differs (a silent column shift)."""
    from bench.errors import BenchError
    from bench.fileio import atomic_write_text

    old = path.read_text() if path.is_file() else ""
    if old and old.splitlines()[0].split(",") != list(COLUMNS):
        raise BenchError(f"{path}: its header differs from this script's columns; move it aside and rerun")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    if not old:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    atomic_write_text(path, old + buf.getvalue())


@click.command()
@click.option("--methods", default=None, help="comma-separated methods (default: as bench perf)")
@click.option("--resolution", default="1280x704", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--repeats", default=10, show_default=True, type=click.IntRange(1))
@click.option("--frames", default=7, show_default=True, type=click.IntRange(3))
@click.option("--profile", default="paper", show_default=True, help="network widths for perf")
@click.option("--prepare-profile", default="smoke", show_default=True,
              help="synthetic profile whose prepare is timed ('' to skip)")
@click.option("--csv", "csv_path", default=str(ROOT / "benchmarks" / "results.csv"), show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
def main(methods: str | None, resolution: str, device: str, repeats: int, frames: int, profile: str,
         prepare_profile: str, csv_path: Path) -> None:
    """Append this machine's `bench perf` rows and prepare throughput to the tracking CSV."""
    from bench.commands.perf import print_rows
    from bench.perf import default_methods, run_perf

    stamp = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": commit_id()}
    rows: list[dict] = []
    if prepare_profile:
        rows.append({**stamp, "kind": "prepare", **prepare_throughput(prepare_profile, frames)})
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else default_methods()
    perf_rows, rate = run_perf(names, resolution, device, repeats, 2, frames, profile, False, False, 2048,
                               log=lambda msg: click.echo(msg, err=True))
    print_rows(perf_rows, rate)
    rows += [{**stamp, "kind": "perf", "matmul_gmacs_per_s": rate / 1e9, **r} for r in perf_rows]
    append_rows(csv_path, rows)
    click.echo(f"appended {len(rows)} rows to {csv_path}")


if __name__ == "__main__":
    main()
