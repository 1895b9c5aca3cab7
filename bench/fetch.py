"""Opt-in downloads of third-party weights: the one module of the suite that reaches the network
(docs/DESIGN.md "Metrics", "LPIPS offline"). Only `bench fetch-weights` calls it; nothing else downloads.

A download streams into a temporary of the suite beside its destination (`bench.fileio.AtomicFile`) while
its SHA-256 is computed, and is put in place only when the digest is the one pinned here: a wrong file, a
cut connection or Ctrl-C leaves no file behind, and a file already in place is never replaced.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.fileio import AtomicFile, WriteFailed, sha256_file
from bench.metrics import ALEXNET_FILE, alexnet_cache_path

CHUNK = 1 << 20  # bytes read per step of a download
TIMEOUT_S = 60  # seconds without data before a download is given up


@dataclass(frozen=True)
class Weights:
    """One file a user may fetch: where from, its pinned digest, and where the suite reads it."""

    name: str  # the argument of `bench fetch-weights`
    what: str  # one line for the user: what the file is and who reads it
    url: str  # where it is published
    sha256: str  # full SHA-256 of the published file, lowercase hex
    size: int  # its size in bytes: a larger download is cut off and refused
    destination: Callable[[], Path]  # where the suite reads it, resolved when fetched ($TORCH_HOME may move)


# torchvision's ImageNet AlexNet (torchvision.models.AlexNet_Weights.IMAGENET1K_V1), the trunk LPIPS reads
# (bench.metrics.load_lpips). torchvision publishes only the 8-hex prefix of its SHA-256, in the file name,
# and torch.hub checks just that prefix (`check_hash`); the full digest and size are the ones several
# independent projects pin for this URL, and they agree with the prefix (`hash_prefix`, tested).
ALEXNET = Weights(
    name="lpips",
    what="torchvision's ImageNet AlexNet weights, the trunk of LPIPS (about 233 MiB)",
    url=f"https://download.pytorch.org/models/{ALEXNET_FILE}",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
    size=244_408_911,
    destination=alexnet_cache_path,
)
WEIGHTS: dict[str, Weights] = {w.name: w for w in (ALEXNET,)}


def hash_prefix(url: str) -> str | None:
    """The digest prefix torch.hub reads from a checkpoint's file name: the hex after its last '-' before
    the first '.' after it (`torch.hub.HASH_REGEX`), e.g. 7be5be79 in alexnet-owt-7be5be79.pth."""
    found = re.search(r"-([a-f0-9]*)\.", url.rsplit("/", 1)[-1])
    return found.group(1) if found else None


def fetch(weights: Weights, progress: Callable[[int], None] | None = None) -> tuple[Path, bool]:
    """Download `weights` to its destination unless the right file is already there.

    Returns (path, downloaded). A BenchError in one line, with nothing left behind, when the download fails,
    is larger than `weights.size` or has another digest, or when another file is in the way.
    """
    dest = weights.destination()
    if dest.exists() or dest.is_symlink():
        if dest.is_file() and sha256_file(dest) == weights.sha256:
            return dest, False
        raise BenchError(f"{dest}: already there but not {weights.what} (sha256 differs); move it away and "
                         f"rerun bench fetch-weights {weights.name}")
    out = AtomicFile(dest)
    try:
        digest = _stream(weights, out, progress)
    except BaseException:
        out.discard()
        raise
    if digest != weights.sha256:
        out.discard()
        raise BenchError(f"{weights.url}: downloaded file has sha256 {digest}, expected {weights.sha256}; "
                         "nothing was written (a proxy or a changed file?); rerun, or fetch it by hand")
    return out.commit(), True


def _stream(weights: Weights, out: AtomicFile, progress: Callable[[int], None] | None) -> str:
    """Copy the download into `out`, hashing as it goes; its SHA-256. BenchError on a failed transfer."""
    sha = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(weights.url, timeout=TIMEOUT_S) as response:
            while chunk := response.read(CHUNK):
                got += len(chunk)
                if got > weights.size:
                    raise BenchError(f"{weights.url}: more than the {weights.size} bytes of {weights.what}; "
                                     "nothing was written")
                sha.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(got)
    except WriteFailed:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise BenchError(f"{weights.url}: download failed ({reason}); nothing was written; check the "
                         "connection and rerun") from None
    return sha.hexdigest()
