"""Save and load an adapter: only the PEFT state, a few hundred kB instead of the whole model.

    save_adapter(model, "runs/lora")                     runs/lora/minipeft_config.json      the configs
                                                         runs/lora/minipeft_adapter.safetensors   the trained tensors
    base, tok = load_encoder()
    load_adapter(base, "runs/lora")                      injects the saved configs, then loads the tensors

What is saved is exactly what inject made trainable (``core.inject.peft_parameter_names``): the method's parameters,
the parameters a method unfreezes (BitFit's biases) and ``modules_to_save`` (a classifier head). Loading checks
every key, shape and config field first and changes nothing unless all of them fit.

Saving never destroys the previous adapter: both files are written aside (``*.part``) and renamed into place only
when both are complete, and the config records the SHA-256 of the weights it belongs to, so a pair that does not
belong together (a save interrupted between the two renames) is refused on loading instead of read silently.
(For Hugging Face peft's own format see ``minipeft.export_peft``.)
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from .config import PeftConfig
from .inject import inject, peft_buffer_names, peft_layers, peft_parameter_names

CONFIG_FILE = "minipeft_config.json"
WEIGHTS_FILE = "minipeft_adapter.safetensors"


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Write the PEFT tensors (safetensors) and the configs (json) of ``model`` to ``directory``."""
    configs = getattr(model, "minipeft_configs", None)
    if not configs:
        raise ValueError("This model carries no PEFT method to save: call minipeft.inject(model, config) first "
                         "(a merged model is an ordinary model: save it with model.save_pretrained).")
    directory = Path(directory)
    params = dict(model.named_parameters())
    state = {name: params[name].detach().cpu().contiguous() for name in peft_parameter_names(model)}
    state |= {name: model.get_buffer(name).detach().cpu().contiguous() for name in peft_buffer_names(model)}
    weights = save(state, metadata={"format": "pt"})                    # bytes: nothing written yet
    meta = {"configs": [c.to_dict() for c in configs], "modules_to_save": model.minipeft_modules_to_save,
            "weights_sha256": hashlib.sha256(weights).hexdigest()}
    text = json.dumps(meta, indent=2)                                  # fails here, before any file is touched
    directory.mkdir(parents=True, exist_ok=True)
    parts = [(directory / (WEIGHTS_FILE + ".part"), weights), (directory / (CONFIG_FILE + ".part"), text.encode())]
    try:
        for part, data in parts:
            part.write_bytes(data)
    except BaseException:
        for part, _ in parts:
            part.unlink(missing_ok=True)
        raise
    os.replace(parts[0][0], directory / WEIGHTS_FILE)                   # both complete: swap them in
    os.replace(parts[1][0], directory / CONFIG_FILE)
    return directory


