"""How much slower does training get when another busy process shares the 2 cores, and which thread settings help?

    python scripts/bench_contention.py [--steps 12] [--quick]

For each thread setting (torch threads × OpenMP wait policy) it times LoRA training steps on MiniLM (batch 32 × 64
tokens, the chapters' shape) in a fresh process, twice: on idle cores, and next to a competing process that runs
its own 2-thread matrix products the whole time (a second kernel training something). Prints the median step time
of each, and the contended / idle ratio. A thread that waits for work by SPINNING (OpenMP's default, ACTIVE) burns a
core the other process needs; a PASSIVE thread sleeps. Every setting computes the same numbers (fp32, same order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, os, statistics, sys, time
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
import minipeft as mp
from minipeft import chapter, train
encoder, tok = mp.load_encoder()
model = chapter.classifier(encoder, mp.LoRAConfig(r=8), seed=0)
batch = tok(["a fairly ordinary sentence about a film that goes on for a while " * 4] * 32, truncation=True,
            max_length=64, padding="max_length", return_tensors="pt")
labels = torch.zeros(32, dtype=torch.long)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
times = []
for step in range(int(os.environ["BENCH_STEPS"]) + 2):          # 2 warm-up steps
    t0 = time.perf_counter()
    model(**batch, labels=labels).loss.backward()
    opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": 1000 * statistics.median(times[2:]), "threads": torch.get_num_threads()}))
"""

BUSY = r"""
import torch
torch.set_num_threads(2)
a = torch.randn(768, 768)
while True:
    a = (a @ a).tanh_()
"""

SETTINGS = {  # name -> environment for the timed process
    "2 threads, spin (OpenMP default)": {"BENCH_THREADS": "2"},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"BENCH_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"BENCH_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}


def time_steps(env: dict, steps: int) -> float:
    full = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env | {"BENCH_STEPS": str(steps)}
    out = subprocess.run([sys.executable, "-c", WORKER], env=full, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="3 steps per measurement")
    args = parser.parse_args(argv)
    steps = 3 if args.quick else args.steps
    rows = []
    for name, env in SETTINGS.items():
        idle = time_steps(env, steps)
        busy = subprocess.Popen([sys.executable, "-c", BUSY])  # the competing process, default settings
        try:
            time.sleep(2)
            contended = time_steps(env, steps)
        finally:
            busy.kill()
            busy.wait()
        rows.append((name, idle, contended))
        print(f"{name:<36} idle {idle:7.0f} ms/step | contended {contended:7.0f} ms/step | x{contended / idle:.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
