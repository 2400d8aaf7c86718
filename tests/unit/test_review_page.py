"""The review page's file (``label_errors.html``, sat/label_errors/page.py) without a
browser: its cards follow the CSV's rows, every detector's scores follow the cards,
large thumbnail sets go to a folder beside it, and no file name can break out of its
data. The page in a real browser: tests/e2e/test_label_errors_page.py."""

from __future__ import annotations

import csv
import json

import torch

from sat.label_errors.export import write_label_errors
from sat.label_errors.page import page_summary, write_review_page


def page_data(path) -> dict:
    html = path.read_text()
    return json.loads(html.split('id="review-data" type="application/json">')[1].split("</script>")[0])


def test_the_page_keeps_large_thumbnail_sets_beside_it_and_escapes_names(tmp_path, monkeypatch):
    import sat.label_errors.page as page

    monkeypatch.setattr(page, "EMBED_LIMIT", 0)  # every sheet to the folder beside the page
    n = 300
    distribution = torch.full((n, 3), 0.1).scatter_(1, torch.ones(n, 1, dtype=torch.long), 0.8)
    files = [f"img/{i}.png" for i in range(n)]
    files[5] = "img/</script><script>alert(1)</script>.png"
    cards = write_review_page(tmp_path / "label_errors.html", distribution, torch.zeros(n, dtype=torch.long),
                              torch.arange(n), files=files, images=torch.randint(0, 255, (n, 3, 100, 80), dtype=torch.uint8),
                              summary={"title": "t <b>"})
    html = (tmp_path / "label_errors.html").read_text()
    assert cards == n and "<script>alert" not in html and "<title>t &lt;b&gt;</title>" in html
    data = page_data(tmp_path / "label_errors.html")
    assert data["rows"]["file"][5] == files[5] and data["thumbnails"]["sheets"] == [
        "label_errors_thumbnails/sheet_00000.png", "label_errors_thumbnails/sheet_00001.png"]
    from torchvision.io import decode_png, read_file

    sheet = decode_png(read_file(str(tmp_path / "label_errors_thumbnails/sheet_00001.png")))
    assert (data["thumbnails"]["w"], data["thumbnails"]["h"]) == (51, 64)  # 100 x 80 shrunk to 64 high
    assert tuple(sheet.shape) == (3, 64 * 3, 51 * 16)  # the 44 left: three rows of sixteen


def test_the_page_orders_every_detector_s_scores_like_its_cards(tmp_path):
    """A second detector's per-sample scores and flags (confident learning's) follow the
    cards' order, which is the CSV's: most suspect first."""
    distribution = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.1, 0.9], [0.45, 0.55]])
    given = torch.tensor([0, 0, 0, 0])  # samples 1, 2, 3 flagged; by suspicion: 2, 1, 3
    other = {"CL score": torch.tensor([0.05, 0.6, 0.8, 0.2]), "CL flags": torch.tensor([False, True, True, False])}
    write_review_page(tmp_path / "p.html", distribution, given, torch.tensor([10, 11, 12, 13]), scores=other)
    write_label_errors(tmp_path / "e.csv", distribution, given, torch.tensor([10, 11, 12, 13]))
    data = page_data(tmp_path / "p.html")
    with open(tmp_path / "e.csv") as f:
        assert data["rows"]["sample_id"] == [int(r["sample_id"]) for r in csv.DictReader(f)] == [12, 11, 13]
    assert data["scores"]["CL score"] == [0.8, 0.6, 0.2] and data["scores"]["CL flags"] == [True, True, False]
    assert data["scores"]["suspicion"] == [0.9, 0.7, 0.55]


def test_the_summary_names_the_run_and_the_commands_that_apply_the_decisions(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    summary = page_summary(checkpoint=checkpoint, epoch=7, dataset="digits", source="soft targets", flagged=3,
                           num_train=10, noise={"kind": "uniform", "rate": 0.4, "realised_error": 0.3},
                           detection={"precision": 1.0, "recall": float("nan"), "f1": 0.5, "auroc": 0.9})
    facts = dict(summary["facts"])
    assert facts["run"] == str(tmp_path / "run") and facts["checkpoint"] == "last.pt (epoch 7)"
    assert facts["noise"] == "uniform rate 0.4 (30.0% of training labels wrong)"
    assert summary["quality"] == {"soft targets": {"precision": 1.0, "recall": None, "f1": 0.5, "auroc": 0.9}}
    assert summary["next"][0] == (f"python evaluate.py checkpoint={checkpoint} report=cleaned_labels "
                                  "report.decisions=label_decisions.csv")
