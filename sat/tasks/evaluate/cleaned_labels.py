"""``report=cleaned_labels``: a run's training labels with a person's decisions applied
(``report.decisions=label_decisions.csv``, exported by ``label_errors.html``), or with a
detector's suggestions accepted above a score (``report.decisions=label_errors.csv
report.min_suspicion=0.9``), written in the formats a later run trains on.

It reads the run through its checkpoint, as every evaluation does, because the labels
are the run's own: its training pool, its noise, its validation split (which keeps its
given labels) and its sample ids. It writes ``cleaned_labels.pt`` (``noise=refined
noise.from_file=...``: any dataset; removed samples are left out of training and the
run's summary records where its labels came from), for folder datasets the split lists
``cleaned_{train,val,test}.txt`` (``relative/path label`` lines, usable as
``dataset.train.list=``), and ``cleaned_labels.json`` (what changed, and how many of the
remaining training labels are still wrong where the true ones are known).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from sat.config import validate
from sat.config.roles import FILE
from sat.data.lists import list_text
from sat.data.noise.refined import refined_pattern
from sat.errors import UserError
from sat.label_errors.cleaning import SUSPECT_DECISIONS, Decisions, apply_decisions, read_decisions
from sat.run.files import write_atomic, write_json_atomic
from sat.run.folder import RunFolder
from sat.tasks.evaluate.base import Evaluation, Report, print_rows

NODE = "report"  # the config node a report is built from (conf/report/): where its arguments' errors point


class CleanedLabelsReport(Report):
    name = "cleaned_labels"
    needs_images_on_device = False  # the run's labels only: a streamed dataset will do
    arg_roles = {"decisions": (FILE,)}

    def __init__(self, decisions: str | None = None, min_suspicion: float | None = None,
                 suspect_decision: str = "relabel"):
        if decisions is None:
            raise UserError(key="decisions", problem="is needed by report=cleaned_labels",
                            accepted="{key}=label_decisions.csv (exported by label_errors.html), or "
                                     "{key}=RUN/label_errors.csv (every suggestion, or those above min_suspicion)")
        self.min_suspicion = None if min_suspicion is None else \
            validate.number("min_suspicion", min_suspicion, lo=0, hi=1)
        self.suspect_decision = validate.choice("suspect_decision", suspect_decision, SUSPECT_DECISIONS)
        # read and checked now, before the run is: a bad row costs no loading
        self.decisions = read_decisions(decisions, min_suspicion=self.min_suspicion,
                                        suspect_decision=self.suspect_decision)

    def __call__(self, evaluation: Evaluation) -> dict[str, Any]:
        checkpoint, run = evaluation.runs[0]
        nd, out, decisions = run.data, evaluation.out, self.decisions
        pool = nd.data.train
        held_out = nd.val is not None and nd.data.val is None  # the validation split came out of the pool
        try:
            labels, removed = apply_decisions(
                decisions, num_classes=nd.num_classes, pool_ids=pool.ids, labels=nd.pattern.labels,
                train_ids=nd.train.ids, val_ids=nd.val.ids.tolist() if held_out else (), removed=nd.pattern.removed)
        except UserError as e:
            raise e.within(NODE) from None
        kept = ~torch.isin(nd.train.ids, removed)
        if not bool(kept.any()):
            raise UserError(key=f"{NODE}.decisions", value=decisions.file, problem="removes every training sample",
                            accepted="decisions that leave some to train on")
        source = {**decisions.record(), "checkpoint": str(checkpoint.resolve()), "epoch": int(run.state["epoch"])}
        pattern = refined_pattern(labels, pool.labels, nd.data.identity(), removed=removed, source=source)
        position = {sample: at for at, sample in enumerate(pool.ids.tolist())}
        trained = labels[torch.tensor([position[s] for s in nd.train.ids.tolist()], dtype=torch.long)]
        result: dict[str, Any] = {
            "report": self.name, "checkpoint": str(checkpoint), "epoch": run.state["epoch"], "source": source,
            "num_train": len(nd.train), "num_train_after": int(kept.sum()),
            "labels_changed": int((trained[kept] != nd.train.labels[kept]).sum()),
        }
        true = nd.true_train_labels
        if true is not None:
            result["wrong_before"] = float((nd.train.labels != true).double().mean())
            result["wrong_after"] = float((trained[kept] != true[kept]).double().mean())
        pattern.save(out / "cleaned_labels.pt")
        lists = _write_lists(nd, trained, kept, out, decisions)
        result["files"] = [str(f) for f in [out / "cleaned_labels.json", out / "cleaned_labels.pt", *lists]]
        result["train_command"] = train_command(checkpoint, out / "cleaned_labels.pt")
        if lists:
            result["list_overrides"] = list_overrides([p.name for p in lists], run.config.get("dataset") or {},
                                                      nd.num_classes)
        write_json_atomic(out / "cleaned_labels.json", result)
        self._print(result)
        return result

    @staticmethod
    def _print(result: dict[str, Any]) -> None:
        source = result["source"]
        rows = [("checkpoint", f"{result['checkpoint']} (epoch {result['epoch']})"),
                ("decisions", f"{source['rule']} ({source['decisions']})"),
                ("training samples", f"{result['num_train']} -> {result['num_train_after']} ({source['relabelled']} "
                                     f"relabelled, {source['removed']} removed, {source['kept']} kept; "
                                     f"{result['labels_changed']} labels changed)")]
        if "wrong_before" in result:
            rows.append(("wrong training labels", f"{100 * result['wrong_before']:.1f}% -> "
                                                  f"{100 * result['wrong_after']:.1f}%"))
        rows += [("results", ", ".join(result["files"])), ("train on them", result["train_command"])]
        if "list_overrides" in result:
            rows.append(("or copy the lists below dataset.root and add", result["list_overrides"]))
        print_rows(rows)


def _write_lists(nd, labels: torch.Tensor, kept: torch.Tensor, out: Path, decisions: Decisions) -> list[Path]:
    """A folder dataset's splits as ``relative/path label`` lists (the cleaned training
    split, the run's validation and test splits as they were); ``labels``: the training
    split's cleaned labels."""
    train_files = nd.train.file_names()
    if train_files is None:
        return []
    header = f"cleaned by sat: {decisions.rule} ({decisions.file}, sha256 {decisions.sha256[:16]})"
    splits = [("cleaned_train.txt", [f for f, k in zip(train_files, kept.tolist()) if k], labels[kept])]
    for name, split in (("cleaned_val.txt", nd.val), ("cleaned_test.txt", nd.test)):
        if split is not None and split.file_names() is not None:
            splits.append((name, split.file_names(), split.labels))
    for name, files, split_labels in splits:
        write_atomic(out / name, list_text(files, split_labels, header))
    return [out / name for name, _, _ in splits]


