r"""Few-shot classification with a decoder: score each answer, no classifier head (chapter 10).

A pattern turns a snippet into a prompt and a verbaliser gives each label its words (PET, Schick & Schütze 2021 §3):

    "a gripping, funny film It was"  +  " great."     <- label 1          the model's log-probability of each
    "a gripping, funny film It was"  +  " terrible."  <- label 0          answer's tokens, given the prompt

The prediction is the answer with the highest score (rank classification): the sum of its tokens' log-probabilities,
or their mean (length-normalised: T-Few §3.2, so a longer answer is not penalised for its length). In-context
learning (Brown et al. 2020) puts k solved examples before the prompt ("demonstrations") and trains nothing; PEFT
on the same k examples trains a few parameters instead. T-Few (Liu et al. 2022, "Few-Shot Parameter-Efficient
Fine-Tuning is Better and Cheaper than In-Context Learning", §3.2) trains with three losses on the answers' tokens:

    L_LM = − 1/T Σ_t log p(y_t | x, y_<t)                         the correct answer's tokens (cross-entropy)
    L_UL = − Σ_{wrong n} Σ_t log(1 − p(ŷ⁽ⁿ⁾_t | x, ŷ⁽ⁿ⁾_<t)) / Σ_n T⁽ⁿ⁾   unlikelihood: push wrong answers' tokens down
    L_LN = − log softmax_n(β(x, ŷ⁽ⁿ⁾))[correct],  β = mean log-probability of an answer's tokens    (length-normalised)

LM-BFF (Gao, Fisch & Chen 2021, §6) also puts demonstrations into the FINE-TUNING prompts: each input is preceded by
one example of each label drawn from the k training examples (never the input itself), drawn afresh as training
goes, and at inference the scores of several drawn demonstration sets are averaged (`demonstrations_for`,
`train_on_examples(demonstrations=True)`, `score_with_demonstrations`).

Everything works on token ids (`score_ids`, `tfew_losses`); `encode` turns prompts and answers into them with a
tokenizer. A prompt and an answer are tokenised separately and concatenated (answers start with a space), as PET
and T-Few do, so an answer's tokens are the same after every prompt.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Pattern:
    template: str = "{text} It was"                      # the prompt; the answer follows it
    verbaliser: tuple[str, ...] = (" terrible.", " great.")  # label i -> its answer (Rotten Tomatoes: 0 rotten, 1 fresh)
    separator: str = "\n\n"                              # between demonstrations and the query

    def prompt(self, text: str, demonstrations=()) -> str:
        """The query's prompt, after k solved examples [(text, label), ...] (in-context learning; k = 0: zero-shot)."""
        return self.shown(demonstrations) + self.template.format(text=text.strip())

    def shown(self, demonstrations=()) -> str:
        """The k solved examples as text, each followed by the separator ("" for k = 0)."""
        return "".join(self.template.format(text=t.strip()) + self.verbaliser[y] + self.separator
                       for t, y in demonstrations)


@dataclass
class Choices:
    """B prompts × C answers as one padded batch of B·C sequences (right padding)."""
    input_ids: torch.Tensor       # (B·C, T)
    attention_mask: torch.Tensor  # (B·C, T)
    answer_mask: torch.Tensor     # (B·C, T): 1 where the token is one of the answer's (its log-prob counts)
    n_choices: int

    @property
    def tokens(self) -> int:
        """Tokens the model processes to score these prompts (every answer's copy of its prompt included)."""
        return int(self.attention_mask.sum())


def _batch(rows: list[tuple[list[int], list[int]]], n_choices: int, pad_id: int) -> Choices:
    """(prompt ids, answer ids) rows -> one right-padded batch; answer_mask marks each row's answer tokens."""
    if not rows or any(len(a) == 0 for _, a in rows):
        raise ValueError("give at least one prompt and one non-empty answer per label (the verbaliser).")
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention, answer = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, a) in enumerate(rows):
        ids[i, :len(p) + len(a)] = torch.tensor(p + a)
        attention[i, :len(p) + len(a)] = 1
        answer[i, len(p):len(p) + len(a)] = 1
    return Choices(ids, attention, answer, n_choices)


def choices_from_ids(prompts: list[list[int]], answers: list[list[int]], pad_id: int = 0) -> Choices:
    """Every prompt followed by every answer: row b·C + c is prompt b + answer c."""
    if not prompts or not answers:
        raise ValueError("give at least one prompt and one non-empty answer per label (the verbaliser).")
    return _batch([(p, a) for p in prompts for a in answers], len(answers), pad_id)


