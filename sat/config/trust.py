"""Objects rebuilt from a config read back from a checkpoint: data, never code.

At train time the user's own config may name any importable ``_target_`` (Hydra's
``instantiate``). A checkpoint, though, may come from anyone, and the config stored in
it is only data. :func:`build` turns such a stored node into an object through an
explicit registry instead:

- a ``_target_`` is either one of the project's classes marked :func:`trusted` where
  they are defined (exact names: ``sat.run.checkpoint.os.system`` is not one), one registered with
  :func:`register`, or a class defined inside a package the user names
  (``trusted_packages=[myplug]``) that subclasses the kind's base class;
- nested nodes with a ``_target_`` must themselves pass that check, and no other
  Hydra key (``_args_``, ``_partial_``, ...) is honoured;
- constructor arguments that name files (a class's ``arg_roles`` with ``FILE``: dataset roots,
  noise files) are never taken from the stored config: the caller supplies them from
  what the user confirmed now (``dataset_root=`` or the current data folder).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sat.config import roles
from sat.errors import UserError

KINDS = ("model", "dataset", "noise", "method", "component")  # component: a part of the above (SAT's start detector)

# The project's classes a stored config may name, by kind: filled by :func:`trusted` as
# their modules are imported (:func:`load_project` imports them all), so the list is
# the class definitions themselves and cannot drift from them.
SAT_TARGETS: dict[str, set[str]] = {kind: set() for kind in KINDS}
_classes: dict[str, tuple[str, type]] = {}  # every name above -> (kind, class)
_bases: dict[str, type] = {"component": object}  # what a trusted package's class of a kind subclasses

# Where the project's trusted classes are defined: importing these packages' modules runs
# every @trusted line. A fixed list of the project's own packages: a stored string never
# chooses what is imported.
_PROJECT_PACKAGES = ("sat.models", "sat.methods", "sat.data")
_loaded = False


def trusted(kind: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator: stored configs may name this class as a ``kind`` node, by its
    defining module's path (``sat.methods.sat.SelfAdaptiveTraining``, the convention of
    every ``_target_`` in conf/) or by an older name given as an alias (the package
    path ``sat.methods.SelfAdaptiveTraining``, which checkpoints from before still hold)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; accepted: {', '.join(KINDS)}")

    def mark(cls: type) -> type:
        for name in (f"{cls.__module__}.{cls.__qualname__}", *aliases):
            SAT_TARGETS[kind].add(name)
            _classes[name] = (kind, cls)
        return cls

    return mark


def kind_base(kind: str, cls: type) -> None:
    """Declare the base class of a kind (called where that base class is defined): what a
    class of a trusted package must subclass to be built as that kind."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; accepted: {', '.join(KINDS)}")
    _bases[kind] = cls


def load_project() -> None:
    """Import every module of the project's packages (once), so the registry holds every
    trusted class and every kind its base class."""
    global _loaded
    if _loaded:
        return
    for package in _PROJECT_PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
    _loaded = True


def _trusted_class(target: str) -> tuple[str, type] | None:
    """(kind, class) of one of the project's trusted classes, from the registry alone."""
    if target not in _classes:
        load_project()
    return _classes.get(target)


def known_class(target: Any) -> type | None:
    """The class a stored ``_target_`` names, if the registry knows it (the project's
    trusted classes and the user's registered ones); nothing is imported by its name."""
    if not isinstance(target, str):
        return None
    found = _trusted_class(target) or _registered.get(target)
    return found[1] if found is not None and isinstance(found[1], type) else None


def project_targets(kind: str) -> set[str]:
    """Every name of the project's trusted classes of ``kind``."""
    load_project()
    return set(SAT_TARGETS[kind])


_registered: dict[str, tuple[str, Callable[..., Any]]] = {}


def base_of(kind: str) -> type:
    """What a trusted package's class of this kind must subclass."""
    load_project()
    return _bases[kind]


def register(target: str, obj: Callable[..., Any], kind: str) -> None:
    """Let stored configs name ``target`` (built by calling ``obj``) as a ``kind`` node:
    for a user's class that lives outside a package they want to trust as a whole."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; accepted: {', '.join(SAT_TARGETS)}")
    _registered[target] = (kind, obj)


def _canonical(name: str) -> str:
    """A trusted class's name by its defining module (aliases map to it)."""
    cls = _classes[name][1] if name in _classes else None
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else name


def _import(target: str) -> Any:
    module, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"_target_={target!r} cannot be imported ({type(e).__name__}: {e})") from None


# Packages never trusted as a whole: the frameworks sat runs on (torch alone holds
# hundreds of Module classes no stored config of a run should name) and the standard library.
UNTRUSTABLE = frozenset({"torch", "torchvision", "numpy", "hydra", "omegaconf", "PIL", "builtins"})


