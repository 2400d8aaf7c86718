"""Self-supervised runs through the real train and evaluate tasks (in-process, tiny synthetic data)."""

import json

import pytest
import torch
from torch import nn

from sat.errors import UserError
from sat.run.checkpoint import load_checkpoint
from sat.tasks.restore import RestoredRun

TINY_SSL = ["experiment=ssl_digits", "dataset=synthetic", "dataset.num_train=160", "dataset.num_test=64",
            "dataset.val_size=32", "dataset.channels=1", "trainer.batch_size=64", "model.width=4", "trainer.epochs=2",
            "trainer.eval_every=1",
            "trainer.checkpoint_every=1", "trainer.async_checkpoint=false", "device=cpu", "logger=none"]


@pytest.mark.parametrize("method", ["ssl_sat", "byol", "simsiam", "simclr"])
def test_every_ssl_method_composes(compose_cfg, method):
    cfg = compose_cfg("train", ["experiment=ssl_digits", f"method={method}"])
    assert cfg.augment._target_ == "sat.data.views.TwoViews" and cfg.augment.crop_scale == [0.5, 1.0]
    assert cfg.method.projector_hidden_dim == 256  # method_tuning/ssl_digits-<method>.yaml


@pytest.mark.parametrize("experiment, method", [("ssl_cifar10_resnet18", "ssl_sat"), ("ssl_cifar10_resnet18", "simclr"),
                                                ("ssl_stl10_resnet18", "byol"), ("ssl_stl10_resnet18", "simsiam")])
def test_gpu_presets_compose(compose_cfg, experiment, method):
    cfg = compose_cfg("train", [f"experiment={experiment}", f"method={method}"])
    assert cfg.model.depth == 18 and cfg.augment.blur_min_size == 96 and cfg.method.projector_hidden_dim >= 2048
    if experiment.startswith("ssl_stl10"):
        assert cfg.dataset._target_ == "sat.data.stl10.STL10"


def _metrics(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def test_ssl_sat_trains_logs_representation_metrics_and_resumes_exactly(compose_cfg, tmp_path):
    from sat.tasks.evaluate import run as evaluate
    from sat.tasks.train import run as train

    overrides = [*TINY_SSL, "method.start_epoch=1"]
    train(compose_cfg("train", [*overrides, f"paths.output_dir={tmp_path / 'full'}"]))
    first = _metrics(tmp_path / "full")
    assert len(first) == 2 and {"test/knn_acc", "repr/feature_std", "repr/projection_rank", "train/ssl_loss",
                                "train/tau", "test/acc"} <= set(first[-1])
    assert 0.0 < first[-1]["test/knn_acc"] <= 1.0 and first[-1]["repr/feature_std"] > 0.01
    # continue the first epoch's checkpoint elsewhere: the same second epoch, bank and EMA network
    train(compose_cfg("train", [*overrides, f"resume={tmp_path / 'full/checkpoints/epoch_1.pt'}",
                                f"paths.output_dir={tmp_path / 'resumed'}"]))
    assert _metrics(tmp_path / "resumed") == first
    a, b = (load_checkpoint(tmp_path / run / "checkpoints/last.pt") for run in ("full", "resumed"))
    for part in ("model", "method"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part] if isinstance(a[part][k], torch.Tensor))
    assert bool(a["method"]["bank.visited"].all())  # the second epoch visited every image
    # the offline probes, beside a random-init backbone
    for report, extra in (("linear_probe", ["report.labels_per_class=5"]), ("knn", ["report.k=20"])):
        result = evaluate(compose_cfg("evaluate", [f"report={report}", *extra, "device=cpu",
                                                   f"checkpoint={tmp_path / 'full/checkpoints/last.pt'}",
                                                   f"paths.output_dir={tmp_path / report}"]))
        assert 0.0 < result["test/acc"] <= 1.0 and 0.0 < result["random_init/test/acc"] <= 1.0
        assert (tmp_path / report / f"{report}.json").is_file()
    assert result["labelled"] == len(a["method"]["bank.visited"]) and result["k"] == 20


def test_refusals_one_line(compose_cfg, tmp_path):
    from sat.tasks.evaluate.base import Evaluation
    from sat.tasks.evaluate.representation import KnnReport, LinearProbeReport
    from sat.tasks.train import run as train

    with pytest.raises(UserError, match="method.start_epoch=2 >= trainer.epochs=2"):
        train(compose_cfg("train", [*TINY_SSL, "method.start_epoch=2", f"paths.output_dir={tmp_path / 'a'}"]))
    with pytest.raises(UserError, match="trains on two views per image"):
        train(compose_cfg("train", [*TINY_SSL, "method=byol", "augment=crop_flip", f"paths.output_dir={tmp_path / 'b'}"]))
    no_backbone = RestoredRun(state={"epoch": 1}, config={}, data=None, model=nn.Sequential(nn.Flatten()),
                              policy=None)
    with pytest.raises(UserError, match=r"report=linear_probe: checkpoint='x.pt' has no backbone to evaluate"):
        LinearProbeReport()(Evaluation([("x.pt", no_backbone)], tmp_path, 64, None, 0))
    with pytest.raises(UserError, match="^k=0 is out of range"):
        KnnReport(k=0)
