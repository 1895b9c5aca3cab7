"""Which code a training stage runs, as a map from qualified name to a digest of its source.

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

A digest is the SHA-256 of the source's syntax tree without docstrings (`ast.dump`), so a comment, a docstring
or a reformatting leaves checkpoints valid while any change to what the code does invalidates them. Code
without source on disk (made by `exec`) is digested by its bytecode instead.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import marshal
import textwrap
import types
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

if TYPE_CHECKING:
    from methods.registry import MethodAPI, Stage

PACKAGE = "methods"  # only code defined in this package is followed and hashed
_MISSING = object()
_SIMPLE = (bool, int, float, str, bytes, type(None))


def stage_code(method: MethodAPI, stage: Stage, model: dict | None) -> dict[str, str]:
    """{qualified name: digest} of every class, function and constant the stage's training reaches."""
    roots: list[Any] = [stage.objective.fn]
    for name in (*stage.trains, *stage.uses):
        component = method.components[name]
        roots.append(component.cls)
        roots.extend(type(module) for module in _build_on_meta(component, model).modules())
    return closure_digests(roots)


def _build_on_meta(component: Any, model: dict | None) -> torch.nn.Module:
    """The network with its parameters on the meta device; the random state is left as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return component.build(model)


class _Constant(NamedTuple):
    """A module-level constant some code reads, recorded by value."""

    name: str  # module.NAME
    value: Any


def closure_digests(roots: Iterable[Any]) -> dict[str, str]:
    """Digests of the roots defined under `methods.` and of everything they reach (module docstring)."""
    out: dict[str, str] = {}
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if isinstance(obj, _Constant):
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
    return (inspect.isclass(obj) or inspect.isfunction(obj)) and _ours_module(obj.__module__ or "")


def _ours_module(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


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
    return "source:" + hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _bytecode(obj: Any) -> bytes:
    if inspect.isfunction(obj):
        return marshal.dumps(obj.__code__.replace(co_filename="", co_firstlineno=1))
    parts = [f"{k}={_bytecode(v).hex() if inspect.isfunction(v) else type(v).__name__}"
             for k, v in sorted(vars(obj).items()) if not k.startswith("__")]
    return ";".join(parts).encode()
