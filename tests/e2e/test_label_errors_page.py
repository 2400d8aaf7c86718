"""The label-error review page in a real browser (headless Chromium, Debian's package):
the page a real ``evaluate.py report=label_errors`` wrote on the session's quickstart SAT
run shows every suspect of its CSV, filters, keeps decisions across a reload, exports
them as a file that ``evaluate.py report=cleaned_labels`` turns into labels a 2-epoch
``train.py`` run trains on, and draws its images. The browser is driven over the
DevTools protocol through a pipe (tests/browser.py): no port, no downloaded browser.
The page's file without a browser: tests/unit/test_review_page.py.

Skipped only where Chromium is missing and ``SAT_REQUIRE_BROWSER`` is unset; CI
(``.ci/run``) installs Chromium and sets it, so there a missing browser fails."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time

import pytest
import torch
from browser import Chromium, chromium_path
from conftest import run_entry

import sat

pytestmark = pytest.mark.skipif(chromium_path() is None and not os.environ.get("SAT_REQUIRE_BROWSER"),
                                reason="no chromium on the PATH (apt-get install -y chromium); SAT_REQUIRE_BROWSER=1 "
                                       "makes this a failure")

CARDS = "Array.from(document.querySelectorAll('#cards .card'), c => Number(c.dataset.sampleId))"


@pytest.fixture(scope="module")
def report(quickstart_sweep, tmp_path_factory):
    """``evaluate.py report=label_errors`` on the quickstart sweep's SAT run (trained once per session)."""
    sweep, _ = quickstart_sweep
    out = tmp_path_factory.mktemp("label_errors") / "eval"
    checkpoint = sweep / "method-sat+seed-0" / "checkpoints" / "last.pt"
    run_entry("evaluate.py", f"checkpoint={checkpoint}", "report=label_errors", "report.top_suspects=4", "device=cpu",
              f"hydra.run.dir={out}", cwd=out.parent)
    with open(out / "label_errors.csv") as f:
        rows = list(csv.DictReader(f))
    return out, checkpoint, rows


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chromium")
    with Chromium(folder / "profile") as chromium:
        chromium.download_to(folder / "downloads")
        yield chromium


def every_card(browser) -> list[int]:
    """The sample ids of all cards, page after page (the page holds one page at a time)."""
    ids = []
    for _ in range(browser.evaluate("Number(document.getElementById('pages').textContent)")):
        ids += browser.evaluate(CARDS)
        browser.click("#next-page")
    browser.click("#first-page")
    return ids


