"""Every chapter's reference grid: what `make reference CHAPTER=...` runs and the chapter reads back.

Costs on the 2-core reference laptop (idle, MiniLM, one epoch of 10,201 snippets + scoring 1,276): a LoRA, adapter
or prefix run ≈ 2.3 min, head only ≈ 1 min, top layer ≈ 1.5 min, full fine-tuning ≈ 4 min. Each grid is sized to
finish within 45 minutes there (the measured figures are in docs/reference.md).

Learning rates are for ONE epoch of 319 steps (batch 32) with 6 % warm-up and linear decay: the chapters' live runs
take far fewer steps and use larger ones.
"""

from __future__ import annotations

from .grid import Config, Grid

QV = ["query", "value"]
HEAD_LR = 5e-3  # only 770 parameters: a large step
HEAD = Config("baseline", "head only", {"method": "head"}, {"lr": HEAD_LR})


def lora(experiment: str, name: str, targets, r: int, **extra) -> Config:
    return Config(experiment, name, {"method": "lora", "r": r, "alpha": 16, "targets": targets}, {"lr": 1e-3}, **extra)


GRIDS: dict[str, Grid] = {}


def _add(grid: Grid) -> None:
    GRIDS[grid.chapter] = grid


_add(Grid("00_adaptation", note="probe (mean / CLS pooling) vs the top layer vs full fine-tuning", configs=(
    Config("probe", "probe (mean pooling)", {"method": "probe", "pooling": "mean"}),
    Config("probe", "probe (CLS token)", {"method": "probe", "pooling": "cls"}),
    Config("fine-tuning", "top layer + head", {"method": "top"}, {"lr": 5e-4}),
    Config("fine-tuning", "full fine-tuning", {"method": "full"}, {"lr": 5e-5}),
)))

# Houlsby's recipe trains every LayerNorm with the adapters (§2.1); the sweep above does not. "layernorm" asks what
# they bring: the LayerNorms (and head) alone, and Houlsby m=32 with them, the recipe whole, on which the paper's
# ablations are repeated: removing a span of layers' adapters, and removing ONE layer's (§3.6, Fig. 6). Full
# fine-tuning is chapter 00's runs (same seeds and data), to pair "within 0.4 % of full fine-tuning at 3.6 % of the
# parameters" as the paper pairs it. Cost (estimate): 6 runs ≈ 20 job-min.
_add(Grid("01_adapters", note="Houlsby bottleneck sweep + layer ablation; Houlsby vs Pfeiffer vs parallel; LayerNorms",
          configs=(
    HEAD,
    *(Config("bottleneck", f"houlsby m={m}", {"method": "adapter", "kind": "houlsby", "bottleneck": m},
             {"lr": 1e-3}, after=("adapter_layer_ablation",) if m == 32 else ()) for m in (2, 32, 128)),
    Config("placement", "pfeiffer m=64", {"method": "adapter", "kind": "pfeiffer", "bottleneck": 64}, {"lr": 1e-3}),
    Config("placement", "parallel m=64", {"method": "adapter", "kind": "parallel", "bottleneck": 64}, {"lr": 1e-3}),
    Config("layernorm", "layernorms only", {"method": "layernorm"}, {"lr": HEAD_LR}),
    Config("layernorm", "houlsby m=32 + layernorms", {"method": "adapter", "kind": "houlsby", "bottleneck": 32,
                                                      "train_layernorm": True}, {"lr": 1e-3},
           after=("adapter_layer_ablation", "adapter_single_layer")),
), borrowed=(("00_adaptation", "full fine-tuning"),)))

_add(Grid("02_lora", note="rank sweep on Wq+Wv (Table 6); which matrices at an equal budget (Table 5)", configs=(
    HEAD,
    lora("rank", "qv r=1", QV, 1),
    lora("rank", "qv r=4", QV, 4),
    lora("rank", "qv r=16", QV, 16),
    lora("budget", "q r=8", ["query"], 8),
    lora("budget", "v r=8", ["value"], 8),
    lora("budget", "qkvo r=2", ["query", "key", "value", "attention.output.dense"], 2),
)))

