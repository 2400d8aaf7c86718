"""End to end on synthetic data: through the real entry points (subprocesses) where what
they print or their exit status is the point, through the Python API otherwise."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import TINY, read_metrics, run_entry, user_error
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sat
from sat.models import SmallCNN, count_parameters


@pytest.fixture(scope="module")
def sat_run(tmp_path_factory):
    """One tiny SAT run under flip noise, with a checkpoint every epoch."""
    cwd = tmp_path_factory.mktemp("train")
    run = cwd / "run"
    proc = run_entry("train.py", *TINY, "trainer.epochs=3", "method=sat", "method.start_epoch=1", "noise=flip",
                     "noise.rate=0.3", "trainer.checkpoint_every=1", f"hydra.run.dir={run}", cwd=cwd)
    return run, proc


def test_train_writes_every_output(sat_run):
    run, proc = sat_run
    assert "final test acc" in proc.stdout and str(run) in proc.stdout and "tensorboard --logdir" in proc.stdout
    for name in ["metrics.jsonl", "summary.json", "noise.pt", "soft_labels.pt", "label_errors.csv", ".hydra/config.yaml",
                 "checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/epoch_1.pt", "checkpoints/epoch_3.pt"]:
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ["train/acc", "val/acc", "test/acc", "train/noisy_acc_given", "train/noisy_acc_true",
                "train/clean_acc", "sat/label_recovery", "sat/target_on_given", "detect/targets_precision",
                "detect/targets_recall", "detect/targets_f1", "detect/targets_auroc", "detect/model_precision",
                "detect/model_recall", "detect/model_auroc"]:
        assert all(0 <= r[key] <= 1 for r in rows), key
    assert all(r["train/loss"] > 0 and r["lr"] > 0 for r in rows)
    # the soft targets stay one-hot during the one CE epoch, then move
    assert rows[0]["sat/target_on_given"] == 1.0 and rows[1]["sat/target_on_given"] < rows[0]["sat/target_on_given"]
    for r in rows:  # the split of an epoch's time is logged, and adds up
        parts = r["time/train_s"] + r["time/eval_s"] + r["time/checkpoint_s"]
        assert 0 < parts <= r["time/epoch_s"] + 1e-6
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 3
    noise = summary["noise"]  # one population per heading: the training split, then the validation split
    assert noise["kind"] == "flip" and noise["num_train"] == 448 and noise["val"]["num_samples"] == 64
    assert noise["realised_error"] == pytest.approx(noise["num_noisy"] / noise["num_train"])
    assert noise["realised_error"] == pytest.approx(0.3, abs=0.03)
    assert summary["final"]["test/acc"] == rows[-1]["test/acc"]
    assert summary["params"] == count_parameters(SmallCNN(num_classes=4, input_shape=(3, 8, 8), width=8))
    best = max(rows, key=lambda r: r["val/acc"])  # first epoch with the highest validation accuracy
    assert summary["at_best_val"] == {"epoch": best["epoch"], "val/acc": best["val/acc"], "test/acc": best["test/acc"],
                                      "sat/label_recovery": best["sat/label_recovery"]}  # a headline metric of SAT's
    assert summary["method"]["start_epoch"] == 1 and summary["choices"]["method"] == "sat"
    # the method's headline (Method.headline): test accuracy and label recovery, final and at the best val epoch
    assert summary["headline"] == {
        "test/acc": {"label": "test acc", "final": rows[-1]["test/acc"], "at_best_val": best["test/acc"]},
        "sat/label_recovery": {"label": "label recovery", "final": rows[-1]["sat/label_recovery"],
                               "at_best_val": best["sat/label_recovery"]}}
    assert "final label recovery" in proc.stdout and "sat: alpha 0.9, start_epoch 1" in proc.stdout
    assert summary["packages"] == ["sat", "torch"]


def test_tensorboard_events_read_back(sat_run):
    run, _ = sat_run
    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ["train/loss", "test/acc", "val/acc", "lr", "sat/label_recovery", "final/test/acc"]:
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("test/acc")]
    assert steps == [1, 2, 3]
    rows = read_metrics(run)
    assert acc.Scalars("test/acc")[-1].value == pytest.approx(rows[-1]["test/acc"], rel=1e-6)
    plugin = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugin and "_hparams_/session_start_info" in plugin
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    session = HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()}
    # the override names of the command line, as TensorBoard shows them
    assert hp["method.alpha"] == pytest.approx(0.9) and hp["noise.rate"] == pytest.approx(0.3)
    assert hp["effective.start_epoch"] == 1 and hp["model.width"] == 8


def test_soft_labels_and_label_errors_name_samples_by_their_dataset_id(quickstart_sweep):
    """Soft labels come as .pt and as aligned .npy arrays; label_errors.csv names each
    sample by its id in the dataset's original order, which leads back to its image."""
    import numpy as np
    from sklearn.datasets import load_digits as sk_digits

    run = quickstart_sweep[0] / "method-sat+seed-0"
    saved = torch.load(run / "soft_labels.pt", weights_only=True)
    soft, given, ids = saved["soft_labels"], saved["given_labels"], saved["sample_ids"]
    assert soft.shape == (len(given), 10) and torch.allclose(soft.sum(1), torch.ones(len(given)), atol=1e-5)
    assert np.array_equal(np.load(run / "soft_labels.npy"), soft.numpy())
    assert np.array_equal(np.load(run / "sample_ids.npy"), ids.numpy())
    assert np.array_equal(np.load(run / "given_labels.npy"), given.numpy())
    with open(run / "label_errors.csv") as f:
        rows = list(csv.DictReader(f))
    flagged = (soft.argmax(1) != given).nonzero().flatten()
    assert len(rows) == len(flagged) > 50  # SAT flags many of the 40%-noise labels by then
    assert sorted(int(r["sample_id"]) for r in rows) == sorted(ids[flagged].tolist())
    sk = sk_digits()
    position = {int(i): p for p, i in enumerate(ids.tolist())}
    for r in rows:
        p = position[int(r["sample_id"])]
        assert int(r["given_label"]) == int(given[p]) and int(r["suggested_label"]) != int(r["given_label"])
        assert int(r["true_label"]) == int(sk.target[int(r["sample_id"])])  # the id is scikit-learn's index