def pairs_from_ids(prompts: list[list[int]], answers: list[list[int]], pad_id: int = 0) -> Choices:
    """Prompt i followed by ITS answer i (one answer per prompt: a response to score, chapter 11's DPO)."""
    if len(prompts) != len(answers):
        raise ValueError(f"one answer per prompt: {len(prompts)} prompts, {len(answers)} answers.")
    return _batch(list(zip(prompts, answers)), 1, pad_id)


def encode(tokenizer, prompts: list[str], answers: tuple[str, ...] | list[str]) -> Choices:
    """Tokenise prompts and answers separately (no special tokens) and pair them all: see `choices_from_ids`."""
    p = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    a = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return choices_from_ids(p, a, tokenizer.pad_token_id or 0)


def token_log_probs(model: nn.Module, batch: Choices) -> torch.Tensor:
    """log p(token_t | tokens_<t) for every answer token, 0 elsewhere: (B, C, T). Differentiable."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B·C, T, V)
    return _answer_log_probs(logits, batch)


def _answer_log_probs(logits: torch.Tensor, batch: Choices) -> torch.Tensor:
    """(B·C, T, V) logits -> (B, C, T) log-probabilities of the answer tokens (0 elsewhere)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)                                   # predicts tokens 1..T-1
    picked = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)                     # (B·C, T-1)
    picked = F.pad(picked, (1, 0)) * batch.answer_mask                                    # (B·C, T), answers only
    return picked.view(-1, batch.n_choices, picked.shape[-1])                               # (B, C, T)


def answer_scores(token_logp: torch.Tensor, batch: Choices, normalise: bool = False) -> torch.Tensor:
    """Each answer's score, (B, C): the sum of its tokens' log-probabilities, or their mean (normalise=True)."""
    total = token_logp.sum(-1)                                                              # (B, C)
    if not normalise:
        return total
    return total / batch.answer_mask.view(-1, batch.n_choices, batch.answer_mask.shape[-1]).sum(-1)


@torch.no_grad()
def predict(model: nn.Module, batch: Choices, normalise: bool = False) -> list[int]:
    """Rank classification: the label whose answer scores highest."""
    return answer_scores(token_log_probs(model, batch), batch, normalise).argmax(-1).tolist()


