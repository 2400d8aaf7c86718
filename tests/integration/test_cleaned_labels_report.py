"""``evaluate.py report=cleaned_labels`` in this process: a folder dataset trained, its
suspects decided, cleaned into its own list format and trained on (streamed from the
files, whose review page shows the files themselves); bad settings refused in one line
before the run is read."""

from __future__ import annotations

import csv
import shlex
import shutil

from conftest import user_error
from image_folder_files import write_list_dataset

import sat


def test_a_folder_dataset_is_cleaned_into_its_own_list_format(tmp_path):
    """Train (streamed from the files), decide, write the lists, train on them."""
    root = write_list_dataset(tmp_path / "data", num_train=60, num_test=20)
    args = ["dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=8",
            "dataset.resize=10", "dataset.val_size=10", "loader.kind=stream", "loader.num_workers=0", "model=cnn",
            "model.width=4", "augment=none", "trainer.batch_size=16", "device=cpu", "logger=none"]
    sat.train([*args, "method=sat", "method.start_epoch=1", "method.alpha=0.3", "trainer.epochs=4", "noise=flip",
               "noise.rate=0.3"], output_dir=tmp_path / "run")
    page = (tmp_path / "run/label_errors.html").read_text()
    with open(tmp_path / "run/label_errors.csv") as f:
        suspects = list(csv.DictReader(f))
    assert suspects and all((root / r["file"]).as_uri() in page for r in suspects)  # the page shows the files
    rows = [f"{suspects[0]['sample_id']},relabel,2", f"{suspects[-1]['sample_id']},remove,"]
    (tmp_path / "decisions.csv").write_text("sample_id,decision,new_label\n" + "\n".join(rows) + "\n")
    result = sat.evaluate([f"checkpoint={tmp_path / 'run/checkpoints/last.pt'}", "report=cleaned_labels",
                           f"report.decisions={tmp_path / 'decisions.csv'}", f"dataset_root={root}", "device=cpu"],
                          output_dir=tmp_path / "cleaned")
    assert result["num_train"] == 50 and result["num_train_after"] == 49
    assert result["source"]["relabelled"] == 1 and result["source"]["removed"] == 1
    assert result["train_command"].startswith("python train.py dataset=image_folder")
    assert result["train_command"].endswith(f"noise=refined noise.from_file={tmp_path / 'cleaned/cleaned_labels.pt'}")
    train_lines = (tmp_path / "cleaned/cleaned_train.txt").read_text().splitlines()
    assert train_lines[0].startswith("# cleaned by sat: decisions") and len(train_lines) == 1 + 49
    listed = dict(line.rsplit(" ", 1) for line in train_lines[1:])
    assert listed[suspects[0]["file"]] == "2" and suspects[-1]["file"] not in listed
    assert len((tmp_path / "cleaned/cleaned_val.txt").read_text().splitlines()) == 1 + 10
    for name in ("cleaned_train.txt", "cleaned_val.txt", "cleaned_test.txt"):
        shutil.copy(tmp_path / "cleaned" / name, root / name)
    summary = sat.train([*args, "method=ce", "trainer.epochs=1", *shlex.split(result["list_overrides"])],
                        output_dir=tmp_path / "again")
    assert summary["noise"]["num_train"] == 49 and summary["noise"]["val"]["num_samples"] == 10


def test_bad_settings_of_the_report_are_one_line_before_the_run_is_read(tmp_path):
    base = [f"checkpoint={tmp_path / 'never_read.pt'}", "report=cleaned_labels", "device=cpu"]
    (tmp_path / "d.csv").write_text("sample_id,decision,new_label\n7,drop,\n")
    (tmp_path / "ok.csv").write_text("sample_id,decision,new_label\n")
    cases = [([], "report.decisions is needed by report=cleaned_labels; accepted: report.decisions=label_decisions.csv"),
             (["report.decisions=nowhere.csv"], "report.decisions='nowhere.csv' does not exist"),
             ([f"report.decisions={tmp_path / 'd.csv'}"], "at line 2: decision 'drop' is not supported"),
             ([f"report.decisions={tmp_path / 'ok.csv'}", "report.min_suspicion=2"],
              "report.min_suspicion=2.0 is out of range"),
             ([f"report.decisions={tmp_path / 'ok.csv'}", "report.min_suspicion=0.5"],
              "report.min_suspicion=0.5 applies to a label_errors.csv"),
             ([f"report.decisions={tmp_path / 'ok.csv'}", "report.suspect_decision=drop"],
              "report.suspect_decision='drop' is not supported")]
    for extra, message in cases:
        assert message in user_error(sat.evaluate, [*base, *extra], tmp_path / "out")