def test_checkpoints_load_safely_and_hold_the_full_state(sat_run):
    run, _ = sat_run
    state = torch.load(run / "checkpoints/last.pt", weights_only=True)
    for key in ["model", "optimizer", "scheduler", "method", "loader", "rng", "epoch", "at_best_val", "config",
                "noise_sha256", "checksum"]:
        assert key in state, key
    assert state["epoch"] == 3 and state["method"]["targets"].shape[1] == 4
    assert state["config"]["model"]["_target_"] == "sat.models.small.SmallCNN"


def test_evaluate_reproduces_the_training_test_accuracy(sat_run, tmp_path):
    run, _ = sat_run
    proc = run_entry("evaluate.py", f"checkpoint={run}/checkpoints/last.pt", "device=cpu", f"hydra.run.dir={tmp_path}",
                     cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    last = read_metrics(run)[-1]
    assert result["test/acc"] == pytest.approx(last["test/acc"], abs=1e-9)
    assert result["epoch"] == 3 and result["noise"]["kind"] == "flip"
    for key in ["train_clean/acc", "train_noisy/acc_given", "train_noisy/acc_true"]:
        assert 0.0 <= result[key] <= 1.0
    assert json.loads((tmp_path / "evaluation.json").read_text()) == result
    beside = sorted((run / "evaluations").glob("last.evaluation*.json"))  # next to the run too, never overwritten
    assert beside and json.loads(beside[-1].read_text()) == result
    line = next(x for x in proc.stdout.splitlines() if x.startswith("results"))
    assert line.split(None, 1)[1] == f"{tmp_path / 'evaluation.json'} and {beside[-1]}"  # where the results went


def test_evaluate_multirun_over_checkpoints(sat_run, tmp_path):
    run, _ = sat_run
    ckpts = f"{run}/checkpoints/epoch_1.pt,{run}/checkpoints/epoch_3.pt"
    run_entry("evaluate.py", "-m", f"checkpoint={ckpts}", "device=cpu", f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    results = sorted(json.loads(p.read_text())["epoch"] for p in tmp_path.rglob("evaluation.json"))
    assert results == [1, 3]


def test_missing_cifar_stops_at_once_with_directions(tmp_path):
    line = user_error(sat.train, [f"paths.data_dir={tmp_path / 'data'}", "device=cpu"], tmp_path / "r")
    assert str(tmp_path / "data") in line and "dataset.download=true" in line and "experiment=quickstart" in line


@pytest.mark.parametrize("kind", ["uniform", "flip", "asymmetric", "gaussian", "random_pixels", "shuffled_pixels"])
def test_every_noise_kind_trains(compose_cfg, tmp_path, kind):
    """In-process through sat.tasks.train: the noise reaches the data as it should."""
    from sat.tasks.train import run as train

    cfg = compose_cfg("train", [*TINY, "trainer.epochs=1", "method.start_epoch=0", f"noise={kind}", "noise.rate=0.5",
                                f"paths.output_dir={tmp_path}"])
    summary = train(cfg)
    noise = summary["noise"]
    assert noise["kind"] == kind
    if kind in ("gaussian", "random_pixels", "shuffled_pixels"):
        assert noise["realised_error"] == 0.0  # image noise keeps the labels
    else:
        assert noise["realised_error"] > 0.1
    assert (tmp_path / "noise.pt").is_file() and "test/acc" in summary["final"]


def test_cifar_files_train_and_evaluate(tmp_path):
    """CIFAR-10 in its real on-disk format (small), asymmetric noise, crop+flip on 32x32."""
    from cifar_files import write_cifar10

    write_cifar10(tmp_path / "data", per_batch=40, test=50)
    run = tmp_path / "run"
    summary = sat.train([f"paths.data_dir={tmp_path / 'data'}", "dataset.val_size=20", "model=cnn", "model.width=8",
                         "noise=asymmetric", "noise.rate=0.5", "debug=fast", "trainer.batch_size=64", "device=cpu"],
                        output_dir=run)
    assert summary["noise"]["kind"] == "asymmetric" and 0 < summary["noise"]["realised_error"] < 0.5
    assert summary["noise"]["num_train"] == 5 * 40 - 20  # the five batch files, less the validation split
    assert (run / "checkpoints/epoch_2.pt").is_file()
    correct = summary["final"]["test/acc"] * 50  # accuracy over the file's 50 test images
    assert correct == pytest.approx(round(correct), abs=1e-6)
    result = sat.evaluate([f"checkpoint={run}/checkpoints/last.pt", f"paths.data_dir={tmp_path / 'data'}"],
                          output_dir=tmp_path / "eval")
    assert result["test/acc"] == pytest.approx(summary["final"]["test/acc"])


def test_noise_from_file_replays_a_run_exactly(sat_run, tmp_path):
    """noise.from_file reuses a run's pattern, whatever the seed now."""
    run, _ = sat_run
    again = sat.train([*TINY, "trainer.epochs=2", "noise=flip", "noise.rate=0.3", "seed=7", "noise.seed=0",
                       f"noise.from_file={run}/noise.pt"], output_dir=tmp_path / "replay")["noise"]
    first = json.loads((run / "summary.json").read_text())["noise"]
    assert again["sha256"] == first["sha256"] and again["realised_error"] == first["realised_error"]
    # a config that states other noise values than the file's is refused, not silently overridden
    line = user_error(sat.train, [*TINY, "noise=flip", "noise.rate=0.2", "noise.seed=0", f"noise.from_file={run}/noise.pt"],
                      tmp_path / "differs")
    assert "noise.rate=0.2; accepted: the file's values (noise.rate=0.3)" in line


def test_noise_from_file_of_another_dataset_is_refused(sat_run, tmp_path):
    """The pattern of one training set replayed on another of the same size (other
    labels: another seed or split) is refused; it would mislabel at random."""
    run, _ = sat_run
    line = user_error(sat.train, [*TINY, "dataset.seed=1", "noise=flip", "noise.rate=0.3", "noise.seed=0",
                                  f"noise.from_file={run}/noise.pt"], tmp_path / "r")
    assert line.startswith("noise.from_file=") and "was drawn for synthetic (512 samples" in line
