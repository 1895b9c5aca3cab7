"""Which code a training stage and a run execute, as a map from qualified name to a digest of its source.

A stage's cache key must change when the code that produces its weights changes, and only then: an edit of
the DM retrains the DM, but a new ablation row, a new helper or an edited RVD in the same package must not
retrain it. So the key covers the code a stage reaches, class by class and function by function, rather than
whole files:

- the roots: the classes of the components the stage trains and uses, the type of every submodule of those
  networks once built (on the meta device: no memory, no random numbers), and the objective function;
- the closure: a class's bases and the functions in its body; a function's nested code, closure cells and
  defaults; every global name their code objects reference, resolved in the function's module. What resolves
  to a class or function defined under `methods.` joins the closure (recursively); a container (a dict of
  data terms) contributes its members; a plain constant (`LEAKY_SLOPE = 0.2`) is recorded by value.

The harness code that shapes weights or scores (`bench/`) is named explicitly, per part, in `HARNESS` (every
training stage runs it) and `SCORING` (every run's evaluation), and followed the same way: functions under
`bench.` that the named code references join, classes do not (their methods are named one by one), and
`LEFT_OUT` keeps progress, messages and file plumbing out, so an edited progress line retrains nothing.

A digest is the SHA-256 of the source's syntax tree without docstrings and error messages (`ast.dump`; a
`raise` keeps its exception type, an `assert` its test), so a comment, a docstring, a message or a
reformatting leaves checkpoints valid while any change to what the code does invalidates them. Code
without source on disk (made by `exec`) is digested by its bytecode instead.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import marshal
import textwrap
import types
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

if TYPE_CHECKING:
    from methods.registry import MethodAPI, Stage

PACKAGE = "methods"  # classes and functions defined in this package are followed and hashed
HARNESS_PACKAGE = "bench"  # functions defined here are followed from the named harness code

# The harness code every training stage runs that shapes its weights, by part ("module:qualified name").
HARNESS: dict[str, tuple[str, ...]] = {
    "step": ("bench.train:StageRun.step", "bench.execution:on_device", "bench.data.loaders:to_float"),
    "schedule": ("bench.train:lr_factor",),
    "batch plan": ("bench.train:batch_plan", "bench.train:PlannedBatches.__getitem__",
                   "bench.data.loaders:collate"),
    "augmentation and crops": ("bench.train:train_set", "bench.data.loaders:_SetBase.__init__",
                               "bench.data.loaders:TrainSet.__init__",
                               "bench.data.loaders:TrainSet.transform",
                               "bench.data.loaders:TrainSet._crop", "bench.data.loaders:TrainSet._flows",
                               "bench.data.loaders:TrainSet._fill", "bench.data.loaders:TrainSet._array",
                               "bench.data.loaders:TrainSet.shapes", "bench.data.loaders:TrainSet.collate"),
    "optimiser and initialisation": ("bench.train:StageRun.build", "bench.train:StageRun.build_networks"),
    "precision": ("bench.execution:resolve_precision", "bench.execution:Execution.of",
                  "bench.execution:Execution.dtype", "bench.execution:Execution.autocast",
                  "bench.execution:Execution.scaler", "bench.execution:Execution.prepare"),
}
# The code every run's evaluation runs that shapes its scores: the test frames, the prediction, the metrics.
SCORING: tuple[str, ...] = (
    "bench.evaluate:score_set", "bench.data.loaders:_SetBase.__init__", "bench.data.loaders:_SetBase._load",
    "bench.data.loaders:TestSet.__init__", "bench.data.loaders:TestSet.__getitem__",
    "methods.registry:Method.predict", "methods.registry:Method.deblur",
    "methods.registry:Method.for_inference",
)
# The code `bench score` runs that shapes an outside method's scores: reading its prediction files and the
# set's truth, and the per-sample metrics and their means that `score_set` uses too.
EXTERNAL_SCORING: tuple[str, ...] = (
    "bench.score:score_predictions", "bench.data.loaders:_SetBase.__init__",
    "bench.data.loaders:_SetBase._load", "bench.data.loaders:TestSet.__init__",
    "bench.data.loaders:TestSet.__getitem__",
)
# Functions and constants reached from the code above that shape no weight or score: progress, sample
# images, messages, file reads whose content is verified by digest elsewhere.
LEFT_OUT = frozenset({
    "bench.evaluate._progress", "bench.evaluate._write_samples", "bench.data.manifest.repair_command",
    "bench.data.manifest.safe_path", "bench.data.manifest.load_manifest", "bench.store.load_payload",
    "bench.train.CKPT_FIX",
})
_MISSING = object()
_SIMPLE = (bool, int, float, str, bytes, type(None))


def stage_code(method: MethodAPI, stage: Stage, model: dict | None) -> dict[str, str]:
    """{qualified name: digest} of every class, function and constant the stage's training reaches: its
    networks and objective under `methods.`, and the weight-shaping harness code (`HARNESS`)."""
    roots: list[Any] = [stage.objective.fn, *_named(harness_names())]
    for name in (*stage.trains, *stage.uses):
        component = method.components[name]
        roots.append(component.cls)
        roots.extend(type(module) for module in _build_on_meta(component, model).modules())
    return closure_digests(roots)


def harness_names() -> list[str]:
    """The harness code named for every training stage, as qualified names (`HARNESS`)."""
    return sorted({name for names in HARNESS.values() for name in names})


def run_code(method: MethodAPI, model: dict | None) -> dict[str, str]:
    """{qualified name: digest} of the code a run's evaluation runs: `SCORING` and everything it reaches, the
    method's predictor and deblurrer, and its networks (the code a `--weights` run or a method without
    stages relies on; a trained run's stage keys hold them too)."""
    roots: list[Any] = [*_named(SCORING), method.predictor, method.deblurrer]
    for component in method.components.values():
        roots.append(component.cls)
        roots.extend(type(module) for module in _build_on_meta(component, model).modules())
    return closure_digests(roots)


