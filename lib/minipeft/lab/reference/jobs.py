"""Run one reference job: the same library code as a chapter's live cells (minipeft.lab.chapter + fit), at full
scale, returning the record that goes into results/<chapter>.jsonl.

    record = run_job(GRIDS["02_lora"].job("qv r=4/seed=0"))
    record["metrics"]["accuracy"], record["metrics"]["predictions"]     # "0110..." one digit per test snippet

``limit`` cuts the training and test splits to their first rows (tests of determinism, smoke runs); such a record is
marked ``"limit": n`` and never counts as a reference result.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from ...core.config import PeftConfig
from .. import chapter, data
from ..backbones import load_encoder
from ..train import TrainConfig, accuracy, embed, fit_probe, predict
from .fewshot_jobs import FEWSHOT_JOBS, fewshot_test, run_fewshot
from .grid import BASELINES, Job
from .instruct_jobs import INSTRUCT_JOBS, heldout, run_instruct, task_labels
from .serving_jobs import SERVING_JOBS, run_serving

# SmolLM2's jobs, each kind in its own file: method name -> run(job, limit, progress) -> (metrics, test labels)
DECODER_JOBS = {**dict.fromkeys(FEWSHOT_JOBS, run_fewshot),           # chapter 10: few-shot (fewshot_jobs.py)
                **dict.fromkeys(INSTRUCT_JOBS, run_instruct),         # chapter 11: instruction tuning (instruct_jobs.py)
                **dict.fromkeys(SERVING_JOBS, run_serving)}           # chapter 11: generations (serving_jobs.py)

TOKENIZER = "<tokenizer>"  # in a method dict: replaced by the encoder's tokenizer (prompt init="labels" needs it)


# --------------------------------------------------------------------------------------------- the world, once per process
@functools.lru_cache(maxsize=1)
def encoder_and_tokenizer():
    return load_encoder()


@functools.lru_cache(maxsize=1)
def rotten_tomatoes():
    return data.rotten_tomatoes()


@functools.lru_cache(maxsize=4)
def splits(max_length: int):
    """(train, test) of Rotten Tomatoes, tokenised once per process."""
    _, tokenizer = encoder_and_tokenizer()
    rt = rotten_tomatoes()
    return data.tokenize(rt["train"], tokenizer, max_length), data.tokenize(rt["test"], tokenizer, max_length)


@functools.lru_cache(maxsize=4)
def domain_splits(max_length: int) -> dict:
    """{domain: (train, test)} of VADER's amazon, nyt and tweets (data.domain_splits), tokenised once per process."""
    _, tokenizer = encoder_and_tokenizer()
    return {d: (data.tokenize(s["train"], tokenizer, max_length), data.tokenize(s["test"], tokenizer, max_length))
            for d, s in data.domain_splits().items()}


def grid_labels(grid) -> tuple[int, ...]:
    """The test labels a grid's runs are scored on, in their predictions' order: Rotten Tomatoes' test split, or for
    a grid of domain jobs (chapter 12) the domains' test splits concatenated in the configs' common order."""
    if {c.method["method"] in FEWSHOT_JOBS for c in grid.configs} == {True}:   # chapter 10: the decoder's subset
        return tuple(fewshot_test()[1])
    if any(c.method["method"] in INSTRUCT_JOBS for c in grid.configs):   # chapter 11: a balanced held-out subset
        return tuple(heldout(_shared_setting(grid, INSTRUCT_JOBS, "heldout"))[1])
    if any(c.method["method"] in SERVING_JOBS for c in grid.configs):    # chapter 11: one "label" 1 per generation,
        return (1,) * _shared_setting(grid, SERVING_JOBS, "rows")          # so a run's accuracy is its positive share
    domain_jobs = {c.method["method"] in DOMAIN_JOBS for c in grid.configs}
    if domain_jobs == {False}:
        return test_labels()
    orders = {tuple(c.method["order"]) for c in grid.configs if c.method["method"] in DOMAIN_JOBS}
    if domain_jobs != {True} or len(orders) != 1:
        raise ValueError(f"grid {grid.chapter}: its runs are scored on different test sets (domain orders {orders}, "
                         "or domain jobs next to Rotten Tomatoes jobs): one grid, one test set.")
    parts = data.domain_splits()
    return tuple(y for d in orders.pop() for y in parts[d]["test"]["label"])


