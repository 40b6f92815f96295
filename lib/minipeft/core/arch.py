"""Recognising a transformer's structure, so that every method has default targets on models it has never seen.

Every Transformer block holds the same parts, whatever its authors called them:

    block ℓ  ─┬─ attention:  q  k  v  (or one fused qkv)  ──▶ softmax ──▶  o
              └─ FFN:        in (up; and gate, if gated)  ──▶ γ ──▶  out (down)

``recognise(model)`` finds them from the model itself rather than from a table of names per model type:

    blocks     the items of the first ModuleList of linear layers (``encoder.layer.3``, ``model.layers.3``,
               ``encoder.block.3``; an encoder-decoder has two such lists)
    attention  the linear layers below a module whose class name says Attention (BertAttention, LlamaAttention,
               T5LayerCrossAttention, ...); q / k / v by their last name (q, query, q_proj, q_lin, query_proj; the
               same for k and v); among the others, one that maps d -> more than d is a fused qkv (GPT-2's c_attn,
               GPT-NeoX's query_key_value, Phi-3's qkv_proj) and one that returns to d is o
    FFN        the other linear layers of the block: the last one that returns to d is "out", the rest are "in"
               (two of them, or one twice as wide as out's input: a gated FFN); the FFN BLOCK is the smallest module
               holding all of them (Llama / GPT-2 ``mlp``, T5 ``DenseReluDense``, DistilBERT ``ffn``), or, in the
               BERT family, the FFN's second half (``output``), which takes the FFN input as its residual argument

Each role is then named for the method's ``targets`` by the shortest suffix that matches exactly those modules
(``query``, ``q_proj``, ``c_attn``), or by the full names where no suffix is unique (BERT's FFN ``output.dense``
also ends ``attention.output.dense``). ``str(recognise(model))`` says what was found, e.g.
``decoder, separate q/k/v (grouped-query), gated FFN in one module (mlp)``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from torch import nn

from .checks import is_linear as _is_linear, linear_shape as _shape
from .layers import PeftModule

ROLE_NAMES = {"q": ("q", "query"), "k": ("k", "key"), "v": ("v", "value")}  # after dropping _proj / _lin
ROLES = ("q", "k", "v", "qkv", "o", "ffn_in", "ffn_out", "ffn_block", "attention")


def _role_by_name(leaf: str) -> str | None:
    base = re.sub(r"_(proj|lin)$", "", leaf.lower())
    return next((role for role, names in ROLE_NAMES.items() if base in names), None)


@dataclass
class Architecture:
    """What ``recognise`` found: full module names per role, and the words that describe the model."""

    model_type: str | None
    kind: str                                    # encoder | decoder | encoder-decoder | vision encoder
    names: dict[str, list[str]] = field(default_factory=dict)   # role -> full module names, in model order
    gated: bool = False                          # a gated FFN (Llama's gate_proj, T5 v1.1's wi_0, Phi-3's gate_up)
    ffn_form: str = ""                           # "one module" | "split" (BERT) | "" (linears directly in the block)
    notes: list[str] = field(default_factory=list)              # the description's parts
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (d_out, d_in) of every linear layer found

    def __str__(self) -> str:
        return ", ".join([self.kind, *self.notes])

    def has(self, *roles: str) -> bool:
        return all(self.names.get(role) for role in roles)

    def targets(self, *roles: str, model: nn.Module) -> list[str]:
        """The modules of ``roles`` as a target list: the shortest unique suffix per role, else full names."""
        out: list[str] = []
        for role in roles:
            out += short_names(model, self.names.get(role, []))
        return out


def short_names(model: nn.Module, full: list[str]) -> list[str]:
    """The shortest suffixes (peft's list syntax) that match exactly the modules ``full``, else the full names.
    A suffix may not contain a layer index: 'layer.0.output.dense' would be one layer's name, not a role's."""
    if not full:
        return []
    every = [n for n, _ in model.named_modules() if n]
    chosen: list[str] = []
    for name in full:
        if any(name == c or name.endswith("." + c) for c in chosen):
            continue
        parts = name.split(".")
        for k in range(1, len(parts)):
            suffix = ".".join(parts[-k:])
            if parts[-k].isdigit():
                return list(full)
            if all(n in full for n in every if n == suffix or n.endswith("." + suffix)):
                chosen.append(suffix)
                break
        else:
            return list(full)
    return chosen


def _blocks(model: nn.Module) -> list[str]:
    """Names of the Transformer blocks: items of the outermost ModuleLists that hold linear layers."""
    blocks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and not any(name.startswith(b + ".") for b in blocks):
            items = [f"{name}.{i}" for i, child in enumerate(module) if any(map(_is_linear, child.modules()))]
            if len(items) == len(module) and items:
                blocks += items
    return blocks


def _kind(model: nn.Module) -> str:
    cfg = next((m.config for m in model.modules() if getattr(m, "config", None) is not None), None)
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder"
    backbone = next((m for m in model.modules() if hasattr(m, "main_input_name")), model)
    if getattr(backbone, "main_input_name", "input_ids") == "pixel_values":
        return "vision encoder"
    causal = getattr(cfg, "is_decoder", False) or any(
        getattr(m, "is_causal", False) for m in model.modules() if "Attention" in type(m).__name__)
    return "decoder" if causal else "encoder"


def recognise(model: nn.Module) -> Architecture:
    """Find q, k, v (or a fused qkv), o, the FFN's in / out projections and its block in ``model``."""
    from .targets import model_type

    arch = Architecture(model_type(model), _kind(model))
    names: dict[str, list[str]] = {role: [] for role in ROLES}
    modules = dict(model.named_modules(remove_duplicate=False))  # a module shared by blocks (the prefix table)
    for block in _blocks(model):                                    # is found under each block's name
        attention, ffn = [], []
        for rel, module in modules[block].named_modules():
            if not rel or not _is_linear(module):
                continue
            path = rel.split(".")
            ancestors = [modules[".".join([block, *path[:i]])] for i in range(1, len(path))]
            if any(isinstance(a, PeftModule) and path[i + 1] != "base_layer" for i, a in enumerate(ancestors)):
                continue                                   # a PEFT method's own layers (an adapter's down / up)
            owners = [type(a).__name__ for a in ancestors]
            # a module another method wrapped (LoRA's query.base_layer) keeps the name a target uses: query
            rel = rel.replace(".base_layer", "")
            arch.shapes[f"{block}.{rel}"] = _shape(module)
            (attention if any("Attention" in o for o in owners) else ffn).append((rel, module))
        d = None
        for rel, module in attention:
            role = _role_by_name(rel.rsplit(".", 1)[-1])
            if role:
                names[role].append(f"{block}.{rel}")
                d = _shape(module)[1]
        for rel, module in attention:
            if _role_by_name(rel.rsplit(".", 1)[-1]):
                continue
            d_out, d_in = _shape(module)
            d = d or d_in
            names["qkv" if d_in == d and d_out > d else "o"].append(f"{block}.{rel}")
        qs = [n for n in names["q"] + names["qkv"] if n.startswith(block + ".")]
        for n in qs:  # the module that computes the attention: the smallest one holding q, k and v
            parent = n.rsplit(".", 1)[0]
            if parent not in names["attention"]:
                names["attention"].append(parent)
        if not ffn or d is None:
            continue
        outs = [(rel, m) for rel, m in ffn if _shape(m)[0] == d]
        if not outs:
            continue
        out_rel = outs[-1][0]
        names["ffn_out"].append(f"{block}.{out_rel}")
        ins = [(rel, m) for rel, m in ffn if rel != out_rel]
        names["ffn_in"] += [f"{block}.{rel}" for rel, _ in ins]
        d_ff = _shape(outs[-1][1])[1]
        arch.gated = len(ins) > 1 or any(_shape(m)[0] == 2 * d_ff for _, m in ins)
        common = _common_prefix([rel for rel, _ in ffn])
        if common:                                     # one module holds the whole FFN (Llama's mlp)
            names["ffn_block"].append(f"{block}.{common}")
            arch.ffn_form = "one module"
        else:                                          # BERT family: the second half takes the residual
            half = out_rel.rsplit(".", 1)[0] if "." in out_rel else ""
            second = modules.get(f"{block}.{half}")
            second = getattr(second, "base_layer", second)   # a parallel adapter may already sit there
            if half and second is not None and len(inspect.signature(second.forward).parameters) >= 2:
                names["ffn_block"].append(f"{block}.{half}")
                arch.ffn_form = "split"
    arch.names = {role: found for role, found in names.items() if found}
    arch.notes = _describe(arch)
    return arch


def _common_prefix(rels: list[str]) -> str:
    parents = [r.split(".")[:-1] for r in rels]
    common = []
    for parts in zip(*parents):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)


def _describe(arch: Architecture) -> list[str]:
    n = arch.names
    if n.get("qkv"):
        notes = [f"fused qkv ({n['qkv'][0].rsplit('.', 1)[-1]})"]
    elif n.get("q") and n.get("k"):
        gqa = arch.shapes[n["k"][0]][0] < arch.shapes[n["q"][0]][0]
        notes = ["separate q/k/v" + (" (grouped-query)" if gqa else "")]
    else:
        return ["no attention projections recognised"]
    if not n.get("ffn_out"):
        return notes + ["no feed-forward block recognised"]
    block = n["ffn_block"][0].rsplit(".", 1)[-1] if n.get("ffn_block") else ""
    where = {"one module": f"FFN in one module ({block})",
             "split": f"FFN split in two modules (the second, {block}, takes the residual)",
             "": "FFN layers directly in the block (no FFN module)"}[arch.ffn_form]
    return notes + [("gated " if arch.gated else "") + where]
