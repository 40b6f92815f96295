"""Multitask prompt tuning (MPT): Wang et al. 2023, "Multitask Prompt Tuning Enables Parameter-Efficient Transfer
Learning" (§3.1, prompt decomposition).

K tasks share ONE soft prompt P* (n, d); task k modulates it element-wise by a rank-r matrix W_k = U_k V_k
(r = 1 in the paper, where W_k = u_k ⊗ v_k is an outer product):

    P_k = P* ∘ W_k,     W_k = U_k V_k,     U_k (n, r), V_k (r, d)

        P* (n, d), shared          task k: U_k (n, r) · V_k (r, d)          P_k (n, d)
        ┌──────────────┐           ┌─┐   ┌──────────────┐             ┌──────────────┐
        │ ▓▓▓▓▓▓▓▓▓▓▓▓ │     ∘     │u│ · │      v       │      =      │ P* scaled by │ ─▶ prepended to the word
        │ ▓▓▓▓▓▓▓▓▓▓▓▓ │           │k│   └──────────────┘             │ row & column │    embeddings, exactly as
        └──────────────┘           └─┘                                └──────────────┘    in prompt tuning (prompt.py)

Parameters: n·d shared + K·r·(n + d) task-specific, against K·n·d for one independent prompt per task.
With n = 20, d = 384, K = 3: 7,680 + 3·404 = 8,892 numbers instead of 23,040; a new task costs 404, not 7,680.

The paper trains P* on source tasks (with distillation from per-task teacher prompts, §3.2) and then adapts
(P*, u, v) to a target task. Here we implement the decomposition and its plain multitask training (§3.2 without
the distillation terms): one model, one frozen backbone, batches of the K tasks interleaved, every step updating
P*, the stepped task's (U_k, V_k) and the shared classifier head.

Which task a forward pass uses is a property of the model, picked per batch:

    set_task(model, "amazon")             # or an index
    with use_task(model, "tweets"):       # restores the previous task on exit
        minipeft.train.evaluate(model, tok, tweets_test)

Initialisation. W_k = 1 at step 0 (U_k[:, 0] = 1, V_k[0] = 1; the extra rank components, if r > 1, start as
U ~ N(0, 0.02) and V = 0, like LoRA's A and B), so every task starts from the shared prompt: training begins as
plain prompt tuning. peft's MULTITASK_PROMPT_TUNING draws U and V from N(0, 0.02), which makes the initial task
prompts ~0; we prefer a start at P*. Parameter names follow peft (embedding, prefix_task_cols, prefix_task_rows).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from .inject import PeftConfig, PeftModule
from .prompt import PromptConfig, attach_prompt, check_prompt_target, find_backbone

INITS = ("random", "vocab", "labels")


# --------------------------------------------------------------------------------------------- the prompt
class MultitaskPrompt(PeftModule):
    """P* (n, d) shared, U (K, n, r) and V (K, r, d) per task; forward() gives P_k = P* ∘ (U_k V_k) for the current task."""

    mergeable: ClassVar[bool] = False

    def __init__(self, n: int, d: int, tasks: list[str], rank: int = 1):
        super().__init__()
        self.tasks = list(tasks)
        self.task: int | None = None  # picked with set_task / use_task; not a parameter, not saved
        self.embedding = nn.Embedding(n, d)  # P*, N(0, 1) like prompt tuning's random init
        K = len(self.tasks)
        cols = torch.zeros(K, n, rank)
        cols[:, :, 0] = 1.0
        cols[:, :, 1:] = 0.02 * torch.randn(K, n, rank - 1)
        rows = torch.zeros(K, rank, d)
        rows[:, 0] = 1.0
        self.prefix_task_cols = nn.Parameter(cols)  # U (K, n, r)
        self.prefix_task_rows = nn.Parameter(rows)  # V (K, r, d)

    def task_matrix(self, k: int) -> torch.Tensor:
        return self.prefix_task_cols[k] @ self.prefix_task_rows[k]  # (n, r) @ (r, d) -> (n, d), rank <= r

    def forward(self) -> torch.Tensor:
        if self.task is None:
            raise ValueError(f"A multitask prompt needs a task: call set_task(model, name) first (or use "
                             f"`with use_task(model, name):`); tasks are {self.tasks}.")
        return self.embedding.weight * self.task_matrix(self.task)  # (n, d) ∘ (n, d) -> (n, d)

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, rank={self.prefix_task_cols.shape[-1]}, task={self.task}"


def multitask_prompt(model: nn.Module) -> MultitaskPrompt:
    """The MultitaskPrompt inside ``model`` (a backbone or a classifier wrapping one)."""
    encoder = getattr(find_backbone(model), "prompt_encoder", None)
    if not isinstance(encoder, MultitaskPrompt):
        raise ValueError("This model has no multitask prompt: inject(model, MPTConfig(length=..., tasks=[...])) first.")
    return encoder


def task_index(model: nn.Module, task: int | str) -> int:
    """The index of ``task`` (a name from MPTConfig.tasks, or an index) with a clear error when it is unknown."""
    names = multitask_prompt(model).tasks
    if isinstance(task, str):
        if task not in names:
            raise ValueError(f"Unknown task {task!r}: this prompt was built for {names}.")
        return names.index(task)
    if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < len(names):
        raise ValueError(f"task must be one of {names} or an index 0..{len(names) - 1}, got {task!r}.")
    return task


def set_task(model: nn.Module, task: int | str) -> nn.Module:
    """Make every following forward pass prepend task ``task``'s prompt P_k. Returns the model."""
    multitask_prompt(model).task = task_index(model, task)
    return model


