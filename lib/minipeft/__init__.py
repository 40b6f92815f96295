"""minipeft: parameter-efficient fine-tuning from first principles.

    import minipeft as mp
    model, tok = mp.load_encoder()                       # the embedded all-MiniLM-L6-v2, offline
    mp.inject(model, mp.LoRAConfig(r=8, targets=["query", "value"]))
    mp.print_trainable_parameters(model)

The package in three parts:
    core/      the one injection mechanism, the layer and config base classes, checks, save/load, export to peft
    methods/   one paper per file (adapters, LoRA, DoRA, prefix, prompt, P-tuning, MPT, IA3, BitFit, AdaLoRA,
               Kronecker, Hadamard, LoKr)
    lab/       the course's offline world: backbones, data, the training loop, chapter helpers, set-up tools
and lowrank.py, the linear algebra the chapters share (spectra, subspace similarity), quantize.py, an int8
frozen base (QLoRA's idea), and serving.py, many users' adapters in one batch (AdapterBank).
"""

import os

# OpenMP threads that wait for work by spinning burn the cores another busy process needs (a second kernel, a
# browser): with one competing process chapter 00 took 4.4x its idle time with spinning threads, 1.2x with sleeping
# ones, at the same idle speed (docs/benchmarks.md). Takes effect only if torch was not imported before minipeft;
# `make` sets it for every kernel and test. The numbers computed do not change.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .core import (LinearDeltaLayer, ParallelFFNLayer, PeftConfig, PeftLayer, PeftModule, disabled, export_peft, import_peft,
                   inject, load_adapter, merge, peft_layers, print_trainable_parameters, recognise, save_adapter,
                   summary, trainable_parameters)
from .lab import backbones, chapter, data, exercises, quick_mode, train
from .lab.backbones import MissingAssetError, load_decoder, load_encoder, tiny_decoder, tiny_encoder, tiny_gpt2
from .methods.adalora import AdaLoRAConfig, orthogonal_regularization, rank_pattern, update_and_allocate
from .methods.adapters import AdapterConfig, set_adapter_layers
from .methods.bitfit import BitFitConfig
from .methods.dora import DoRAConfig
from .methods.hadamard import LoHaConfig
from .methods.ia3 import IA3Config
from .methods.kronecker import KronABConfig, KronAConfig
from .methods.lokr import LoKrConfig
from .methods.lora import LoRAConfig
from .methods.pfedpara import PFedParaConfig
from .methods.mpt import MPTConfig, set_task, use_task
from .methods.prefix import PrefixConfig, fold_prefix, prefix_attention_mass, prefix_table
from .methods.prompt import PromptConfig
from .methods.ptuning import PTuningConfig, fold_prompt_encoder
from .methods.softprompt import nearest_tokens, prompt_embeddings
from .quantize import Int8Linear, dequantize, model_bytes, quantize_frozen
from .serving import AdapterBank

__version__ = "0.1.0"
