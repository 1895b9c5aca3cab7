"""The shape of the code: no import circle and no function over 80 lines in bench/ or methods/, every
third-party import declared, no reference to a document that is not in the repository or to an issue tracker
it does not have."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
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


def _package_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root` (a package is its __init__)."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _base(node: ast.ImportFrom, name: str, path: Path) -> str:
    """The absolute module a `from ... import` reads from, relative imports resolved against module `name`."""
    if not node.level:
        return node.module or ""
    parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that module `name` imports anywhere in its file: at the top, inside functions
    and under `if TYPE_CHECKING` alike, since a reader follows each of them."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, name, path)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # `from bench import metrics` reads bench.metrics
                    out.add(f"{base}.{alias.name}")
                elif base in modules:
                    out.add(base)
    # `from bench.data.x import y` runs the packages' __init__ first; that edge is theirs, not a dependency.
    return out - {name}


def _import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    modules = _package_modules(root, packages)
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle of `graph`: its strongly connected components of two or more modules, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs here are a few dozen modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([*component, node]))

    for start in sorted(graph):
        if start not in index:
            visit(start)
    return sorted(found)


def _describe(circle: list[str], graph: dict[str, set[str]]) -> str:
    """A circle in words: its modules and, for each, the modules of the circle it imports."""
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(circle)))}" for m in circle)


def test_circle_finder_on_a_small_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert _circles(graph) == [["a", "b", "c"], ["e", "f"]]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_relative_and_function_local_imports_are_edges(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": "from . import low\n",
             "pkg/low.py": "def f():\n    from .sub.high import g  # deferred, still an edge\n    return g\n",
             "pkg/sub/__init__.py": "",
             "pkg/sub/high.py": "from ..low import f\nimport json\n\ndef g():\n    return json\n",
             "pkg/sub/leaf.py": "from .. import low\nfrom pkg.sub import high\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = _import_graph(tmp_path, ("pkg",))
    assert graph == {"pkg": {"pkg.low"}, "pkg.low": {"pkg.sub.high"}, "pkg.sub": set(),
                     "pkg.sub.high": {"pkg.low"}, "pkg.sub.leaf": {"pkg.low", "pkg.sub.high"}}
    assert _circles(graph) == [["pkg.low", "pkg.sub.high"]]


def test_no_import_circle_in_bench_or_methods() -> None:
    graph = _import_graph(ROOT, ("bench", "methods"))
    assert len(graph) > 20 and "bench.store" in graph and "methods.registry" in graph
    circles = _circles(graph)
    assert not circles, f"{len(circles)} import circles (function-local imports count): " + " | ".join(
        _describe(c, graph) for c in circles)


# Import names whose distribution on PyPI is named otherwise; any other import is looked up among the
# installed distributions, then taken as its own distribution name.
# docs/DESIGN.md "Parts": the floors of bench/, bottom up, by the name under bench/ (a package or a module).
FLOORS = (
    ("errors", "fileio", "metrics", "verdict", "devices", "env", "code_identity", "registry", "components"),
    ("config", "outputs", "store", "memory", "fetch"),
    ("data",),
    ("execution", "evaluate", "validation", "parallel", "boards", "train", "perf", "loaderperf", "trainperf",
     "run", "floor_verdict", "explain", "ablate", "report", "infer", "export", "score", "grid", "launch"),
    ("commands", "cli"),
)


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "bench" or len(parts) == 1:
        return None
    return next((i for i, names in enumerate(FLOORS) if parts[1] in names), -1)


def _floor_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Imports that reach up a floor, or across the bottom floor to anything but bench.errors."""
    out = []
    for module, targets in sorted(graph.items()):
        mine = _floor(module)
        for target in sorted(t for t in targets if _floor(t) is not None):
            theirs = _floor(target)
            if theirs > mine or (mine == theirs == 0 and target != "bench.errors"):
                out.append(f"{module} -> {target}")
    return out


def test_every_bench_module_has_a_floor_and_imports_only_downwards() -> None:
    graph = _import_graph(ROOT, ("bench", "methods"))
    homeless = [m for m in graph if _floor(m) == -1]
    assert not homeless, f"modules on no floor (add them to FLOORS and docs/DESIGN.md \"Parts\"): {homeless}"
    assert _floor_breaches({"bench.fileio": {"bench.store"}}) == ["bench.fileio -> bench.store"]
    breaches = _floor_breaches(graph)
    assert not breaches, f"imports that reach up a floor (docs/DESIGN.md \"Parts\"): {breaches}"


