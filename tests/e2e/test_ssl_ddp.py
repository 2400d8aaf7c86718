"""Self-supervised methods under DDP (gloo, two forked processes), against one process with
the whole batch: SSL-SAT's per-image bank, gathered like SAT's soft targets, is identical on
both ranks and equal to one process's; SimCLR's negatives are the whole global batch (its
embeddings gathered with their gradients), so its weights equal one process's too."""

import json
from pathlib import Path

import torch
from two_processes import largest_gap, run_two, side_by_side


def _two_steps(rank: int, port: int, out: str) -> None:

    import torch.distributed as dist
    from torch import nn

    from sat.methods.ssl import BYOL, SelfSupervisedSAT, SimCLR, SimSiam
    from sat.models import MLP, with_normalization
    from sat.parallel import Distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    group = Distributed(rank, 2, rank, torch.device("cpu"), "gloo", "test")
    sizes, gaps = [4, 3], {}
    heads = dict(projector_hidden_dim=8, projector_dim=4, predictor_hidden_dim=8)
    methods = {"ssl_sat": lambda: SelfSupervisedSAT(start_epoch=0, **heads), "byol": lambda: BYOL(**heads),
               "simsiam": lambda: SimSiam(**heads),
               "simclr": lambda: SimCLR(projector_hidden_dim=8, projector_dim=4, temperature=0.5)}
    for name, make in methods.items():
        torch.manual_seed(0)
        build = lambda: with_normalization(MLP(4, (1, 3, 3), width=8), [0.5], [0.25])  # noqa: E731
        model, method = build(), make()
        method.attach_model(build)
        for head in method.networks():  # BatchNorm normalises per shard by design (as for every method): off here
            head[1] = nn.Identity()
        if method.target_projector is not None:
            method.target_projector[1] = nn.Identity()
        method.schedule(4)
        method.setup(torch.arange(10) % 4, 4)
        step, opt, ref_model, ref_method, ref_opt = side_by_side(model, method, group, sizes)
        gen = torch.Generator().manual_seed(1)
        for epoch in range(3):
            v1, v2 = torch.rand(7, 1, 3, 3, generator=gen), torch.rand(7, 1, 3, 3, generator=gen)
            labels, index = torch.arange(7) % 4, torch.randperm(10, generator=gen)[:7]
            mine = slice(0, 4) if rank == 0 else slice(4, 7)
            for run, (m, o) in (("ddp", (None, opt)), ("ref", (ref_method, ref_opt))):
                if run == "ddp":
                    loss, _ = step((v1[mine], v2[mine]), labels[mine], index[mine], epoch)
                else:
                    loss, _ = m(ref_model, (v1, v2), labels, index, epoch)
                o.zero_grad()
                loss.backward()
                o.step()
        gaps[name] = largest_gap(model, method, ref_model, ref_method)
        if name == "ssl_sat":
            gaps["bank"] = float((method.bank.targets - ref_method.bank.targets).abs().max())
            gaps["visited_equal"] = float(not torch.equal(method.bank.visited, ref_method.bank.visited))
            Path(f"{out}.bank.{rank}").write_bytes(method.bank.targets.numpy().tobytes())
    Path(f"{out}.{rank}").write_text(json.dumps(gaps))
    dist.destroy_process_group()


def test_ssl_state_identical_on_both_ranks_and_equal_to_one_process(tmp_path):
    for gaps in run_two(_two_steps, tmp_path):
        assert {"ssl_sat", "byol", "simsiam", "simclr", "bank", "visited_equal"} <= set(gaps)
        assert all(gap < 1e-6 for gap in gaps.values()), gaps
    assert (tmp_path / "gaps.bank.0").read_bytes() == (tmp_path / "gaps.bank.1").read_bytes()  # bit-identical