# Li & Liang §7.1 (Fig. 3): with 50-500 training examples prefix tuning beats full fine-tuning. Here: 50, 100 and 500
# snippets, each seed its own random subset (the same subset for every method of that seed: paired), 100 optimizer
# steps of 10 whatever the size (so every run sees 1,000 snippets: 20, 10 and 2 epochs), each method at its own
# chapter's learning rate; head only as the floor; 3 seeds (3 subsets) each. Cost (estimate): 27 runs of ≈ 0.5-1 min
# ≈ 20 job-min.
LITTLE_DATA = tuple(
    Config("little data", f"{name}, {n} snippets", method, {"lr": lr, "batch_size": 10, "epochs": 1000 / n},
           seeds=seeds, train_rows=n)
    for n in (50, 100, 500)
    for name, method, lr, seeds in (("prefix n=10 MLP", {"method": "prefix", "length": 10, "projection_hidden": 128},
                                     1e-3, None),
                                    ("full fine-tuning", {"method": "full"}, 5e-5, None),
                                    ("head only", {"method": "head"}, HEAD_LR, None)))

_add(Grid("03_prefix", note="direct table vs MLP; prefix length; every layer vs the input only", configs=(
    HEAD,
    Config("reparameterisation", "prefix n=10 direct", {"method": "prefix", "length": 10}, {"lr": 1e-2}),
    Config("reparameterisation", "prefix n=10 MLP", {"method": "prefix", "length": 10, "projection_hidden": 128},
           {"lr": 1e-3}),
    Config("length", "prefix n=1 direct", {"method": "prefix", "length": 1}, {"lr": 1e-2}),
    Config("length", "prefix n=30 direct", {"method": "prefix", "length": 30}, {"lr": 1e-2}),
    Config("depth", "prompt n=10 (input only)", {"method": "prompt", "length": 10}, {"lr": 1e-2}),
    *LITTLE_DATA,
), borrowed=(("00_adaptation", "full fine-tuning"),)))   # the whole split's full fine-tuning: chapter 00's runs

LABEL_WORDS = ["terrible", "great"]  # rotten = 0, fresh = 1: chapter 04's class-label initialisation
_add(Grid("04_prompt", note="prompt initialisation and length; P-tuning (full fine-tuning: 00_adaptation)", configs=(
    HEAD,
    Config("init", "prompt n=20 random", {"method": "prompt", "length": 20, "init": "random"}, {"lr": 3e-2}),
    Config("init", "prompt n=20 labels", {"method": "prompt", "length": 20, "init": "labels",
                                          "label_words": LABEL_WORDS, "tokenizer": "<tokenizer>"}, {"lr": 3e-2}),
    Config("length", "prompt n=1 vocab", {"method": "prompt", "length": 1, "init": "vocab"}, {"lr": 3e-2}),
    Config("length", "prompt n=5 labels", {"method": "prompt", "length": 5, "init": "labels",
                                           "label_words": LABEL_WORDS, "tokenizer": "<tokenizer>"}, {"lr": 3e-2}),
    Config("ptuning", "P-tuning mlp n=20", {"method": "ptuning", "length": 20, "encoder": "mlp", "hidden": 128},
           {"lr": 3e-3}),
), borrowed=(("00_adaptation", "full fine-tuning"),)))   # the "scale" comparison: chapter 00's runs, same seeds

