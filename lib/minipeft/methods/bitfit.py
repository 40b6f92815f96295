"""BitFit: train only the bias terms (Ben Zaken, Ravfogel & Goldberg 2021, "BitFit: Simple Parameter-efficient
Fine-tuning for Transformer-based Masked Language-models", §2-§4).

Nothing is added to the model. Every weight matrix and LayerNorm gain stays frozen; only the vectors b move:

    Q(x)  = W_q x + b_q          K(x) = W_k x + b_k          V(x) = W_v x + b_v        attention
    h_2   = W_m1 h_1 + b_m1                                                             attention output
    h_3   = g_LN1 ⊙ norm(h_2 + x) + b_LN1                                               LayerNorm
    h_4   = GELU(W_m2 h_3 + b_m2)                                                       FFN up  ("intermediate")
    h_5   = W_m3 h_4 + b_m3                                                             FFN down
    out   = g_LN2 ⊙ norm(h_5 + h_3) + b_LN2                                             LayerNorm
            └──────frozen──────┘   └─trainable─┘

About 0.1% of BERT's parameters. §4 shows that an even smaller subset, the query and the FFN-up biases
(b_q and b_m2), does nearly as well: ``BitFitConfig(targets=["query", "intermediate.dense"])``.
As in the paper, train the classification head too: ``modules_to_save=["head"]``.

Models without biases (Llama, and so SmolLM2) have nothing for BitFit to train: inject raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..core.config import PeftConfig
from ..core.targets import resolve_targets


@dataclass
class BitFitConfig(PeftConfig):
    # targets: None -> every bias in the model (the paper's BitFit); a list / regex -> only those modules' biases

    method: ClassVar[str] = "bitfit"
    uses_targets: ClassVar[bool] = False  # BitFit wraps nothing: it unfreezes existing parameters

    def bias_names(self, model: nn.Module) -> list[str]:
        """Full names of the bias parameters BitFit trains, e.g. 'encoder.layer.0.attention.self.query.bias'."""
        params = [name for name, _ in model.named_parameters()]
        if self.targets is None:
            return [n for n in params if n.rsplit(".", 1)[-1] == "bias"]
        modules = resolve_targets(model, self.targets)
        # a module already wrapped by another method (LoRA...) keeps its bias inside base_layer
        found = {m: [n for n in params if n in (f"{m}.bias", f"{m}.base_layer.bias")] for m in modules}
        without = [m for m, names in found.items() if not names]
        if without:
            raise ValueError(f"BitFit targets {without[:3]} have no bias parameter. Target modules with a bias, "
                             "e.g. ['query', 'intermediate.dense'], or pass targets=None for every bias.")
        return [n for names in found.values() for n in names]

    def prepare(self, model: nn.Module) -> None:
        if not self.bias_names(model):
            raise ValueError(f"This {type(model).__name__} has no bias parameters (Llama-style models such as "
                             "SmolLM2 are built without them), so BitFit has nothing to train. Use LoRA or IA3.")

    def extra_trainable(self, model: nn.Module) -> list[str]:
        return self.bias_names(model)

    def to_peft(self, model: nn.Module):
        raise TypeError("Hugging Face peft has no BitFit method (its closest, LoraConfig(bias='all'), always adds "
                        "LoRA matrices too), so a BitFit model cannot be exported to peft's format. Save it with "
                        "minipeft.save_adapter(model, dir) instead.")
