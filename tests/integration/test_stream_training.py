"""Training, evaluation and resume with the streaming loader on a generated image
folder: SAT's per-sample state is indexed by split position and traced back to files."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from image_folder_files import write_list_dataset

from sat.data.augment import RandomResizedCrop
from sat.data.folder import ImageFolderSource
from sat.data.noise import UniformLabelNoise
from sat.data.prepare import prepare
from sat.data.splits import StreamSettings
from sat.engine import evaluate, predict
from sat.methods.sat import SelfAdaptiveTraining
from sat.models import SmallCNN, with_normalization

SIZE = 8


def build(tmp_path):
    write_list_dataset(tmp_path, num_train=24, num_test=8)
    data = ImageFolderSource("tiny", str(tmp_path), 3, train={"list": "train.txt"}, test={"list": "test.txt"},
                             image_size=SIZE, resize=10, val_size=4).load()
    prepared = prepare(data, UniformLabelNoise(rate=0.5, seed=0), "cpu", loader_kind="stream",
                       streaming=StreamSettings(num_workers=1))
    return data, prepared.train, prepared.val, prepared.train.labels


def fresh(data, train, noisy, seed=0):
    torch.manual_seed(seed)
    model = with_normalization(SmallCNN(data.num_classes, data.input_shape, width=4), data.mean, data.std)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    method = SelfAdaptiveTraining(alpha=0.9, start_epoch=1)
    method.setup(noisy, data.num_classes)
    loader = train.loader(8, shuffle=True, augment=RandomResizedCrop(), seed=seed)
    return model, optimizer, method, loader


def train_epoch(model, optimizer, method, loader, epoch):
    model.train()
    for x, y, index in loader:
        loss, _ = method(model, x, y, index, epoch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_train_evaluate_and_resume_with_streamed_files(tmp_path):
    data, train, val, noisy = build(tmp_path)
    assert len(train) == 20 and len(val) == 4 and sorted(train.ids.tolist() + val.ids.tolist()) == list(range(24))
    assert (noisy != train.true_labels).any()

    model, optimizer, method, loader = fresh(data, train, noisy)
    before = method.soft_labels().clone()
    for epoch in range(2):
        train_epoch(model, optimizer, method, loader, epoch)
        if epoch == 0:  # a checkpoint between epochs
            saved = copy.deepcopy({k: v.state_dict() for k, v in
                                   dict(model=model, optimizer=optimizer, method=method, loader=loader).items()})
    # SAT moved every training sample's target (it is indexed by split position) from its one-hot label.
    soft = method.soft_labels()
    assert soft.shape == (20, 3) and bool((soft != before).any(dim=1).all())
    assert torch.allclose(soft.sum(dim=1), torch.ones(20))
    # A suspected label error is reported by its list line and file.
    position = int((noisy != train.true_labels).nonzero()[0])
    line = train.describe(position)
    assert line.startswith(f"train.txt:{int(train.ids[position]) + 1} images/train/")

    # Resume after epoch 1 into fresh objects: the second epoch is bit-identical.
    model2, optimizer2, method2, loader2 = fresh(data, train, noisy, seed=5)
    for key, obj in dict(model=model2, optimizer=optimizer2, method=method2, loader=loader2).items():
        obj.load_state_dict(saved[key])
    train_epoch(model2, optimizer2, method2, loader2, 1)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(method.soft_labels(), method2.soft_labels())

    # Evaluation streams the validation and test lists with the deterministic view.
    test_loader = data.test.loader(3)
    logits, labels, index = predict(model, test_loader)
    assert logits.shape == (8, 3) and torch.equal(labels, data.test.labels) and index.tolist() == list(range(8))
    metrics = evaluate(model, test_loader)
    assert abs(metrics["acc"] - float((logits.argmax(1) == labels).float().mean())) < 1e-6
    assert abs(metrics["loss"] - float(F.cross_entropy(logits, labels))) < 1e-5
    assert evaluate(model, val.loader(4)).keys() == {"acc", "loss"}
