#!/bin/bash
# DDP on CUDA, for a machine with one GPU (not a timed test; not run by CI):
#   bash benchmarks/ddp_gpu_check.sh          (from the repository root)
# What one GPU allows: NCCL with one process (world size 1) through torchrun, SyncBatchNorm
# conversion, equality with a plain single-process run (fp32, deterministic), resume from
# an epoch checkpoint, TRADES+SAT under bf16, and DDP's per-epoch cost against the plain
# run. Scaling needs 2+ GPUs: run the section-5 commands with --nproc_per_node=N there.
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
R=/tmp/runs; rm -rf $R; mkdir -p $R
nvidia-smi -L
python3 -c "import torch, hydra, sat; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'nccl', torch.distributed.is_nccl_available())"
TR="python3 -m torch.distributed.run --standalone --nproc_per_node=1"
EQ="dataset=synthetic dataset.num_train=4096 dataset.num_test=512 dataset.size=32 model=cnn model.width=16 augment=crop_flip trainer.epochs=3 trainer.batch_size=128 method=sat method.start_epoch=1 noise=flip noise.rate=0.3 trainer.checkpoint_every=1 device=cuda trainer.precision=fp32 trainer.deterministic=true trainer.channels_last=false"
echo "== 1 single process, fp32 deterministic"; python3 train.py $EQ hydra.run.dir=$R/single 2>&1 | grep -E "epoch [0-9]|rror" 
echo "== 2 torchrun 1 process NCCL, sync_batchnorm"; $TR train.py $EQ trainer.sync_batchnorm=true hydra.run.dir=$R/ddp 2>&1 | grep -E "distributed|epoch [0-9]|rror|Traceback|File "
echo "== 3 resume from epoch_1 under NCCL"; $TR train.py $EQ trainer.sync_batchnorm=true resume=$R/ddp/checkpoints/epoch_1.pt hydra.run.dir=$R/fork 2>&1 | grep -E "continuing|epoch [0-9]|rror"
python3 - <<'PY'
import json, torch
def rows(p): return [{k: v for k, v in json.loads(l).items() if not k.startswith("time")} for l in open(p + "/metrics.jsonl")]
a, b, c = rows("/tmp/runs/single"), rows("/tmp/runs/ddp"), rows("/tmp/runs/fork")
print("single vs ddp: max metric gap", max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x))
print("ddp vs fork (resume): equal rows", b == c)
s, d, f = (torch.load(f"/tmp/runs/{n}/checkpoints/last.pt", weights_only=True) for n in ("single", "ddp", "fork"))
print("single vs ddp: max weight gap", max(float((s["model"][k].double() - d["model"][k].double()).abs().max()) for k in s["model"]))
print("single vs ddp: max target gap", float((s["method"]["targets"] - d["method"]["targets"]).abs().max()))
print("ddp vs fork: same weights", all(torch.equal(d["model"][k], f["model"][k]) for k in d["model"]))
print("summary", json.load(open("/tmp/runs/ddp/summary.json"))["distributed"])
PY
echo "== 4 TRADES+SAT under NCCL (bf16)"; $TR train.py dataset=synthetic dataset.num_train=1024 dataset.size=32 model=resnet18 model.width=16 trainer.epochs=2 trainer.batch_size=128 method=trades_sat method.natural.start_epoch=1 noise=flip noise.rate=0.3 device=cuda hydra.run.dir=$R/trades 2>&1 | grep -E "epoch [0-9]|rror|Traceback"
echo "== 5 overhead: ResNet-18 (width 64) 32x32, batch 256, bf16, channels_last, 16384 samples, 4 epochs"
SP="dataset=synthetic dataset.num_train=16448 dataset.num_test=512 dataset.size=32 model=resnet18 trainer.epochs=4 trainer.batch_size=256 method=sat method.start_epoch=1 noise=flip noise.rate=0.3 device=cuda"
python3 train.py $SP hydra.run.dir=$R/speed1 2>&1 | grep -E "epoch [0-9]|rror"
$TR train.py $SP hydra.run.dir=$R/speed2 2>&1 | grep -E "epoch [0-9]|rror"
python3 - <<'PY'
import json
for n in ("speed1", "speed2"):
    r = [json.loads(l) for l in open(f"/tmp/runs/{n}/metrics.jsonl")]
    print(n, "train_s per epoch (epochs 2-4):", [round(x["time/train_s"], 3) for x in r[1:]], "eval_s:", [round(x["time/eval_s"], 3) for x in r[1:]])
PY