def list_overrides(names: list[str], dataset: dict[str, Any], num_classes: int) -> str:
    """The dataset overrides that read the written lists (once copied below dataset.root):
    each split's node replaced whole (``~`` then ``+``), whatever label source it had;
    ``dataset``: the run's stored dataset node (which keys it has)."""
    def assign(key: str, value: str) -> list[str]:
        return [f"dataset.{key}={value}"] if key in dataset else [f"+dataset.{key}={value}"]

    parts = [*assign("layout", "lists"), *assign("num_classes", str(num_classes))]
    for name in names:
        split, spec = name.removeprefix("cleaned_").removesuffix(".txt"), f"{{list: {name}, header: 1}}"
        if dataset.get(split) is None:  # null (Hydra assigns a node to it) or absent
            parts += assign(split, spec)
        else:  # a node: deleted first, so none of its keys (labels=file, prefix, ...) stays
            parts += [f"~dataset.{split}", f"+dataset.{split}={spec}"]
    return " ".join(map(shlex.quote, parts))


def train_command(checkpoint: Path, labels_file: Path) -> str:
    """``python train.py`` with the evaluated run's own overrides (its noise ones left
    out) and the cleaned labels."""
    run = RunFolder.of_checkpoint(checkpoint, record=False)
    try:
        stored = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
        overrides = [str(o) for o in stored if str(o).lstrip("+~").split("=")[0].split(".")[0] not in
                     ("noise", "hydra", "resume", "init_from")]
    except Exception:  # noqa: BLE001  (no run folder, or an unreadable record: the user fills them in)
        overrides = ["..."]
    return " ".join(["python train.py", *map(shlex.quote, overrides), "noise=refined",
                     shlex.quote(f"noise.from_file={labels_file}")])