def trusted_package_names(packages: Iterable[str] | None) -> list[str]:
    """The user's ``trusted_packages``, checked: importable names of the user's own
    packages (sat itself is trusted class by class, never as a whole; so are the
    frameworks and the standard library)."""
    names = [str(p) for p in (packages or [])]
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise UserError(f"trusted_packages={names} names {name!r}, which is not a package name; accepted: "
                            "absolute names such as myplug or myplug.models")
        top = name.split(".", 1)[0]
        if top == "sat":
            raise UserError(f"trusted_packages={names} names {name!r}; accepted: your own packages (sat's classes are "
                            "trusted one by one, marked @sat.config.trust.trusted)")
        if top in UNTRUSTABLE or top in sys.stdlib_module_names:
            raise UserError(f"trusted_packages={names} names {name!r}, a library sat runs on, not a package of "
                            "yours; accepted: your own packages (or sat.config.trust.register for one class)")
    return names


def resolve(target: Any, kind: str, what: str, trusted_packages: Iterable[str] | None = None) -> Callable[..., Any]:
    """The class behind a stored ``_target_``, or a UserError naming it and what is accepted."""
    if not isinstance(target, str):
        raise UserError(f"{what}._target_={target!r} is not a class name; accepted: one of sat's classes")
    found = _trusted_class(target)
    if found is not None and found[0] == kind:
        return found[1]
    if target in _registered and _registered[target][0] == kind:
        return _registered[target][1]
    packages = trusted_package_names(trusted_packages)
    owner = next((p for p in packages if target.startswith(p + ".")), None)
    if owner is not None:
        obj = _import(target)
        module = getattr(obj, "__module__", "") or ""
        # A class defined in the package, of the right kind: not a function, and not
        # something the package merely imported (``myplug.os.system``).
        if inspect.isclass(obj) and (module == owner or module.startswith(owner + ".")) \
                and issubclass(obj, base_of(kind)):
            return obj
        raise UserError(f"{what}._target_={target!r} is not a {kind} class defined in trusted package {owner!r}; "
                        f"accepted: a subclass of {base_of(kind).__name__} defined there")
    accepted = ", ".join(sorted(n for n in project_targets(kind) if n == _canonical(n)))
    hint = " or a class of a package you trust (trusted_packages=[pkg])"
    raise UserError(f"{what}._target_={target!r} in the checkpoint's stored config is not allowed; "
                    f"accepted: {accepted}{hint}")


def _check_plain(value: Any, where: str) -> None:
    """Values that are not registered objects must be plain data all the way down."""
    if isinstance(value, Mapping):
        for key, v in value.items():
            if str(key).startswith("_") and str(key).endswith("_"):
                raise UserError(f"{where}.{key} in the checkpoint's stored config is not allowed; accepted: plain values")
            _check_plain(v, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise UserError(f"{where}={value!r} in the checkpoint's stored config is not a plain value")


def build(
    node: Any, kind: str, what: str, *, trusted_packages: Iterable[str] | None = None,
    files: Mapping[str, Any] | None = None, **runtime: Any,
) -> Any:
    """Build the object a stored config node describes (see the module docstring).

    ``files`` replaces the class's file arguments (those not given are dropped, so the
    class's default applies); ``runtime`` adds arguments known only now (num_classes).
    """
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise UserError(f"{what} in the checkpoint's stored config is not an object node with a _target_")
    cls = resolve(node["_target_"], kind, what, trusted_packages)
    file_args = roles.file_args(cls)
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        if key == "_target_" or key in file_args:
            continue
        if str(key).startswith("_") and str(key).endswith("_"):
            raise UserError(f"{what}.{key} in the checkpoint's stored config is not allowed; accepted: plain arguments")
        if isinstance(value, Mapping) and "_target_" in value:
            # only methods hold objects: TRADES' natural loss (a method too) or SAT's start detector (a component)
            if kind not in ("method", "component"):
                resolve(value["_target_"], kind, f"{what}.{key}", trusted_packages)  # a target not allowed: say so first
                raise UserError(f"{what}.{key} in the checkpoint's stored config is an object node where {kind} "
                                "arguments are plain values; accepted: plain values")
            found = _trusted_class(str(value["_target_"]))
            nested = "component" if found is not None and found[0] == "component" else kind
            value = build(value, nested, f"{what}.{key}", trusted_packages=trusted_packages)
        else:
            _check_plain(value, f"{what}.{key}")
        kwargs[str(key)] = value
    kwargs.update({k: v for k, v in (files or {}).items() if k in file_args})
    kwargs.update(runtime)
    target = node["_target_"]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        params = [p for p in inspect.signature(cls).parameters if p not in runtime and p not in file_args]
        raise UserError(f"{what} in the checkpoint's stored config does not fit {target} ({e}); accepted: its "
                        f"arguments {', '.join(params)}") from None
    except ValueError:  # a signature inspect cannot read: the constructor checks its arguments
        pass
    try:
        return cls(**kwargs)
    except UserError as e:  # the library names its argument; here it is the stored config's key
        raise e.from_node(what) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"{what}: {target} cannot be built from the checkpoint's stored config "
                        f"({type(e).__name__}: {detail})") from None
