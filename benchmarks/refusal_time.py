"""How fast a typo is refused, as a ratio to ``python -c "import torch"`` (issue 29's
target: <= 0.5). Each repetition times, one after the other in fresh processes, torch's
import, a bare Hydra compose of conf/, and ``train.py`` with each kind of typo; the
ratio compares medians measured in the same run, so the machine's load hits both.

    python benchmarks/refusal_time.py              # 5 repetitions
    python benchmarks/refusal_time.py --reps 9 --json out.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sat.run.files import write_json_atomic  # noqa: E402  (the checkout's, not an install's)

TYPOS = {  # what the user typed -> the error line it must give
    "unknown option (experiment=quickstrat)": ["experiment=quickstrat"],
    "unknown key (trainer.epoch=3)": ["experiment=quickstart", "trainer.epoch=3"],
    "wrong type (trainer.epochs=abc)": ["experiment=quickstart", "trainer.epochs=abc"],
    "added key (+method.alfa=1)": ["experiment=quickstart", "+method.alfa=1"],
}
COMPOSE = f"""
from hydra import compose, initialize_config_dir
from sat.cli.register import register_config
register_config()
with initialize_config_dir({str(ROOT / 'conf')!r}, version_base="1.3"):
    compose("train", overrides=["experiment=quickstart"])
"""


def timed(command: list[str], cwd: str, expect: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != expect or (expect == 2 and proc.stderr.count("error:") != 1):
        raise SystemExit(f"{' '.join(command)}: exit {proc.returncode}, expected {expect}\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    commands = {"import torch": ([sys.executable, "-c", "import torch"], 0),
                "bare compose of conf/": ([sys.executable, "-c", COMPOSE], 0)}
    commands |= {name: ([sys.executable, str(ROOT / "train.py"), *typo], 2) for name, typo in TYPOS.items()}
    times: dict[str, list[float]] = {name: [] for name in commands}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as cwd:  # a refused run leaves no folder, but never in the checkout
        for _ in range(args.reps):
            for name, (command, expect) in commands.items():
                times[name].append(timed(command, cwd, expect))
            loads.append(os.getloadavg()[0])
    torch_s = statistics.median(times["import torch"])
    rows = [{"what": name, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
             "ratio_to_import_torch": statistics.median(t) / torch_s} for name, t in times.items()]
    print(f"{args.reps} repetitions, {os.cpu_count()} CPUs, load (1 min) {min(loads):.1f}-{max(loads):.1f}\n")
    print("| command | median s | min-max s | median / import torch |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | "
              f"{r['ratio_to_import_torch']:.2f} |")
    if args.json:
        write_json_atomic(Path(args.json), {"reps": args.reps, "load": loads, "rows": rows})


if __name__ == "__main__":
    main()
