"""A checkpoint's ``_target_`` never chooses what is imported (issue 27, item 4): names
resolve from the registry of the project's trusted classes alone, which a fixed list of
the project's packages fills; ``sat.report.__main__`` ran the report's CLI inside
evaluate.py when a stored string named it."""

from __future__ import annotations

import importlib
import sys

import pytest

from sat.config import trust
from sat.errors import UserError


@pytest.mark.parametrize("target", ["sat.report.__main__.main", "sat.report.__main__.x", "sat.report.cli.main",
                                    "sat.tasks.train.run", "sat.run.checkpoint.os.system"])
def test_a_stored_target_imports_no_module_it_names(target, monkeypatch):
    for name in [m for m in sys.modules if m.startswith("sat.report")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(UserError, match=r"in the checkpoint's stored config is not allowed"):
        trust.build({"_target_": target}, "model", "model", num_classes=4, input_shape=(3, 8, 8))
    assert not [m for m in sys.modules if m.startswith("sat.report")]  # nothing of the report was imported


def test_importing_the_reports_main_module_runs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["x", "/nonexistent"])
    monkeypatch.delitem(sys.modules, "sat.report.__main__", raising=False)
    importlib.import_module("sat.report.__main__")  # before: sys.exit(main()) at import
    assert capsys.readouterr().err == ""
