"""The docs site builds with ``mkdocs build --strict``: a broken link or anchor, a page
missing from the navigation or a docstring mkdocstrings cannot render fails the suite
(``pip install -e ".[docs]"``, in ``dev``)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_the_docs_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its successor, not a finding
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "reference" / "configuration" / "index.html").is_file()
    api = (site / "reference" / "api" / "sat.methods" / "index.html").read_text(encoding="utf-8")
    assert "SelfAdaptiveTraining" in api  # rendered from the docstrings
