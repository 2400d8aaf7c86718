"""From decisions about suspected label errors to labels a run trains on: the decisions
files (the review page's CSV/JSON, a label_errors.csv above a score), the refined pattern
that relabels and leaves samples out while the validation split keeps its given labels,
its file format (older noise files still verify) and the list files of folder datasets."""

from __future__ import annotations

import json

import pytest
import torch

from sat.data.datasets import DatasetSplits
from sat.data.lists import ListSpec, list_text, read_split
from sat.data.noise import FlipLabelNoise, NoisePattern
from sat.data.noise.refined import refined_pattern
from sat.data.prepare import prepare
from sat.data.splits import ImageSet
from sat.errors import UserError
from sat.label_errors.cleaning import apply_decisions, read_decisions
from sat.label_errors.export import write_label_errors


def toy(n: int = 40, classes: int = 4, holdout_seed: int | None = None):
    """A prepared toy run: ``n`` samples (ids 100..), 10 of them the validation split."""
    pool = ImageSet(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone(),
                    torch.arange(n) % classes, torch.arange(100, 100 + n))
    test = ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4), torch.arange(4))
    data = DatasetSplits("toy", pool, test, classes, (0.0,), (1.0,), val_size=10, holdout_seed=holdout_seed)
    return data, prepare(data, FlipLabelNoise(rate=0.5, seed=0), "cpu")


def cleaned(decisions, data, nd, source=None) -> NoisePattern:
    """What ``report=cleaned_labels`` makes of decisions about a run (its two steps)."""
    labels, removed = apply_decisions(decisions, num_classes=data.num_classes, pool_ids=data.train.ids,
                                      labels=nd.pattern.labels, train_ids=nd.train.ids, val_ids=nd.val.ids.tolist(),
                                      removed=nd.pattern.removed)
    return refined_pattern(labels, data.train.labels, data.identity(), removed=removed,
                           source={**decisions.record(), **(source or {})})


def test_decisions_csv_and_json_read_alike(tmp_path):
    (tmp_path / "d.csv").write_text("sample_id,decision,new_label\n7,relabel,2\n8,remove,\n9,keep,1\n11,Relabel,0\n")
    (tmp_path / "d.json").write_text(json.dumps({"decisions": [
        {"sample_id": 7, "decision": "relabel", "new_label": 2}, {"sample_id": 8, "decision": "remove", "new_label": None},
        {"sample_id": 9, "decision": "keep", "new_label": 1}, {"sample_id": 11, "decision": "relabel", "new_label": 0}]}))
    for name in ("d.csv", "d.json"):
        d = read_decisions(tmp_path / name)
        assert (d.relabel, d.remove, d.keep, d.rule) == ({7: 2, 11: 0}, (8,), (9,), "decisions")
        assert len(d.sha256) == 64 and d.file == str((tmp_path / name).resolve())
    assert read_decisions(tmp_path / "d.csv").lines[9] == "line 4" and read_decisions(tmp_path / "d.json").lines[9] == "entry 3"


