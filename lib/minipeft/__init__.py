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

__version__ = "0.1.0"