DISTRIBUTIONS = {"PIL": "Pillow", "cv2": "opencv-python-headless", "skimage": "scikit-image",
                 "yaml": "PyYAML", "sklearn": "scikit-learn", "attr": "attrs"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: Pillow, pillow and py_yaml compare as written


def _third_party_imports(root: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """Top-level module -> first file importing it, for every import outside the standard library and
    `packages`, anywhere in their files (function-local and TYPE_CHECKING imports too)."""
    out: dict[str, str] = {}
    for path in _package_modules(root, packages).values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top not in packages and top != "__future__":
                    out.setdefault(top, path.relative_to(root).as_posix())
    return out


def _distribution(module: str) -> set[str]:
    """The distributions that may provide `module`, normalised."""
    if module in DISTRIBUTIONS:
        return {_normalise(DISTRIBUTIONS[module])}
    installed = importlib.metadata.packages_distributions().get(module, [])
    return {_normalise(d) for d in installed} or {_normalise(module)}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # An optional extra (`.[cluster]`) declares what only its features import, late and with a one-line
    # hint when it is missing; the test tools of `dev` declare nothing bench/ may import.
    extras = [d for name, deps in project.get("optional-dependencies", {}).items() if name != "dev"
              for d in deps]
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", d).group()) for d in [*project["dependencies"], *extras]}


def test_import_names_map_to_their_distributions(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    code = "import os\nfrom . import b\n\ndef f():\n    from PIL import Image\n    import cv2.data\n"
    (tmp_path / "pkg" / "a.py").write_text(code)
    assert _third_party_imports(tmp_path, ("pkg",)) == {"PIL": "pkg/a.py", "cv2": "pkg/a.py"}
    assert _distribution("PIL") == {"pillow"} and _distribution("skimage") == {"scikit-image"}
    assert {"torch", "pillow", "numpy"} <= _declared()


def test_every_third_party_import_is_declared() -> None:
    declared = _declared()
    imports = _third_party_imports(ROOT, ("bench", "methods"))
    assert {"torch", "numpy", "PIL"} <= set(imports)  # the walk reaches the imports
    missing = {m: f for m, f in imports.items() if not _distribution(m) & declared}
    assert not missing, f"imported but not in pyproject.toml's dependencies (module: first file): {missing}"


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


# A reference to an issue tracker this repository does not have ("issue 17", "spec8", "the_spec", "#12" in a
# comment): nobody can follow it, so a name or comment says what the code checks instead.
TRACKER = re.compile(r"(?<![a-z])(?:spec_?\d|(?:the|every|per|of)[ _]spec(?![a-z])"
                     r"|(?:issue|ticket|task|wave)s?[ _-]?#?\d)", re.I)
CODE_TRACKER = re.compile(r"(?:^|\s)#\d+\b")  # code only: Markdown cites upstream issues as `repo #60`
UPSTREAM = re.compile(r"[\w.-]+/[\w.-]+\s*$")  # "SeungjunNah/DeepDeblur_release issue #59" names its project


def _tracker_references(path: Path, text: str) -> list[str]:
    found, where = [], path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for number, line in enumerate(text.splitlines(), 1):
        hits = [*TRACKER.finditer(line), *(CODE_TRACKER.finditer(line) if path.suffix != ".md" else [])]
        if any(not UPSTREAM.search(line[:hit.start()]) for hit in hits):
            found.append(f"{where}:{number} {line.strip()[:80]}")
    return found


def test_tracker_guard_catches_what_it_should() -> None:
    caught = ["def test_keys_of_the_spec8():", "def test_every_method_of_the_spec():",
              "def test_stores_every_spec_result():", '"""Loader (issue 15)."""',
              "# see issue-10", "# Issue #19: refuse it", "x = 1  # fixed in #12", "# --- wave 3 ---"]
    kept = ["spec = RunSpec(method=m)", "importlib.util.module_from_spec(_spec)", 'color = "#1f77b4"',
            "x = 1  # 3 frames", "the paper's task, Sec. 1", "format(x, spec)",
            "def test_run_spec_defaults():", "time the run `spec` describes"]
    for line in caught:
        assert _tracker_references(Path("x.py"), line), line
    for line in kept:
        assert not _tracker_references(Path("x.py"), line), line
    assert not _tracker_references(Path("x.md"), "(SeungjunNah/DeepDeblur_release issue #59; MPRNet #75)")


def test_no_reference_to_an_issue_tracker() -> None:
    found = [hit for path in _documents() for hit in _tracker_references(path, path.read_text())]
    assert not found, f"{len(found)} references to an issue tracker the repository does not have: {found}"


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
