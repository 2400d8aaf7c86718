"""DDP on the CPU (gloo): two processes through the real ``torchrun`` entry equal one
process with the same global batch and seed, write their run folder once, resume
exactly, and stop together when one of them is signalled; the methods' per-sample
state stays identical across processes (two spawned processes, every method)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import run_entry
from image_folder_files import write_list_dataset
from omegaconf import OmegaConf
from two_processes import largest_gap, rank1_pid, run_two, side_by_side, torchrun

import sat
from sat.errors import UserError
from sat.methods import TRADES, SelfAdaptiveTraining, SelfAdaptiveTrainingSCE
from sat.methods.coteaching import CoTeaching
from sat.methods.elr import EarlyLearningRegularization
from sat.methods.selective import SelfAdaptiveSelective
from sat.parallel.group import Launch, first_host, launch_from_env
from sat.run.checkpoint import load_checkpoint
from sat.tasks.train.ddp import check_batch_split, check_last_batch

# SAT past its start on an MLP (no BatchNorm: per-shard statistics would differ by
# design), crop+flip, many small steps per epoch, and a last batch that splits unevenly
# over 2 processes (1001 - 64 validation = 937 = 58 * 16 + 9: shards of 5 and 4).
DDP_RUN = ["dataset=synthetic", "dataset.num_train=1001", "dataset.num_test=64", "model=mlp", "model.width=16",
           "augment=crop_flip", "trainer.epochs=3", "trainer.batch_size=16", "trainer.num_threads=1", "device=cpu",
           "method=sat", "method.start_epoch=1", "noise=flip", "noise.rate=0.3", "trainer.checkpoint_every=1"]


def rows(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in lines]


def same_state(a: Path, b: Path) -> bool:
    x, y = load_checkpoint(a), load_checkpoint(b)
    return all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"]) and \
        torch.equal(x["method"]["targets"], y["method"]["targets"])


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("single") / "run"
    sat.train(DDP_RUN, output_dir=run)  # one process: this one
    return run


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("ddp")
    proc = torchrun([*DDP_RUN, f"hydra.run.dir={cwd / 'run'}"], cwd)
    return cwd / "run", proc


def test_two_processes_equal_one_with_the_same_global_batch(single, ddp):
    run, _ = ddp
    one, two = rows(single), rows(run)
    assert [r["epoch"] for r in two] == [1, 2, 3] and one[0].keys() == two[0].keys()
    for a, b in zip(one, two):  # sums in another order: equal to float precision
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["epoch"], key)
    x, y = load_checkpoint(single / "checkpoints/last.pt"), load_checkpoint(run / "checkpoints/last.pt")
    for key in x["model"]:
        assert torch.allclose(x["model"][key], y["model"][key], atol=1e-5), key
    t1, t2 = x["method"]["targets"], y["method"]["targets"]
    assert not torch.equal(t1, torch.nn.functional.one_hot(t1.argmax(1), 4).float())  # SAT has moved them
    assert torch.allclose(t1, t2, atol=1e-6)
    soft = torch.load(run / "soft_labels.pt", weights_only=True)["soft_labels"]
    assert torch.equal(soft, t2)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["distributed"]["world_size"] == 2
    assert summary["distributed"]["backend"] == "gloo"


def test_rank0_alone_writes_the_run_folder(ddp):
    run, proc = ddp
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]  # one line per epoch
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == \
        ["best.pt", "epoch_1.pt", "epoch_2.pt", "epoch_3.pt", "last.pt"]
    assert proc.stdout.count("final test acc") == 1  # the closing table, once
    assert [p.name for p in run.parent.iterdir()] == ["run"]  # no folder of rank 1's own
    log = (run / "train.log").read_text()
    assert log.count("distributed: 2 processes (gloo, cpu via torchrun)") == 1 and log.count("epoch 3/3") == 1


def test_resume_under_ddp_continues_exactly(ddp, tmp_path):
    run, _ = ddp
    forked = tmp_path / "forked"
    torchrun([*DDP_RUN, f"resume={run}/checkpoints/epoch_1.pt", f"hydra.run.dir={forked}"], tmp_path)
    assert rows(forked) == rows(run)  # epochs 2-3 trained again, epoch 1 brought along
    assert same_state(forked / "checkpoints/last.pt", run / "checkpoints/last.pt")


def test_a_streamed_folder_dataset_trains_under_ddp(tmp_path):
    """Each process reads only its shard of every global batch from the files; the
    per-sample state still covers every sample, and the sharded evaluation sums to
    what one process measures on the saved checkpoint."""
    images = write_list_dataset(tmp_path / "data", num_train=42, num_test=9)  # 34 train: last batch of 2
    args = ["dataset=image_folder", f"dataset.root={images}", "dataset.num_classes=3", "dataset.image_size=8",
            "dataset.resize=10", "dataset.val_size=8", "loader.kind=stream", "loader.num_workers=1", "model=mlp",
            "model.width=8", "augment=crop_flip", "trainer.epochs=2", "trainer.batch_size=8", "trainer.num_threads=1",
            "device=cpu", "method=sat", "method.start_epoch=1", f"hydra.run.dir={tmp_path / 'run'}"]
    torchrun(args, tmp_path)
    run = tmp_path / "run"
    assert [r["epoch"] for r in rows(run)] == [1, 2]
    state = load_checkpoint(run / "checkpoints/last.pt")
    assert state["loader_kind"] == "stream"
    targets = state["method"]["targets"]
    given = torch.load(run / "soft_labels.pt", weights_only=True)["given_labels"]
    assert targets.shape == (34, 3)
    assert bool((targets != torch.nn.functional.one_hot(given, 3).float()).any(dim=1).all())  # both ranks' samples
    proc = run_entry("evaluate.py", f"checkpoint={run / 'checkpoints/last.pt'}", f"dataset_root={images}",
                     f"hydra.run.dir={tmp_path / 'eval'}", "device=cpu", cwd=tmp_path)
    final = json.loads((run / "summary.json").read_text())["final"]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["test/acc"] == pytest.approx(final["test/acc"])


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker's rank in /proc")
def test_a_signal_to_one_process_stops_both_then_the_same_command_continues_exactly(ddp, tmp_path):
    reference, _ = ddp
    run = tmp_path / "run"
    args = [*DDP_RUN, f"hydra.run.dir={run}"]
    proc = torchrun(args, tmp_path, popen=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.05)
    os.kill(rank1_pid(proc.pid), signal.SIGTERM)  # epoch 1 is logged: it lands early in epoch 2
    out = proc.communicate(timeout=120)[0]
    assert "received SIGTERM" in out and "steps of epoch 2" in out, out  # stopped mid-epoch, together
    assert json.loads((run / "summary.json").read_text())["status"] == "preempted"
    assert load_checkpoint(run / "checkpoints/last.pt")["partial"] is not None
    again = torchrun(args, tmp_path)  # the requeued job: the same command
    assert "continuing from" in again.stdout + again.stderr
    assert rows(run) == rows(reference)
    assert same_state(run / "checkpoints/last.pt", reference / "checkpoints/last.pt")


# --- every method's per-sample state under two processes (spawned, no files) ---------------

METHODS = {
    "sat": lambda: SelfAdaptiveTraining(alpha=0.9, start_epoch=0),
    "sat_sce": lambda: SelfAdaptiveTrainingSCE(alpha=0.9, start_epoch=0),
    "elr": lambda: EarlyLearningRegularization(),
    "trades_sat": lambda: TRADES(natural=SelfAdaptiveTraining(start_epoch=0), steps=0),  # steps: see docs/cluster.md
    "coteaching": lambda: CoTeaching(forget_rate=0.5, num_gradual=0),
    "sat_selective": lambda: SelfAdaptiveSelective(pretrain=0),
}


def _two_steps(rank: int, port: int, out: str) -> None:
    """In each process: two steps of every method on a batch of 7 (shards of 4 and 3),
    next to a single-process copy that sees the whole batch; writes the largest gaps."""

    import torch.distributed as dist
    from torch import nn

    from sat.parallel import Distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    group = Distributed(rank, 2, rank, torch.device("cpu"), "gloo", "test")
    sizes = [4, 3]
    gaps = {}
    for name, make in METHODS.items():
        torch.manual_seed(0)
        outputs = 5 if name == "sat_selective" else 4
        model, method = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, outputs)), make()
        method.attach_model(lambda k=outputs: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, k)))
        labels = torch.arange(10) % 4
        method.setup(labels, 4)
        step, opt, ref_model, ref_method, ref_opt = side_by_side(model, method, group, sizes)
        gen = torch.Generator().manual_seed(1)
        for _ in range(2):
            x, index = torch.rand(7, 6, generator=gen), torch.randperm(10, generator=gen)[:7]
            mine = slice(0, 4) if rank == 0 else slice(4, 7)
            torch.manual_seed(2)  # TRADES draws its start from the global generator
            loss, _ = step(x[mine], labels[index][mine], index[mine], 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            torch.manual_seed(2)
            ref_loss, _ = ref_method(ref_model, x, labels[index], index, 0)
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()
        gaps[name] = largest_gap(model, method, ref_model, ref_method)
        soft = method.soft_labels()
        if soft is not None:
            gaps[name + "/targets"] = float((soft - ref_method.soft_labels()).abs().max())
    Path(f"{out}.{rank}").write_text(json.dumps(gaps))
    dist.destroy_process_group()


def test_every_method_keeps_its_state_identical_and_equal_to_one_process(tmp_path):
    for gaps in run_two(_two_steps, tmp_path):
        assert set(gaps) >= set(METHODS)
        assert all(gap < 1e-6 for gap in gaps.values()), gaps


# --- launch environments and settings, no processes ------------------------------------------


def test_launch_from_torchrun_or_slurm_environment():
    assert launch_from_env({}) is None
    torchrun_env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}
    assert launch_from_env(torchrun_env) == Launch(3, 8, 1, "torchrun", "env://")  # torchrun's variables win
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
             "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert launch_from_env(slurm) == Launch(5, 8, 1, "slurm", f"tcp://gpu07:{20000 + 4242}")
    assert launch_from_env({**slurm, "MASTER_ADDR": "head", "MASTER_PORT": "29500"}).init_method == "tcp://head:29500"
    assert launch_from_env({**slurm, "SLURM_STEP_NUM_TASKS": "1"}) is None  # one task per job: a single process
    batch_script = {k: v for k, v in slurm.items() if k != "SLURM_STEP_NUM_TASKS"} | {"SLURM_PROCID": "0"}
    assert launch_from_env(batch_script) is None  # python train.py in an sbatch script, outside srun
    assert first_host("node[001,005-007],login2") == "node001" and first_host("a1") == "a1"


def test_a_global_batch_that_does_not_split_is_one_line():
    check_batch_split(256, 4)
    with pytest.raises(UserError, match=r"^trainer.batch_size=250 does not split over the 4 processes"):
        check_batch_split(250, 4)
    check_last_batch(1000, 64, 4)  # last batch of 40
    with pytest.raises(UserError, match=r"leaves a last batch of 1 of the 449 training samples"):
        check_last_batch(449, 64, 2)


def test_slurm_ddp_preset_starts_one_task_per_gpu(compose_cfg):
    cfg = compose_cfg("train", ["hydra/launcher=slurm_ddp", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=8"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")  # the submitit plugin's, extended
    assert (launcher["nodes"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == (2, 8, 8)
    assert "export SLURM_KILL_BAD_EXIT=1" in launcher["setup"]
    assert launcher["max_num_timeout"] > 0 and launcher["additional_parameters"]["requeue"]  # slurm.yaml's requeue
