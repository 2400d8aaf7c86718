"""Objects rebuilt from a config read back from a checkpoint: data, never code.

At train time the user's own config may name any importable ``_target_`` (Hydra's
``instantiate``). A checkpoint, though, may come from anyone, and the config stored in
it is only data. :func:`build` turns such a stored node into an object through an
explicit registry instead:

- a ``_target_`` is either one of the project's classes listed in :data:`SAT_TARGETS`
  (exact names: ``sat.checkpoint.os.system`` is not one), one registered with
  :func:`register`, or a class defined inside a package the user names
  (``trusted_packages=[myplug]``) that subclasses the kind's base class;
- nested nodes with a ``_target_`` must themselves pass that check, and no other
  Hydra key (``_args_``, ``_partial_``, ...) is honoured;
- constructor arguments that name files (a class's ``file_args``: dataset roots,
  noise files) are never taken from the stored config: the caller supplies them from
  what the user confirmed now (``dataset_root=`` or the current data folder).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any, Callable

from sat.errors import UserError

# The project's classes a stored config may name, by kind.
SAT_TARGETS: dict[str, frozenset[str]] = {
    "model": frozenset({
        "sat.models.ResNet", "sat.models.PreActResNet", "sat.models.WideResNet", "sat.models.SmallCNN",
        "sat.models.MLP", "sat.models.vgg.VGG", "sat.models.resnet50.ResNet50",
    }),
    "dataset": frozenset({"sat.data.datasets.CIFAR", "sat.data.datasets.Digits", "sat.data.datasets.Synthetic",
                         "sat.data.svhn.SVHN", "sat.data.folder.ImageFolderSource", "sat.data.stl10.STL10"}),
    "noise": frozenset({
        "sat.data.noise.UniformLabelNoise", "sat.data.noise.FlipLabelNoise", "sat.data.noise.AsymmetricLabelNoise",
        "sat.data.noise.GaussianImageNoise", "sat.data.noise.RandomPixelsNoise", "sat.data.noise.ShuffledPixelsNoise",
        "sat.data.noise.RefinedLabels", "sat.data.human_noise.CIFAR10NLabelNoise", "sat.data.human_noise.CIFAR100NLabelNoise",
    }),
    "method": frozenset({
        "sat.methods.CrossEntropy", "sat.methods.SelfAdaptiveTraining", "sat.methods.SelfAdaptiveTrainingSCE",
        "sat.methods.TRADES", "sat.methods.gce.GeneralizedCrossEntropy", "sat.methods.sce.SymmetricCrossEntropy",
        "sat.methods.bootstrapping.SoftBootstrapping", "sat.methods.bootstrapping.HardBootstrapping",
        "sat.methods.elr.EarlyLearningRegularization", "sat.methods.coteaching.CoTeaching",
        "sat.methods.selective.SelfAdaptiveSelective", "sat.methods.selective.DeepGamblers",
        "sat.methods.ssl.SelfSupervisedSAT", "sat.methods.ssl.BYOL", "sat.methods.ssl.SimSiam", "sat.methods.ssl.SimCLR",
    }),
    # parts of the above (a method's start-epoch detector)
    "component": frozenset({"sat.methods.auto_start.AutoStartEpoch"}),
}

_registered: dict[str, tuple[str, Callable[..., Any]]] = {}


def _base_class(kind: str) -> type:
    """What a trusted package's class of this kind must subclass."""
    if kind == "model":
        from torch import nn

        return nn.Module
    if kind == "dataset":
        from sat.data.datasets import DataSource

        return DataSource
    if kind == "noise":
        from sat.data.noise import Noise

        return Noise
    if kind == "component":
        return object
    from sat.methods.base import Method

    return Method


def register(target: str, obj: Callable[..., Any], kind: str) -> None:
    """Let stored configs name ``target`` (built by calling ``obj``) as a ``kind`` node:
    for a user's class that lives outside a package they want to trust as a whole."""
    if kind not in SAT_TARGETS:
        raise ValueError(f"kind={kind!r}; accepted: {', '.join(SAT_TARGETS)}")
    _registered[target] = (kind, obj)


def _import(target: str) -> Any:
    module, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"_target_={target!r} cannot be imported ({type(e).__name__}: {e})") from None


def trusted_package_names(packages: Iterable[str] | None) -> list[str]:
    """The user's ``trusted_packages``, checked: sat itself is trusted class by class, never as a whole."""
    names = [str(p) for p in (packages or [])]
    for name in names:
        if name == "sat" or name.startswith("sat."):
            raise UserError(f"trusted_packages={names} names {name!r}; accepted: your own packages (sat's classes are "
                            "trusted one by one through sat.trust.SAT_TARGETS)")
    return names


def resolve(target: Any, kind: str, what: str, trusted_packages: Iterable[str] | None = None) -> Callable[..., Any]:
    """The class behind a stored ``_target_``, or a UserError naming it and what is accepted."""
    if not isinstance(target, str):
        raise UserError(f"{what}._target_={target!r} is not a class name; accepted: one of sat's classes")
    if target in SAT_TARGETS[kind]:
        return _import(target)
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
                and issubclass(obj, _base_class(kind)):
            return obj
        raise UserError(f"{what}._target_={target!r} is not a {kind} class defined in trusted package {owner!r}; "
                        f"accepted: a subclass of {_base_class(kind).__name__} defined there")
    accepted = ", ".join(sorted(SAT_TARGETS[kind]))
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
    file_args = set(getattr(cls, "file_args", ()))
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        if key == "_target_" or key in file_args:
            continue
        if str(key).startswith("_") and str(key).endswith("_"):
            raise UserError(f"{what}.{key} in the checkpoint's stored config is not allowed; accepted: plain arguments")
        if isinstance(value, Mapping) and "_target_" in value:
            # e.g. TRADES' natural loss (a method too) or SAT's start detector (a component)
            nested = "component" if value["_target_"] in SAT_TARGETS["component"] else kind
            value = build(value, nested, f"{what}.{key}", trusted_packages=trusted_packages)
        else:
            _check_plain(value, f"{what}.{key}")
        kwargs[str(key)] = value
    kwargs.update({k: v for k, v in (files or {}).items() if k in file_args})
    kwargs.update(runtime)
    return cls(**kwargs)
