"""Finding modules: target matching (Hugging Face peft's syntax), the backbone inside a wrapper, parents.

Target syntax (the same as peft, so peft users feel at home):
    a list of strings  -> each matches a module whose full name equals it or ends with "." + it
    a single string    -> a regular expression that must match the whole module name (re.fullmatch)
"""

from __future__ import annotations

import re
from collections import Counter

from torch import nn


def model_type(model: nn.Module) -> str | None:
    """config.model_type of a transformers model, also when it sits inside a wrapper such as a classifier."""
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and getattr(cfg, "model_type", None):
            return cfg.model_type
    return None


def find_backbone(model: nn.Module) -> nn.Module:
    """The outermost transformers model inside ``model`` (the model itself, or e.g. a classifier's encoder)."""
    from transformers import PreTrainedModel

    for module in model.modules():  # pre-order: the outermost comes first
        if isinstance(module, PreTrainedModel):
            return module
    raise TypeError(f"Soft prompts need a Hugging Face transformers model inside the {type(model).__name__}: "
                    "none was found.")


def matches(name: str, targets: str | list[str]) -> bool:
    """Does the module called ``name`` match ``targets`` (a list of names/suffixes, or one regex)?"""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def get_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(the module holding ``name``, the attribute it is stored under): setattr(parent, child, new) replaces it."""
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def describe_modules(model: nn.Module, limit: int = 40) -> str:
    """A compact list of the module names a student can target: leaf names with their type and count."""
    counts = Counter()
    for name, module in model.named_modules():
        if name and not list(module.children()):
            counts[(name.rsplit(".", 1)[-1], type(module).__name__)] += 1
    rows = [f"{leaf} ({kind} x{n})" for (leaf, kind), n in sorted(counts.items())]
    more = f", ... ({len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(rows[:limit]) + more


def resolve_targets(model: nn.Module, targets: str | list[str], what: str = "targets") -> list[str]:
    """Full names of the modules matched by ``targets``; a clear error when a pattern matches nothing."""
    if isinstance(targets, (list, tuple)):
        if not targets:
            raise ValueError(f"{what} is empty: name at least one module, e.g. ['query', 'value'].")
        bad = [t for t in targets if not isinstance(t, str) or not t]
        if bad:
            raise TypeError(f"{what} must be module names (strings); got {bad!r}.")
        dupes = [t for t, n in Counter(targets).items() if n > 1]
        if dupes:
            raise ValueError(f"{what} names {dupes} more than once: each module can be targeted only once.")
    elif not isinstance(targets, str):
        raise TypeError(f"{what} must be a list of module names or a regex string, not {type(targets).__name__}.")
    else:
        try:
            re.compile(targets)
        except re.error as err:
            raise ValueError(f"{what}={targets!r} is read as ONE regular expression over the full module name "
                             f"(peft's syntax), and it is not a valid one ({err}). To name modules, pass a list: "
                             f"{what}=['query', 'value'].") from None
    every = [n for n, _ in model.named_modules() if n and matches(n, targets)]
    # never descend into a wrapper's own base_layer / sub-modules
    names = [n for n in every if ".base_layer" not in n]
    unmatched, problems = [], []
    for t in ([targets] if isinstance(targets, str) else targets):
        pattern = t if isinstance(targets, str) else [t]
        if any(matches(n, pattern) for n in names):
            continue
        wrapped = [n for n in every if matches(n, pattern)]
        suffix = [n for n, _ in model.named_modules() if n and ".base_layer" not in n and matches(n, [t])]
        if wrapped:
            owner = type(model.get_submodule(wrapped[0].split(".base_layer")[0])).__name__
            problems.append(f"{t!r} exists only inside another method's wrapper ({wrapped[0]}, wrapped by {owner}): "
                            "a module inside a wrapper cannot be wrapped again; inject this method first, then the "
                            "one that wraps the whole block")
        elif isinstance(targets, str) and suffix:
            problems.append(f"{t!r} is read as ONE regular expression that must match the WHOLE module name "
                            f"(e.g. {suffix[0]}); to name modules by their last part, pass a list: {what}=[{t!r}]")
        else:
            unmatched.append(t)
    if unmatched:
        problems.insert(0, f"{unmatched} matched no module of this {type(model).__name__}")
    if problems:
        raise ValueError(f"{what} " + "; ".join(problems) + f". Modules that exist: {describe_modules(model)}.")
    return names


def default_targets(config, model: nn.Module) -> str | list[str]:
    """The method's default targets for this model: ``config.DEFAULT_TARGETS[model_type]`` where a method pins a
    choice for a model type, else the parts of each block named by ``config.ROLES`` (q and v, the FFN's
    down-projection, ...), found by recognising the model's structure (core/arch.py)."""
    from .arch import recognise, short_names

    kind = model_type(model)
    table = config.DEFAULT_TARGETS
    if kind in table:
        targets = table[kind]  # a list of names, or one regex (same syntax as config.targets)
        return targets if isinstance(targets, str) else list(targets)
    arch = recognise(model)
    roles = list(config.ROLES)
    if not arch.has("q") and arch.has("qkv"):  # GPT-2, GPT-NeoX, Phi-3: one fused projection computes q, k, v
        roles = list(dict.fromkeys("qkv" if r in ("q", "k", "v") else r for r in roles))
    missing = [r for r in roles if not arch.has(r)]
    if not roles or missing:
        what = (f"targets the {' + '.join(ROLE_WORDS.get(r, r) for r in roles)} of every block by default, and "
                f"this model has no {' / '.join(ROLE_WORDS.get(r, r) for r in missing)}") if roles else \
            "has no default targets"
        raise ValueError(
            f"{type(config).__name__} {what}: no default targets for model_type={kind!r} "
            f"(recognised as: {arch}). Pass targets=[...]; modules that exist: {describe_modules(model)}.")
    names = config.restrict_defaults([n for r in roles for n in arch.names[r]])
    return names if len(names) != sum(len(arch.names[r]) for r in roles) else short_names(model, names)


# what each role of core/arch.py is, in an error message
ROLE_WORDS = {"q": "query projection", "k": "key projection", "v": "value projection",
              "qkv": "fused q/k/v projection", "o": "attention output projection", "ffn_in": "FFN up-projection",
              "ffn_out": "FFN down-projection", "ffn_block": "FFN module (a module holding the whole FFN, or BERT's "
              "second FFN half)", "attention": "self-attention module"}
