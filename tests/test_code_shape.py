"""The shape of the code: no import cycle under methods/, no function over 80 lines in bench/ or methods/, and
no reference to a document that is not in the repository."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
# Functions over the limit in code other engineers are rewriting; each is theirs to split. Any other long
# function fails the test.
PENDING_SPLIT: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    """methods.<name> (and the package, `methods`) -> its file."""
    out = {"methods": ROOT / "methods" / "__init__.py"}
    for path in sorted((ROOT / "methods").glob("*.py")):
        if path.stem != "__init__":
            out[f"methods.{path.stem}"] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `methods` that the file imports, anywhere in it (deferred imports count too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
    # `from methods.x import y` imports the package first; that edge is the package's, not a dependency.
    return out - {"methods"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle_under_methods() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # the check itself finds a cycle


ISOLATED = """
import importlib, sys, types
root, names = sys.argv[1], sys.argv[2:]
for name in names:
    for key in [k for k in sys.modules if k == "methods" or k.startswith("methods.")]:
        del sys.modules[key]
    package = types.ModuleType("methods")  # the package without its __init__, which imports every module
    package.__path__ = [root + "/methods"]
    sys.modules["methods"] = package
    importlib.import_module(name)
print("ok")
"""


def test_every_methods_module_imports_on_its_own() -> None:
    names = [n for n in _modules() if n != "methods"]
    done = subprocess.run([sys.executable, "-c", ISOLATED, str(ROOT), *names], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def _long_functions() -> dict[str, int]:
    out = {}
    for package in ("bench", "methods"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_LINES:
                        out[f"{path.relative_to(ROOT).as_posix()}::{node.name}"] = length
    return out


def test_no_function_longer_than_80_lines() -> None:
    long = {k: v for k, v in _long_functions().items() if k not in PENDING_SPLIT}
    assert not long, f"functions over {MAX_LINES} lines (split them into named steps): {long}"


def _documents() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.sh", "*.toml", "*.csv", "*.tex"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / p for p in listed if p != "tests/test_code_shape.py" and (ROOT / p).is_file()]


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)  # code blocks: `nets["dm"](blur)` is no link


def test_markdown_links_point_at_files_in_the_repository() -> None:
    broken = []
    for path in _documents():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(FENCE.sub("", path.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, f"links to files that are not in the repository: {broken}"


OUTSIDE = re.compile(r"\bSPEC \d|\.\./shared")


def test_no_reference_to_a_document_outside_the_repository() -> None:
    found = []
    for path in _documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert not found, f"{len(found)} references to documents outside the repository, e.g. {found[:10]}"


DESIGN = ROOT / "docs" / "DESIGN.md"
CITATION = re.compile(r'DESIGN\.md`?,?\s+"([^"]+)"')  # docs/DESIGN.md "Store", `docs/DESIGN.md`, "Store"


def _design_sections() -> set[str]:
    """Section names of docs/DESIGN.md: `## 15. Store` -> "Store", `### Add a method` -> "Add a method"."""
    names = set()
    for line in DESIGN.read_text().splitlines():
        if heading := re.match(r"^#{2,3} (?:\d+\. )?(.+?)\s*$", line):
            names.add(heading.group(1))
    return names


def test_design_citations_name_existing_sections() -> None:
    sections = _design_sections()
    assert {"Store", "Packed frames", "Training", "Add a method"} <= sections  # the parser reads headings
    unknown = []
    for path in _documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            unknown += [f"{path.relative_to(ROOT)}:{number} {name!r}" for name in CITATION.findall(line)
                        if name not in sections]
    assert not unknown, f"citations of docs/DESIGN.md sections that do not exist: {unknown}"
