"""Benchmark minipeft's methods against Hugging Face peft on the real MiniLM (CPU).

    python scripts/bench_methods.py                    # every method (+ its peft twin), 10 timed steps each
    python scripts/bench_methods.py --equal-budget     # also LoRA at each method's trainable-parameter count
    python scripts/bench_methods.py --quick            # 3 timed steps: a smoke run
    python scripts/bench_methods.py --methods lora:r=4,ia3,loha --steps 20      # name:field=value sets a config field

Measured, for a MeanPoolClassifier(MiniLM) on a batch of 32 × 64 tokens with torch.set_num_threads(2):

  train step   forward + backward + AdamW step, median over the timed steps after warm-up steps
  peak memory  highest resident set size (psutil RSS, sampled every 5 ms in a thread) during the steps, minus the
               RSS just before them (model loaded, method injected): activations, gradients, AdamW state and
               allocator slack. tracemalloc would miss all of it (torch allocates outside Python's allocator).
  inference    forward latency (torch.inference_mode) of the base model, LoRA unmerged and LoRA merged.

Every measurement runs in a fresh Python process, so one run's freed-but-kept memory cannot hide the next one's
peak. A method name is any minipeft config (``PeftConfig.REGISTRY``, built with its defaults for BERT); add its
peft counterpart to PEFT_CONFIGS to get a peft row too. Run it on an idle machine: with other work on the same
cores, every number (and the ratios between runs made minutes apart) is noise.
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


QV = ["query", "value"]  # minipeft's (and peft's) default targets on BERT for the ΔW methods


def peft_lora(r=8, alpha=16):
    import peft
    return peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=QV, modules_to_save=["head"])


def peft_ia3():
    import peft
    return peft.IA3Config(target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"],
                          modules_to_save=["head"])


def peft_loha(r=8, alpha=8):
    import peft
    return peft.LoHaConfig(r=r, alpha=alpha, target_modules=QV, modules_to_save=["head"])


def peft_lokr(r=8, alpha=8):
    import peft
    return peft.LoKrConfig(r=r, alpha=alpha, target_modules=QV, modules_to_save=["head"])


def peft_adalora(total_steps=100):
    import peft
    return peft.AdaLoraConfig(init_r=12, target_r=8, lora_alpha=8, total_step=total_steps, target_modules=QV,
                              modules_to_save=["head"])


def peft_prompt(length=20):
    import peft
    return peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length)


def peft_ptuning(length=20):
    import peft
    return peft.PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length,
                                    encoder_reparameterization_type="MLP")


# peft counterparts at minipeft's defaults for BERT (LoRA r=8 α=16 on query/value; LoHa/LoKr r=8 α=8; AdaLoRA 12 -> 8;
# IA3 on key/value/output.dense; 20 virtual tokens). Prefix tuning has none: peft refuses BERT under transformers 5.
PEFT_CONFIGS = {"lora": peft_lora, "ia3": peft_ia3, "loha": peft_loha, "lokr": peft_lokr, "adalora": peft_adalora,
                "prompt": peft_prompt, "ptuning": peft_ptuning}
PROMPT_LEARNING = {"prompt", "ptuning"}  # peft wraps the encoder itself for these (its prompt sits at the embeddings)
DEFAULT_KWARGS = {"adalora": {"total_steps": 100}}  # AdaLoRA's schedule must know T; no default can guess it


def parse_method(text: str) -> tuple[str, dict]:
    """'lora' -> ('lora', {}); 'lora:r=4,alpha=8' is not allowed (comma splits methods): use 'lora:r=4:alpha=8'."""
    name, *pairs = text.split(":")
    kwargs = dict(DEFAULT_KWARGS.get(name, {}))
    for pair in pairs:
        key, _, value = pair.partition("=")
        kwargs[key] = json.loads(value)
    return name, kwargs


def label(method: str, kwargs: dict) -> str:
    extra = {k: v for k, v in kwargs.items() if DEFAULT_KWARGS.get(method, {}).get(k) != v}
    return method + "".join(f" {k}={v}" for k, v in extra.items())


# --------------------------------------------------------------------------------------------- one measurement
def build(method: str, impl: str, kwargs: dict | None = None):
    """MeanPoolClassifier(MiniLM) with ``method`` added by minipeft or peft (impl "base": nothing, all frozen)."""
    import minipeft as mp
    from minipeft.lab.train import MeanPoolClassifier

    kwargs = kwargs or {}
    encoder, _ = mp.load_encoder()
    if impl == "peft" and method in PROMPT_LEARNING:  # peft's prompt lives in a PeftModel around the encoder
        import peft
        model = MeanPoolClassifier(peft.get_peft_model(encoder, PEFT_CONFIGS[method](**kwargs)))
        model.head.requires_grad_(True)  # the head trains too, as modules_to_save=["head"] does on our side
        return model
    model = MeanPoolClassifier(encoder)
    if impl == "minipeft":
        mp.inject(model, mp.PeftConfig.REGISTRY[method](modules_to_save=["head"], **kwargs))
    elif impl == "peft":
        import peft
        model = peft.get_peft_model(model, PEFT_CONFIGS[method](**kwargs))
    return model


def training_hooks(model, method: str, impl: str):
    """(extra loss, after-step hook) that a real training loop runs for this method: AdaLoRA's orthogonality penalty
    and budget allocation, on both sides (peft adds its penalty to .loss inside forward)."""
    if method != "adalora":
        return None, None
    if impl == "minipeft":
        from minipeft.methods.adalora import orthogonal_regularization, update_and_allocate
        return orthogonal_regularization, update_and_allocate
    return None, lambda m, step: m.base_model.update_and_allocate(step)


def batch():
    import torch

    gen = torch.Generator().manual_seed(0)
    return dict(input_ids=torch.randint(1000, 30000, (BATCH, TOKENS), generator=gen),
                attention_mask=torch.ones(BATCH, TOKENS, dtype=torch.long),
                labels=torch.randint(0, 2, (BATCH,), generator=gen))


def measure_train(method: str, impl: str, warmup: int, steps: int, kwargs: dict | None = None) -> dict:
    import gc

    import psutil
    import torch
    from minipeft.core.params import trainable_parameters
    from minipeft.lab.train import PeakRSS

    model = build(method, impl, kwargs).train()
    extra_loss, after_step = training_hooks(model, method, impl)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    inputs = batch()
    gc.collect()
    rss0 = psutil.Process().memory_info().rss / 2**20
    times = []
    with PeakRSS(interval=0.005) as mem:
        for i in range(warmup + steps):
            start = time.perf_counter()
            loss = model(**inputs).loss
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(model, i)
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
        result = measure_train(spec["method"], spec["impl"], spec["warmup"], spec["steps"], spec.get("kwargs"))
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
def lora_rank_for(method: str, kwargs: dict) -> int:
    """The rank of a LoRA on query/value (6 layers, 384 -> 384: r·(384 + 384) per matrix) whose trainable-parameter
    count is closest to ``method``'s."""
    import minipeft as mp
    from minipeft.lab.train import MeanPoolClassifier

    encoder, _ = mp.load_encoder()
    count = mp.trainable_parameters(mp.inject(MeanPoolClassifier(encoder), mp.PeftConfig.REGISTRY[method](**kwargs)))[0]
    return max(1, round(count / (2 * 6 * (384 + 384))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="lora,ia3,bitfit,adapter,prefix,prompt,ptuning,adalora,loha,lokr,krona,kronab",
                        help="comma-separated minipeft methods; 'name:key=value' overrides a config field")
    parser.add_argument("--equal-budget", action="store_true",
                        help="also time LoRA (query, value) at the rank whose parameter count is closest to each method")
    parser.add_argument("--no-infer", action="store_true", help="skip the merged-LoRA inference latency table")
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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the driver loads MiniLM for --equal-budget: keep the tables clean
    methods = [parse_method(m.strip()) for m in args.methods.split(",") if m.strip()]
    unknown = [m for m, _ in methods if m not in mp.PeftConfig.REGISTRY]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {sorted(mp.PeftConfig.REGISTRY)}")

    import psutil
    import torch

    print(f"MiniLM (all-MiniLM-L6-v2), batch {BATCH} x {TOKENS} tokens, torch {torch.__version__}, "
          f"{THREADS} threads, {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.steps} steps after {args.warmup} warm-up\n")
    print("| method | implementation | trainable params | train step (ms, median) | min (ms) | peak RSS Δ (MB) "
          "| ours / peft (median step) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    timed: dict[tuple[str, str], dict] = {}

    def row(method: str, kwargs: dict, impl: str) -> dict:
        key = (label(method, kwargs), impl)
        if key not in timed:
            timed[key] = r = run(dict(kind="train", method=method, impl=impl, warmup=args.warmup, steps=args.steps,
                                      kwargs=kwargs))
            ratio = ""
            if impl == "peft" and (key[0], "minipeft") in timed:
                ratio = f"{timed[key[0], 'minipeft']['step_ms'] / r['step_ms']:.2f}"
            print(f"| {key[0]} | {impl} | {r['trainable']:,} | {r['step_ms']:.0f} | {r['step_ms_min']:.0f} | "
                  f"{r['peak_mb']:.0f} | {ratio} |", flush=True)
        return timed[key]

    for method, kwargs in methods:
        for impl in ["minipeft", "peft"] if method in PEFT_CONFIGS else ["minipeft"]:
            row(method, kwargs, impl)

    if args.equal_budget:
        print("\nThe same methods against LoRA on query/value at the closest trainable-parameter count (head included "
              "on both sides):\n")
        print("| method | trainable | its step (ms) | LoRA r | LoRA trainable | LoRA step (ms) | method / LoRA (step) "
              "| method / LoRA (peak MB) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for method, kwargs in methods:
            if method == "lora":
                continue
            r = lora_rank_for(method, kwargs)
            ours = timed[label(method, kwargs), "minipeft"]
            lora = run(dict(kind="train", method="lora", impl="minipeft", warmup=args.warmup, steps=args.steps,
                            kwargs={"r": r, "alpha": 2 * r}))
            print(f"| {label(method, kwargs)} | {ours['trainable']:,} | {ours['step_ms']:.0f} | {r} | "
                  f"{lora['trainable']:,} | {lora['step_ms']:.0f} | {ours['step_ms'] / lora['step_ms']:.2f} | "
                  f"{ours['peak_mb'] / max(lora['peak_mb'], 1):.2f} |", flush=True)

    if args.no_infer:
        return
    print("\n| model (inference, no grad) | latency (ms, median) | min (ms) | / base (median) |")
    print("|---|---:|---:|---:|")
    base = None
    for variant in ["base", "lora unmerged", "lora merged"]:
        r = run(dict(kind="infer", variant=variant, warmup=args.warmup, steps=args.steps))
        base = base or r["latency_ms"]
        print(f"| {variant} | {r['latency_ms']:.1f} | {r['latency_ms_min']:.1f} | {r['latency_ms'] / base:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