def external_code() -> dict[str, str]:
    """{qualified name: digest} of the code `bench score` runs on an outside method's predictions
    (`EXTERNAL_SCORING` and everything it reaches: the frame readers, `score_sample`, the metrics): what the
    id of a scored prediction folder follows, as `run_code` is for a run."""
    return closure_digests(_named(EXTERNAL_SCORING))


def _named(names: Iterable[str]) -> list[Any]:
    """The functions `module:Qual.name` names (a property stands for its getter)."""
    out = []
    for spec in names:
        module, _, qualname = spec.partition(":")
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
        out.extend(_unwrap(obj))
    return out


def _build_on_meta(component: Any, model: dict | None) -> torch.nn.Module:
    """The network with its parameters on the meta device; the random state is left as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return component.build(model)


class _Constant(NamedTuple):
    """A module-level constant some code reads, recorded by value."""

    name: str  # module.NAME
    value: Any


def closure_digests(roots: Iterable[Any]) -> dict[str, str]:
    """Digests of the roots defined under `methods.` (and harness functions under `bench.`) and of everything
    they reach (module docstring)."""
    out: dict[str, str] = {}
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if isinstance(obj, _Constant):
            if obj.name not in LEFT_OUT:
                out.setdefault(obj.name, "value:" + repr(obj.value))
            continue
        if not _ours(obj):
            continue
        name = f"{obj.__module__}.{obj.__qualname__}"
        if name in out:
            continue
        out[name] = _digest(obj)
        stack.extend(_references(obj))
    return dict(sorted(out.items()))


def _ours(obj: Any) -> bool:
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return False
    module = obj.__module__ or ""
    if _in_package(module, PACKAGE):
        return True
    return (inspect.isfunction(obj) and _in_package(module, HARNESS_PACKAGE)
            and f"{module}.{obj.__qualname__}" not in LEFT_OUT)


def _ours_module(name: str) -> bool:
    return _in_package(name, PACKAGE) or _in_package(name, HARNESS_PACKAGE)


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _references(obj: Any) -> Iterator[Any]:
    """What a class or function refers to: candidates for the closure, and (name, value) constants."""
    if inspect.isclass(obj):
        yield from obj.__mro__[1:]
        for member in vars(obj).values():
            yield from _unwrap(member)
        return
    yield from (cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
    yield from (*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values())
    names = _code_names(obj.__code__)
    scope = obj.__globals__
    for name in names:
        if name.startswith("__"):  # `type(x).__name__`: an attribute, not the module's name
            continue
        value = scope.get(name, _MISSING)  # builtins, attribute names and locals are not globals
        if isinstance(value, types.ModuleType) and _ours_module(value.__name__):
            # `layers.warp`: the names the code reads may be attributes of a package module
            yield from _resolve(value.__name__, {n: getattr(value, n) for n in names if hasattr(value, n)})
        elif value is not _MISSING:
            yield from _resolve(scope.get("__name__", "?"), {name: value})


def _resolve(module: str, values: dict[str, Any]) -> Iterator[Any]:
    for name, value in values.items():
        if isinstance(value, _SIMPLE) or _simple_tuple(value):
            yield _Constant(f"{module}.{name}", value)
        elif isinstance(value, dict):
            yield from value.values()
        elif isinstance(value, (list, tuple, set, frozenset)):
            yield from value
        elif not inspect.isfunction(value) and inspect.isfunction(getattr(value, "__wrapped__", None)):
            yield value.__wrapped__  # a cached function (`functools.lru_cache`): the code it wraps
        else:
            yield value


def _unwrap(member: Any) -> Iterator[Any]:
    if isinstance(member, (staticmethod, classmethod)):
        yield member.__func__
    elif isinstance(member, property):
        yield from (f for f in (member.fget, member.fset, member.fdel) if f is not None)
    else:
        yield member


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _simple_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, _SIMPLE) or _simple_tuple(v) for v in value)


def _code_names(code: types.CodeType) -> set[str]:
    """Global and attribute names a code object and the code nested in it (lambdas, comprehensions) use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


@functools.cache
def _digest(obj: Any) -> str:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return "bytecode:" + hashlib.sha256(_bytecode(obj)).hexdigest()[:16]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        _drop_message(node)
    return "source:" + hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _drop_message(node: ast.AST) -> None:
    """An error's message shapes no weight or score: `raise E(...)` keeps the type, `assert` the test."""
    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
        node.exc.args, node.exc.keywords = [], []
    elif isinstance(node, ast.Assert):
        node.msg = None


def _bytecode(obj: Any) -> bytes:
    if inspect.isfunction(obj):
        return marshal.dumps(obj.__code__.replace(co_filename="", co_firstlineno=1))
    parts = [f"{k}={_bytecode(v).hex() if inspect.isfunction(v) else type(v).__name__}"
             for k, v in sorted(vars(obj).items()) if not k.startswith("__")]
    return ";".join(parts).encode()