@pytest.mark.parametrize("text, message", [
    ("sample_id,decision,new_label\n7,relabel,2\n8,delete,\n",
     "at line 3: decision 'delete' is not supported; accepted: relabel, remove, keep"),
    ("sample_id,decision,new_label\n7,relabel,\n", "at line 2: new_label '' is not an integer"),
    ("sample_id,decision,new_label\n7,keep,\n7,remove,\n", "at line 3: sample 7 is decided twice"),
    ("id,what\n7,keep\n", "has no sample_id or decision column"),
    ("sample_id,decision,new_label\nx,keep,\n", "at line 2: sample_id 'x' is not an integer"),
])
def test_a_bad_row_is_one_line_naming_it(tmp_path, text, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(UserError) as refused:
        read_decisions(tmp_path / "d.csv")
    line = str(refused.value)
    assert line.startswith(f"decisions='{tmp_path / 'd.csv'}' ") and message in line and "\n" not in line
    assert str(refused.value.within("report")).startswith("report.decisions=")  # the task names its config path


def test_a_label_errors_csv_accepts_the_suggestions_above_a_score(tmp_path):
    distribution = torch.tensor([[0.1, 0.9], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    write_label_errors(tmp_path / "label_errors.csv", distribution, torch.tensor([0, 0, 0, 1]), torch.tensor([5, 6, 7, 8]))
    everything = read_decisions(tmp_path / "label_errors.csv")
    assert everything.relabel == {5: 1, 6: 1} and everything.rule == "relabel every suspect of label_errors.csv"
    confident = read_decisions(tmp_path / "label_errors.csv", min_suspicion=0.7, suspect_decision="remove")
    assert (confident.relabel, confident.remove) == ({}, (5,))
    assert confident.rule == "remove every suspect of label_errors.csv with suspicion >= 0.7"
    (tmp_path / "d.csv").write_text("sample_id,decision,new_label\n5,keep,0\n")
    with pytest.raises(UserError, match="min_suspicion=0.5 applies to a label_errors.csv"):
        read_decisions(tmp_path / "d.csv", min_suspicion=0.5)
    with pytest.raises(UserError, match="suspect_decision='keep' is not supported; accepted: relabel, remove"):
        read_decisions(tmp_path / "label_errors.csv", suspect_decision="keep")


@pytest.mark.parametrize("holdout_seed", [None, 3])  # the validation split: the pool's tail, or seeded positions
def test_the_cleaned_pattern_relabels_removes_and_leaves_the_validation_split_alone(tmp_path, holdout_seed):
    data, nd = toy(holdout_seed=holdout_seed)
    train_ids = nd.train.ids.tolist()
    relabelled, removed, kept = train_ids[0], train_ids[1], train_ids[2]
    (tmp_path / "d.csv").write_text(f"sample_id,decision,new_label\n{relabelled},relabel,3\n{removed},remove,\n"
                                    f"{kept},keep,\n")
    pattern = cleaned(read_decisions(tmp_path / "d.csv"), data, nd, source={"checkpoint": "c.pt"})
    pattern.save(tmp_path / "cleaned.pt")
    loaded = NoisePattern.load(tmp_path / "cleaned.pt")  # the hash covers the removed samples and the source
    assert loaded.sha256() == pattern.sha256() and loaded.removed.tolist() == [removed]
    assert loaded.source["relabelled"] == 1 and loaded.source["checkpoint"] == "c.pt"
    again = prepare(data, None, "cpu", pattern=loaded)
    assert torch.equal(again.val.ids, nd.val.ids) and torch.equal(again.val.labels, nd.val.labels)
    assert again.train.ids.tolist() == [i for i in train_ids if i != removed]
    by_id = dict(zip(again.train.ids.tolist(), again.train.labels.tolist()))
    before = dict(zip(train_ids, nd.train.labels.tolist()))
    assert by_id[relabelled] == 3 and by_id[kept] == before[kept]
    assert all(by_id[i] == before[i] for i in by_id if i != relabelled)
    summary = again.noise_summary()
    assert summary["removed"] == 1 and summary["source"]["rule"] == "decisions"
    assert summary["num_train"] == len(train_ids) - 1
    # a pattern that removes again keeps what the run it refines had removed
    (tmp_path / "more.csv").write_text(f"sample_id,decision,new_label\n{train_ids[3]},remove,\n")
    assert cleaned(read_decisions(tmp_path / "more.csv"), data, again).removed.tolist() == sorted([removed, train_ids[3]])


def test_decisions_the_run_cannot_take_are_one_line_naming_the_row(tmp_path):
    data, nd = toy()
    (tmp_path / "v.csv").write_text(f"sample_id,decision,new_label\n{nd.train.ids[0]},keep,\n{nd.val.ids[0]},relabel,1\n")
    with pytest.raises(UserError, match=f"at line 3: sample {int(nd.val.ids[0])} is a validation sample"):
        cleaned(read_decisions(tmp_path / "v.csv"), data, nd)  # it stays as noisy as the training labels were
    (tmp_path / "n.csv").write_text("sample_id,decision,new_label\n7,remove,\n")
    with pytest.raises(UserError, match="at line 2: sample 7 is not a training sample of this run"):
        cleaned(read_decisions(tmp_path / "n.csv"), data, nd)
    (tmp_path / "c.csv").write_text(f"sample_id,decision,new_label\n{nd.train.ids[0]},relabel,4\n")
    with pytest.raises(UserError, match=r"at line 2: class 4 is out of range; accepted: a class in \[0, 4\)"):
        cleaned(read_decisions(tmp_path / "c.csv"), data, nd)


def test_noise_files_without_removed_samples_keep_their_hash(tmp_path):
    """The hash of a pattern that removes nothing is the one earlier versions computed
    (value from the code before removed samples existed): their noise.pt files still load."""
    pattern = NoisePattern("flip", 0.5, 3, torch.tensor([0, 2]), torch.tensor([1, 1, 0, 2]), None,
                           {"dataset": "toy", "num_samples": 4, "labels_sha256": "ab"})
    assert pattern.sha256() == "975cd4baca4568aa0cf36a19c3352d96b8d1c3693246a055bc9f89ccedeb2532"
    old = {"kind": "flip", "rate": 0.5, "seed": 3, "indices": pattern.indices, "labels": pattern.labels, "images": None,
           "dataset": pattern.dataset, "sha256": pattern.sha256()}  # the old file format: no removed, no source
    torch.save(old, tmp_path / "noise.pt")
    assert NoisePattern.load(tmp_path / "noise.pt").sha256() == pattern.sha256()


def test_a_written_list_reads_back_as_the_same_split(tmp_path):
    files, labels = ["a/1.png", "b c/2.png", "3.png"], torch.tensor([2, 0, 1])
    (tmp_path / "cleaned_train.txt").write_text(list_text(files, labels, "cleaned by sat:\n decisions"))
    assert (tmp_path / "cleaned_train.txt").read_text().startswith("# cleaned by sat: decisions\na/1.png 2\n")
    split = read_split(tmp_path, ListSpec(list="cleaned_train.txt", header=1), num_classes=3, check_files=False)
    assert split.file_names() == files and split.labels.tolist() == labels.tolist()
    with pytest.raises(UserError, match="cannot be written in a list"):
        list_text(["a.png "], torch.tensor([0]), "h")
