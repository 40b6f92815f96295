"""Serving many users at once: rows per second for a batch of 64 shared by 1, 4, 16 or 64 users' LoRA adapters.

    nice -n 5 python scripts/bench_serving.py [--users 1 4 16 64] [--repeats 5] [--threads 2] [--clock wall|cpu]

On the course's encoder (all-MiniLM-L6-v2, LoRA r = 8 on query/value, one random adapter per user, saved with
save_adapter), 64 Rotten Tomatoes snippets padded to the longest (≤ 64 tokens); row b belongs to user b mod U.
Forward passes without gradients, timed in turn (interleaved, so a busy neighbour slows every way alike):

    base            the base model alone, one forward: the ceiling (no adapter at all)
    bank            minipeft.AdapterBank, one forward, each row gathered to its user (one batched product)
    loop (swap)     one LoRA model; per user: copy their A, B in, forward their rows      (U forwards)
    loop (merge)    the same, but merge each user's ΔW into W0 first and unmerge after     (U forwards)
    peft mixed      Hugging Face peft with the U adapters loaded, forward(..., adapter_names=[...]) (one forward;
                    inside each layer peft loops over the users present, one small product per user)

Prints a markdown table of rows/s from the best of the repeats (on 2 shared cores the best run is the one least
disturbed by the neighbours; the medians are printed on stderr) and the largest gap between the bank's and peft's
outputs (they must agree: the same adapters, served two ways). ``--clock cpu`` times with the process's CPU time
instead of the wall clock: rows per CPU-second, the work each way costs, which a busy neighbour hardly changes
(run it with --threads 1, so that no time is spent waiting for a second thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock, unit = (time.perf_counter, "rows/s") if args.clock == "wall" else (time.process_time, "rows/CPU-s")
    warnings.simplefilter("ignore")

    import peft

    import minipeft as mp
    from minipeft.lab.data import rotten_tomatoes

    encoder, tok = mp.load_encoder()
    texts = rotten_tomatoes()["test"]["text"][: args.rows]
    batch = dict(tok(texts, truncation=True, max_length=64, padding=True, return_tensors="pt"))
    config = mp.LoRAConfig(r=8)
    print(f"# MiniLM, {args.rows} rows x {batch['input_ids'].shape[1]} tokens, LoRA r=8 on query/value, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; best and median of {args.repeats} runs", file=sys.stderr)

    table = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for U in args.users:
            dirs, states, exported = {}, {}, {}
            for u in range(U):                                   # U users' adapters, random (B ≠ 0)
                model = mp.inject(_fresh(encoder), config)
                torch.manual_seed(u)
                for p in model.parameters():
                    if p.requires_grad:
                        p.normal_(0, 0.05)
                name = f"user{u}"
                dirs[name] = mp.save_adapter(model, Path(tmp) / f"{U}-{name}")
                exported[name] = mp.export_peft(model, Path(tmp) / f"{U}-{name}-peft")
                states[name] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            names = [f"user{b % U}" for b in range(args.rows)]
            groups = {n: [b for b, m in enumerate(names) if m == n] for n in dirs}

            t0 = time.perf_counter()
            bank = mp.AdapterBank(_fresh(encoder), dirs)
            build_s = time.perf_counter() - t0
            looped = mp.inject(_fresh(encoder), config)
            params = dict(looped.named_parameters())
            layers = list(mp.peft_layers(looped).values())
            theirs = peft.PeftModel.from_pretrained(_fresh(encoder), str(exported["user0"]), adapter_name="user0")
            for n in list(dirs)[1:]:
                theirs.load_adapter(str(exported[n]), adapter_name=n)
            theirs.eval()

            def loop(merge: bool):
                for n, rows in groups.items():
                    for k, t in states[n].items():                   # the swap: this user's A and B
                        params[k].copy_(t)
                    if merge:
                        for layer in layers:
                            layer.merge()
                    looped(**{k: v[rows] for k, v in batch.items()})
                    if merge:
                        for layer in layers:
                            layer.unmerge()

            ways = {
                "base": lambda: encoder(**batch),
                "bank": lambda: bank(**batch, adapter_names=names),
                "loop (swap)": lambda: loop(False),
                "loop (merge)": lambda: loop(True),
                "peft mixed": lambda: theirs(**batch, adapter_names=names),
            }
            gap = (bank(**batch, adapter_names=names).last_hidden_state
                   - theirs(**batch, adapter_names=names).last_hidden_state).abs().max().item()
            times = {w: [] for w in ways}
            for _ in range(args.repeats + 1):                        # the first round warms up
                for w, run in ways.items():
                    t0 = clock()
                    run()
                    times[w].append(clock() - t0)
            rate = {w: args.rows / min(t[1:]) for w, t in times.items()}
            median = {w: args.rows / statistics.median(t[1:]) for w, t in times.items()}
            table.append((U, rate, gap, build_s))
            print(f"U={U}: {unit} best (median): " + ", ".join(f"{w} {rate[w]:.0f} ({median[w]:.0f})" for w in rate)
                  + f"; bank vs peft max |Δ| {gap:.1e}; bank built in {build_s:.1f} s", file=sys.stderr)

    ways = list(table[0][1])
    print("| users in the batch | " + " | ".join(f"{w} ({unit}, best)" for w in ways)
          + " | bank / peft | bank / loop (swap) | bank vs peft max abs diff | bank built (s) |")
    print("|---:|" + "---:|" * (len(ways) + 4))
    for U, rate, gap, build_s in table:
        print(f"| {U} | " + " | ".join(f"{rate[w]:.0f}" for w in ways)
              + f" | {rate['bank'] / rate['peft mixed']:.2f} | {rate['bank'] / rate['loop (swap)']:.2f}"
              + f" | {gap:.1e} | {build_s:.1f} |")


def _fresh(encoder):
    """Another copy of the base encoder (a deep copy: loading from disk again would take longer)."""
    import copy

    return copy.deepcopy(encoder)


if __name__ == "__main__":
    main()
