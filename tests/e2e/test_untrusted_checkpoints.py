"""Checkpoints from someone else run nothing (issue 15, issue 8): each hostile file is made
here from a real checkpoint and fed to evaluate and attack, in this process through the
Python API (``sat.evaluate``, ``sat.attack``), and for a representative few through the real
evaluate.py and attack.py in subprocesses.

A crafted checkpoint loads with weights_only=True and carries a valid checksum, so only the
registry of sat.config.trust can refuse it: every case must be refused with one message (a
UserError; through the entry points: exit status 2, one ``error:`` line, no traceback), no
marker file written by a payload, and a victim file left intact. Damaged files are refused
by the checksum or the loader with the same one line.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, run_entry, user_error
from hostile import (
    craft,
    is_damaged,
    one_line_error,
    pickle_payload,
    torch_load_node,
    torch_payload,
    write_evil_cifar,
    zip_entries,
)

import sat
from sat.errors import UserError
from sat.run.checkpoint import load_checkpoint

VICTIM_TEXT = "precious results: must survive every checkpoint\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> SimpleNamespace:
    """One real tiny run (synthetic data, 20% label noise); its last.pt is the raw material."""
    run = tmp_path_factory.mktemp("base") / "run"
    sat.train([*TINY, "noise.rate=0.2"], output_dir=run)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return SimpleNamespace(run=run, ckpt=run / "checkpoints" / "last.pt", test_acc=last["test/acc"])


@pytest.fixture
def ctx(tmp_path) -> SimpleNamespace:
    """Per test: where a payload would leave its marker, a victim file, an empty data folder
    (the user's paths.data_dir) and a CIFAR folder whose batches are pickle payloads."""
    c = SimpleNamespace(tmp=tmp_path, marker=tmp_path / "PWNED", victim=tmp_path / "victim.txt",
                        nodata=tmp_path / "nodata", evil=tmp_path / "evil")
    c.victim.write_text(VICTIM_TEXT)
    c.nodata.mkdir()
    write_evil_cifar(c.evil, c.marker)
    return c


TASKS = {"evaluate.py": sat.evaluate, "attack.py": sat.attack}


def entry_args(entry: str, ckpt: Path, c: SimpleNamespace, *extra: str) -> list[str]:
    """The overrides of ``entry`` on ``ckpt`` (the run folder is ``<tmp>/out``, given apart)."""
    args = [f"checkpoint={ckpt}", "device=cpu", f"paths.data_dir={c.nodata}"]
    if entry == "attack.py":
        args += ["attack=fgsm", "num_samples=16"]
    return [*args, *extra]


def refused(entry: str, ckpt: Path, c: SimpleNamespace, *contains: str, extra: tuple[str, ...] = (),
            absent: tuple[str, ...] = (), subprocess: bool = False) -> str:
    """Run ``entry`` on ``ckpt`` (in this process, or through the entry point): a one-line
    refusal, nothing ran, the victim intact. Returns the message."""
    args, out = entry_args(entry, ckpt, c, *extra), c.tmp / "out"
    if subprocess:
        proc = run_entry(entry, *args, f"hydra.run.dir={out}", cwd=c.tmp, check=False)
        line = one_line_error(proc, *contains, absent=absent, out=out)
    else:
        line = user_error(TASKS[entry], args, out)
        assert all(text in line for text in contains) and not any(text in line for text in absent), line
    assert not c.marker.exists(), f"the payload ran: {c.marker} was written ({line})"
    assert c.victim.read_text() == VICTIM_TEXT, "the victim file was changed"
    return line


# --- the crafted configs of issue 15 ---------------------------------------------------------


def _cifar_node(c: SimpleNamespace) -> dict:
    return {"_target_": "sat.data.datasets.CIFAR", "name": "cifar10", "root": str(c.evil), "download": True,
            "val_size": 64}


def _set(path: str, value):
    """An edit of the stored config: ``config.<path> = value(ctx)``."""
    def edit(c: SimpleNamespace):
        def apply(state):
            node = state["config"]
            *parents, key = path.split(".")
            for p in parents:
                node = node[p]
            node[key] = value(c)
        return apply
    return edit


# name -> (edit, extra command-line arguments, substrings of the error line)
CRAFTED = {
    "torch_load_payload_as_dataset": (
        _set("dataset", lambda c: torch_load_node(c.marker)), (), ("dataset._target_='torch.load'", "not allowed")),
    "payload_nested_in_allowed_model_node": (
        _set("model.width", lambda c: torch_load_node(c.marker)), (), ("model.width._target_='torch.load'",)),
    "payload_in_a_list_inside_model_node": (
        _set("model.width", lambda c: [torch_load_node(c.marker)]), (), ("model.width[0]._target_",)),
    "payload_as_noise_without_noise_pt": (
        _set("noise", lambda c: torch_load_node(c.marker)), (), ("noise._target_='torch.load'",)),
    "cifar_root_taken_from_checkpoint": (
        _set("dataset", _cifar_node), (), ("cifar10 not found", "nodata")),
    "cifar_payload_batches_under_dataset_root": (
        _set("dataset", _cifar_node), ("dataset_root={evil}",), ("is not a CIFAR batch file", "refused global")),
    "module_attribute_sat_checkpoint_os_system": (
        _set("dataset", lambda c: {"_target_": "sat.run.checkpoint.os.system", "_args_": [f"touch {c.marker}"]}), (),
        ("sat.run.checkpoint.os.system",)),
    "builtins_open_truncates_victim": (
        _set("dataset", lambda c: {"_target_": "builtins.open", "file": str(c.victim), "mode": "w"}), (),
        ("builtins.open",)),
    "atomic_torch_save_replaces_victim": (
        _set("model.width", lambda c: {"_target_": "sat.run.checkpoint.atomic_torch_save", "obj": "pwned",
                                       "path": str(c.victim)}), (), ("sat.run.checkpoint.atomic_torch_save",)),
    "trusting_sat_as_a_package": (
        _set("dataset", lambda c: {"_target_": "sat.run.checkpoint.os.system", "_args_": [f"touch {c.marker}"]}),
        ("trusted_packages=[sat]",), ("trusted_packages",)),
}


# issue 15's cases through both entry points; the extra ones through evaluate.py
EXTRA = {"payload_in_a_list_inside_model_node"}


@pytest.mark.parametrize("case,entry", [(c, e) for c in CRAFTED for e in ("evaluate.py", "attack.py")
                                        if c not in EXTRA or e == "evaluate.py"])
def test_a_crafted_checkpoint_runs_nothing(base, ctx, case, entry):
    edit, extra, contains = CRAFTED[case]
    ckpt = craft(base.ckpt, ctx.tmp / "shared" / "ckpt.pt", edit(ctx))  # no noise.pt beside it
    extra = tuple(x.format(evil=ctx.evil) for x in extra)
    line = refused(entry, ckpt, ctx, *contains, extra=extra)
    assert str(ctx.evil) not in line or "dataset_root" in case  # the stored root is never even mentioned


@pytest.mark.parametrize("case,entry", [("torch_load_payload_as_dataset", "evaluate.py"),
                                        ("torch_load_payload_as_dataset", "attack.py"),
                                        ("builtins_open_truncates_victim", "evaluate.py")])
def test_a_crafted_checkpoint_through_the_entry_point_exits_2_with_one_line(base, ctx, case, entry):
    edit, extra, contains = CRAFTED[case]
    ckpt = craft(base.ckpt, ctx.tmp / "shared" / "ckpt.pt", edit(ctx))
    refused(entry, ckpt, ctx, *contains, extra=extra, subprocess=True)


def test_the_crafted_inputs_would_run_code_if_used_naively(tmp_path):
    """The controls: the same nodes through Hydra's instantiate, and the same CIFAR batch
    through pickle.load, do run the payload and truncate a file. So the refusals above are
    what keeps them from running."""
    from hydra.utils import instantiate

    marker = tmp_path / "ran"
    instantiate(torch_load_node(marker))
    assert marker.read_text() == "code ran"
    marker.unlink()
    write_evil_cifar(tmp_path / "evil", marker)
    with open(tmp_path / "evil/cifar-10-batches-py/data_batch_1", "rb") as f:
        pickle.load(f)
    assert marker.is_file()
    victim = tmp_path / "victim"
    victim.write_text(VICTIM_TEXT)
    instantiate({"_target_": "builtins.open", "file": str(victim), "mode": "w"}).close()
    assert victim.read_text() == ""


def test_trusted_packages_sat_is_refused_even_for_a_clean_checkpoint(base, ctx):
    """``trusted_packages=[sat]`` is a bad value whatever the checkpoint holds (sat is
    trusted class by class): checked up front, not only when a stored target needs it."""
    refused("evaluate.py", base.ckpt, ctx, "trusted_packages", extra=("trusted_packages=[sat]",))


# --- damaged files ------------------------------------------------------------------------------


def _flip_in_conv_weight(ckpt: Path) -> tuple[bytes, str]:
    """The checkpoint's bytes with one bit flipped inside the stored data of the first conv
    weight (found by its exact bytes in the zip archive), and that weight's key."""
    data = ckpt.read_bytes()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    key = next(k for k, v in state["model"].items() if k.endswith("weight") and v.dim() == 4)
    raw = state["model"][key].contiguous().numpy().tobytes()
    assert data.count(raw) == 1
    at = data.find(raw) + 3  # the sign/exponent byte of the first float (little endian)
    assert any(start <= at < start + n for name, (start, n) in zip_entries(data).items() if "/data/" in name)
    damaged = bytearray(data)
    damaged[at] ^= 0x40
    return bytes(damaged), key


@pytest.mark.parametrize("entry", ["evaluate.py", "attack.py"])
def test_one_flipped_byte_in_a_weight_is_refused_by_the_checksum(base, ctx, entry):
    damaged, key = _flip_in_conv_weight(base.ckpt)
    ckpt = ctx.tmp / "run/checkpoints/last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(damaged)
    shutil.copy(base.run / "noise.pt", ctx.tmp / "run/noise.pt")
    # torch loads it without complaint, to other weights: only the checksum can tell
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    original = torch.load(base.ckpt, map_location="cpu", weights_only=True)
    assert not torch.equal(loaded["model"][key], original["model"][key])
    refused(entry, ckpt, ctx, "checkpoint=", "damaged", "checksum")


def _fuzzed(base_ckpt: Path, scratch: Path) -> dict[str, bytes]:
    """Damaged variants of a checkpoint: random bit flips (each checked to change what
    torch would load), truncations, zeros, text, an empty file, a state without its checksum."""
    data = base_ckpt.read_bytes()
    original = torch.load(base_ckpt, map_location="cpu", weights_only=True)
    entries = zip_entries(data)
    pkl = entries["archive/data.pkl"]
    tensors = [v for k, v in entries.items() if "/data/" in k and v[1] > 64]
    rng = random.Random(15)
    regions = {"flip_in_pickle": [pkl], "flip_in_tensor_data": tensors, "flip_anywhere": [(0, len(data))]}
    variants: dict[str, bytes] = {}
    for name, spans in regions.items():
        for _ in range(200):
            start, n = rng.choice(spans)
            at = start + rng.randrange(n)
            damaged = bytearray(data)
            damaged[at] ^= 1 << rng.randrange(8)
            if is_damaged(bytes(damaged), original, scratch):
                variants[f"{name}@{at}"] = bytes(damaged)
                break
    assert len(variants) == len(regions)
    variants["truncated_to_half"] = data[: len(data) // 2]
    variants["zeros"] = bytes(len(data))
    variants["text_file"] = b"epoch: 12\nthis is not a checkpoint\n"
    no_checksum = {k: v for k, v in original.items() if k != "checksum"}
    buf = io.BytesIO()
    torch.save(no_checksum, buf)
    variants["checksum_removed"] = buf.getvalue()
    return variants


def test_fuzzed_checkpoint_bytes_give_the_one_line_error(base, ctx):
    """Each damaged variant, alternately through evaluate and attack; the first two of
    them (a bit flipped in the pickle, in tensor data) through evaluate.py and attack.py."""
    variants = _fuzzed(base.ckpt, ctx.tmp / "scratch.pt")
    failures = []
    for i, (name, data) in enumerate(variants.items()):
        ckpt = ctx.tmp / name.replace("@", "_") / "checkpoints" / "last.pt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(data)
        entry = ("evaluate.py", "attack.py")[i % 2]
        try:
            refused(entry, ckpt, ctx, f"checkpoint={str(ckpt)!r}", subprocess=i < 2)
        except AssertionError as e:
            failures.append(f"{name} via {entry}: {e}")
    assert not failures, "\n\n".join(failures)


MALFORMED = {
    "noise_sha256_missing": lambda s: s.pop("noise_sha256"),
    "model_outputs_not_a_number": lambda s: s.__setitem__("model_outputs", "abc"),
    # 1e14 outputs: petabytes, refused by any allocator at once (no memory is touched)
    "model_outputs_absurd": lambda s: s.__setitem__("model_outputs", 10**14),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_checkpoint_with_a_missing_or_malformed_field_gives_the_one_line_error(base, ctx, case):
    """Beyond the issue's list: a file with a valid checksum whose fields are not what
    train.py writes (crafted, or from a buggy writer) is bad input too, not a traceback."""
    ckpt = craft(base.ckpt, ctx.tmp / "run/checkpoints/last.pt", MALFORMED[case])
    shutil.copy(base.run / "noise.pt", ctx.tmp / "run/noise.pt")
    refused("evaluate.py", ckpt, ctx, "checkpoint=")


@pytest.mark.parametrize("form,entry", [("torch_save", "evaluate.py"), ("torch_save", "attack.py"),
                                        ("plain_pickle", "evaluate.py")])
def test_a_malicious_pickle_as_checkpoint_is_refused_without_advice_to_run_it(ctx, entry, form):
    ckpt = ctx.tmp / "run/checkpoints/last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(torch_payload(ctx.marker) if form == "torch_save" else pickle_payload(ctx.marker))
    refused(entry, ckpt, ctx, "refused", absent=("weights_only", "weights-only", "WeightsUnpickler"),
            subprocess=entry == "attack.py")


def test_the_malicious_pickle_is_a_real_payload(tmp_path):
    """The control: torch.load with weights_only=False runs it."""
    marker = tmp_path / "ran"
    torch.load(io.BytesIO(torch_payload(marker)), weights_only=False)
    assert marker.read_text() == "code ran"


# --- the run's noise.pt -------------------------------------------------------------------------


def _noise_file(kind: str, path: Path, marker: Path) -> None:
    from sat.data.datasets import Synthetic
    from sat.data.noise import UniformLabelNoise

    if kind == "malicious_pickle":
        path.write_bytes(torch_payload(marker))
        return
    # another training set of the same size: the same generator with another seed (other labels)
    data = Synthetic(seed=1).load()
    pattern = UniformLabelNoise(rate=0.2, seed=0).draw(data.train.images, data.train.labels, data.num_classes,
                                                       dataset=data.identity())
    pattern.save(path)


@pytest.mark.parametrize("kind,entry", [("other_dataset_same_size", "evaluate.py"),
                                        ("other_dataset_same_size", "attack.py"),
                                        ("malicious_pickle", "evaluate.py")])
def test_a_noise_pt_of_another_dataset_is_refused(base, ctx, kind, entry):
    run = ctx.tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(base.ckpt, run / "checkpoints/last.pt")
    _noise_file(kind, run / "noise.pt", ctx.marker)
    refused(entry, run / "checkpoints/last.pt", ctx, "noise.pt", absent=("weights_only",))


# --- a user's own plugin package ------------------------------------------------------------------

PLUGIN = '''
import os
from pathlib import Path

Path({imported!r}).write_text("myplug was imported")

from sat.models import SmallCNN


class MyNet(SmallCNN):
    """A user's model: SmallCNN's layers, so the base run's weights fit it."""


class NotAModule:
    def __init__(self, **kwargs):
        Path({marker!r}).write_text("code ran")


def make_net(**kwargs):
    Path({marker!r}).write_text("code ran")
    return SmallCNN(**kwargs)
'''


@pytest.fixture
def plugin(ctx, monkeypatch) -> Path:
    """Package ``myplug`` importable here (sys.path) and in subprocesses (PYTHONPATH);
    importing it writes ``<tmp>/imported``. Forgotten afterwards, so each test imports its own."""
    folder = ctx.tmp / "plug" / "myplug"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(PLUGIN.format(imported=str(ctx.tmp / "imported"), marker=str(ctx.marker)))
    paths = [str(ctx.tmp / "plug"), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.syspath_prepend(str(ctx.tmp / "plug"))
    yield ctx.tmp / "imported"
    for name in [m for m in sys.modules if m == "myplug" or m.startswith("myplug.")]:
        del sys.modules[name]


def _with_model_target(target: str):
    def apply(state):
        state["config"]["model"]["_target_"] = target
    return apply


def test_a_plugin_model_needs_trusted_packages(base, ctx, plugin):
    ckpt = craft(base.ckpt, ctx.tmp / "run/checkpoints/last.pt", _with_model_target("myplug.MyNet"))
    shutil.copy(base.run / "noise.pt", ctx.tmp / "run/noise.pt")
    refused("evaluate.py", ckpt, ctx, "model._target_='myplug.MyNet'", "trusted_packages")
    assert not plugin.exists(), "an untrusted package was imported (its module code ran)"
    proc = run_entry("evaluate.py", *entry_args("evaluate.py", ckpt, ctx, "trusted_packages=[myplug]"), cwd=ctx.tmp)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["test/acc"] == pytest.approx(base.test_acc, abs=1e-9)  # the user's own class, trusted: it works
    assert plugin.exists()


@pytest.mark.parametrize("target", ["myplug.NotAModule", "myplug.make_net", "myplug.os.system"])
def test_a_trusted_package_gives_only_its_model_classes(base, ctx, plugin, target):
    ckpt = craft(base.ckpt, ctx.tmp / "run/checkpoints/last.pt", _with_model_target(target))
    shutil.copy(base.run / "noise.pt", ctx.tmp / "run/noise.pt")
    refused("evaluate.py", ckpt, ctx, f"_target_={target!r}", extra=("trusted_packages=[myplug]",))


def test_a_plugin_checkpoint_is_refused_in_process_without_trust(base, tmp_path):
    """The same refusal from the library (no subprocess): a UserError before anything is built."""
    from sat.tasks.restore import restore_run

    ckpt = craft(base.ckpt, tmp_path / "x/ckpt.pt", _with_model_target("collections.OrderedDict"))
    with pytest.raises(UserError, match="collections.OrderedDict"):
        restore_run(ckpt, torch.device("cpu"), str(tmp_path))
    assert load_checkpoint(ckpt)["config"]["model"]["_target_"] == "collections.OrderedDict"
