"""Memory bombs in a checkpoint, a config and data files (issue 27, items 15, 17-19), each
run under an address-space cap (:func:`hostile.run_capped`), so a regression fails the test
rather than the machine: all are refused in one line through the one budget check
(``sat.tasks.budget.check_memory``, data sizes from ``DataSource.memory_bytes()`` before
reading) or the file's own header, before anything is allocated."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import run_capped

from sat.data.datasets import Synthetic
from sat.data.image_checks import check_image_header
from sat.errors import UserError
from sat.run.checkpoint import save_checkpoint
from sat.tasks.budget import check_memory

pytestmark = pytest.mark.e2e  # the bombs go off in a capped process

# --- the files ------------------------------------------------------------------------------------


def crafted_checkpoint(folder: Path, num_train: int, model: dict | None = None) -> Path:
    """A loadable checkpoint whose stored config asks for ``num_train`` synthetic images."""
    config = {"seed": 0, "dataset": {"_target_": "sat.data.datasets.Synthetic", "num_train": num_train},
              "model": model or {"_target_": "sat.models.small.SmallCNN", "width": 8},
              "noise": {"_target_": "sat.data.noise.label.UniformLabelNoise", "rate": 0.0}}
    state = {"epoch": 1, "model": {}, "config": config, "noise_sha256": "0" * 64, "optimizer": {}, "method": {},
             "model_outputs": 4}
    save_checkpoint(state, folder, ["last"])
    return folder / "last.pt"


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def stl10_with_a_sparse_unlabeled_file(root: Path) -> Path:
    """A small STL-10 release whose unlabeled_X.bin is an 11 GB sparse file (nothing on disk)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", 4), ("test", 2)):
        np.zeros((n, 3, 96, 96), np.uint8).tofile(folder / f"{split}_X.bin")
        np.ones(n, np.uint8).tofile(folder / f"{split}_y.bin")
    sparse(folder / "unlabeled_X.bin", 400_000 * 3 * 96 * 96)
    return root


class _Claim:
    """Pickles as numpy's ``_reconstruct(ndarray, shape, 'b')`` with no data: an
    uninitialised array of whatever ``shape`` says."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, self.shape, b"b")


def cifar_claiming(root: Path, claimed: tuple[int, ...]) -> Path:
    """A CIFAR-10 folder of real-format batches (10 images each), data_batch_1 claiming ``claimed``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = _Claim(claimed) if name == "data_batch_1" else np.zeros((10, 3072), np.uint8)
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": list(range(10))}, protocol=2))
    return root


def gif(screen: tuple[int, int], frames: list[tuple[int, int, int, int]], comment: int = 0) -> bytes:
    """A GIF89a of a ``screen``, ``frames`` as (left, top, width, height) descriptors (each with a
    minimal LZW stream), and a comment of ``comment`` bytes before them."""
    out = io.BytesIO()
    out.write(b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + bytes(6))  # 2-colour global table
    while comment > 0:
        chunk = min(comment, 255)
        out.write(b"\x21\xfe" + bytes([chunk]) + bytes(chunk) + b"\x00")
        comment -= chunk
    for left, top, w, h in frames:
        out.write(b"\x2c" + struct.pack("<HHHHB", left, top, w, h, 0) + b"\x02\x02\x44\x01\x00")
    out.write(b"\x3b")
    return out.getvalue()


GIFS = {
    "frame beyond its screen": gif((1, 1), [(0, 0, 16000, 16000)]),
    "frame beyond 64 KB": gif((1, 1), [(0, 0, 1, 1), (0, 0, 16000, 16000)], comment=100_000),
    "frames": gif((12000, 12000), [(0, 0, 1, 1)] * 2),
}

