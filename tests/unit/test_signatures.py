"""Constructors' arguments read from source files (sat.config.signatures), which the
entry points use to refuse a key typo before torch is imported: the answer is the
imported signature's or None, never a different set of names."""

from __future__ import annotations

import re
import textwrap

import pytest
from conftest import ROOT
from hydra.utils import get_object

from sat.config import signatures
from sat.config.signatures import source_arguments
from sat.config.validate import argument_names

TARGETS = sorted({m for p in (ROOT / "conf").rglob("*.yaml")
                  for m in re.findall(r"^\s*_target_:\s*([\w.]+)", p.read_text(), re.M)})


def test_every_target_in_conf_is_read_as_importing_it_would():
    assert len(TARGETS) > 50
    for target in TARGETS:  # every class conf/ names is settled from its source (torch.optim's re-exports too)
        assert source_arguments(target) == argument_names(get_object(target)), target
    assert sum(source_arguments(t) is not None for t in TARGETS) > 50


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``pkg`` of small modules, importable from ``tmp_path``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "pkg").mkdir()

    def write(name: str, source: str) -> None:
        (tmp_path / "pkg" / f"{name}.py").write_text(textwrap.dedent(source))

    write("__init__", "from pkg.base import Base as Exported\n")
    write("base", """
        import dataclasses

        class Base:
            def __init__(self, a, b=1): ...

        class Open:
            def __init__(self, **kwargs): ...

        @dataclasses.dataclass
        class Data:
            x: int = 0

        def make(p, *, q=2): ...
        """)
    write("child", """
        from pkg import base
        from pkg.base import Base, Open

        class Child(Base):
            def __init__(self, c, **kwargs): ...

        class Grandchild(Child):
            pass

        class FromModule(base.Base):
            def __init__(self, d, **rest): ...

        class OpenEnded(Open):
            def __init__(self, e, **kwargs): ...

        class Two(Base, Open):
            pass
        """)
    signatures._tree.cache_clear()
    signatures._module_file.cache_clear()
    yield
    signatures._tree.cache_clear()
    signatures._module_file.cache_clear()


@pytest.mark.parametrize("target,expected", [
    ("pkg.base.Base", {"a", "b"}),
    ("pkg.base.make", {"p", "q"}),
    ("pkg.Exported", {"a", "b"}),  # a re-export, followed
    ("pkg.child.Child", {"a", "b", "c"}),  # **kwargs reach the base class's __init__
    ("pkg.child.Grandchild", {"a", "b", "c"}),  # no __init__ of its own
    ("pkg.child.FromModule", {"a", "b", "d"}),  # a base named through its module
    ("pkg.base.Open", None),  # open: anything may be accepted
    ("pkg.child.OpenEnded", None),
    ("pkg.base.Data", None),  # a decorator may write __init__: left to the importing check
    ("pkg.child.Two", None),  # several bases: the MRO is the importing check's
    ("pkg.base.Missing", None),
    ("pkg.nowhere.Thing", None),
])
def test_source_arguments(package, target, expected):
    assert source_arguments(target) == expected
    if expected is not None:
        assert argument_names(get_object(target)) == expected
