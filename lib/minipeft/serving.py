r"""Serving many users' adapters on ONE base model, in ONE batch: each row of the batch gets its own user's adapter.

    bank = minipeft.AdapterBank(model, {"alice": "runs/alice", "bob": "runs/bob"})   # dirs from save_adapter
    out = bank(**tokenizer(texts, return_tensors="pt", padding=True),
               adapter_names=["alice", "bob", None, "alice"])                         # None: the base model
    ids = bank.generate(**prompts, adapter_names=["bob", None], max_new_tokens=20)    # the decoder, per row

Merge or swap? ``minipeft.merge`` folds ONE user's ΔW into W0: no overhead at all, but the weights then belong to
that user. Serving another means swapping: subtract B A, add B' A' (LoRA, Hu et al. 2021, §4.1, "a quick operation"),
or keep a second copy of the model; and §4.2 names the limit: with A and B absorbed into W, inputs for different
tasks cannot be batched in one forward pass. The bank keeps W0 shared and untouched and adds each row's update on
the fly, as S-LoRA does (Sheng et al. 2023, "S-LoRA: Serving Thousands of Concurrent LoRA Adapters", its section on
batching): x W0 for the whole batch with one ordinary product, x A_u B_u for each row beside it. A model that
already has an adapter merged in is refused: every row, base rows too, would carry that user's ΔW.

LoRA: the users' factors are STACKED into tensors, one slot per user (slot 0 = zeros = the base model), and each
row GATHERS its own slot; then one batched matrix product computes every row's update at once:

        A_all (U+1, r, in): one slot per user       rows = [1, 0, 2, 1]       A = A_all[rows] (B, r, in): one per row
        ┌────────────────────────┐                                            ┌────────────────────────┐
      0 │ 0 ........ 0    (base) │                   row 0 ◀── slot 1         │ A_alice                │ row 0
      1 │ A_alice                │                   row 1 ◀── slot 0         │ 0 ........ 0    (base) │ row 1
      2 │ A_bob ; zero rows (pad)│                   row 2 ◀── slot 2         │ A_bob ; zero rows (pad)│ row 2
        └────────────────────────┘                   row 3 ◀── slot 1         │ A_alice                │ row 3
        B_all (U+1, out, r) and the scales s (U+1,) are gathered the same way └────────────────────────┘

        y = x W0ᵀ                       (B, T, out)                  the base: ONE product shared by every row
          + s[rows] · (x Aᵀ) Bᵀ         (B, T, r) -> (B, T, out)     every row's update: ONE batched product (bmm)

Punica (Chen et al. 2023, "Punica: Multi-Tenant LoRA Serving", its SGMV kernel, "segmented gather matrix-vector
multiplication") gathers A and B per segment of consecutive rows that share an adapter; here every row gathers its
own (a segment per row: what Punica's code and vLLM call BGMV), written with a tensor index and ``torch.bmm`` instead
of a CUDA kernel. S-LoRA's kernels for heterogeneous batches do the same job. There is no Python loop over users.
Ranks differ between users: a smaller rank is padded with zeros up to the largest r (zero rows of A, zero columns
of B add exact zeros); S-LoRA stores each rank unpadded in its paged memory instead, which matters on a GPU with
thousands of adapters, not here. Each user keeps its own scale s_u = alpha/r (or alpha/√r with rsLoRA), gathered per
row like A and B; a module one user did not adapt is zeros in that user's slot.

Prefix tuning: every user's prefix keys and values are stacked the same way, (U+1, 2, n_max, d_kv) per layer,
gathered per row, and put in front of that row's keys and values in ONE attention call. A shorter prefix is padded
to n_max and its padding slots are masked per row (as padding tokens are); base rows see no slot at all. For a
Llama model each row's tokens are numbered after its own prefix (positions n_u, n_u + 1, ...: see
minipeft.methods.prefix), so the rotary positions are shifted per row.

LoRA and prefix adapters can share a batch (and one adapter may stack both). Other methods cannot be served this
way here (IA3, bottleneck adapters, soft prompts, BitFit, a trained head in modules_to_save) and are refused with
the fix. Exactness: every row equals its user's adapter run alone up to float rounding (the tests check
max |Δ| ≤ 1e-5 on tiny random BERT and Llama models, and equality with peft's own mixed batches, ``adapter_names=``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .core.checkpoint import check_fits, ghost_with, read_adapter
from .core.config import PeftConfig
from .core.inject import peft_buffer_names, peft_layers, peft_parameter_names
from .core.layers import PeftLayer
from .core.targets import get_parent
from .methods.lora import LoRALinear
from .methods.prefix import (BertPrefixAttention, LlamaPrefixAttention, PrefixEncoder,
                             prefix_layers)

SERVABLE = ("lora", "prefix")
NOT_MERGEABLE = ("it holds many users' updates at once while W0 is shared by every row; to merge one user, load "
                 "their adapter into a fresh base model (minipeft.load_adapter) and merge that")


# --------------------------------------------------------------------------------------------- the layers
class BankLoRALinear(PeftLayer):
    """y = W0 x + s[u] · B[u] A[u] x with u the user of the row: every user's LoRA factors, gathered per row."""

    not_mergeable = NOT_MERGEABLE

    def __init__(self, base_layer: nn.Module, A: torch.Tensor, B: torch.Tensor, scaling: torch.Tensor):
        super().__init__(base_layer)
        self.register_buffer("lora_A", A, persistent=False)          # (U+1, r, in)   slot 0: zeros (the base)
        self.register_buffer("lora_B", B, persistent=False)          # (U+1, out, r)
        self.register_buffer("scaling", scaling, persistent=False)   # (U+1,)         alpha/r or alpha/√r
        self.rows: torch.Tensor | None = None                        # (B,) the user of each row, set by the bank

    @property
    def weight(self) -> torch.Tensor:                                 # W0, for code that reads a projection's weight
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # x (B, T, in)
        y = self.base_layer(x)                                        # (B, T, out)  one product for every row
        if self.rows is None:                                         # outside bank(...): the base model
            return y
        rows = _check_rows(self.rows, x.shape[0])
        A, B = self.lora_A[rows], self.lora_B[rows]                   # (B, r, in), (B, out, r): the gather
        h = x.reshape(len(rows), -1, x.shape[-1]) @ A.transpose(1, 2)  # (B, T, r)    bmm: every row its own A
        delta = (h @ B.transpose(1, 2)) * self.scaling[rows, None, None]  # (B, T, out) ... and its own B, s
        return y + delta.view(y.shape)

    def extra_repr(self) -> str:
        users, r, _ = self.lora_A.shape
        return f"users={users - 1}, r_max={r}"


