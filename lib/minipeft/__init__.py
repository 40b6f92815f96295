"""minipeft: parameter-efficient fine-tuning from first principles.

    import minipeft as mp
    model, tok = mp.load_encoder()                       # the embedded all-MiniLM-L6-v2, offline
    mp.inject(model, mp.LoRAConfig(r=8, targets=["query", "value"]))
    mp.print_trainable_parameters(model)
"""

from .backbones import (MissingAssetError, load_decoder, load_encoder, tiny_decoder, tiny_encoder,
                        tiny_gpt2)
from .inject import PeftConfig, PeftLayer, PeftModule, inject, merge, peft_layers
from .params import print_trainable_parameters, summary, trainable_parameters
from .lora import LoRAConfig
from .ia3 import IA3Config
from .bitfit import BitFitConfig
from .checkpoint import load_adapter, save_adapter
from .interop import export_peft
from .adapters import AdapterConfig, set_adapter_layers
from .prompt import PromptConfig, nearest_tokens
from .ptuning import PTuningConfig, fold_prompt_encoder
from .prefix import PrefixConfig, fold_prefix, prefix_attention_mass, prefix_table
from .adalora import AdaLoRAConfig, orthogonal_regularization, rank_pattern, update_and_allocate
from .kronecker import KronABConfig, KronAConfig
from .hadamard import LoHaConfig
from .lokr import LoKrConfig

__version__ = "0.1.0"


def quick_mode() -> bool:
    """True when MINIPEFT_QUICK=1: chapters then run the same code on less data and fewer steps (CI, live demos)."""
    import os

    return os.environ.get("MINIPEFT_QUICK", "0") == "1"