# Chapter 05. AdaLoRA and LoRA on ALL six matrix types of every layer (Wq, Wk, Wv, Wo, FFN in, FFN out: 36 matrices),
# at the SAME FINAL BUDGET counted as the paper counts it (§3.3): the total rank b(T), here 8 per matrix on average
# (36 × 8 = 288 triplets). AdaLoRA starts at 12 per matrix (the paper's 1.5 × the target) and ends with 288 triplets
# spread as their importance says; LoRA keeps r = 8 everywhere. Their parameter counts at the end differ only by where
# the ranks went (a triplet of an FFN matrix costs 384 + 1,536 + 1 numbers, one of an attention matrix 384 + 384 + 1):
# the chapter reports both counts, from the rank patterns stored by the "adalora_ranks" analysis.
# The schedule is written for the run's 319 steps (one epoch of 10,201 snippets, batch 32): 10 % warm-up at the full
# budget, the cubic reduction, the last quarter with the final pattern frozen; re-allocation every 10 steps.
# Learning rates: LoRA chapter 02's (1e-3); AdaLoRA a larger one, because each λ_i starts at 0 and moves about one lr
# per step (a LoRA B column moves in all its d_out coordinates at once), as each method's own tuned lr in the paper.
# Cost: an AdaLoRA run on 36 matrices takes about 2.5 × a LoRA run on Wq, Wv (the importance of every entry is
# updated every step), LoRA on all six about 1.9 ×: ≈ 5.4 + 4.2 min per seed, ≈ 29 min for the grid on 2 idle cores.
# The head-only baseline is chapter 02's runs (same config, seeds and data): borrowed, not run again.
ALL_SIX = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
ADALORA_LR = 5e-3
_add(Grid("05_adalora", note="AdaLoRA vs LoRA at an equal final budget (total rank 288) on all six matrix types",
          configs=(
    Config("budget", "adalora 12→8", {"method": "adalora", "init_r": 12, "target_r": 8, "alpha": 16,
                                      "targets": ALL_SIX, "total_steps": 319, "tinit": 32, "tfinal": 80,
                                      "delta_t": 10}, {"lr": ADALORA_LR}, after=("adalora_ranks",)),
    Config("budget", "lora r=8", {"method": "lora", "r": 8, "alpha": 16, "targets": ALL_SIX}, {"lr": 1e-3}),
), borrowed=(("02_lora", "head only"),)))

# Chapter 06. LoRA vs LoHa vs LoKr vs KronA at EQUAL trainable parameters on the same targets: W_q and W_v of every
# layer (12 matrices of 384 × 384), ≈ 12,288 numbers per matrix, as LoRA r = 16 spends them (r · (384 + 384)):
#   LoRA  r = 16                      16 · 768                       = 12,288   rank(ΔW) ≤ 16
#   LoHa  r = 8                       2 · 8 · 768                    = 12,288   rank(ΔW) ≤ 8² = 64
#   LoKr  decompose_factor 3, r = 48  w1 3×3 + w2 (128×48)(48×128)   = 12,297   rank(ΔW) ≤ 3 · 48 = 144
#   KronA A 3×4 ⊗ B 128×96            12 + 12,288                    = 12,300   rank(ΔW) ≤ 3 · 96 = 288
# (tests/test_reference.py counts them on MiniLM's shapes). LoRA r = 16 is chapter 02's configuration run again here
# with the "delta_spectra" analysis (chapter 02 stored no ΔW); the head-only baseline is chapter 02's runs (same
# config, seeds and data): borrowed, not run again. LoRA keeps chapter 02's lr; each other method gets its own, set from
# how fast its ΔW moves at initialisation under Adam (one factor starts at 0 and moves ≈ lr per entry per step):
# LoRA's ΔW entries move ≈ lr · 0.12 per step, LoHa's ≈ 10× slower (its ΔW is a product of two small matrices),
# LoKr's ≈ 4× slower, KronA's ≈ 2× faster. Not tuned further: the chapter says so next to its verdicts.
# The "delta_spectra" analysis stores, per run, the singular values of every learned ΔW (mean over the 12 matrices,
# each divided by its largest) and each matrix's numerical and effective rank: chapter 06's spectrum figure.
# Cost, measured: 36 min of wall time as 2 jobs of 1 thread on quiet cores (5.2–6.4 min per run, two at a time;
# docs/reference.md).
_add(Grid("06_kronecker", note="LoRA r=16 vs LoHa, LoKr and KronA at equal parameters on Wq, Wv (+ ΔW spectra)",
          configs=(
    Config("equal params", "lora r=16", {"method": "lora", "r": 16, "alpha": 16, "targets": QV}, {"lr": 1e-3},
           after=("delta_spectra",)),
    Config("equal params", "loha r=8", {"method": "loha", "r": 8, "alpha": 8, "targets": QV}, {"lr": 5e-3},
           after=("delta_spectra",)),
    Config("equal params", "lokr f=3 r=48", {"method": "lokr", "r": 48, "alpha": 48, "decompose_factor": 3,
                                             "targets": QV}, {"lr": 3e-3}, after=("delta_spectra",)),
    Config("equal params", "krona 3x4", {"method": "krona", "a_shape": [3, 4], "scale": 1.0, "targets": QV},
           {"lr": 1e-3}, after=("delta_spectra",)),
), borrowed=(("02_lora", "head only"),)))

