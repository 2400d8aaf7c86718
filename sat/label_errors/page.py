"""``label_errors.html``: the suspected label errors as a page a person reviews.

The page shows the rows of ``label_errors.csv`` (the same samples, in the same order:
:func:`sat.label_errors.export.flagged_in_order`) as cards: the image, the sample id (and file),
the given and the suggested label by class name, the detectors' scores and, where known,
the true label. It filters, sorts and pages in the browser (only one page of cards is
ever in the document, so tens of thousands of suspects stay responsive), keeps a
relabel / remove / keep decision per suspect in the browser's localStorage (keyed by
the run and checkpoint) and exports the decisions as ``label_decisions.csv``
(``sample_id,decision,new_label``), which ``evaluate.py report=cleaned_labels`` turns
into labels to train on.

One file, opened with a double-click: the script and styles are inside it (the template
``page.html`` beside this module, package data), the data is one JSON block, and the
thumbnails are PNG sprite sheets (256 images each) embedded as ``data:`` URIs, or, past
:data:`EMBED_LIMIT` bytes, written to a folder beside the page. Streamed folder datasets
(no decoded images at hand) show their image files themselves.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sat.label_errors.detection import disagreement_with_given
from sat.label_errors.export import flagged_in_order
from sat.run.files import write_atomic

THUMBNAIL_SIZE = 64  # px: larger images are shrunk (antialiased) for their card
SHEET_COLUMNS = 16  # a sprite sheet is 16 x 16 thumbnails
PER_SHEET = SHEET_COLUMNS * SHEET_COLUMNS
EMBED_LIMIT = 16 * 2**20  # bytes of thumbnails kept inside the page; more go to a folder beside it


def write_review_page(path: str | Path, distribution: Tensor, given: Tensor, ids: Tensor, *,
                      true: Tensor | None = None, files: Sequence[str] | None = None, images: Tensor | None = None,
                      image_root: str | Path | None = None, class_names: Sequence[str] = (),
                      scores: Mapping[str, Tensor] | None = None, summary: Mapping[str, Any] | None = None,
                      run_key: str = "") -> int:
    """Write the review page of the samples ``distribution`` flags (the rows of
    ``label_errors.csv``). Every tensor is aligned with ``given`` (one entry per
    training sample): ``true`` (-1 where unknown), ``files`` (a folder dataset's paths),
    ``images`` (uint8 (N, C, H, W): thumbnails; else, with ``image_root``, the files are
    shown), ``scores`` (more detectors' per-sample scores or flags, by name).
    ``summary``: ``title``, ``facts`` ([label, value] pairs), ``quality`` (detector ->
    precision, recall, f1, auroc) and ``next`` (commands). ``run_key`` names the run in
    the browser's storage. Returns the number of cards."""
    path = Path(path)
    distribution = distribution.detach().double().cpu()
    given = given.cpu().long()
    order = flagged_in_order(distribution, given)
    confidence, suggested = distribution.max(dim=1)
    suspicion = disagreement_with_given(distribution, given)
    rows: dict[str, list] = {
        "sample_id": ids.cpu()[order].tolist(), "given_label": given[order].tolist(),
        "suggested_label": suggested[order].tolist(),
    }
    if true is not None and bool((true >= 0).all()):
        rows["true_label"] = true.cpu()[order].tolist()
    if files is not None:
        rows["file"] = [files[i] for i in order.tolist()]
    columns = {"suspicion": suspicion[order], "confidence": confidence[order]}
    columns.update({name: values.detach().cpu()[order] for name, values in (scores or {}).items()})
    num_classes = distribution.shape[1]
    names = [str(c) for c in class_names] if len(class_names) == num_classes else [str(k) for k in range(num_classes)]
    data = {
        "rows": rows, "classes": names, "key": run_key, "summary": dict(summary or {}),
        "scores": {name: _plain(values) for name, values in columns.items()},
        "thumbnails": _thumbnails(path, images, order, files, image_root),
    }
    title = str((summary or {}).get("title", "Suspected label errors"))
    template = resources.files("sat.label_errors").joinpath("page.html").read_text(encoding="utf-8")
    # "<" escaped: the JSON can never close its <script> element, whatever a file name holds
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    write_atomic(path, template.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", payload))
    return len(order)


def _plain(values: Tensor) -> list:
    if values.dtype == torch.bool:
        return values.tolist()
    return [round(v, 4) for v in values.double().tolist()]


def _thumbnails(page: Path, images: Tensor | None, order: Tensor, files: Sequence[str] | None,
                image_root: str | Path | None) -> dict[str, Any]:
    """Sprite sheets of the flagged images (in card order), embedded or in a folder beside
    the page; else the image files themselves; else nothing."""
    if images is None or images.dim() != 4:
        if files is not None and image_root is not None:
            root = Path(image_root).expanduser().resolve()
            return {"urls": [(root / files[i]).as_uri() for i in order.tolist()]}
        return {}
    height, width = images.shape[2:]
    scale = min(1.0, THUMBNAIL_SIZE / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    sheets = [_sheet(images[order[start:start + PER_SHEET]], h, w) for start in range(0, len(order), PER_SHEET)]
    described = {"w": w, "h": h, "cols": SHEET_COLUMNS, "per_sheet": PER_SHEET, "pixelated": max(h, w) <= 32}
    if sum(len(s) for s in sheets) <= EMBED_LIMIT:
        return {**described, "sheets": ["data:image/png;base64," + base64.b64encode(s).decode() for s in sheets]}
    folder = page.with_name(page.stem + "_thumbnails")
    folder.mkdir(exist_ok=True)
    urls = []
    for number, sheet in enumerate(sheets):
        write_atomic(folder / f"sheet_{number:05d}.png", sheet)
        urls.append(f"{folder.name}/sheet_{number:05d}.png")
    return {**described, "sheets": urls}


def _sheet(images: Tensor, h: int, w: int) -> bytes:
    """Up to 256 images (uint8 (n, C, H, W)) as one PNG of 16 columns of h x w cells."""
    from PIL import (
        Image,  # Pillow: a dependency of torchvision and matplotlib, and quick to import
    )

    x = images.cpu()
    x = x[:, :1] if x.shape[1] < 3 else x[:, :3]  # grey or RGB (a fourth channel is not a colour)
    if tuple(x.shape[2:]) != (h, w):
        x = torch.nn.functional.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False).round().clamp(0, 255).to(torch.uint8)
    n, c = x.shape[:2]
    rows = (n + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    cells = torch.zeros(rows * SHEET_COLUMNS, c, h, w, dtype=torch.uint8)
    cells[:n] = x
    # (rows, cols, C, h, w) -> (rows, h, cols, w, C): one H x W x C picture
    canvas = cells.view(rows, SHEET_COLUMNS, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, SHEET_COLUMNS * w, c)
    picture = Image.fromarray(canvas[..., 0].numpy() if c == 1 else canvas.numpy())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def page_summary(*, checkpoint: str | Path, epoch: int, dataset: str, noise: Mapping[str, Any], source: str,
                 flagged: int, num_train: int, detection: Mapping[str, Any] | None = None,
                 detectors: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """The header of the page: where the suspects come from, how many, and (true labels
    known) how well they match the wrong labels; the commands that come next."""
    checkpoint = Path(checkpoint)
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    realised = noise.get("realised_error")
    noise_text = f"{noise.get('kind')} rate {noise.get('rate', 0):g}" + (
        f" ({100 * realised:.1f}% of training labels wrong)" if isinstance(realised, float) and not math.isnan(realised) else "")
    facts = [("flagged", f"{flagged} of {num_train} training samples"), ("dataset", dataset), ("noise", noise_text),
             ("by", source), ("run", str(run)), ("checkpoint", f"{checkpoint.name} (epoch {epoch})")]
    return {
        "title": f"Suspected label errors: {flagged} of {num_train} ({dataset})",
        "facts": facts, "quality": quality_rows(detection, detectors, source),
        "next": [f"python evaluate.py checkpoint={checkpoint} report=cleaned_labels report.decisions=label_decisions.csv",
                 "python train.py ... noise=refined noise.from_file=EVAL_FOLDER/cleaned_labels.pt"],
    }


def quality_rows(detection: Mapping[str, Any] | None, detectors: Mapping[str, Mapping[str, float]] | None,
                 source: str) -> dict[str, dict[str, float | None]]:
    """The summary's quality table: the page's own detector (``source``) and any others,
    NaN as None (JSON has no NaN)."""
    table = dict(detectors or {})
    if detection:
        table = {source: detection, **{k: v for k, v in table.items() if k != source}}

    def plain(v: Any) -> float | None:
        return None if v is None or math.isnan(v) else float(v)

    return {name: {k: plain(q.get(k)) for k in ("precision", "recall", "f1", "auroc")} for name, q in table.items()}


def run_key(checkpoint: str | Path, epoch: int) -> str:
    """What the page's stored decisions belong to: a checkpoint file at its epoch (the
    training run's page and ``evaluate.py`` on its last checkpoint share them)."""
    return f"{Path(checkpoint).expanduser().resolve()}@{int(epoch)}"
