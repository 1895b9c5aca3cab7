"""`bench`: the command line of Blurred Moments Bench. Thin: parses, calls, prints.

Each verb lives in `bench/commands/<verb>.py` and is imported only when it runs, so `bench --help` stays
fast and a broken optional piece cannot take the other verbs down with it.
"""

from __future__ import annotations

import importlib
import sys

import click

from bench import __version__
from bench.errors import BenchError, one_line

VERBS = {
    "prepare": "builds 7- and 9-frame blur datasets from a source of sharp frames",
    "run": "trains (or loads) a method, evaluates it and stores its results",
    "ablate": "runs every ablation of the paper's design choices on equal terms",
    "report": "turns stored results into reports/: tables and figures",
    "infer": "runs a trained method on your own blurred photos",
    "perf": "measures runtime and size of every method side by side",
    "list": "lists methods, datasets, profiles and stored runs",
    "fetch-weights": "downloads third-party weights on request (lpips: torchvision's AlexNet), hash-checked",
    "export": "writes a prepared set's samples as plain files for another method's code",
    "score": "scores any method's predicted frames on a set and stores them as a run",
    "status": "the jobs of grids run with --launcher: queued, running, done or failed",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module = importlib.import_module(f"bench.commands.{name.replace('-', '_')}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above, so `bench --help` imports no verb (and no torch).
        with formatter.section("Commands"):
            formatter.write_dl(list(VERBS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
def cli() -> None:
    """Blurred Moments Bench: reproduce 'Bringing Alive Blurred Moments' (CVPR 2019)."""


def main() -> None:
    """The `bench` executable: every refusal, ours or click's, is one `error: ...` line and exit status 2."""
    try:
        cli.main(prog_name="bench", standalone_mode=False)  # the same name however it was started
    except BenchError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        click.echo(f"error: {_click_message(err)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)


def _click_message(err: click.ClickException) -> str:
    """Click's own usage errors in the suite's format: one line, naming the command and its --help."""
    text = one_line(err.format_message())
    ctx = getattr(err, "ctx", None)
    if isinstance(err, click.UsageError) and ctx is not None:
        return f"{ctx.command_path}: {text[:1].lower()}{text[1:]} (see {ctx.command_path} --help)"
    return text