def tfew_losses(model: nn.Module, batch: Choices, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """T-Few's three losses (module docstring) for prompts with their correct answers `labels` (B,): a dict with
    "lm", "ul" and "ln", each a scalar to add (T-Few trains on their sum)."""
    logp = token_log_probs(model, batch)                                           # (B, C, T)
    mask = batch.answer_mask.view(logp.shape).float()                              # (B, C, T)
    lengths = mask.sum(-1)                                                         # (B, C)
    correct = F.one_hot(labels, batch.n_choices).bool()                            # (B, C)
    lm = -(logp.sum(-1)[correct] / lengths[correct]).mean()
    # log(1 − p) from log p without cancellation: log(−expm1(log p)); p = 1 exactly would be −inf, so clamp
    one_minus = torch.log(-torch.expm1(logp.clamp(max=-1e-6)))                     # (B, C, T)
    wrong = (~correct)[..., None] * mask                                           # (B, C, T) wrong answers' tokens
    ul = (-(one_minus * wrong).sum((1, 2)) / wrong.sum((1, 2)).clamp(min=1)).mean()  # per example, then the mean
    ln = F.cross_entropy(logp.sum(-1) / lengths, labels)
    return {"lm": lm, "ul": ul, "ln": ln}


# --------------------------------------------------------------------------------------------- k examples, two ways
def draw_examples(texts, labels, k: int, seed: int) -> list[tuple[str, int]]:
    """k training examples, k/2 of each label (LM-BFF §6 samples k per class), in a seeded random order: draw `seed`
    of the k examples that in-context learning shows AND prompt-based fine-tuning trains on (the same ones)."""
    if k < 0 or k % 2:
        raise ValueError(f"k must be an even number >= 0 (k/2 examples of each label), got {k!r}.")
    gen = torch.Generator().manual_seed(seed)
    labels = list(labels)
    chosen = []
    for label in (0, 1):
        rows = [i for i, y in enumerate(labels) if y == label]
        chosen += [rows[j] for j in torch.randperm(len(rows), generator=gen)[:k // 2].tolist()]
    order = torch.randperm(len(chosen), generator=gen).tolist()
    return [(texts[chosen[i]], labels[chosen[i]]) for i in order]


def demonstrations_for(pool: list[tuple[str, int]], n_labels: int, gen: torch.Generator,
                       inputs: int | None = None) -> list[list[tuple[str, int]]]:
    """LM-BFF §6's demonstrations: for each input, ONE example of each label drawn at random from `pool` (the k
    training examples), in label order (as LM-BFF's template places them: label 0's, then label 1's, ...).

    inputs=None: the inputs ARE the pool (training): input i never gets pool[i], itself, as a demonstration (LM-BFF
    leaves the query out of its candidates in training mode). inputs=n: n inputs from elsewhere (test snippets),
    every pool example a candidate. The generator makes a draw repeatable: the same seed, the same demonstrations."""
    labels = [y for _, y in pool]
    if any(not 0 <= y < n_labels for y in labels):
        raise ValueError(f"labels must be 0 … {n_labels - 1} (one per verbaliser answer), got {sorted(set(labels))}.")
    training = inputs is None
    chosen = []
    for i in range(len(pool) if training else inputs):
        demos = []
        for label in range(n_labels):
            rows = [j for j, y in enumerate(labels) if y == label and not (training and j == i)]
            if not rows:
                raise ValueError(f"no example of label {label} to show input {i}: each label needs "
                                 f"{'2 training examples (one is the input itself)' if training else 'an example'}.")
            demos.append(pool[rows[int(torch.randint(len(rows), (1,), generator=gen))]])
        chosen.append(demos)
    return chosen


@dataclass
class Scored:
    predictions: list[int]
    tokens_per_prediction: float   # tokens a prediction processes WITHOUT a cache: demonstrations + query + answers,
                                   # once per answer (what T-Few counts; the model's FLOPs ≈ 2 × parameters × tokens)
    prefix_tokens: int             # the demonstrations' tokens (the same for every query)


@torch.no_grad()
def score_texts(model: nn.Module, tokenizer, pattern: Pattern, texts: list[str], demonstrations=(),
                batch_size: int = 16, normalise: bool = True, progress: bool = False) -> Scored:
    """Rank-classify every text after the same demonstrations (k = len(demonstrations); 0: zero-shot).

    The demonstrations are tokenised once and run ONCE: their keys and values (a KV cache) are reused by every query,
    which is exactly what a full prompt would compute (a causal model's prefix never sees what follows), but costs
    one pass over the demonstrations instead of one per query and answer. A prompt's tokens are the demonstrations'
    ids followed by the query's (each tokenised on its own, as answers are). Texts are scored shortest first (less
    padding); the predictions come back in the texts' order."""
    prefix = tokenizer(pattern.shown(demonstrations), add_special_tokens=False)["input_ids"] if demonstrations else []
    queries = tokenizer([pattern.template.format(text=t.strip()) for t in texts], add_special_tokens=False)["input_ids"]
    answers = tokenizer(list(pattern.verbaliser), add_special_tokens=False)["input_ids"]
    scores = _ranked_scores(model, queries, answers, tokenizer.pad_token_id or 0, batch_size, normalise, prefix,
                            desc=f"scoring (k = {len(demonstrations)})", progress=progress)
    per_query = [len(answers) * len(prefix) + sum(len(q) + len(a) for a in answers) for q in queries]
    return Scored(scores.argmax(-1).tolist(), sum(per_query) / max(1, len(per_query)), len(prefix))


def _ranked_scores(model: nn.Module, prompts: list[list[int]], answers: list[list[int]], pad: int, batch_size: int,
                   normalise: bool, prefix: list[int] = (), desc: str = "scoring", progress: bool = False
                   ) -> torch.Tensor:
    """(N, C) answer scores of N prompts (token ids), each after the same `prefix` (run once, a KV cache; () none),
    batched shortest first; rows in the prompts' order."""
    from tqdm.auto import tqdm

    cache = _cache_of(model(input_ids=torch.tensor([list(prefix)]), use_cache=True)) if len(prefix) else None
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    scores = torch.zeros(len(prompts), len(answers))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        rows = order[start:start + batch_size]
        batch = choices_from_ids([prompts[i] for i in rows], answers, pad)
        if cache is None:
            logp = token_log_probs(model, batch)                                         # (B, C, T)
        else:
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(batch.input_ids.shape[0])                     # (1, …) -> (B·C, …)
            n, p = batch.input_ids.shape[1], len(prefix)
            mask = torch.cat([batch.attention_mask.new_ones(len(batch.input_ids), p), batch.attention_mask], 1)
            positions = torch.arange(p, p + n).expand(len(batch.input_ids), n)       # (B·C, T): after the prefix
            logits = model(input_ids=batch.input_ids, attention_mask=mask, position_ids=positions,
                           **{_cache_arg(model): past}).logits                           # (B·C, T, V)
            logp = _answer_log_probs(logits, batch)
        scores[rows] = answer_scores(logp, batch, normalise).float()
    return scores


@torch.no_grad()
def score_with_demonstrations(model: nn.Module, tokenizer, pattern: Pattern, texts: list[str],
                              pool: list[tuple[str, int]], sets: int = 1, seed: int = 0, batch_size: int = 16,
                              normalise: bool = True, progress: bool = False) -> Scored:
    """LM-BFF §6 at inference: each text after its OWN demonstrations (one example per label from `pool`, the
    training examples, `demonstrations_for`), `sets` draws of them per text; the prediction is the answer whose
    score, averaged over the draws, is highest (LM-BFF averages its label logits over 16 drawn sets).

    Every text has its own prefix, so nothing is cached: a prediction processes `sets` × (demonstrations + query +
    answer) tokens per answer, all counted in tokens_per_prediction (prefix_tokens = 0: no prefix is shared)."""
    if sets < 1:
        raise ValueError(f"sets is how many demonstration draws to average per text, at least 1; got {sets!r}.")
    gen = torch.Generator().manual_seed(seed)
    answers = tokenizer(list(pattern.verbaliser), add_special_tokens=False)["input_ids"]
    total, tokens = torch.zeros(len(texts), len(answers)), 0
    for s in range(sets):
        demos = demonstrations_for(pool, len(answers), gen, inputs=len(texts))
        prompts = tokenizer([pattern.prompt(t, d) for t, d in zip(texts, demos)], add_special_tokens=False)["input_ids"]
        total += _ranked_scores(model, prompts, answers, tokenizer.pad_token_id or 0, batch_size, normalise,
                                desc=f"scoring with demonstrations (set {s + 1}/{sets})", progress=progress)
        tokens += sum(len(p) + len(a) for p in prompts for a in answers)
    return Scored((total / sets).argmax(-1).tolist(), tokens / max(1, len(texts)), 0)


def _cache_arg(model: nn.Module) -> str:
    """transformers 5 calls the KV cache `cache`; 4.x called it `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output):
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


def train_on_examples(model: nn.Module, tokenizer, pattern: Pattern, examples: list[tuple[str, int]], steps: int,
                      lr: float, losses: tuple[str, ...] = ("lm", "ul", "ln"), progress: bool = False,
                      demonstrations: bool = False, seed: int = 0) -> list[dict]:
    """Prompt-based fine-tuning (PET / LM-BFF, T-Few's recipe): train the model's trainable parameters (inject a PEFT
    method first) on the k examples, each as its prompt with every answer, with the sum of the chosen T-Few losses.
    Full batch (all k examples every step), Adam. Returns each step's losses {"lm": …, "ul": …, "ln": …}.

    demonstrations=True (LM-BFF §6): every step, each example's prompt is preceded by one OTHER example of each label
    (`demonstrations_for`), drawn afresh each step (LM-BFF draws them as each example is read) by a generator seeded
    with `seed`; predict with `score_with_demonstrations` then, as the model was trained."""
    from tqdm.auto import tqdm

    unknown = set(losses) - {"lm", "ul", "ln"}
    if unknown or not losses:
        raise ValueError(f"losses are some of 'lm', 'ul', 'ln' (T-Few trains on all three), got {losses!r}.")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: inject a PEFT method (e.g. IA3Config()) into the model first.")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([y for _, y in examples])
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    model.train()
    shown = [()] * len(examples)
    for _ in tqdm(range(steps), desc="prompt-based fine-tuning", disable=not progress, leave=False):
        if demonstrations:
            shown = demonstrations_for(examples, len(pattern.verbaliser), gen)
        batch = encode(tokenizer, [pattern.prompt(t, d) for (t, _), d in zip(examples, shown)], pattern.verbaliser)
        parts = tfew_losses(model, batch, labels)
        opt.zero_grad()
        sum(parts[name] for name in losses).backward()
        opt.step()
        history.append({name: round(v.item(), 5) for name, v in parts.items()})
    model.eval()
    return history