def test_the_page_shows_every_suspect_of_the_csv_in_its_order(report, quickstart_sweep, browser):
    out = report[0]
    html = (out / "label_errors.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html) and "<script src" not in html  # nothing to fetch
    for page, csv_file in ((out / "label_errors.html", out / "label_errors.csv"),  # the report's, and the training run's
                           *[(run / "label_errors.html", run / "label_errors.csv")
                             for run in [quickstart_sweep[0] / "method-sat+seed-0"]]):
        with open(csv_file) as f:
            expected = [int(r["sample_id"]) for r in csv.DictReader(f)]
        browser.open(page)
        assert browser.evaluate("Number(document.getElementById('total').textContent)") == len(expected) > 96
        assert len(browser.evaluate(CARDS)) == 96  # one page of cards in the document, not all
        assert every_card(browser) == expected
        assert "precision" in browser.evaluate("document.getElementById('quality').textContent")
        assert browser.script_errors() == []


def test_filters_change_what_is_shown(report, browser):
    out, _, rows = report
    browser.open(out / "label_errors.html")
    given = max({r["given_label"] for r in rows}, key=lambda c: sum(r["given_label"] == c for r in rows))
    browser.set_value("#f-given", given)
    shown = every_card(browser)
    assert shown == [int(r["sample_id"]) for r in rows if r["given_label"] == given] and len(shown) < len(rows)
    browser.set_value("#f-given", "all")
    browser.set_value("#f-min", "0.9")
    high = [int(r["sample_id"]) for r in rows if float(r["suspicion"]) >= 0.9]
    assert browser.evaluate("Number(document.getElementById('shown').textContent)") == len(high) < len(rows)
    assert every_card(browser) == high


def test_decisions_survive_a_reload_and_train_a_run(report, browser, tmp_path):
    out, checkpoint, rows = report
    page = out / "label_errors.html"
    browser.open(page)
    browser.evaluate("localStorage.clear()")
    browser.open(page)
    for key in ("r", "x", "k", "ArrowRight", "3"):  # relabel, remove, keep, skip one, relabel to class 3
        browser.press(key)
    browser.open(page)  # a reload: the decisions are still there
    assert browser.evaluate("document.getElementById('counts').textContent").startswith("decided 4 of")
    marked = browser.evaluate("Array.from(document.querySelectorAll('#cards .card'),"
                              " c => (c.className.match(/\\bd-(\\w+)/) || [null, null])[1])")
    assert marked[:5] == ["relabel", "remove", "keep", None, "relabel"]
    browser.click("#export-csv")
    exported = browser.wait_for_download().read_text()
    first = [(int(r["sample_id"]), int(r["given_label"]), int(r["suggested_label"])) for r in rows[:5]]
    assert list(csv.DictReader(io.StringIO(exported))) == [
        {"sample_id": str(first[0][0]), "decision": "relabel", "new_label": str(first[0][2])},
        {"sample_id": str(first[1][0]), "decision": "remove", "new_label": ""},
        {"sample_id": str(first[2][0]), "decision": "keep", "new_label": str(first[2][1])},
        {"sample_id": str(first[4][0]), "decision": "relabel", "new_label": "3"},
    ]
    decisions = tmp_path / "label_decisions.csv"
    decisions.write_text(exported)
    # in this process (through Hydra's own run, as the entry points): the page above came from a real evaluate.py
    sat.evaluate([f"checkpoint={checkpoint}", "report=cleaned_labels", f"report.decisions={decisions}", "device=cpu"],
                 output_dir=tmp_path / "cleaned")
    sat.train(["experiment=quickstart", "method=ce", "trainer.epochs=2", "logger=none", "device=cpu", "noise=refined",
               f"noise.from_file={tmp_path / 'cleaned' / 'cleaned_labels.pt'}"], output_dir=tmp_path / "run")
    noise = json.loads((tmp_path / "run" / "summary.json").read_text())["noise"]
    assert noise["source"]["decisions"] == str(decisions) and noise["source"]["relabelled"] == 2
    assert noise["removed"] == 1 and noise["num_train"] == 1100 - 1
    from sat.data.noise import NoisePattern

    pattern = NoisePattern.load(tmp_path / "run" / "noise.pt")  # what the run trained on, and will resume on
    position = {sample: at for at, sample in enumerate(digits_pool_ids())}
    assert pattern.removed.tolist() == [first[1][0]]
    assert int(pattern.labels[position[first[0][0]]]) == first[0][2] and int(pattern.labels[position[first[4][0]]]) == 3
    assert int(pattern.labels[position[first[2][0]]]) == first[2][1]  # kept as given


def digits_pool_ids() -> list[int]:
    """The sample ids of the digits training pool (conf/dataset/digits.yaml's defaults), in its order."""
    from sat.data.datasets import Digits

    return Digits().load().train.ids.tolist()


def test_a_screenshot_shows_the_cards_and_their_images(report, browser, tmp_path):
    out, _, _ = report
    browser.open(out / "label_errors.html")
    png = browser.screenshot()
    (tmp_path / "page.png").write_bytes(png)
    from torchvision.io import decode_png

    image = decode_png(torch.frombuffer(bytearray(png), dtype=torch.uint8))
    assert image.shape[1:] == (900, 1280)
    assert image.float().std() > 20 and len(torch.unique(image.flatten(1), dim=1).T) > 50  # not blank, not flat
    box = browser.evaluate("(() => { const r = document.querySelector('#cards .thumb').getBoundingClientRect();"
                           " return [r.x, r.y, r.width, r.height].map(Math.round); })()")
    x, y, w, h = box
    assert w == h == 96
    thumb = image[:, y + 2:y + h - 2, x + 2:x + w - 2].float()
    assert thumb.std() > 30  # the digit is drawn: dark background and bright strokes


def test_thirty_thousand_suspects_stay_responsive(browser, tmp_path):
    """Only one page of cards is ever drawn: opening, filtering and paging a page of
    30,000 suspects each take well under a second."""
    from sat.label_errors.page import write_review_page

    n, k = 30_000, 10
    g = torch.Generator().manual_seed(0)
    distribution = torch.rand(n, k, generator=g).softmax(1)
    given = (distribution.argmax(1) + 1) % k  # every sample flagged
    write_review_page(tmp_path / "label_errors.html", distribution, given, torch.arange(n), true=given,
                      images=torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g))
    started = time.monotonic()
    browser.open(tmp_path / "label_errors.html")
    opened = time.monotonic() - started
    assert browser.evaluate("Number(document.getElementById('total').textContent)") == n
    assert len(browser.evaluate(CARDS)) == 96
    took = browser.evaluate("(() => { const t = performance.now(), s = document.getElementById('f-given'); s.value = '3';"
                            " s.dispatchEvent(new Event('change')); return performance.now() - t; })()")
    assert browser.evaluate("Number(document.getElementById('shown').textContent)") == int((given == 3).sum())
    browser.press("End")  # the last page
    assert browser.evaluate("document.getElementById('page').textContent") == \
        browser.evaluate("document.getElementById('pages').textContent")
    assert opened < 5 and took < 1000, (opened, took)
    assert browser.script_errors() == []
