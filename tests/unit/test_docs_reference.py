"""The docs' generated pages (tools/docs_reference.py, an MkDocs hook): every config file
has the one-line description the tables show, and a new option, preset, key or package
appears without anyone editing a table."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "tools" / "docs_reference.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)


def test_every_config_file_has_a_one_line_description():
    assert reference.missing_descriptions() == []


def test_the_description_is_the_first_comment_line_that_is_not_a_hydra_directive(tmp_path):
    (tmp_path / "a.yaml").write_text("# @package _global_\n# What it is.\n# More.\nx: 1\n")
    (tmp_path / "b.yaml").write_text("x: 1  # not a description\n")
    assert reference.description(tmp_path / "a.yaml") == "What it is."
    assert reference.description(tmp_path / "b.yaml") == ""
    assert reference.missing_descriptions(tmp_path) == [tmp_path / "b.yaml"]


@pytest.fixture
def conf(tmp_path):
    copy = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", copy)
    return copy


def test_a_new_method_preset_and_key_appear_in_the_reference(conf):
    before = reference.configuration_page(conf)
    (conf / "method" / "taylor_ce.yaml").write_text("# Taylor cross-entropy: a new loss.\n_target_: x.Taylor\n"
                                                      "order: 2\n")
    (conf / "experiment" / "mine.yaml").write_text("# @package _global_\n# My preset.\ndefaults:\n"
                                                    "  - override /method: taylor_ce\nname: mine\ntrainer:\n"
                                                    "  epochs: 7\n")
    train = conf / "train.yaml"
    train.write_text(train.read_text() + "new_key: 3   # what the new key does\n")
    after = reference.configuration_page(conf)
    for text in ("| `taylor_ce` | Taylor cross-entropy: a new loss. | `order=2` |",
                 "| `mine` | My preset. | `method=taylor_ce` | `name=mine` `trainer.epochs=7` |",
                 "| `new_key` | `3` | what the new key does |"):
        assert text not in before and text in after


def test_the_reference_lists_every_option_of_every_group():
    page = reference.configuration_page()
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        group = path.parent.relative_to(ROOT / "conf").as_posix()
        if group in (".", "hydra", "hydra/job_logging"):
            continue
        assert f"| `{path.stem}`" in page, f"{group}/{path.name} is missing from the configuration reference"
    assert "| `trainer.epochs` | `200` |" in page and "| `dry_run` | `false` |" in page


def test_every_package_has_an_api_page():
    pages = reference.api_pages()
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sat").rglob("__init__.py")}
    assert {f"reference/api/{p}.md" for p in packages} | {"reference/api/index.md"} == set(pages)
    assert "::: sat.methods.base" in pages["reference/api/sat.methods.md"]


def test_links_of_the_readme_become_the_site_s():
    text = ("[a](docs/noisy_labels.md#noise) [b](CHANGELOG.md) [c](examples/plugin) [d](https://x.org/y) "
            "![f](docs/figures/dd_digits.png) [e](#top)")
    assert reference.as_site_page(text) == ("[a](noisy_labels.md#noise) [b](changelog.md) c (`examples/plugin`) "
                                             "[d](https://x.org/y) ![f](figures/dd_digits.png) [e](#top)")
