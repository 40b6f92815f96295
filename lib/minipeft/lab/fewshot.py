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

Everything works on token ids (`score_ids`, `tfew_losses`); `encode` turns prompts and answers into them with a
tokenizer. A prompt and an answer are tokenised separately and concatenated (answers start with a space), as PET
and T-Few do, so an answer's tokens are the same after every prompt.
"""

from __future__ import annotations

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
        shown = "".join(self.template.format(text=t.strip()) + self.verbaliser[y] + self.separator
                        for t, y in demonstrations)
        return shown + self.template.format(text=text.strip())


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