# Chapter 07. The tiniest budgets: vectors instead of matrices. IA3 with the paper's recipe on BERT (T-Few §3.3: l_k,
# l_v and l_ff, the input of each FFN down-projection; NOT peft's default, which also scales the attention output's
# input), BitFit on every bias and on BitFit §4's subset (b_q and the FFN-in bias b_m2); LoRA r = 1, 4, 16 on Wq+Wv and
# the head-only baseline are chapter 02's runs (same configs, seeds and data): borrowed, not run again.
#   IA3 k, v, ff         6 · (384 + 384 + 1536)                     = 13,824
#   BitFit, all biases   6 · (4 · 384 + 1536 + 384 + 2 · 384) + 384 + 384 (pooler) = 26,112   (the pooler's 384 get
#                        no gradient: mean pooling never uses it; the chapter says so)
#   BitFit q + FFN-in    6 · (384 + 1536)                           = 11,520
#   LoRA r = 1 (Wq, Wv)  12 · 768                                   =  9,216
# Learning rates from a 120-step probe (3,840 training snippets, 600 test snippets, seed 0; head only 0.745): IA3 3e-3
# 0.762 vs 1e-2 0.777; BitFit 1e-3 0.752 vs 5e-3 0.792 (q + FFN-in at 5e-3: 0.778). Each vector entry starts at 1
# (IA3) or at its pretrained bias and moves ≈ lr per step under Adam: over 319 steps 1e-2 can move a scale by ~1.
# Not tuned further: the chapter says so next to its verdicts.
# "ia3_scales" stores, per adapted module, how far its learned vector moved from 1; "bias_shift" the mean |b − b0| of
# every trained bias (BitFit's Figure: which biases change most): chapter 07's heatmaps.
# Cost, measured: 65 min of wall time as 2 jobs of 1 thread next to other work (117 job-minutes); ≈ 27 idle
# (estimated from the 06 grid's quiet runs; docs/reference.md).
IA3_PAPER = {"method": "ia3", "targets": r".*\.(key|value)|.*layer\.\d+\.output\.dense",
             "feedforward": r".*layer\.\d+\.output\.dense"}
BITFIT_SUBSET = ["query", "intermediate.dense"]
_add(Grid("07_scaling", note="IA3 and BitFit (all biases; q + FFN-in) at the tiniest budgets, next to LoRA r=1",
          configs=(
    Config("tiny budgets", "ia3 k,v,ff", IA3_PAPER, {"lr": 1e-2}, after=("ia3_scales",)),
    Config("tiny budgets", "bitfit all", {"method": "bitfit"}, {"lr": 5e-3}, after=("bias_shift",)),
    Config("tiny budgets", "bitfit q+ffn-in", {"method": "bitfit", "targets": BITFIT_SUBSET}, {"lr": 5e-3},
           after=("bias_shift",)),
), borrowed=(("02_lora", "head only"), ("02_lora", "qv r=1"), ("02_lora", "qv r=4"), ("02_lora", "qv r=16"))))

