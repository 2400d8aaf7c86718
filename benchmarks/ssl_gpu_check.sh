#!/bin/bash
# Self-supervised SAT on a GPU (not a timed test; not run by CI):
#   bash benchmarks/ssl_gpu_check.sh              (from the repository root; CUDA; ~10 minutes)
#   EPOCHS=200 bash benchmarks/ssl_gpu_check.sh   (the full 200-epoch comparison, one run per method)
# CIFAR-10 ResNet-18 (experiment=ssl_cifar10_resnet18), each method for $EPOCHS epochs (default 3): the
# epoch time, the implied 200-epoch wall time, images/s of the two-view step, and kNN / collapse at the end.
# Uses CIFAR-10 from $SAT_DATA_DIR (cifar-10-batches-py) if it is there; otherwise synthetic 32x32 data of
# CIFAR's size (timings only: its accuracies mean nothing). Needs kornia (pip install -e .). Results in
# $OUT/ssl_gpu (else /tmp/ssl_gpu).
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
EPOCHS=${EPOCHS:-3}
R=${OUT:-/tmp}/ssl_gpu; rm -rf "$R"; mkdir -p "$R"
nvidia-smi -L
python3 -c "import torch, kornia, sat; print('torch', torch.__version__, 'kornia', kornia.__version__, 'cuda', torch.cuda.is_available())"
DATA=${SAT_DATA_DIR:-data}
if [ -f "$DATA/cifar-10-batches-py/data_batch_1" ]; then
  SET="paths.data_dir=$DATA"; echo "CIFAR-10 from $DATA"
else
  SET="dataset=synthetic dataset.num_train=50000 dataset.num_test=10000 dataset.val_size=5000 dataset.num_classes=10 dataset.size=32"
  echo "no CIFAR-10 in $DATA: synthetic data of its size (timings only)"
fi
for m in ssl_sat byol simsiam simclr; do
  echo "== $m, $EPOCHS epochs"
  python3 train.py experiment=ssl_cifar10_resnet18 method=$m $SET trainer.epochs=$EPOCHS trainer.eval_every=$EPOCHS \
    device=cuda logger=csv trainer.progress=none hydra.run.dir=$R/$m 2>&1 | grep -E "epoch +[0-9]+/|rror|Traceback"
done
python3 - "$R" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print(f"{'method':<9} {'epoch s':>8} {'200 ep min':>10} {'img/s':>8} {'kNN %':>6} {'probe %':>7} {'feat std':>8}")
for m in ("ssl_sat", "byol", "simsiam", "simclr"):
    f = root / m / "metrics.jsonl"
    if not f.is_file():
        print(f"{m:<9} (failed: see above)"); continue
    rows = [json.loads(l) for l in f.read_text().splitlines()]
    steady = rows[1:] or rows  # the first epoch includes cuDNN autotuning and kornia's set-up
    train_s = sum(r["time/train_s"] for r in steady) / len(steady)
    epoch_s = sum(r["time/epoch_s"] for r in steady) / len(steady)
    n = json.loads((root / m / "summary.json").read_text())["noise"]["num_train"]
    last = rows[-1]
    print(f"{m:<9} {epoch_s:8.2f} {200 * epoch_s / 60:10.1f} {n / train_s:8.0f} {100 * last.get('test/knn_acc', float('nan')):6.2f}"
          f" {100 * last.get('test/acc', float('nan')):7.2f} {last.get('repr/feature_std', float('nan')):8.3f}")
PY