def read_adapter(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(the saved metadata: configs, modules_to_save; the saved tensors by name), checked to belong together."""
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (directory / f).is_file()]
    if missing:
        hint = " (this looks like a Hugging Face peft adapter: load it with peft.PeftModel.from_pretrained)" \
            if (directory / "adapter_config.json").is_file() else ""
        raise FileNotFoundError(f"{directory} has no {' / '.join(missing)}{hint}. "
                                "Save an adapter there with minipeft.save_adapter(model, dir).")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}): the file is damaged or was not written by "
                         "minipeft.save_adapter. Save the adapter again.") from None
    weights = weights_path.read_bytes()
    expected = meta.get("weights_sha256") if isinstance(meta, dict) else None
    if expected is not None and hashlib.sha256(weights).hexdigest() != expected:
        raise ValueError(f"{weights_path} is not the file {config_path} was saved with (its SHA-256 differs): a save "
                         "was interrupted or one of the two files was replaced. Save the adapter again.")
    try:
        state = load(weights)
    except (SafetensorError, ValueError) as err:
        raise ValueError(f"{weights_path} cannot be read as safetensors ({err}): the file is truncated or damaged. "
                         "Save the adapter again.") from None
    return meta, state


def _config_mismatches(saved: list[dict], current: list[PeftConfig]) -> list[str]:
    current = [json.loads(json.dumps(c.to_dict())) for c in current]  # tuples -> lists, as in the file
    if [c["method"] for c in saved] != [c["method"] for c in current]:
        return [f"methods: saved {[c['method'] for c in saved]}, model has {[c['method'] for c in current]}"]
    return [f"{s['method']}.{key}: saved {s.get(key)!r}, model has {c.get(key)!r}"
            for s, c in zip(saved, current) for key in sorted(set(s) | set(c)) if s.get(key) != c.get(key)]


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose tensors live on the "meta" device (shapes, no memory): inject into it, load into it,
    and every shape error shows up before the real model is touched."""
    memo = {id(t): (nn.Parameter(t.to("meta"), t.requires_grad) if isinstance(t, nn.Parameter) else t.to("meta"))
            for t in [*model.parameters(), *model.buffers()]}
    return copy.deepcopy(model, memo)


def ghost_with(model: nn.Module, configs: list[PeftConfig]) -> nn.Module:
    """meta_copy(model) with ``configs`` injected: what the model would look like, found without touching it.
    Raises as inject would."""
    ghost = meta_copy(model)
    with torch.random.fork_rng():  # the ghost's random initialisation must not shift the user's random stream
        for config in configs:
            inject(ghost, config)
    return ghost


def _expected_shapes(model: nn.Module, configs: list[PeftConfig]) -> dict[str, torch.Size]:
    """Shapes of the PEFT tensors ``model`` would have after injecting ``configs``, found on a meta-device copy:
    the real model is only touched once we know the file fits."""
    ghost = ghost_with(model, configs)
    params = dict(ghost.named_parameters())
    return ({name: params[name].shape for name in peft_parameter_names(ghost)},
            {name: ghost.get_buffer(name).shape for name in peft_buffer_names(ghost)})


def check_fits(directory: Path, model: nn.Module, state: dict[str, torch.Tensor], expected: dict, buffers: dict):
    """Raise unless the saved ``state`` has exactly the ``expected`` parameter names and shapes (buffers may be
    missing: an adapter saved before buffers were saved keeps their initial value)."""
    problems = [f"missing {n}" for n in expected if n not in state]
    shapes = expected | buffers
    problems += [f"unexpected {n}" for n in state if n not in shapes]
    problems += [f"{n}: saved {tuple(t.shape)}, model needs {tuple(shapes[n])}"
                 for n, t in state.items() if n in shapes and t.shape != shapes[n]]
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise ValueError(f"The adapter in {directory} does not fit this {type(model).__name__}: "
                         + "; ".join(problems[:6]) + more + ". Was it saved from a different base model?")


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Load an adapter saved by ``save_adapter`` into ``model`` (in place; returns it).

    A model without PEFT gets the saved configs injected first; a model that already carries PEFT must carry
    the same configs. Any mismatch (config field, tensor name, shape) raises before anything is changed.
    """
    directory = Path(directory)
    meta, state = read_adapter(directory)
    saved_configs = [PeftConfig.from_dict(c) for c in meta["configs"]]
    fresh = not getattr(model, "minipeft_configs", None)

    if fresh:
        expected, buffers = _expected_shapes(model, [c.for_loading() for c in saved_configs])
    else:
        wrong = _config_mismatches(meta["configs"], model.minipeft_configs)
        if sorted(meta["modules_to_save"]) != sorted(model.minipeft_modules_to_save):
            wrong.append(f"modules_to_save: saved {meta['modules_to_save']}, "
                         f"model has {model.minipeft_modules_to_save}")
        if wrong:
            raise ValueError(f"The adapter in {directory} was saved with other settings than this model's PEFT: "
                             + "; ".join(wrong) + ". Load it into a fresh base model (load_adapter injects the "
                             "saved configs itself), or inject the same configs.")
        merged = [name for name, layer in peft_layers(model).items() if layer.merged]
        if merged:
            raise ValueError(f"{merged[:3]} are merged into their base weights: loading new values would leave the "
                             "old update inside W0. Call .unmerge() on them first.")
        params = dict(model.named_parameters())
        expected = {name: params[name].shape for name in peft_parameter_names(model)}
        buffers = {name: model.get_buffer(name).shape for name in peft_buffer_names(model)}

    check_fits(directory, model, state, expected, buffers)
    if fresh:
        for config in saved_configs:
            inject(model, config.for_loading())       # the tensors come from the file: no tokenizer needed
        model.minipeft_configs[-len(saved_configs):] = saved_configs   # but the model remembers the saved configs
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            (params[name] if name in params else model.get_buffer(name)).copy_(tensor)
    return model
