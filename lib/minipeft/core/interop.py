"""Export to Hugging Face peft's format, so a model trained here loads with the library people use in practice:

    minipeft.export_peft(model, "runs/lora-peft")        adapter_config.json + adapter_model.safetensors
    fresh, tok = minipeft.load_encoder()
    peft_model = peft.PeftModel.from_pretrained(fresh, "runs/lora-peft")   # same outputs as `model`

Each method's config translates itself (``PeftConfig.to_peft(model)`` -> (adapter_config dict, tensors with peft's
names, e.g. ``base_model.model.<module>.lora_A.weight``)). This file adds what all methods share: the
``modules_to_save`` (a classifier head, saved in full) and the two files. peft is not needed to export.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from .inject import peft_layers

# peft's prompt-learning methods keep the base model at "base_model", tuners at "base_model.model"
PROMPT_LEARNING = {"PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CPT"}


def _name_or_path(model: nn.Module) -> str | None:
    for module in model.modules():  # also finds the backbone's config inside a wrapper such as a classifier
        name = getattr(getattr(module, "config", None), "name_or_path", None)
        if name:
            return name
    return None


def export_peft(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model``'s PEFT method as a Hugging Face peft adapter directory (one method per directory)."""
    configs = getattr(model, "minipeft_configs", None)
    if not configs:
        raise ValueError("This model carries no PEFT method to export: call minipeft.inject(model, config) first.")
    if len(configs) > 1:
        methods = " + ".join(c.method for c in configs)
        raise ValueError(f"This model stacks several methods ({methods}); a peft adapter holds one. Export a model "
                         "with a single config, or keep the stack with minipeft.save_adapter(model, dir).")
    merged = [name for name, layer in peft_layers(model).items() if layer.merged]
    if merged:
        raise ValueError(f"{merged[:3]} are merged into their base weights; peft would add the update a second time. "
                         "Call .unmerge() on those layers before exporting.")

    adapter_config, state = configs[0].to_peft(model)  # raises for methods peft does not have
    save = list(model.minipeft_modules_to_save)
    tied = tied_partners(model, save)
    if tied:
        # a module saved in full shares its weight with another (tied input / output embeddings): training it here
        # trained both, while peft would copy only the named one and keep the other at its base value (the tiny
        # decoder's logits then differ by 3.97). Saving every module that holds the shared tensor keeps them equal;
        # peft's LoRA also re-ties them (ensure_weight_tying), so that they stay one tensor if training goes on.
        save += tied
        if adapter_config["peft_type"] == "LORA":
            adapter_config["ensure_weight_tying"] = True
    if adapter_config["peft_type"] in PROMPT_LEARNING and _saves_input_embeddings(model, save):
        raise TypeError(
            f"modules_to_save {save} holds the model's input embeddings (tied to the output head, or named), and "
            "peft's prompt-learning methods read the token embeddings through their own reference to the ORIGINAL "
            "embedding layer: peft would load the trained copy but embed the input tokens with the base values, a "
            "different model. Export a prompt without training the embeddings (e.g. modules_to_save=[] or an untied "
            "head), or keep it with minipeft.save_adapter.")
    if save:  # trained in full: peft stores the whole module under its usual name
        prefix = "base_model." if adapter_config["peft_type"] in PROMPT_LEARNING else "base_model.model."
        adapter_config["modules_to_save"] = save
        for module_name in save:
            for name, p in model.get_submodule(module_name).named_parameters():
                state[f"{prefix}{module_name}.{name}"] = p
    adapter_config.setdefault("base_model_name_or_path", _name_or_path(model))

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}  # clone: no shared storage
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    return directory


def tied_partners(model: nn.Module, names: list[str]) -> list[str]:
    """The other modules that hold a parameter of the modules ``names`` (tied weights, e.g. a decoder's lm_head and
    embed_tokens), by full name, in model order."""
    shared = {id(p) for name in names for p in model.get_submodule(name).parameters()}
    inside = tuple(f"{name}." for name in names)
    return [name for name, module in model.named_modules(remove_duplicate=False)
            if name and name not in names and not name.startswith(inside)
            and any(id(p) in shared for p in module.parameters(recurse=False))]


def _saves_input_embeddings(model: nn.Module, names: list[str]) -> bool:
    from .targets import find_backbone

    embeddings = find_backbone(model).get_input_embeddings()
    ids = {id(p) for p in embeddings.parameters()}
    return any(id(p) in ids for name in names for p in model.get_submodule(name).parameters())