# Chapter 08. He et al. 2022 ("Towards a Unified View of Parameter-Efficient Transfer Learning") on MiniLM: four of
# their findings, each a paired comparison. Borrowed (same settings, seeds and data): chapter 01's sequential
# ("pfeiffer m=64", after the FFN) and parallel ("parallel m=64", s = 1) adapters, chapter 03's "prefix n=10 MLP",
# chapter 02's head only. Run here:
#   where (their Fig. 5): LoRA on the attention (Wq, Wv, r = 20) vs on the FFN (in, out, r = 8) at an EQUAL budget:
#       attention 2 · 20 · (384 + 384) = 30,720 per layer;  FFN 2 · 8 · (384 + 1536) = 30,720 per layer
#   the scaling s (their §4.5, Table 5): the parallel adapter m = 64 with s = 4 vs chapter 01's s = 1
#   MAM (their §4.6): prefix n = 10 (MLP) on attention + the scaled parallel adapter on the FFN, vs each part alone
#       (their MAM uses l = 30 and a 512-wide adapter on much larger models; ours keeps the parts chapters 01 and 03
#       ran, so each part's own runs are the baselines)
# Learning rates: the parts' own (1e-3 for LoRA, adapters and the MLP prefix, as in chapters 01-03); MAM trains both
# parts with that one lr. Cost (estimate): 4 configurations × 3 seeds, ≈ 12 × 3 min on 2 idle cores ≈ 36 min.
FFN_IN_OUT = r".*layer\.\d+\.(intermediate|output)\.dense"   # not attention.output.dense
PREFIX_MLP = {"method": "prefix", "length": 10, "projection_hidden": 128}
SCALED_PA = {"method": "adapter", "kind": "parallel", "bottleneck": 64, "scaling": 4.0}
_add(Grid("08_unified", note="He et al.: attention vs FFN at equal budget; the scaling s; MAM vs its parts", configs=(
    lora("where", "lora attn r=20", QV, 20),
    lora("where", "lora ffn r=8", FFN_IN_OUT, 8),
    Config("scaling", "parallel m=64 s=4", SCALED_PA, {"lr": 1e-3}),
    Config("mam", "mam (prefix n=10 MLP + parallel s=4)", {"method": "combine", "parts": [PREFIX_MLP, SCALED_PA]},
           {"lr": 1e-3}),
), borrowed=(("02_lora", "head only"), ("01_adapters", "pfeiffer m=64"), ("01_adapters", "parallel m=64"),
             ("03_prefix", "prefix n=10 MLP"))))

# Chapter 09's tuning advice (the notes' "method tuning"; issue 18 §2) and chapter 12's "hyper-parameter
# sensitivity": each method's learning rate ten times smaller and ten times larger than the one its chapter uses
# (the "methods" runs above), everything else equal. One seed each (seed 0, paired with the default's seed 0): a
# factor of ten moves accuracy far more than the seed does (reference.seed_spread: median 0.006, largest 0.021), and
# the chapter judges every shift against that spread. Cost (estimate): 14 runs ≈ 35 job-min ≈ 18 min on 2 idle cores.
_LR_METHODS = (("full fine-tuning", {"method": "full"}, 5e-5),
               ("lora qv r=8", {"method": "lora", "r": 8, "alpha": 16, "targets": QV}, 1e-3),
               ("houlsby m=32", {"method": "adapter", "kind": "houlsby", "bottleneck": 32}, 1e-3),
               ("prefix n=10 MLP", PREFIX_MLP, 1e-3),
               ("prompt n=20 labels", {"method": "prompt", "length": 20, "init": "labels",
                                       "label_words": LABEL_WORDS, "tokenizer": "<tokenizer>"}, 3e-2),
               ("ia3 k,v,ff", IA3_PAPER, 1e-2),
               ("bitfit all", {"method": "bitfit"}, 5e-3))
LR_SWEEP = tuple(Config("learning rate", f"{name} lr x{factor:g}", method, {"lr": lr * factor}, seeds=(0,))
                 for name, method, lr in _LR_METHODS for factor in (0.1, 10))

