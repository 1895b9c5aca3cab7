"""`bench fetch-weights`: the one explicit download of the suite (torchvision's AlexNet for LPIPS)."""

from __future__ import annotations

import click


@click.command("fetch-weights")
@click.argument("name", type=click.Choice(["lpips"]))
def command(name: str) -> None:
    """Downloads the weights NAME needs into the cache the suite reads, checking their SHA-256.

    lpips: torchvision's ImageNet AlexNet into $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch), the
    file torchvision itself would fetch. Nothing is kept unless its digest is the pinned one, and a file
    already there is never replaced. No other command downloads anything.
    """
    from bench.fetch import WEIGHTS, fetch  # late: keeps `bench fetch-weights --help` free of numpy

    weights = WEIGHTS[name]
    click.echo(f"fetching {weights.what} from {weights.url}")
    path, downloaded = fetch(weights)
    if downloaded:
        click.echo(f"wrote {path} (sha256 {weights.sha256} checked)")
    else:
        click.echo(f"already there: {path} (sha256 {weights.sha256} checked); nothing downloaded")
