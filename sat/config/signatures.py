"""The keyword arguments a ``_target_`` takes, read from its source file without
importing it, so that a typo in a key is refused before torch is imported (a bare
compose of conf/ takes a fraction of ``import torch``).

The answer follows the rules of :func:`sat.config.validate.argument_names` (a class's
``__init__``, then its base class's while the arguments end in ``**kwargs``) and is
either theirs or None: a class whose arguments the source does not settle (several
bases, a decorator that may write ``__init__``, a base that is not Python source) is
left to the check that imports it."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

_MAX_DEPTH = 12  # re-exports and base classes followed before giving up
# Class decorators known to leave ``__init__`` as written (registering the class only).
KEEP_INIT = frozenset({("sat.config.trust", "trusted")})


def source_arguments(target: str) -> set[str] | None:
    """The keyword arguments of ``target`` (``package.module.Name``), or None where
    its source does not say them for certain."""
    module, _, name = target.rpartition(".")
    return _arguments(module, name, 0) if module else None


def _arguments(module: str, name: str, depth: int) -> set[str] | None:
    found = _definition(module, name, depth)
    if found is None:
        return None
    module, node = found
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names, is_open = _parameters(node.args)
        return None if is_open else names
    if not all(_keeps_init(module, d, depth) for d in node.decorator_list):  # @dataclass writes __init__
        return None
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    names: set[str] = set()
    if init is not None:
        names, is_open = _parameters(init.args)
        if not is_open:
            return names
    if len(node.bases) != 1 or node.keywords:  # an MRO the source alone does not settle
        return None
    base = _dotted(node.bases[0])
    if base is None:
        return None
    inherited = _resolve_name(module, base, depth + 1)
    if inherited is None:
        return None
    rest = _arguments(*inherited, depth + 1)
    return None if rest is None else names | rest


def _keeps_init(module: str, decorator: ast.expr, depth: int) -> bool:
    name = _dotted(decorator.func if isinstance(decorator, ast.Call) else decorator)
    return name is not None and _resolve_name(module, name, depth + 1) in KEEP_INIT


def _parameters(args: ast.arguments) -> tuple[set[str], bool]:
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)} - {"self"}
    return names, args.kwarg is not None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _resolve_name(module: str, dotted: str, depth: int) -> tuple[str, str] | None:
    """``(module, name)`` that ``dotted``, as written in ``module``, refers to."""
    head, _, rest = dotted.partition(".")
    tree = _tree(module)
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == head and not rest:
            return module, head
        for alias in _imports(node, module):
            local, source, attr = alias
            if local != head:
                continue
            if not rest:
                return (source, attr) if attr is not None else None
            # local.rest: an attribute of the module local names (import a.b as local; from a import b)
            parent, _, name = (f"{source}.{attr}.{rest}" if attr is not None else f"{source}.{rest}").rpartition(".")
            return parent, name
    return None


def _imports(node: ast.stmt, module: str) -> list[tuple[str, str, str | None]]:
    """``(local name, module, attribute or None)`` for each name an import binds."""
    if isinstance(node, ast.Import):
        return [(a.asname or a.name.partition(".")[0], a.name if a.asname else a.name.partition(".")[0], None)
                for a in node.names]
    if isinstance(node, ast.ImportFrom):
        source = _absolute(module, node.module or "", node.level)
        return [(a.asname or a.name, source, a.name) for a in node.names]
    return []


def _absolute(module: str, name: str, level: int) -> str:
    if not level:
        return name
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def _definition(module: str, name: str, depth: int) -> tuple[str, ast.ClassDef | ast.FunctionDef] | None:
    """Where ``module.name`` is defined (following re-exports such as torch.optim's)."""
    if depth > _MAX_DEPTH:
        return None
    tree = _tree(module)
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return module, node
    for node in tree.body:
        for local, source, attr in _imports(node, module):
            if local == name and attr is not None:
                return _definition(source, attr, depth + 1)
    return None


@lru_cache(maxsize=256)
def _tree(module: str) -> ast.Module | None:
    path = _module_file(module)
    if path is None:
        return None
    try:
        return ast.parse(Path(path).read_bytes(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _is_package(module: str) -> bool:
    path = _module_file(module)
    return path is not None and Path(path).name == "__init__.py"


@lru_cache(maxsize=256)
def _module_file(module: str) -> str | None:
    """The source file of ``module``, found without importing it or its packages."""
    if module in sys.modules:
        origin = getattr(sys.modules[module], "__file__", None)
        return origin if origin and origin.endswith(".py") else None
    parent, _, _ = module.rpartition(".")
    try:
        if not parent:
            spec = importlib.util.find_spec(module)  # a top-level name: nothing is imported
        else:
            locations = _search_locations(parent)
            spec = importlib.machinery.PathFinder.find_spec(module, locations) if locations else None
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return origin if origin and origin.endswith(".py") else None


def _search_locations(package: str) -> list[str] | None:
    if package in sys.modules:
        return list(getattr(sys.modules[package], "__path__", []) or []) or None
    path = _module_file(package)
    return [str(Path(path).parent)] if path is not None and Path(path).name == "__init__.py" else None
