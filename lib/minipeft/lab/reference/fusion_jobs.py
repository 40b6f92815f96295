"""Chapter 12's AdapterFusion job (methods/fusion.py): {"method": "fusion", "order": [domains], "inner": an adapter
config dict, "target_rows", "target_epochs", "target_lr", "head_lr"}. Leave one domain out, for every domain in turn:

    1. knowledge extraction: one adapter per domain, trained on its WHOLE training split (the job's settings);
    2. for each target domain t: a small training set, ``target_rows`` snippets of t's training split (drawn with the
       job's seed), ``target_epochs`` passes; the adapters of the OTHER domains frozen, a fusion layer per layer and a
       new head trained on it (``target_lr``), scored on t's whole test split; the attention weights per layer,
       averaged over t's test tokens, are stored. (Pfeiffer et al. find fusion helps most where the target has little
       data, as their CB and RTE with a few hundred / thousand examples: the target here has a few hundred.)

Beside it, on the same seed, draw and order, the baselines of the paper's Table 1, trained on the same small set:

    "adapter"                 a single new adapter trained on t (``target_lr``): what fusion must beat
    "head only"               a new head on the frozen base (``head_lr``)
    "best source + head"      each source's adapter frozen with a new head (``head_lr``); of the sources, the one whose
                              head reached the lower training loss (chosen on t's TRAINING rows, never its test)
    "adapter, all target data"  stage 1's adapter for t, trained on t's whole training split: what more data gives

"accuracy" / "predictions" / "stages" are the fusion's, on the domains' test splits concatenated in ``order`` (the
grid's one test set: Reference.stage_correct pairs it with any domain job); "systems" holds each baseline's
predictions per domain the same way (Reference.system_correct reads them).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from ...methods.fusion import FusionConfig, fusion_weights
from .. import chapter, data
from ..train import TrainConfig, accuracy, eval_batches, fit
from .grid import Job
from .jobs import build_method, encode

SYSTEMS = ("adapter", "head only", "best source + head", "adapter, all target data")


def _tail(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // 10):]
    return sum(tail) / len(tail)


def _with_new_head(source: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of a trained source classifier with its adapter frozen and a fresh head (the seed's init)."""
    model = copy.deepcopy(source)
    torch.manual_seed(seed)
    model.head.reset_parameters()
    return chapter.train_head_only(model)


def run_fusion(job: Job, encoder, tokenizer, train_sets: dict, tests: dict, settings: dict, progress: bool):
    """(metrics, labels) of one seed of the leave-one-out fusion job (see the module docstring)."""
    spec = job.config.method
    order, adapter_config = list(spec["order"]), build_method(spec["inner"], tokenizer)
    config = TrainConfig(**settings, seed=job.seed, progress=progress, desc=f"{job.chapter} {job.id}")
    target_config = replace(config, lr=spec["target_lr"], epochs=spec["target_epochs"])
    head_config = replace(target_config, lr=spec["head_lr"])
    seconds, preds, adapters = 0.0, {name: {} for name in ("fusion", *SYSTEMS)}, {}
    for d in order:                                   # stage 1: one adapter per domain, on its whole training split
        adapters[d], result = chapter.run(encoder, tokenizer, train_sets[d], tests[d], adapter_config,
                                          replace(config, desc=f"adapter {d}"))
        preds["adapter, all target data"][d], seconds = result.predictions, seconds + result.train_time
    attention, source_heads, chosen, trainable = {}, {}, {}, None
    for t in order:                                   # stage 2: t with little data, the others' adapters fused
        small, sources = data.subsample(train_sets[t], spec["target_rows"], seed=job.seed), [d for d in order if d != t]
        runs = {"fusion": (FusionConfig.from_models({s: adapters[s] for s in sources}), target_config),
                "adapter": (adapter_config, target_config), "head only": ("head", head_config)}
        for name, (method, run_config) in runs.items():
            model, result = chapter.run(encoder, tokenizer, small, tests[t], method,
                                        replace(run_config, desc=f"{name} -> {t}"))
            preds[name][t], seconds = result.predictions, seconds + result.train_time
            if name == "fusion":
                trainable = result.trainable
                batches = eval_batches(tests[t], tokenizer, config.eval_batch_size, config.max_length)
                weights = fusion_weights(model, (batch for _, batch in batches))
                attention[t] = dict(sources=sources, layers=[[round(w, 4) for w in weights[i]] for i in sorted(weights)])
        source_heads[t] = {}
        for s in sources:
            r = fit(_with_new_head(adapters[s], job.seed), tokenizer, small, tests[t],
                    replace(head_config, desc=f"{s} adapter + head -> {t}"))
            source_heads[t][s] = dict(accuracy=r.accuracy, train_loss=round(_tail(r.losses), 4),
                                      predictions=r.predictions)
            seconds += r.train_time
        chosen[t] = min(sources, key=lambda s: source_heads[t][s]["train_loss"])
        preds["best source + head"][t] = source_heads[t][chosen[t]]["predictions"]
    labels = [y for d in order for y in tests[d]["label"]]
    final = [p for d in order for p in preds["fusion"][d]]

    def per_domain(name):
        return {d: dict(accuracy=accuracy(preds[name][d], tests[d]["label"]), predictions=encode(preds[name][d]))
                for d in order}
    metrics = dict(accuracy=accuracy(final, labels), predictions=encode(final), train_seconds=seconds, order=order,
                   stages=[per_domain("fusion")], systems={name: per_domain(name) for name in SYSTEMS},
                   attention=attention, chosen_source=chosen, fusion_trainable=trainable,
                   source_heads={t: {s: dict(accuracy=v["accuracy"], train_loss=v["train_loss"])
                                     for s, v in heads.items()} for t, heads in source_heads.items()})
    return metrics, labels
