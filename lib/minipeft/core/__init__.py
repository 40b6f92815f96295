"""The core: the one injection mechanism, the layer and config base classes, and what every method shares.

    layers.py      PeftLayer (a wrapper) · LinearDeltaLayer (ΔW drives merge) · ParallelFFNLayer (beside an FFN)
    config.py      PeftConfig: targets, modules_to_save, the hooks inject calls, the save/load registry
    targets.py     target matching (peft's syntax), default targets, the backbone inside a wrapper
    arch.py        recognising a model's structure (q/k/v/o, the FFN) for default targets on any architecture
    inject.py      inject -> freeze; merge; disabled (the base model inside a with block); the PEFT parameters
    checks.py      validators with clear messages, require_linear, the q/v target table, peft config skeletons
    params.py      the parameter counter
    checkpoint.py  save_adapter / load_adapter (minipeft's own format)
    interop.py     export_peft (Hugging Face peft's format)
    frompeft.py    import_peft: an adapter saved by peft, as minipeft configs
"""

from .arch import recognise
from .checkpoint import load_adapter, save_adapter
from .config import PeftConfig
from .inject import disabled, inject, mark_trainable, merge, peft_layers, peft_parameter_names
from .frompeft import import_peft
from .interop import export_peft
from .layers import LinearDeltaLayer, ParallelFFNLayer, PeftLayer, PeftModule
from .params import print_trainable_parameters, summary, trainable_parameters
from .targets import default_targets, find_backbone, model_type, resolve_targets