def test_labels() -> tuple[int, ...]:
    return tuple(rotten_tomatoes()["test"]["label"])


def labels_fingerprint(labels) -> str:
    return hashlib.sha1("".join(map(str, labels)).encode()).hexdigest()[:12]


def build_method(method: dict, tokenizer):
    """A baseline name ("head", "full", "top"), the minipeft config the dict describes, or, for
    ``{"method": "combine", "parts": [dict, dict]}``, the list of configs injected one after the other (MAM)."""
    name = method["method"]
    if name in BASELINES:
        return name
    if name == "combine":
        return [build_method(part, tokenizer) for part in method["parts"]]
    fields = {k: (tokenizer if v == TOKENIZER else v) for k, v in method.items()}
    return PeftConfig.from_dict(fields)


# --------------------------------------------------------------------------------------------- analyses after training
def _shared_setting(grid, kinds: tuple[str, ...], key: str):
    """The one value of ``method[key]`` that every config of a grid of ``kinds`` jobs shares (it sizes the test
    set): one grid, one test set, so no other kind of job and no second value."""
    values = {c.method[key] for c in grid.configs if c.method["method"] in kinds}
    if len(values) != 1 or any(c.method["method"] not in kinds for c in grid.configs):
        raise ValueError(f"grid {grid.chapter}: {'/'.join(kinds)} jobs need one {key!r} ({values}) and no other kind "
                         "of job next to them: one grid, one test set.")
    return values.pop()


def adapter_layer_ablation(model, tokenizer, test, settings) -> dict:
    """Houlsby §3.6: remove the adapters of the k lowest / k highest layers (no retraining), for every k."""
    from ...methods.adapters import set_adapter_layers

    n_layers = model.encoder.config.num_hidden_layers
    out = {}
    for k in range(1, n_layers + 1):
        for side, active in (("lowest", range(k, n_layers)), ("highest", range(0, n_layers - k))):
            set_adapter_layers(model, frozenset(active))
            preds = predict(model, tokenizer, test, settings["eval_batch_size"], settings["max_length"])
            out[f"{side} {k} removed"] = encode(preds)
    set_adapter_layers(model, None)
    return out


def adapter_single_layer(model, tokenizer, test, settings) -> dict:
    """Houlsby §3.6, Fig. 6 (left): remove ONE layer's adapters (no retraining), for each layer in turn."""
    from ...methods.adapters import set_adapter_layers

    n_layers = model.encoder.config.num_hidden_layers
    out = {}
    for i in range(n_layers):
        set_adapter_layers(model, frozenset(range(n_layers)) - {i})
        out[f"layer {i} removed"] = encode(predict(model, tokenizer, test, settings["eval_batch_size"],
                                                   settings["max_length"]))
    set_adapter_layers(model, None)
    return out


def module_key(name: str) -> str:
    """'encoder.encoder.layer.0.attention.self.query' (classifier -> BertModel -> BertEncoder) ->
    'layer.0.attention.self.query': the name an analysis stores a matrix under."""
    return name.split("encoder.encoder.", 1)[-1]


def adalora_ranks(model, tokenizer, test, settings) -> dict:
    """AdaLoRA §4.4: the final rank of every adapted matrix, {"layer.0.attention.self.query": 7, ...} (the triplets
    the last allocation kept): where the budget went, for chapter 05's heatmap."""
    from ...methods.adalora import rank_pattern

    return {module_key(name): sum(keep) for name, keep in rank_pattern(model).items()}


def delta_spectra(model, tokenizer, test, settings) -> dict:
    """The spectrum of every learned ΔW (any method with ``delta_weight``): full-rank vs low-rank, for chapter 06.

    Stored compactly: ``sv`` the singular values σ_i / σ_1 averaged over the matrices (4 significant digits), and per
    matrix ``rank`` (numerical rank at float32's tolerance, torch's default) and ``erank`` (effective rank exp(entropy of σ / Σσ),
    Roy & Vetterli 2007: how many directions carry the update)."""
    from ...core.layers import LinearDeltaLayer
    from ...lowrank import effective_rank

    svs, ranks, eranks = [], {}, {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, LinearDeltaLayer):
                continue
            delta = module.delta_weight()                                    # (d_out, d_in), float32
            s = torch.linalg.svdvals(delta.double())
            key = module_key(name)
            ranks[key] = int(torch.linalg.matrix_rank(delta))                # float32's tolerance: its rounding is noise
            eranks[key] = round(effective_rank(delta), 2)
            svs.append(s / s[0] if s[0] > 0 else s)
    mean = torch.stack(svs).mean(0) if svs else torch.zeros(0)
    return dict(sv=[float(f"{v:.4g}") for v in mean.tolist()], rank=ranks, erank=eranks)