# Chapter 09. Choosing a method: every family once, at the settings its own chapter uses, trained on Rotten Tomatoes
# and scored twice: in distribution (its test split) and out of distribution on VADER's amazon, nyt and tweets
# snippets (the "ood_vader" analysis: every snippet of each domain, 2,788-3,362 each; never VADER's movies, which come
# from Rotten Tomatoes' source). The claim tested: lightweight tuning transfers better out of distribution than full
# fine-tuning (Lester et al. 2021 §7 for prompt tuning, Li & Liang 2021 §6.4 for prefixes). The runs repeat the
# earlier chapters' configurations (same method, lr and seeds) because those runs stored no out-of-distribution
# predictions; their in-distribution accuracy must agree with the earlier chapters' within the seed spread.
# Cost (estimate): 8 configurations × 3 seeds, ≈ 2.3-4 min of training + 0.5 min of OOD scoring each: ≈ 75 job-min,
# ≈ 40 min on 2 idle cores.
_add(Grid("09_choosing", note="every family on Rotten Tomatoes, scored in and out of distribution (VADER domains)",
          configs=(
    Config("methods", "head only", {"method": "head"}, {"lr": HEAD_LR}, after=("ood_vader",)),
    Config("methods", "full fine-tuning", {"method": "full"}, {"lr": 5e-5}, after=("ood_vader",)),
    lora("methods", "lora qv r=8", QV, 8, after=("ood_vader",)),
    Config("methods", "houlsby m=32", {"method": "adapter", "kind": "houlsby", "bottleneck": 32}, {"lr": 1e-3},
           after=("ood_vader",)),
    Config("methods", "prefix n=10 MLP", PREFIX_MLP, {"lr": 1e-3}, after=("ood_vader",)),
    Config("methods", "prompt n=20 labels", {"method": "prompt", "length": 20, "init": "labels",
                                             "label_words": LABEL_WORDS, "tokenizer": "<tokenizer>"}, {"lr": 3e-2},
           after=("ood_vader",)),
    Config("methods", "ia3 k,v,ff", IA3_PAPER, {"lr": 1e-2}, after=("ood_vader",)),
    Config("methods", "bitfit all", {"method": "bitfit"}, {"lr": 5e-3}, after=("ood_vader",)),
    *LR_SWEEP,
)))

# Chapter 12. Forgetting: VADER's amazon -> nyt -> tweets as three tasks (each split 80/20 once, data.domain_splits;
# 2,230-2,689 training snippets per domain, 558-673 test snippets). Full fine-tuning of one classifier on the domains
# in turn, every domain scored after every stage (the forgetting curve); LoRA trained in turn on ONE adapter (does a
# small update forget too?); one LoRA per domain on the frozen base (nothing to forget: measured); and multi-task
# training on all three at once, the upper bound that needs every task's data at the same time. Learning rates are
# the earlier chapters' (full fine-tuning 5e-5, as chapter 00; LoRA 1e-3, as chapter 02); one epoch per domain.
# Cost (estimate): a full fine-tuning stage ≈ 1 min of training on 2 idle cores, a LoRA stage ≈ 0.6 min, plus
# scoring the three test splits after every stage: ≈ 12 job-min per seed, ≈ 20 min for the grid with two jobs.
# AdapterFusion (Pfeiffer et al. 2021, §3; fusion_jobs.py): each domain in turn is the target, with little data (256
# snippets of its training split, drawn per seed, 4 passes = 32 steps: the paper finds fusion helps most on small
# targets), the other two domains' Pfeiffer adapters (m = 64, chapter 01's; trained on their whole splits at 1e-3)
# fused. Against a new adapter, a head alone, and the better source adapter with a new head, all on the same 256
# snippets; the target lr (5e-3 for the fusion and the adapter, 1e-2 for heads) is raised for 32 steps, not tuned.
DOMAINS = ["amazon", "nyt", "tweets"]
LORA_QV8 = {"method": "lora", "r": 8, "alpha": 16, "targets": QV}
PFEIFFER_64 = {"method": "adapter", "kind": "pfeiffer", "bottleneck": 64}   # chapter 01's Pfeiffer adapter
_add(Grid("12_forgetting", note="full fine-tuning vs LoRA across VADER domains in turn; per-domain LoRA; multi-task; "
                                "AdapterFusion, each domain held out in turn",
          data="vader amazon -> nyt -> tweets: 80/20 stratified split per domain (seed 0), neutral band 0.5",
          configs=(
    Config("sequence", "full, in turn", {"method": "sequence", "order": DOMAINS, "inner": {"method": "full"}},
           {"lr": 5e-5}),
    Config("sequence", "lora, in turn", {"method": "sequence", "order": DOMAINS, "inner": LORA_QV8}, {"lr": 1e-3}),
    Config("sequence", "lora per domain", {"method": "per_task", "order": DOMAINS, "inner": LORA_QV8}, {"lr": 1e-3}),
    Config("sequence", "full, multi-task", {"method": "multitask", "order": DOMAINS, "inner": {"method": "full"}},
           {"lr": 5e-5}),
    Config("fusion", "adapterfusion, leave one out", {"method": "fusion", "order": DOMAINS, "inner": PFEIFFER_64,
                                                      "target_rows": 256, "target_epochs": 4, "target_lr": 5e-3,
                                                      "head_lr": 1e-2}, {"lr": 1e-3}),
)))