@contextmanager
def use_task(model: nn.Module, task: int | str):
    """``with use_task(model, "nyt"): ...`` runs the block with that task's prompt, then restores the previous one."""
    prompt = multitask_prompt(model)
    previous = prompt.task
    set_task(model, task)
    try:
        yield model
    finally:
        prompt.task = previous


@torch.no_grad()
def task_prompts(model: nn.Module) -> torch.Tensor:
    """Every task's prompt P_k, stacked: (K, n, d), detached."""
    prompt = multitask_prompt(model)
    return torch.stack([prompt.embedding.weight * prompt.task_matrix(k) for k in range(len(prompt.tasks))])


# --------------------------------------------------------------------------------------------- the config
@dataclass
class MPTConfig(PeftConfig):
    length: int = 20                     # n, as in prompt tuning (Wang et al. use 100 on T5; Lester: ~20 suffices)
    tasks: list[str] | int = 2           # task names (e.g. ["amazon", "nyt", "tweets"]) or their number K
    rank: int = 1                        # r of W_k = U_k V_k; the paper's rank-1 (u ⊗ v) is enough (Wang §4.3)
    init: str = "random"                 # P*: random N(0, 1) | vocab | labels, as in PromptConfig (prompt.py)
    label_words: list[str] | None = None  # init="labels": one word per class, e.g. ["terrible", "great"]
    tokenizer: Any = None                # init="labels": the backbone's tokenizer (object or name/path)

    method: ClassVar[str] = "mpt"
    uses_targets: ClassVar[bool] = False  # the prompt is an input: no module is wrapped

    def task_names(self) -> list[str]:
        return [f"task{k}" for k in range(self.tasks)] if isinstance(self.tasks, int) else list(self.tasks)

    def validate(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length <= 0:
            raise ValueError(f"length must be a positive int (n prompt vectors, e.g. 20), got {self.length!r}.")
        if isinstance(self.tasks, bool) or not isinstance(self.tasks, (int, list, tuple)):
            raise TypeError(f"tasks must be a list of task names or their number, got {type(self.tasks).__name__}.")
        if isinstance(self.tasks, int) and self.tasks < 1:
            raise ValueError(f"tasks must be at least 1, got {self.tasks}.")
        if isinstance(self.tasks, (list, tuple)):
            if not self.tasks or not all(isinstance(t, str) and t for t in self.tasks):
                raise ValueError(f"tasks must be non-empty strings, e.g. ['amazon', 'nyt'], got {self.tasks!r}.")
            if len(set(self.tasks)) != len(self.tasks):
                raise ValueError(f"tasks names must be distinct, got {self.tasks!r}.")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank:
            raise ValueError(f"rank must be a positive int (1 = the paper's u ⊗ v), got {self.rank!r}.")
        if self.init not in INITS:
            raise ValueError(f"Unknown MPT init {self.init!r}: use one of {list(INITS)}.")
        self._shared_prompt_config().validate()  # label_words / tokenizer rules of prompt tuning

    def _shared_prompt_config(self) -> PromptConfig:
        return PromptConfig(length=self.length, init=self.init, label_words=self.label_words, tokenizer=self.tokenizer)

    def to_dict(self) -> dict:
        """JSON-safe: a tokenizer object is stored as its name/path (as PromptConfig does)."""
        tok = self.tokenizer
        data = PeftConfig.to_dict(replace(self, tokenizer=None))
        data["tokenizer"] = tok if tok is None or isinstance(tok, str) else getattr(tok, "name_or_path", None)
        return data

    def attach(self, model: nn.Module) -> None:
        backbone = find_backbone(model)
        check_prompt_target(backbone)
        embeddings = backbone.get_input_embeddings()
        prompt = MultitaskPrompt(self.length, embeddings.embedding_dim, self.task_names(), self.rank)
        rows = self._shared_prompt_config().initial_prompt(embeddings)  # may raise: nothing edited yet
        if rows is not None:
            prompt.embedding.weight.data.copy_(rows.float())
        attach_prompt(backbone, prompt.to(embeddings.weight.device))

    def to_peft(self, model: nn.Module):
        raise TypeError("Export of a multitask prompt to peft (MULTITASK_PROMPT_TUNING) is not implemented: "
                        "save it with minipeft.save_adapter, or export one task's prompt as plain prompt tuning.")


# --------------------------------------------------------------------------------------------- multitask training
@dataclass
class MultitaskResult:
    accuracy: dict[str, float]          # per task, on its evaluation set, after training
    losses: list[tuple[str, float]]     # (task, training loss) per step, in the order the steps ran
    steps: int
    train_time: float                   # seconds in the training loop (evaluation excluded)
    trainable: int
    total: int


def _task_batches(lengths: list[int], batch_size: int, gen: torch.Generator):
    from .train import length_grouped_batches

    while True:  # a task's batches start over (reshuffled) when they run out
        yield from length_grouped_batches(lengths, batch_size, gen)


def fit_multitask(model: nn.Module, tokenizer, train_sets: dict, eval_sets: dict, config=None) -> MultitaskResult:
    """Train a model carrying an MPTConfig prompt on K tasks: batches round-robin over the tasks (one task per batch,
    set with set_task), AdamW + schedule from minipeft.train.make_optimizer; then evaluate each task with its prompt.

    ``config`` is a minipeft.train.TrainConfig: epochs count passes over the LARGEST task (every task gets the same
    number of steps), max_steps caps the total over all tasks.
    """
    from tqdm.auto import tqdm

    from .data import EncoderCollate
    from .params import trainable_parameters
    from .train import TrainConfig, _as_tokenized, _device, evaluate, make_optimizer

    config = config or TrainConfig()
    names = multitask_prompt(model).tasks
    if set(train_sets) != set(names) or set(eval_sets) != set(names):
        raise ValueError(f"train_sets and eval_sets need one dataset per task {names}; got "
                         f"{sorted(train_sets)} and {sorted(eval_sets)}.")
    device = _device(config)
    model.to(device)
    train = {k: _as_tokenized(train_sets[k], tokenizer, config.max_length) for k in names}
    largest = max(math.ceil(len(ds) / config.batch_size) for ds in train.values())
    total_steps = max(1, math.ceil(config.epochs * largest) * len(names))
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    streams = {k: _task_batches([len(ids) for ids in train[k]["input_ids"]], config.batch_size, gen) for k in names}
    optimizer, scheduler = make_optimizer(model, config, total_steps)
    collate, losses = EncoderCollate(tokenizer), []
    model.train()
    start = time.perf_counter()
    for step in tqdm(range(total_steps), desc=config.desc, disable=not config.progress, leave=False):
        name = names[step % len(names)]  # round-robin: every task gets the same number of steps
        rows = next(streams[name])
        batch = {k: v.to(device) for k, v in collate([train[name][j] for j in rows]).items()}
        with use_task(model, name):
            loss = model(**batch).loss
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append((name, loss.item()))
    train_time = time.perf_counter() - start
    accuracy = {}
    for name in names:
        with use_task(model, name):
            accuracy[name] = evaluate(model, tokenizer, eval_sets[name], config.eval_batch_size, config.max_length,
                                      device)
    trainable, total = trainable_parameters(model)
    return MultitaskResult(accuracy=accuracy, losses=losses, steps=total_steps, train_time=train_time,
                           trainable=trainable, total=total)