def ia3_scales(model, tokenizer, test, settings) -> dict:
    """IA3: how far each learned vector moved from 1 (its start), per adapted module, for chapter 07's heatmap:
    {"layer.0.attention.self.key": {"shift": mean |l - 1|, "mean": mean l, "min": ..., "max": ...}, ...}."""
    from ...methods.ia3 import IA3Linear

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, IA3Linear):
            l = module.ia3_l.detach().double()
            out[module_key(name)] = {k: float(f"{v:.4g}") for k, v in dict(
                shift=(l - 1).abs().mean().item(), mean=l.mean().item(), min=l.min().item(), max=l.max().item()).items()}
    return out


def bias_shift(model, tokenizer, test, settings) -> dict:
    """BitFit: mean |b - b0| of every trained bias (BitFit's measure of which biases change most), e.g.
    {"layer.0.attention.self.query.bias": 0.0123, "embeddings.LayerNorm.bias": ...}; b0 from the untouched encoder."""
    encoder, _ = encoder_and_tokenizer()
    before = dict(encoder.named_parameters())
    out = {}
    for name, p in model.named_parameters():
        base = name.removeprefix("encoder.")                            # the encoder's own name for it
        if p.requires_grad and name.endswith("bias") and base in before:
            out[base.removeprefix("encoder.")] = float(f"{(p.detach() - before[base]).abs().mean().item():.4g}")
    return out


# VADER's domains other than movies: its movie snippets come from the same source as Rotten Tomatoes (never a test set
# for a model trained on it). Product reviews, newspaper editorials, tweets: three steps away from movie reviews.
OOD_DOMAINS = ("amazon", "nyt", "tweets")


@functools.lru_cache(maxsize=4)
def vader_tests(max_length: int) -> dict:
    """{domain: VADER's snippets of that domain (neutral band 0.5), tokenised}, once per process."""
    _, tokenizer = encoder_and_tokenizer()
    vader = data.vader_domains(domains=OOD_DOMAINS)
    return {d: data.tokenize(vader[d], tokenizer, max_length) for d in OOD_DOMAINS}


def ood_vader(model, tokenizer, test, settings) -> dict:
    """Chapter 09: the model trained on Rotten Tomatoes, scored out of distribution on every snippet of VADER's
    amazon, nyt and tweets domains: {domain: {"accuracy", "predictions" (one digit each), "labels" (fingerprint)}}.
    Paired tests between methods need the predictions; the fingerprint says both runs saw the same snippets."""
    out = {}
    for domain, ds in vader_tests(settings["max_length"]).items():
        if settings.get("limit"):
            ds = ds.select(range(min(settings["limit"], len(ds))))
        preds = predict(model, tokenizer, ds, settings["eval_batch_size"], settings["max_length"])
        out[domain] = dict(accuracy=accuracy(preds, ds["label"]), predictions=encode(preds),
                           labels=labels_fingerprint(ds["label"]))
    return out


def ood_labels(domain: str) -> list[int]:
    """The labels ood_vader scored ``domain`` against (Reference.labels_for reads them back, fingerprint checked)."""
    if domain not in OOD_DOMAINS:
        raise KeyError(f"ood_vader scores {list(OOD_DOMAINS)}, not {domain!r}.")
    return list(data.vader_domains(domains=(domain,))[domain]["label"])


# analyses that score another test set than Rotten Tomatoes': how to load that set's labels, per key
ANALYSIS_LABELS = {"ood_vader": ood_labels, "tasks": task_labels}   # "tasks": chapter 11's instruction tasks