# Chapter 10. Few-shot on the SmolLM2-135M decoder (reference/fewshot_jobs.py): the same k = 16 Rotten Tomatoes
# examples (draw = the job's seed, 8 per label) shown as demonstrations (in-context learning, nothing trained) or used
# to train IA3 / LoRA with T-Few's losses (prompt-based fine-tuning, PET / LM-BFF), all scored on the same 100 test
# snippets (fewshot_jobs.FEWSHOT_TEST: one standard error ≤ 0.05). In-context learning with k = 0 (zero-shot, one
# run: nothing is drawn), 4 and 16; T-Few's ablation: IA3 on L_LM alone vs L_LM + L_UL + L_LN.
# Training: 5 full-batch Adam steps on the 16 examples (measured: IA3 at lr 3e-2 drives the training L_LN from 0.48
# to 0.004 in 5 steps; T-Few takes 1,000 steps of 8 at lr 3e-3 on an 11 B model). LoRA r = 4 on q, v at lr 1e-2
# (B starts at 0; 5 steps must move it). Not tuned: the chapter says so next to its verdicts.
# Cost, measured: 29.8 min of wall time for the 18 jobs (three sittings), one at a time with 2 threads, on a 2-core CPU
# shared with other work (load 3-10): a training job 1.4-5 min (5 steps on 16 examples + scoring), an ICL job
# 0.5-1.2 min (the demonstrations run once, as a KV cache). Less on idle cores.
FEWSHOT_LOSSES = ["lm", "ul", "ln"]
_fewshot_train = dict(method="fewshot_train", k=16, steps=5)
_lora_r4 = {"method": "lora", "r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}
FEWSHOT_DEMO_SETS = 2
_add(Grid("10_fewshot", note="SmolLM2: in-context learning (k = 0, 4, 16) vs IA3 / LoRA trained on the same 16",
          data="rotten_tomatoes: k examples drawn from the train split (draw = seed) -> 100 test snippets (seed 0)",
          seeds=(0, 1, 2), configs=(
    Config("peft", "ia3 (lm+ul+ln)", dict(_fewshot_train, peft={"method": "ia3"}, losses=FEWSHOT_LOSSES),
           {"lr": 3e-2}),
    Config("icl", "icl k=0", {"method": "icl", "k": 0}),       # nothing is drawn: its 3 runs must agree exactly
    Config("icl", "icl k=16", {"method": "icl", "k": 16}),
    Config("icl", "icl k=4", {"method": "icl", "k": 4}),
    Config("losses", "ia3 (lm only)", dict(_fewshot_train, peft={"method": "ia3"}, losses=["lm"]), {"lr": 3e-2}),
    Config("peft", "lora r=4 (lm+ul+ln)", dict(_fewshot_train, peft=_lora_r4, losses=FEWSHOT_LOSSES), {"lr": 1e-2}),
    # LM-BFF §6: the same two recipes with demonstrations in the fine-tuning prompts AND at test (demo_sets: the drawn
    # sets averaged per test snippet; LM-BFF averages 16). Same draws, steps and rates: paired per draw with the above.
    Config("demonstrations", "ia3 (lm+ul+ln) + demos", dict(_fewshot_train, peft={"method": "ia3"},
                                                             losses=FEWSHOT_LOSSES, demo_sets=FEWSHOT_DEMO_SETS),
           {"lr": 3e-2}),
    Config("demonstrations", "lora r=4 (lm+ul+ln) + demos", dict(_fewshot_train, peft=_lora_r4, losses=FEWSHOT_LOSSES,
                                                                  demo_sets=FEWSHOT_DEMO_SETS), {"lr": 1e-2}),
)))

# Chapter 11. Does an adapter steer what SmolLM2 writes? One job = one user (reference/serving_jobs.py): the chapter's
# section 2 / 3 adapter at its default settings (LoRA r = 8 on q_proj, v_proj, lr 3e-3; steered: 16 steps of 8 of the
# first 96 positive or negative training snippets; DPO: 8 steps of 4 of the last 96 pairs, β = 0.1), the job's seed
# setting the LoRA's initialisation, the batch order and the sampling; then SERVE_ROWS answers to the chapter's prompt
# (24 new tokens, top-p 0.9), each labelled by ONE judge (MiniLM + LoRA, the chapter's, always seed 0). "base" trains
# nothing: its seeds are three samplings. The live chapter judges 16 generations per user from one run; these runs
# give each user 3 seeds × SERVE_ROWS, and the seed-to-seed spread of an adapter's share.
SERVE_ROWS = 96
SERVE = dict(method="serve", prompt="Write a one-sentence movie review.\nReview:", rows=SERVE_ROWS, new_tokens=24,
             lora={"method": "lora", "r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}, lr=3e-3,
             responses=96, steps=16, batch_size=8, dpo_steps=8, dpo_batch=4, beta=0.1,
             judge=dict(train=1024, eval=400, lr=3e-3, batch_size=32))
_add(Grid("11_serving", note="SmolLM2: base vs steered (fresh, rotten) vs DPO LoRA, generations judged by one MiniLM",
          data="rotten_tomatoes train split -> adapters; SERVE_ROWS sampled generations per run, judged (seed-0 judge)",
          configs=tuple(Config("steering", name, dict(SERVE, user=user)) for name, user in (
              ("base model", "base"), ("fresh (LoRA)", "fresh"), ("rotten (LoRA)", "rotten"),
              ("dpo (LoRA)", "dpo")))))

# Chapter 11, FLAN's question at 135 M parameters (reference/instruct_jobs.py, lab/instruct.py): SmolLM2-Instruct's
# zero-shot accuracy on a HELD-OUT instruction (Rotten Tomatoes sentiment, 200 balanced test snippets, rank
# classification) as it is, after a LoRA is instruction-tuned on three other tasks (which source, is it the Bible, is
# it a question: 96 training rows each, no sentiment), and after the control: the same rows with the instructions
# removed. LoRA r = 8 on q_proj, v_proj at the chapter's lr 3e-3, 32 steps of 8 (256 of the 288 rows), the loss on
# the answer only. "as it is" trains nothing and samples nothing: ONE run (seed 0), which the chapter pairs with each
# seed of the tuned runs (repeated: the same predictions whatever the seed).
# Cost, measured on a 2-core CPU shared with two other helpers' work (load 4-5): see docs/reference.md.
INSTRUCT = dict(method="instruct", tasks=["source", "bible", "question"], train_per_task=96, heldout=200,
                lora={"method": "lora", "r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}, lr=3e-3, steps=32,
                batch_size=8)
_add(Grid("11_instruct", notebook="11_serving",
          note="SmolLM2: zero-shot sentiment before / after instruction tuning on other tasks; no-instruction control",
          data="instruct.TUNING tasks (VADER amazon/nyt/tweets, KJV; <= 30 words) -> held-out sentiment on 200 RT "
               "test snippets",
          configs=(Config("instruction tuning", "as it is", dict(INSTRUCT, tuning="none"), seeds=(0,)),
                   *(Config("instruction tuning", name, dict(INSTRUCT, tuning=tuning)) for name, tuning in (
                       ("instruction-tuned", "instructions"), ("same rows, no instructions", "no instructions"))))))
