"""Benchmark minipeft's methods against Hugging Face peft on the real MiniLM (CPU).

    python scripts/bench_methods.py                    # LoRA and IA3, 10 timed steps each
    python scripts/bench_methods.py --quick            # 3 timed steps: a smoke run
    python scripts/bench_methods.py --methods lora,ia3,bitfit --steps 20

Measured, for a MeanPoolClassifier(MiniLM) on a batch of 32 × 64 tokens with torch.set_num_threads(2):

  train step   forward + backward + AdamW step, median over the timed steps after warm-up steps
  peak memory  highest resident set size (psutil RSS, sampled every 5 ms in a thread) during the steps, minus the
               RSS just before them (model loaded, method injected): activations, gradients, AdamW state and
               allocator slack. tracemalloc would miss all of it (torch allocates outside Python's allocator).
  inference    forward latency (torch.inference_mode) of the base model, LoRA unmerged and LoRA merged.

Every measurement runs in a fresh Python process, so one run's freed-but-kept memory cannot hide the next one's
peak. A method name is any minipeft config (``PeftConfig.REGISTRY``, built with its defaults for BERT); add its
peft counterpart to PEFT_CONFIGS to get a peft row too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BATCH, TOKENS, THREADS = 32, 64, 2


def peft_lora():
    import peft
    return peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["head"])


def peft_ia3():
    import peft
    return peft.IA3Config(target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"],
                          modules_to_save=["head"])


# the same settings as minipeft's defaults for BERT (LoRA r=8, alpha=16 on query/value; IA3 on key/value/output.dense)
PEFT_CONFIGS = {"lora": peft_lora, "ia3": peft_ia3}


# --------------------------------------------------------------------------------------------- one measurement
def build(method: str, impl: str):
    """MeanPoolClassifier(MiniLM) with ``method`` added by minipeft or peft (impl "base": nothing, all frozen)."""
    import minipeft as mp
    from minipeft.train import MeanPoolClassifier

    encoder, _ = mp.load_encoder()
    model = MeanPoolClassifier(encoder)
    if impl == "minipeft":
        mp.inject(model, mp.PeftConfig.REGISTRY[method](modules_to_save=["head"]))
    elif impl == "peft":
        import peft
        model = peft.get_peft_model(model, PEFT_CONFIGS[method]())
    return model


def batch():
    import torch

    gen = torch.Generator().manual_seed(0)
    return dict(input_ids=torch.randint(1000, 30000, (BATCH, TOKENS), generator=gen),
                attention_mask=torch.ones(BATCH, TOKENS, dtype=torch.long),
                labels=torch.randint(0, 2, (BATCH,), generator=gen))


def measure_train(method: str, impl: str, warmup: int, steps: int) -> dict:
    import gc

    import psutil
    import torch
    from minipeft.params import trainable_parameters
    from minipeft.train import PeakRSS

    model = build(method, impl).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    inputs = batch()
    gc.collect()
    rss0 = psutil.Process().memory_info().rss / 2**20
    times = []
    with PeakRSS(interval=0.005) as mem:
        for i in range(warmup + steps):
            start = time.perf_counter()
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return dict(trainable=trainable_parameters(model)[0], step_ms=1000 * statistics.median(times),
                step_ms_min=1000 * min(times), peak_mb=mem.peak - rss0)


def measure_infer(variant: str, warmup: int, steps: int) -> dict:
    import torch
    import minipeft as mp

    model = build("lora", "base" if variant == "base" else "minipeft").eval()
    if variant != "base":
        with torch.no_grad():
            for layer in mp.peft_layers(model).values():
                layer.lora_B.weight.normal_(0, 0.02)  # a trained-looking ΔW (latency does not depend on it)
    if variant == "lora merged":
        mp.merge(model)
    inputs = batch()
    inputs.pop("labels")
    times = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            start = time.perf_counter()
            model(**inputs)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return dict(latency_ms=1000 * statistics.median(times), latency_ms_min=1000 * min(times))


def child(spec: dict) -> None:
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    if spec["kind"] == "train":
        result = measure_train(spec["method"], spec["impl"], spec["warmup"], spec["steps"])
    else:
        result = measure_infer(spec["variant"], spec["warmup"], spec["steps"])
    print("RESULT " + json.dumps(result))


def run(spec: dict) -> dict:
    """One measurement in a fresh interpreter."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# --------------------------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="lora,ia3", help="comma-separated minipeft method names")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="3 timed steps after 1 warm-up: a smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.quick:
        args.steps, args.warmup = 3, 1

    import minipeft as mp

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in mp.PeftConfig.REGISTRY]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {sorted(mp.PeftConfig.REGISTRY)}")

    import psutil
    import torch

    print(f"MiniLM (all-MiniLM-L6-v2), batch {BATCH} x {TOKENS} tokens, torch {torch.__version__}, "
          f"{THREADS} threads, {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.steps} steps after {args.warmup} warm-up\n")
    print("| method | implementation | trainable params | train step (ms, median) | min (ms) | peak RSS Δ (MB) |")
    print("|---|---|---:|---:|---:|---:|")
    for method in methods:
        for impl in ["minipeft", "peft"] if method in PEFT_CONFIGS else ["minipeft"]:
            r = run(dict(kind="train", method=method, impl=impl, warmup=args.warmup, steps=args.steps))
            print(f"| {method} | {impl} | {r['trainable']:,} | {r['step_ms']:.0f} | {r['step_ms_min']:.0f} | "
                  f"{r['peak_mb']:.0f} |", flush=True)

    print("\n| model (inference, no grad) | latency (ms, median) | min (ms) |")
    print("|---|---:|---:|")
    for variant in ["base", "lora unmerged", "lora merged"]:
        r = run(dict(kind="infer", variant=variant, warmup=args.warmup, steps=args.steps))
        print(f"| {variant} | {r['latency_ms']:.1f} | {r['latency_ms_min']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