ANALYSES = {"adapter_layer_ablation": adapter_layer_ablation, "adapter_single_layer": adapter_single_layer,
            "adalora_ranks": adalora_ranks,
            "delta_spectra": delta_spectra, "ia3_scales": ia3_scales, "bias_shift": bias_shift,
            "ood_vader": ood_vader}


# --------------------------------------------------------------------------------------------- one job
def encode(predictions) -> str:
    """Predictions as one digit per example ("0110..."): 1,276 characters per run, readable and diffable."""
    if any(not 0 <= p <= 9 for p in predictions):
        raise ValueError("predictions are stored one digit per example: labels must be 0..9.")
    return "".join(map(str, predictions))


def decode(text: str) -> list[int]:
    return [int(c) for c in text]


def run_job(job: Job, limit: int | None = None, progress: bool = True) -> dict:
    start = time.perf_counter()
    decoder_job = DECODER_JOBS.get(job.config.method["method"])
    if decoder_job is not None:                                      # chapters 10 and 11: SmolLM2 (*_jobs.py)
        metrics, labels = decoder_job(job, limit, progress)
        return _record(job, metrics, start, labels, limit)
    encoder, tokenizer = encoder_and_tokenizer()
    settings = job.config.settings()
    if job.config.method["method"] in DOMAIN_JOBS:
        metrics, test_labels_ = _domains(job, encoder, tokenizer, settings, limit, progress)
        return _record(job, metrics, start, test_labels_, limit)
    train, test = splits(settings["max_length"])
    if job.config.train_rows is not None:          # a small-data run: its own random subset of the training split
        train = data.subsample(train, job.config.train_rows, seed=job.seed)
    if limit is not None:
        train, test = train.select(range(min(limit, len(train)))), test.select(range(min(limit, len(test))))
    method = build_method(job.config.method, tokenizer)
    if method == "probe":
        rt = rotten_tomatoes()
        metrics = _probe(job, encoder, tokenizer, rt["train"]["text"][:len(train)], train["label"],
                         rt["test"]["text"][:len(test)], test["label"], settings, progress)
    else:
        # the same call as a chapter's live cells: the method fitted to the run's length, with the hooks it needs
        model, result = chapter.run(encoder, tokenizer, train, test, method, TrainConfig(
            **settings, seed=job.seed, progress=progress, desc=f"{job.chapter} {job.id}"))
        tail = result.losses[-max(1, len(result.losses) // 10):]
        metrics = dict(accuracy=result.accuracy, predictions=encode(result.predictions), steps=result.steps,
                       examples=result.examples, trainable=result.trainable, total=result.total,
                       final_loss=sum(tail) / len(tail), loss_curve=_curve(result.losses),
                       examples_per_s=result.examples_per_s, train_seconds=result.train_time)
        for analysis in job.config.after:  # (a smoke run's limit cuts an analysis's own data too)
            metrics[analysis] = ANALYSES[analysis](model, tokenizer, test, dict(settings, limit=limit))
    return _record(job, metrics, start, test["label"], limit)


def _record(job: Job, metrics: dict, start: float, labels, limit: int | None) -> dict:
    record = dict(chapter=job.chapter, experiment=job.config.experiment, name=job.config.name,
                  config=job.config.as_dict(), seed=job.seed, job=job.id, key=job.key,
                  metrics=metrics, seconds=round(time.perf_counter() - start, 1),
                  test=dict(examples=len(labels), labels=labels_fingerprint(labels)),
                  commit=commit(), hardware=hardware(), versions=versions(),
                  finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if limit is not None:
        record["limit"] = limit
    return record


# --------------------------------------------------------------------------------------------- tasks in turn
# Chapter 12: VADER's domains as tasks, {"method": "sequence" | "per_task" | "multitask", "order": [domains],
# "inner": a method dict}. "sequence": ONE classifier trained on each domain in turn (fit_sequence: every domain
# scored after every stage: the forgetting curve); "per_task": one classifier per domain, same order (fit_per_task);
# "multitask": one classifier on all domains' training rows at once. Each domain is trained for the config's epochs.
# "accuracy" and "predictions" are the FINAL model's on the domains' test splits concatenated in `order` (so
# Reference.compare pairs any two such runs); "stages" holds every stage's accuracy and predictions per domain.
# "fusion": AdapterFusion, each domain the target in turn with the others' adapters fused (fusion_jobs.py).
DOMAIN_JOBS = ("sequence", "per_task", "multitask", "fusion")


def _domains(job: Job, encoder, tokenizer, settings: dict, limit: int | None, progress: bool):
    from datasets import concatenate_datasets

    from ..train import fit_per_task, fit_sequence

    spec = job.config.method
    order = list(spec["order"])
    parts = domain_splits(settings["max_length"])
    cut = (lambda ds: ds.select(range(min(limit, len(ds))))) if limit else (lambda ds: ds)
    train_sets, tests = {d: cut(parts[d][0]) for d in order}, {d: cut(parts[d][1]) for d in order}
    if spec["method"] == "fusion":
        from .fusion_jobs import run_fusion
        return run_fusion(job, encoder, tokenizer, train_sets, tests, settings, progress)
    config = TrainConfig(**settings, seed=job.seed, progress=progress, desc=f"{job.chapter} {job.id}")
    inner = build_method(spec["inner"], tokenizer)
    if spec["method"] == "multitask":
        together = concatenate_datasets(list(train_sets.values())).shuffle(seed=job.seed)
        model, result = chapter.run(encoder, tokenizer, together, None, inner, config)
        final = {d: predict(model, tokenizer, t, config.eval_batch_size, config.max_length) for d, t in tests.items()}
        stages = [{d: accuracy(p, tests[d]["label"]) for d, p in final.items()}]
        stage_preds, seconds, losses = [final], result.train_time, result.losses
    else:
        if spec["method"] == "sequence":
            result = fit_sequence(chapter.classifier(encoder, inner, seed=job.seed), tokenizer, train_sets, tests,
                                  config)
        else:
            result = fit_per_task({d: chapter.classifier(encoder, inner, seed=job.seed) for d in order}, tokenizer,
                                  train_sets, tests, config)
        stages, stage_preds, seconds = result.accuracy, result.predictions, result.train_time
        losses = [x for stage in result.losses for x in stage]
    labels = [y for d in order for y in tests[d]["label"]]
    final = [p for d in order for p in stage_preds[-1][d]]
    metrics = dict(accuracy=accuracy(final, labels), predictions=encode(final), train_seconds=seconds,
                   stages=[{d: dict(accuracy=acc[d], predictions=encode(preds[d])) for d in order}
                           for acc, preds in zip(stages, stage_preds)],
                   loss_curve=_curve(losses), order=order)
    return metrics, labels


def _probe(job, encoder, tokenizer, train_text, train_labels, test_text, test_labels_, settings, progress) -> dict:
    """A logistic-regression probe on frozen features (chapter 00): features once, then fit_probe."""
    pooling = job.config.method.get("pooling", "mean")
    feats_train = embed(encoder, tokenizer, train_text, max_length=settings["max_length"], pooling=pooling,
                        progress=progress, desc="features (train)")
    feats_test = embed(encoder, tokenizer, test_text, max_length=settings["max_length"], pooling=pooling,
                       progress=progress, desc="features (test)")
    probe = fit_probe(feats_train, train_labels, seed=job.seed)
    with torch.no_grad():
        preds = probe(feats_test).argmax(-1).tolist()
    return dict(accuracy=accuracy(preds, test_labels_), predictions=encode(preds),
                trainable=sum(p.numel() for p in probe.parameters()))


def _curve(losses: list[float], points: int = 20) -> list[float]:
    """The training loss as the mean of ``points`` equal chunks of steps (enough to see whether it converged)."""
    n = len(losses)
    chunks = [losses[i * n // points:(i + 1) * n // points] for i in range(points)]
    return [round(sum(c) / len(c), 4) for c in chunks if c]


# --------------------------------------------------------------------------------------------- provenance
def hardware() -> dict:
    info = dict(cpu=_cpu_model(), cores=os.cpu_count(), threads=torch.get_num_threads(), machine=platform.machine())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict:
    import transformers

    from ... import __version__
    return dict(torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version(),
                minipeft=__version__)


def commit() -> str:
    """The code's git commit (+ "-dirty" when lib/ has uncommitted changes), "unknown" outside a clone."""
    root = Path(__file__).resolve().parents[4]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "lib"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