SCRIPT = """
import json, sys
from pathlib import Path
from sat.errors import UserError

def case(name, attack):
    try:
        print(name + ":", json.dumps(attack()), flush=True)
    except UserError as e:
        print(name + ": refused:", e, flush=True)
    except BaseException as e:  # (under the cap: the bomb went off, the next one still runs)
        print(name + ": crashed:", type(e).__name__, str(e).splitlines()[0] if str(e) else "", flush=True)

import sat, torch
from sat.data.datasets import CIFAR
from sat.data.stl10 import STL10
from sat.data.stream import decode_rgb

case("evaluate", lambda: sat.evaluate([f"checkpoint={CKPT}", "device=cpu"], output_dir=OUT / "e") and "ran")
case("attack", lambda: sat.attack([f"checkpoint={CKPT}", "device=cpu", "attack=fgsm"], output_dir=OUT / "a") and "ran")
case("projector", lambda: sat.train(["experiment=ssl_digits", "method.projector_hidden_dim=1e8", "trainer.epochs=2",
                                     "method.start_epoch=1"], output_dir=OUT / "t")["status"])
case("stl10_load", lambda: len(STL10(root=str(STL)).load().train))
case("stl10_train", lambda: sat.train(["experiment=ssl_stl10_resnet18", f"dataset.root={STL}", "model=cnn",
                                       "trainer.epochs=1", "method.start_epoch=0", "device=cpu"],
                                      output_dir=OUT / "s")["status"])
case("cifar", lambda: len(CIFAR(root=str(CIFAR_ROOT)).load().train))
for name in GIFS:
    case("gif " + name, lambda: list(decode_rgb(torch.frombuffer(bytearray(Path(GIF_DIR, name).read_bytes()),
                                                                 dtype=torch.uint8), name).shape))
"""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, str]:
    """What each bomb gave, under the cap: ``case -> result`` (``refused: <the line>``)."""
    tmp = tmp_path_factory.mktemp("bombs")
    checkpoint = crafted_checkpoint(tmp / "run" / "checkpoints", 10_000_000)  # 1e7 3x8x8 images: 9.6 GB to generate
    stl = stl10_with_a_sparse_unlabeled_file(tmp / "stl")
    cifar = cifar_claiming(tmp / "cifar", (10 ** 10,))
    (tmp / "gifs").mkdir()
    for name, data in GIFS.items():
        (tmp / "gifs" / name).write_bytes(data)
    values = dict(CKPT=checkpoint, OUT=tmp / "out", STL=stl, CIFAR_ROOT=cifar, GIF_DIR=tmp / "gifs")
    header = "".join(f"{k} = Path({str(v)!r})\n" for k, v in values.items()) + f"GIFS = {list(GIFS)!r}\n"
    proc = run_capped("from pathlib import Path\n" + header + SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    found["folders"] = json.dumps(sorted(p.name for p in (tmp / "out").iterdir()) if (tmp / "out").exists() else [])
    return found


def test_a_checkpoints_synthetic_data_is_budgeted_by_evaluate_and_attack(bombs):
    """Item 15: num_train=1e7 in a checkpoint's stored config (7.7 GB attempted)."""
    for task in ("evaluate", "attack"):
        assert bombs[task].startswith("refused: checkpoint=") and "needs at least" in bombs[task], bombs[task]
        assert "(data 8.9" in bombs[task]


def test_the_data_is_counted_when_the_model_cannot_be_built_on_the_meta_device():
    """(A model of a trusted package without meta kernels: its data was not counted at all.)"""
    def no_meta() -> torch.nn.Module:
        raise RuntimeError("no meta kernel")

    with pytest.raises(UserError, match=r"needs at least .* \(data 894\.1 GiB"):
        check_memory("evaluate", device=torch.device("cpu"), build_model=no_meta, input_shape=(3, 8, 8), batch_size=1,
                     source=Synthetic(num_train=10 ** 9), what="checkpoint")


def test_the_methods_heads_are_budgeted(bombs):
    """Item 17: method.projector_hidden_dim=1e8 (25.6 GB attempted, a traceback, a folder left)."""
    line = bombs["projector"]
    assert line.startswith("refused: this run needs at least") and "smaller networks of the method" in line, line
    assert json.loads(bombs["folders"]) == []  # no folder left by any refusal


def test_stl10_files_are_sized_before_they_are_read(bombs):
    """Item 18: an 11 GB sparse unlabeled_X.bin was read whole."""
    assert bombs["stl10_load"] == ("refused: " + bombs["stl10_load"].split("refused: ")[1])
    assert "unlabeled_X.bin holds 400,000 images, more than the release's 100,000" in bombs["stl10_load"]
    assert bombs["stl10_train"].startswith("refused: this run needs at least") and "(data 20" in bombs["stl10_train"]


def test_a_cifar_batch_cannot_claim_more_than_its_file(bombs):
    """Item 18: numpy's _reconstruct allocates whatever shape a pickle claims (1.3 MB of files: 1.47 GB)."""
    assert "data_batch_1 is not a CIFAR batch file (UnpicklingError: an array of 10,000,000,000 bytes claimed by a " \
           "file of" in bombs["cifar"], bombs["cifar"]


@pytest.mark.parametrize("name,expected", [
    ("frame beyond its screen", "declares a frame of 16000x16000 pixels at (0, 0) outside its 1x1 screen"),
    ("frame beyond 64 KB", "declares a frame of 16000x16000 pixels at (0, 0) outside its 1x1 screen"),
    ("frames", "declares 12000x12000 = 144,000,000 pixels in each of 2 frames"),
])
def test_every_gif_frame_is_checked_before_decoding(bombs, name, expected):
    """Item 19: a 1x1 screen held a 16000x16000 frame (1.66 GB peak); torchvision decodes every
    frame of an animated GIF to a whole screen."""
    assert bombs[f"gif {name}"].startswith(f"refused: image {name} {expected}"), bombs[f"gif {name}"]


def test_real_gifs_pass_the_frame_check():
    from PIL import Image

    frames = [Image.new("RGB", (21, 13), (80 * i, 0, 255 - 80 * i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, comment=b"x" * 300)
    header = check_image_header(buffer.getvalue(), "anim.gif", max_pixels=21 * 13 * 3)
    assert (header.width, header.height, header.frames) == (21, 13, 3)
    with pytest.raises(UserError, match="in each of 3 frames"):
        check_image_header(buffer.getvalue(), "anim.gif", max_pixels=21 * 13 * 3 - 1)


# --- own attempts: files torch.load reads whole, a loader's worker count ------------------------------


@pytest.mark.parametrize("name", ["checkpoint", "noise file"])
def test_a_file_larger_than_memory_is_refused_unread(tmp_path, name):
    from sat.data.noise import NoisePattern
    from sat.run.budget import available_bytes
    from sat.run.checkpoint import load_checkpoint

    path = tmp_path / "big.pt"
    sparse(path, available_bytes() + (1 << 30))  # nothing on disk
    with pytest.raises(UserError, match=rf"^{name}='.*big\.pt' is [\d,.]+ GiB, more than the [\d,.]+ GiB of memory"):
        (load_checkpoint if name == "checkpoint" else NoisePattern.load)(path)


def test_a_loader_cannot_fork_a_process_per_image():
    from sat.config.schema import MAX_WORKERS, LoaderSettings

    with pytest.raises(UserError, match=rf"^loader\.num_workers=100000 is out of range; accepted: an integer >= 0 "
                                        rf"and <= {MAX_WORKERS}"):
        LoaderSettings.from_config({"num_workers": 100_000})
    assert LoaderSettings.from_config({"num_workers": MAX_WORKERS}).num_workers == MAX_WORKERS
