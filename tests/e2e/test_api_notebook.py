"""docs/api.ipynb runs from top to bottom (nbclient, a real kernel), so it cannot rot;
its training runs are shortened by a cell put in front, every other line is the
notebook's own."""

from __future__ import annotations

import os

import pytest
from conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SHORTEN = """
import sat
from sat.api import _overrides
_train = sat.train
sat.train = lambda overrides=(), output_dir=None: _train([*_overrides(overrides), "trainer.epochs=12"], output_dir)
"""


def test_the_api_notebook_runs(tmp_path, monkeypatch):
    nb = nbformat.read(ROOT / "docs" / "api.ipynb", as_version=4)
    training = [c for c in nb.cells if c.cell_type == "code" and "sat.train(" in c.source and "except" not in c.source]
    assert training and all(c.metadata.get("jupyter", {}).get("outputs_hidden") for c in training)  # collapsed
    nb.cells.insert(0, nbformat.v4.new_code_cell(SHORTEN))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = {c.get("id"): "".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"}
    assert text["metrics"].count("'epoch'") == 5 and "{'epoch': 12," in text["metrics"]
    assert text["bad-input"].strip() == "trainer.batch_size=0 is out of range; accepted: an integer >= 1"
    assert (tmp_path / "runs/quickstart-sat/metrics.jsonl").is_file() and (tmp_path / "runs/label-errors").is_dir()
    assert not (tmp_path / "runs/bad").exists()  # the refused run left no folder (as on the command line)
