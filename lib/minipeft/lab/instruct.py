r"""Instruction tuning in small, and its effect on a task it never saw (chapter 11; FLAN's question).

FLAN (Wei et al. 2022, "Finetuned Language Models Are Zero-Shot Learners") fine-tunes a language model on many tasks,
each phrased as a natural-language instruction, and scores it ZERO-SHOT on task clusters held out of the mixture.
Here, at 135 M parameters, three instruction tasks are built from data the course ships (none about sentiment), and
the held-out task is Rotten Tomatoes sentiment, every task phrased the same way and scored by rank classification
(chapter 10's `fewshot.score_texts`: the answer with the highest mean token log-probability wins):

    "Is this sentence from the Bible? Answer yes or no.\nText: In the beginning God ...\nAnswer:"  + " yes" / " no"
     └───────────── the instruction ─────────────────┘

    tuning mix   source    amazon / nyt / tweets (VADER's other domains)    " product review" / " news article" / " tweet"
                 bible     KJV verses vs VADER snippets                     " no" / " yes"
                 question  a snippet or verse that ends with "?" or not     " no" / " yes"
    held out     sentiment Rotten Tomatoes test snippets (chapter 10's)     " negative" / " positive"

Tuning texts have at most MAX_WORDS words. VADER's movie snippets are never used (Rotten Tomatoes' own source: they would leak the held-out domain), and no
tuning task is about sentiment. `examples(task, "train" | "test", n)` draws a fixed, label-balanced subset (seed 0;
the two splits never share a text). `Task.pattern(instructions=False)` drops the instruction and keeps the input and
the answer: the control that separates following instructions from mere exposure to the texts and answers (FLAN §4.3
trains such a "no template" model).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from . import data
from .fewshot import Pattern


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str                 # the task in words; the input follows as "Text: ...", the answer after "Answer:"
    verbaliser: tuple[str, ...]      # label i -> its answer (each starts with a space, as fewshot's answers do)

    def pattern(self, instructions: bool = True) -> Pattern:
        """The prompt template and answers; without the instruction for the control (input and answer only)."""
        head = f"{self.instruction}\n" if instructions else ""
        return Pattern(template=head + "Text: {text}\nAnswer:", verbaliser=self.verbaliser)


SENTIMENT = Task("sentiment", "Is this movie review positive or negative?", (" negative", " positive"))
TASKS = {t.name: t for t in (
    Task("source", "Where is this text from: a product review, a news article or a tweet?",
         (" product review", " news article", " tweet")),
    Task("bible", "Is this sentence from the Bible? Answer yes or no.", (" no", " yes")),
    Task("question", "Is this text a question? Answer yes or no.", (" no", " yes")),
    SENTIMENT)}
TUNING = ("source", "bible", "question")     # the mixture; "sentiment" is held out
MAX_WORDS = 30       # tuning texts of at most 30 words (a Rotten Tomatoes snippet has about 21): a row costs what a
                     # held-out one does, and a long verse or editorial does not dominate a batch's tokens


@functools.lru_cache(maxsize=1)
def _pools() -> dict[str, list[tuple[str, int]]]:
    """Every task's (text, label) rows before any draw."""
    def short(texts):                    # ({column: list}: one read, not one per row)
        return [t for t in texts if len(t.split()) <= MAX_WORDS]

    vader = {d: short(ds[:]["text"]) for d, ds in data.vader_domains(domains=("amazon", "nyt", "tweets")).items()}
    snippets = [t for d in ("amazon", "nyt", "tweets") for t in vader[d]]
    verses = short(data.kjv()[:]["text"])
    rt = data.rotten_tomatoes()["test"][:]
    return {"source": [(t, i) for i, d in enumerate(("amazon", "nyt", "tweets")) for t in vader[d]],
            "bible": [(t, 0) for t in snippets] + [(t, 1) for t in verses],
            "question": [(t, int(t.rstrip().endswith("?"))) for t in snippets + verses],
            "sentiment": list(zip(rt["text"], rt["label"]))}


def examples(task: str, split: str, n: int) -> list[tuple[str, int]]:
    """n (text, label) rows of `task`, as many of each label as n allows (n must divide by the labels), in a
    seeded order. "test" rows come first in each label's seeded permutation, "train" rows after the test rows any
    caller takes (the first TEST_CAP of each label are reserved for tests): the splits never overlap."""
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; tasks: {sorted(TASKS)}.")
    if split not in ("train", "test"):
        raise ValueError(f"split is 'train' or 'test', got {split!r}.")
    if task == "sentiment" and split == "train":
        raise ValueError("sentiment is the held-out task: it has no training rows (that is the point).")
    labels = len(TASKS[task].verbaliser)
    if n < labels or n % labels:
        raise ValueError(f"n must be a positive multiple of {labels} ({task} has {labels} labels), got {n}.")
    if split == "test" and n // labels > TEST_CAP:
        raise ValueError(f"a test draw takes at most {TEST_CAP} rows of each label (the rest are training rows), "
                         f"got {n // labels}.")
    rows = _pools()[task]
    gen = torch.Generator().manual_seed(0)
    chosen = []
    for label in range(labels):
        mine = [r for r in rows if r[1] == label]
        order = torch.randperm(len(mine), generator=gen).tolist()
        start = 0 if split == "test" else TEST_CAP
        if start + n // labels > len(order):
            raise ValueError(f"{task} has {len(order)} rows of label {label}: not enough for {n // labels} "
                             f"{split} rows after {start} reserved ones.")
        chosen += [mine[i] for i in order[start:start + n // labels]]
    return [chosen[i] for i in torch.randperm(len(chosen), generator=gen).tolist()]


TEST_CAP = 200     # rows of each label reserved for test draws (a test draw of more per label is refused)


def mixture(n_per_task: int, instructions: bool = True, tasks=TUNING) -> tuple[list[str], list[str]]:
    """(prompts, answers) of the tuning mixture: n_per_task training rows of each task, each as its task's prompt
    (with or without the instruction) and its correct answer, tasks interleaved in the order drawn."""
    prompts, answers = [], []
    for name in tasks:
        task = TASKS[name]
        pattern = task.pattern(instructions)
        for text, label in examples(name, "train", n_per_task):
            prompts.append(pattern.prompt(text))
            answers.append(task.verbaliser[label])
    return prompts, answers