class BankPrefix:
    """Mixed into a PrefixAttention: per-row prefixes (gathered), per-row padding slots and position shifts."""

    not_mergeable = NOT_MERGEABLE

    def setup_bank(self, table: torch.Tensor, lengths: torch.Tensor) -> None:
        self.register_buffer("table", table, persistent=False)       # (U+1, 2, n_max, d_kv)  slot 0: the base
        self.register_buffer("lengths", lengths, persistent=False)   # (U+1,) each user's n here (0: no prefix)
        self.rows: torch.Tensor | None = None

    def _rows(self, batch: int) -> torch.Tensor:                      # outside bank(...): every row is the base
        if self.rows is None:
            return torch.zeros(batch, dtype=torch.long, device=self.lengths.device)
        return _check_rows(self.rows, batch)

    def prefix(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.table[self._rows(batch)]                             # (B, 2, n, d_kv): the gather
        p = p.view(batch, 2, self.n, self.kv_heads, self.head_dim).transpose(2, 3)  # (B, 2, H_kv, n, d_h)
        return p[:, 0], p[:, 1]                                       # keys, values: (B, H_kv, n, d_h) each

    def hidden_slots(self, batch: int) -> torch.Tensor:
        slots = torch.arange(self.n, device=self.lengths.device)     # (n,)
        return slots[None, :] >= self.lengths[self._rows(batch), None]  # (B, n): a row sees its own n_u slots

    def position_offset(self, batch: int) -> torch.Tensor:
        return self.lengths[self._rows(batch), None]                  # (B, 1): tokens start after the row's prefix

    def extra_repr(self) -> str:
        return f"users={len(self.lengths) - 1}, n_max={self.n}"


class BankBertPrefixAttention(BankPrefix, BertPrefixAttention):
    pass


class BankLlamaPrefixAttention(BankPrefix, LlamaPrefixAttention):
    pass


BANK_PREFIX = {BertPrefixAttention: BankBertPrefixAttention, LlamaPrefixAttention: BankLlamaPrefixAttention}


def _check_rows(rows: torch.Tensor, batch: int) -> torch.Tensor:
    if len(rows) != batch:
        raise ValueError(f"The batch has {batch} rows but adapter_names named {len(rows)}. Give one name per row; "
                         "generate with num_beams=1 and num_return_sequences=1 (they multiply the rows), or repeat "
                         "each name once per copy of its row.")
    return rows


# --------------------------------------------------------------------------------------------- one user's adapter
def _base_name(name: str) -> str:
    """The module's name in the base model: without the wrappers a stacked adapter put around it."""
    return name.replace(".base_layer.", ".").removesuffix(".base_layer")


def read_user(model: nn.Module, user: str, directory: str | Path) -> tuple[dict, dict]:
    """One user's adapter, checked against ``model`` and unpacked into what the bank stacks:
    ({module: (A (r, in), B (out, r), scaling)}, {attention module: (2, n, d_kv) prefix})."""
    directory = Path(directory)
    meta, state = read_adapter(directory)
    configs = [PeftConfig.from_dict(c) for c in meta["configs"]]
    methods = [c.method for c in configs]
    other = [m for m in methods if m not in SERVABLE]
    if other:
        raise ValueError(f"{user!r}'s adapter in {directory} uses {other}: an AdapterBank serves LoRA and prefix "
                         "adapters, whose per-row update is a gather. Serve it on its own model "
                         "(minipeft.load_adapter(fresh_base_model, dir)), or train that user a LoRA.")
    if meta["modules_to_save"]:
        raise ValueError(f"{user!r}'s adapter in {directory} also trains {meta['modules_to_save']} in full "
                         "(modules_to_save), which every row would have to share. Serve it on its own model "
                         "(minipeft.load_adapter(fresh_base_model, dir)), or keep the head outside the bank.")
    try:
        ghost = ghost_with(model, [c.for_loading() for c in configs])   # what the user's model looks like
        params = dict(ghost.named_parameters())
        check_fits(directory, model, state, {n: params[n].shape for n in peft_parameter_names(ghost)},
                   {n: ghost.get_buffer(n).shape for n in peft_buffer_names(ghost)})
    except (ValueError, TypeError) as err:
        raise ValueError(f"{user!r}'s adapter does not fit this {type(model).__name__}: {err} Build the bank on "
                         "the base model the adapter was trained on (the same loader, the same checkpoint).") from None

    lora = {_base_name(name): (state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"], layer.scaling)
            for name, layer in peft_layers(ghost, LoRALinear).items()}
    prefix = {}
    layers = prefix_layers(ghost)
    if layers:
        names = {id(m): n for n, m in ghost.named_modules()}
        shape = layers[0].prefix_encoder
        hidden = next(c.projection_hidden for c in configs if c.method == "prefix")
        with torch.random.fork_rng():                                     # its initial values are overwritten
            encoder = PrefixEncoder(shape.L, shape.n, shape.d_kv, hidden)
        key = ".prefix_encoder."                                          # the one table, under its first name
        encoder.load_state_dict({k.split(key, 1)[1]: t for k, t in state.items() if key in k})
        table = encoder().detach()                                        # (L, 2, n, d_kv)
        prefix = {_base_name(names[id(layer)]): table[layer.index] for layer in layers}
    return lora, prefix


# --------------------------------------------------------------------------------------------- the bank
class AdapterBank(nn.Module):
    """One base model, many users' LoRA / prefix adapters; ``bank(**batch, adapter_names=[...])`` routes each row.

    The bank edits ``model`` in place: each module some user adapted is wrapped in a bank layer holding every user's
    tensors (buffers: ``bank.to(device)`` moves them). Called directly, outside the bank, the model is the base model.
    """

    def __init__(self, model: nn.Module, adapters: dict[str, str | Path]):
        super().__init__()
        _check_base(model)
        if not isinstance(adapters, dict) or not adapters:
            raise ValueError("AdapterBank(model, {'alice': 'runs/alice', ...}) needs at least one adapter: a dict from "
                             "user name to a directory written by minipeft.save_adapter.")
        bad = [n for n in adapters if not isinstance(n, str) or not n]
        if bad:
            raise TypeError(f"User names must be non-empty strings, got {bad}; None is reserved for the base model.")
        self.names = list(adapters)                                       # slot u + 1 of every stacked tensor
        users = [read_user(model, name, directory) for name, directory in adapters.items()]  # all checked first
        ref = next(model.parameters())
        self.layers: list[nn.Module] = []
        for name in sorted({m for lora, _ in users for m in lora}):       # LoRA first: a prefix wraps attention
            self.layers.append(self._wrap(model, name, BankLoRALinear, *_stack_lora(
                [lora.get(name) for lora, _ in users], model.get_submodule(name), ref)))
        attention = sorted({m for _, prefix in users for m in prefix})
        for name in attention:
            table, lengths = _stack_prefix([prefix.get(name) for _, prefix in users], ref)
            kind = BANK_PREFIX[_prefix_kind(model.get_submodule(name))]
            self.layers.append(self._wrap(model, name, kind, table.shape[2], table=table, lengths=lengths))
        self.model = model

    @staticmethod
    def _wrap(model, name, kind, *args, table=None, lengths=None):
        parent, child = get_parent(model, name)
        layer = kind(getattr(parent, child), *args).eval()
        if table is not None:
            layer.setup_bank(table, lengths)
        setattr(parent, child, layer)
        return layer

    # -- routing
    def rows(self, adapter_names, batch: int | None = None) -> torch.Tensor:
        """(B,) slot of each row: 0 for None (the base model), u + 1 for the u-th user."""
        if isinstance(adapter_names, str) or not hasattr(adapter_names, "__len__"):
            raise TypeError(f"adapter_names must be a list with one name per row (None for the base model), "
                            f"got {adapter_names!r}.")
        unknown = sorted({str(n) for n in adapter_names if n is not None and n not in self.names})
        if unknown:
            raise ValueError(f"Unknown adapter name(s) {unknown}: this bank holds {self.names} (None = the base "
                             "model). Add them with AdapterBank(model, {..., name: adapter_dir}), or fix the names.")
        slots = [0 if n is None else self.names.index(n) + 1 for n in adapter_names]
        rows = torch.tensor(slots, dtype=torch.long, device=next(self.model.parameters()).device)
        return rows if batch is None else _check_rows(rows, batch)

    @contextmanager
    def route(self, adapter_names, batch: int | None = None):
        """Inside the block, row b of every forward uses adapter_names[b]'s adapter."""
        rows = self.rows(adapter_names, batch)
        for layer in self.layers:
            layer.rows = rows
        try:
            yield
        finally:
            for layer in self.layers:
                layer.rows = None

    def forward(self, *args, adapter_names, **kwargs):
        with self.route(adapter_names, _batch_size(args, kwargs)):
            return self.model(*args, **kwargs)

    def generate(self, *args, adapter_names, **kwargs):
        """``model.generate`` with row b decoded by adapter_names[b]'s adapter (greedy or sampling, one sequence
        per row: the rows keep their users through every step of the KV-cached loop)."""
        with self.route(adapter_names, _batch_size(args, kwargs)):
            return self.model.generate(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"users={self.names}"


# --------------------------------------------------------------------------------------------- helpers
def _check_base(model: nn.Module) -> None:
    merged = getattr(model, "minipeft_merged", None)
    if merged:
        raise ValueError(f"This model has {merged} merged into its weights (minipeft.merge): every row, the base rows "
                         "too, would carry that update. Swap, do not merge: build the bank on a fresh base model "
                         "and give it that adapter's directory like any other user's.")
    if hasattr(model, "peft_config"):
        raise TypeError("This is a Hugging Face peft model: give the bank the plain base model (load it afresh) and "
                        "minipeft adapter directories (minipeft.save_adapter).")
    layers = peft_layers(model)
    merged = [n for n, layer in layers.items() if layer.merged]
    if layers or getattr(model, "minipeft_configs", None):
        what = f"{merged[:3]} merged into its weights" if merged else "PEFT layers already"
        raise ValueError(f"This model carries {what} (from inject, load_adapter or another AdapterBank); the bank "
                         "needs the plain base model, shared by every row. Load a fresh base model (load_encoder(), "
                         "load_decoder(), ...) and give the bank the adapters' directories.")


def _batch_size(args, kwargs) -> int | None:
    first = kwargs.get("input_ids", kwargs.get("inputs_embeds", args[0] if args else None))
    return len(first) if isinstance(first, torch.Tensor) else None


def _stack_lora(factors: list, module: nn.Module, ref: torch.Tensor):
    """[(A_u, B_u, s_u) or None per user] -> A_all (U+1, r_max, in), B_all (U+1, out, r_max), s (U+1,)."""
    present = [f for f in factors if f is not None]
    d_in, d_out = present[0][0].shape[1], present[0][1].shape[0]          # A (r, in), B (out, r)
    r = max(A.shape[0] for A, _, _ in present)                            # the largest rank: the others pad
    kw = dict(device=ref.device, dtype=module.weight.dtype)
    A_all = torch.zeros(len(factors) + 1, r, d_in, **kw)                  # slot 0 and missing users: zeros
    B_all = torch.zeros(len(factors) + 1, d_out, r, **kw)
    scaling = torch.zeros(len(factors) + 1, **kw)
    for u, item in enumerate(factors, start=1):
        if item is not None:
            A, B, s = item
            A_all[u, : A.shape[0]] = A                                     # rank r_u padded with zero rows of A
            B_all[u, :, : B.shape[1]] = B                                  # ... and zero columns of B
            scaling[u] = s
    return A_all, B_all, scaling


def _stack_prefix(tables: list, ref: torch.Tensor):
    """[(2, n_u, d_kv) or None per user] -> table (U+1, 2, n_max, d_kv), lengths (U+1,)."""
    present = [t for t in tables if t is not None]
    n = max(t.shape[1] for t in present)
    table = torch.zeros(len(tables) + 1, 2, n, present[0].shape[2], device=ref.device, dtype=ref.dtype)
    lengths = torch.zeros(len(tables) + 1, dtype=torch.long, device=ref.device)
    for u, t in enumerate(tables, start=1):
        if t is not None:
            table[u, :, : t.shape[1]] = t
            lengths[u] = t.shape[1]
    return table, lengths


def _prefix_kind(module: nn.Module) -> type:
    from .methods.prefix import prefix_wrapper

    return prefix_wrapper(module)     # the attention it was saved on took a prefix: its wrapper exists
