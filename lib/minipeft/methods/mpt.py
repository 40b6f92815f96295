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

Training on the K tasks at once: ``minipeft.train.fit_multitask`` (batches round-robin over the tasks).
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

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.checks import check_choice, check_int
from ..core.config import PeftConfig
from ..core.layers import PeftModule
from ..core.targets import find_backbone
from .prompt import PromptConfig
from .softprompt import check_no_targets, install_prompt, start_without_tokenizer

INITS = ("random", "vocab", "labels")


# --------------------------------------------------------------------------------------------- the prompt
class MultitaskPrompt(PeftModule):
    """P* (n, d) shared, U (K, n, r) and V (K, r, d) per task; forward() gives P_k = P* ∘ (U_k V_k) for the current task."""


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
        check_no_targets(self)
        check_int(self.length, "length", "20", meaning="n prompt vectors")
        if isinstance(self.tasks, bool) or not isinstance(self.tasks, (int, list, tuple)):
            raise TypeError(f"tasks must be a list of task names or their number, got {type(self.tasks).__name__}.")
        if isinstance(self.tasks, int) and self.tasks < 1:
            raise ValueError(f"tasks must be at least 1, got {self.tasks}.")
        if isinstance(self.tasks, (list, tuple)):
            if not self.tasks or not all(isinstance(t, str) and t for t in self.tasks):
                raise ValueError(f"tasks must be non-empty strings, e.g. ['amazon', 'nyt'], got {self.tasks!r}.")
            if len(set(self.tasks)) != len(self.tasks):
                raise ValueError(f"tasks names must be distinct, got {self.tasks!r}.")
        check_int(self.rank, "rank", "1", meaning="1 = the paper's u ⊗ v")
        check_choice(self.init, INITS, "MPT init")
        self._shared_prompt_config().validate()  # label_words / tokenizer rules of prompt tuning

    def _shared_prompt_config(self) -> PromptConfig:
        return PromptConfig(length=self.length, init=self.init, label_words=self.label_words, tokenizer=self.tokenizer)

    def for_loading(self) -> "PeftConfig":
        return start_without_tokenizer(self)

    def attach(self, model: nn.Module) -> None:
        install_prompt(model, self.build)

    def build(self, embeddings: nn.Embedding) -> MultitaskPrompt:
        prompt = MultitaskPrompt(self.length, embeddings.embedding_dim, self.task_names(), self.rank)
        prompt = prompt.to(embeddings.weight.device)
        rows = self._shared_prompt_config().initial_prompt(embeddings)  # P*: as prompt tuning's init
        if rows is not None:
            prompt.embedding.weight.data.copy_(rows.float())
        return prompt

    def to_peft(self, model: nn.Module):
        raise TypeError("Export of a multitask prompt to peft (MULTITASK_PROMPT_TUNING) is not implemented: "
                        "save it with minipeft.save_adapter, or export one task's prompt as plain prompt tuning.")
