"""What every method file would otherwise repeat: hyper-parameter validators with the course's clear messages,
the checks on what a method may wrap, the default roles most methods share (core/arch.py), and the skeleton of a
Hugging Face peft adapter config. A method file keeps what its paper says; the boilerplate lives here.
"""

from __future__ import annotations

import math
import numbers

from torch import nn

from .inject import peft_layers
from .targets import default_targets

# --------------------------------------------------------------------------------------------- default targets
# the parts of a block a method targets by default (PeftConfig.ROLES; core/arch.py finds them in any model)
# W_q and W_v: LoRA's choice (§4.2, §7.1), and peft's default for LoRA, AdaLoRA, LoHa and LoKr; GPT-2, GPT-NeoX and
# Phi-3 compute q, k, v with one fused projection, which is then the target
QUERY_VALUE: tuple[str, ...] = ("q", "v")
# the whole feed-forward block of a layer (Llama / GPT-2 "mlp", T5 "DenseReluDense"; BERT's FFN is split in two
# modules: its second half "output", which takes the FFN input as its residual, see layers.ParallelFFNLayer)
FFN_BLOCK: tuple[str, ...] = ("ffn_block",)


# --------------------------------------------------------------------------------------------- hyper-parameters
def _is_int(value) -> bool:
    # any integer, numpy's too (np.int64(8) is a valid rank); a bool is not a number here
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    # a FINITE real number: NaN passes every comparison test below (NaN <= 0 is False) and inf is no size
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(value, what: str, example: str, minimum: int = 1, meaning: str = "", type_error: bool = False) -> None:
    """``value`` is an int ≥ minimum (bools are not ints here: r=True is a mistake, not r=1).

    ``meaning`` says what the number is (shown with the example); ``type_error``: a non-int raises TypeError.
    """
    note = f"{meaning}, " if meaning else ""
    if type_error and not _is_int(value):
        raise TypeError(f"{what} must be an int ({note}e.g. {example}), not {type(value).__name__}: {value!r}.")
    if not _is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise ValueError(f"{what} must be {kind} ({note}e.g. {example}), got {value!r}.")


def check_positive(value, what: str, example: str, allow_zero: bool = False) -> None:
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "a number ≥ 0" if allow_zero else "a positive number"
        raise ValueError(f"{what} must be {kind} (e.g. {example}), got {value!r}.")


def check_fraction(value, what: str, example: str) -> None:
    """A number strictly between 0 and 1 (an EMA factor)."""
    if not _is_number(value) or not 0 < value < 1:
        raise ValueError(f"{what} must be strictly between 0 and 1 (e.g. {example}), got {value!r}.")


def check_probability(value, what: str, example: str = "0.1") -> None:
    """A dropout rate: a number in [0, 1)."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{what} is a probability in [0, 1) (e.g. {example}), got {value!r}.")


def check_bool(value, what: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {value!r}.")


def check_choice(value, choices, what: str) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}: use one of {list(choices)}.")


# --------------------------------------------------------------------------------------------- what a method wraps
def is_linear(module: nn.Module) -> bool:
    """nn.Linear, GPT-2's Conv1D (a linear layer whose weight is stored (in, out)) or an int8 one (minipeft.quantize)."""
    return isinstance(module, nn.Linear) or type(module).__name__ in ("Conv1D", "Int8Linear")  # (minipeft.quantize)


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer: nn.LayerNorm, or a model's own LayerNorm / RMSNorm class (Llama, T5, Qwen...)."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def norm_parameter_names(model: nn.Module) -> list[str]:
    """The parameters of every normalisation layer of ``model`` (their gains and biases), by name."""
    return [f"{mname}.{pname}" for mname, module in model.named_modules() if is_norm(module)
            for pname, _ in module.named_parameters()]


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """(d_out, d_in) of an nn.Linear or a Conv1D."""
    w = module.weight
    return (w.shape[1], w.shape[0]) if type(module).__name__ == "Conv1D" else (w.shape[0], w.shape[1])


def require_linear(module: nn.Module, name: str, method: str, hint: str = "", verb: str = "wraps",
                   what: str = "nn.Linear (or GPT-2's Conv1D) layers", example: str = "['query', 'value']") -> None:
    """Raise a TypeError that says what to target instead, unless ``module`` is a linear layer."""
    if is_linear(module):
        return
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][:4]
    inside = f" (its linear layers: {linears})" if linears else ""
    raise TypeError(f"{method} {verb} {what}, but {name!r} is of type {type(module).__name__}{inside}. Target the "
                    f"linear layers themselves, e.g. targets={example}{hint}.")


def require_ffn_block(module: nn.Module, name: str, method: str, hint: str) -> int:
    """For methods that sit beside a whole FFN block (Llama/GPT-2 'mlp', BERT 'output'): the hidden size d."""
    projections = [m for m in module.modules() if is_linear(m)]
    if is_linear(module) or not projections:
        raise TypeError(f"{method} wraps a whole FFN block (Llama/GPT-2 'mlp', BERT 'output'), but {name!r} is "
                        f"a {type(module).__name__}. {hint}")
    return linear_shape(projections[-1])[0]  # the FFN's last projection returns to the hidden size d


def check_rank(r: int, module: nn.Module, name: str, what: str = "r", why: str = "") -> None:
    """A rank-r factorisation of a (d_out × d_in) weight needs r ≤ min(d_out, d_in)."""
    d_out, d_in = linear_shape(module)
    if r > min(d_out, d_in):
        raise ValueError(f"{what}={r} is too large for {name!r}: its weight is {d_out}×{d_in}, so the rank of "
                         f"{why or 'ΔW'} is at most {min(d_in, d_out)}. Pick {what} ≤ {min(d_in, d_out)}.")


# --------------------------------------------------------------------------------------------- peft's format
# LyCORIS-family fields of peft's LoHaConfig / LoKrConfig that minipeft does not use (their neutral values)
LYCORIS_DEFAULTS = {"rank_dropout": 0.0, "module_dropout": 0.0, "use_effective_conv2d": False, "init_weights": True,
                    "rank_pattern": {}, "alpha_pattern": {}}


def peft_tuner(config, model: nn.Module, layer_type: type, peft_type: str, *, conv1d: bool = True,
               **fields) -> tuple[dict, dict]:
    """(layers of ``layer_type`` by name, adapter_config.json dict) for a peft tuner method (LORA, IA3, ...).

    ``target_modules`` is the config's own spec (same matching rules as peft, so it carries over as is).
    ``conv1d=False``: peft's method does not support GPT-2's Conv1D, so such a model cannot be exported.
    """
    layers = {n: m for n, m in peft_layers(model).items() if isinstance(m, layer_type)}
    transposed = [n for n, m in layers.items() if m.transposed]
    if transposed and not conv1d:
        raise TypeError(f"peft's {peft_type} supports nn.Linear and convolutions, not GPT-2's Conv1D "
                        f"({transposed[:2]}), so this model cannot be exported. Save it with minipeft.save_adapter "
                        "instead.")
    target_modules = config.targets if config.targets is not None else default_targets(config, model)
    adapter_config = {"peft_type": peft_type, **fields, "target_modules": target_modules, "task_type": None}
    if conv1d:
        adapter_config["fan_in_fan_out"] = bool(transposed)  # GPT-2's Conv1D stores W as (in, out)
    return layers, adapter_config


def peft_key(module_name: str, tensor: str) -> str:
    """The name peft gives a tuner tensor: base_model.model.<module>.<tensor>."""
    return f"base_model.model.{module_name}.{tensor}"
