"""bench/cli.py: `bench --help` and every `bench VERB --help` answer without importing torch (start-up
cost: torch takes seconds to import), and a verb's module is imported only when that verb is asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cli import VERBS

_PROBE = """
import sys
from bench.cli import cli
try:
    cli.main({args!r}, prog_name="bench", standalone_mode=False)
finally:
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "methods"))
    verbs = sorted(m for m in sys.modules if m.startswith("bench.commands."))
    print("LOADED", heavy[:3], verbs)
"""


def _loaded(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(args=args)], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.splitlines()[-1]


def test_bench_help_imports_no_torch_and_no_verb() -> None:
    assert _loaded(["--help"]) == "LOADED [] []"


@pytest.mark.parametrize("verb", list(VERBS))
def test_a_verbs_help_imports_no_torch_and_only_its_own_module(verb: str) -> None:
    assert _loaded([verb, "--help"]) == f"LOADED [] ['bench.commands.{verb.replace('-', '_')}']"
