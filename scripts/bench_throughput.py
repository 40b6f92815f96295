"""Examples per second on MiniLM + Rotten Tomatoes for the course's main methods, and what bf16 autocast would give.

    python scripts/bench_throughput.py                 # LoRA, IA3, Houlsby adapters, prefix, prompt tuning
    python scripts/bench_throughput.py --steps 8       # a smoke run

For every method, on the real data (batches of 32 grouped by length, as the chapters train):

  train ex/s         `fit` for --steps optimizer steps (forward + backward + AdamW), fp32
  eval ex/s before   the evaluation as it was: no_grad, the raw test split re-tokenised on every call
  eval ex/s after    `evaluate`: inference_mode, the split tokenised once (the chapters and `fit` now do this);
                     the accuracy must be identical, and is checked
  bf16 train ex/s    --bf16-steps steps with the forward under torch.autocast("cpu", torch.bfloat16)
  bf16 eval ex/s     the fp32-trained model scored under autocast; "agree" = share of the 1,276 test predictions
                     equal to fp32's, and the accuracy change
Run it on an idle machine: next to another busy process every number is noise.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

import minipeft as mp
from minipeft import chapter, data, train
from minipeft.lab.data import EncoderCollate
from minipeft.lab.train.loop import Epochs

METHODS = {
    "LoRA r=8 (Wq, Wv)": lambda tok: mp.LoRAConfig(r=8, alpha=16, targets=["query", "value"]),
    "IA3": lambda tok: mp.IA3Config(),
    "Houlsby adapters m=32": lambda tok: mp.AdapterConfig(kind="houlsby", bottleneck=32),
    "prefix n=10": lambda tok: mp.PrefixConfig(length=10),
    "prompt tuning n=20": lambda tok: mp.PromptConfig(length=20),
}


class Autocast(Epochs):
    """The default batch order, with every forward pass under bf16 autocast."""

    def __call__(self, gen):
        for ds, rows, _ in super().__call__(gen):
            yield ds, rows, torch.autocast("cpu", dtype=torch.bfloat16)


@torch.no_grad()
def evaluate_before(model, tokenizer, raw, batch_size=128, max_length=64) -> float:
    """The evaluation before this change: no_grad, the raw split tokenised again on every call."""
    ds = data.tokenize(raw, tokenizer, max_length)
    order = sorted(range(len(ds)), key=lambda i: len(ds[i]["input_ids"]))
    collate, correct = EncoderCollate(tokenizer), 0
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = collate([ds[i] for i in order[start:start + batch_size]])
        labels = batch.pop("labels")
        correct += (model(**batch).logits.argmax(-1) == labels).sum().item()
    return correct / len(ds)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--bf16-steps", type=int, default=3, help="steps of the bf16 training run (it is slow)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from datasets import disable_progress_bars
    disable_progress_bars()

    encoder, tokenizer = mp.load_encoder()
    rt = data.rotten_tomatoes()
    train_tok = data.tokenize(rt["train"], tokenizer)
    test_raw, test_tok = rt["test"], data.tokenize(rt["test"], tokenizer)
    n = len(test_tok)
    config = train.TrainConfig(max_steps=args.steps, lr=1e-3, progress=False)
    print(f"MiniLM + Rotten Tomatoes, {args.steps} training steps of 32, {n:,} test snippets, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| method | train ex/s | eval ex/s before | eval ex/s after | bf16 train ex/s | bf16 eval ex/s "
          "| bf16 eval: predictions equal | accuracy fp32 → bf16 eval |", flush=True)
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name, make in METHODS.items():
        model = chapter.classifier(encoder, make(tokenizer), seed=0)
        fp32 = train.fit(model, tokenizer, train_tok, None, config)
        acc_before, t_before = timed(lambda: evaluate_before(model, tokenizer, test_raw))
        preds, t_after = timed(lambda: train.predict(model, tokenizer, test_tok))
        acc_after = sum(p == y for p, y in zip(preds, test_tok["label"])) / n
        assert acc_after == acc_before, (name, acc_before, acc_after)       # the lever changes no number
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_preds, t_bf16 = timed(lambda: train.predict(model, tokenizer, test_tok))
        agree = sum(a == b for a, b in zip(preds, bf16_preds)) / n
        acc_bf16_eval = sum(p == y for p, y in zip(bf16_preds, test_tok["label"])) / n

        model_bf = chapter.classifier(encoder, make(tokenizer), seed=0)
        bf16 = train.fit(model_bf, tokenizer, None, None, replace(config, max_steps=args.bf16_steps),
                         schedule=Autocast(train_tok, 32))
        print(f"| {name} | {fp32.examples_per_s:.1f} | {n / t_before:.0f} | {n / t_after:.0f} | "
              f"{bf16.examples_per_s:.1f} | {n / t_bf16:.0f} | {agree:.3f} | {acc_after:.4f} → {acc_bf16_eval:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
