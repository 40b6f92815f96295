"""The way back from Hugging Face peft: open an adapter saved by peft as a minipeft model, to inspect it with the
course's tools (spectra, rank patterns, nearest tokens).

    base = AutoModelForCausalLM.from_pretrained(...)
    model = minipeft.import_peft(base, "some-peft-adapter/")      adapter_config.json + adapter_model.safetensors
    minipeft.print_trainable_parameters(model)                    the same outputs as peft.PeftModel.from_pretrained

Each peft method becomes the minipeft config with the same arithmetic, injected into ``model``; the tensors are then
copied in, translated where the layouts differ (IA3's row / column vectors, a prefix's flat table, AdaLoRA's pruned
triplets). A LoRA / LoHa / LoKr whose ``rank_pattern`` / ``alpha_pattern`` give some modules another rank or alpha
becomes one config per (rank, alpha) group: minipeft's configs hold one rank each. The module names come from the
saved tensors themselves, so the adapter lands exactly where peft put it. minipeft -> export_peft -> import_peft gives
back the same outputs, bit for bit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .checkpoint import meta_copy
from .inject import inject
from .interop import tied_partners
from .targets import find_backbone, resolve_targets

TUNER = "base_model.model."          # peft's prefix for a tuner's tensors and modules_to_save


def import_peft(model: nn.Module, directory: str | Path) -> nn.Module:
    """Load the peft adapter in ``directory`` into ``model`` (a fresh base model) as minipeft configs; returns it."""
    directory = Path(directory)
    missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} has no {' / '.join(missing)}: import_peft reads an adapter saved by "
                                "peft's save_pretrained (an adapter saved as .bin is not read: resave it).")
    if getattr(model, "minipeft_configs", None):
        raise ValueError("import_peft loads into a fresh base model; this one already carries minipeft configs.")
    cfg = json.loads((directory / "adapter_config.json").read_text())
    state = load_file(directory / "adapter_model.safetensors")
    kind = cfg.get("peft_type")
    if kind not in IMPORTERS:
        raise ValueError(f"peft_type={kind!r} has no minipeft equivalent here; import_peft reads "
                         f"{', '.join(sorted(IMPORTERS))}.")
    _refuse_options(cfg)
    saved = {k: v for k, v in state.items() if _is_saved_module(k, cfg)}
    with torch.random.fork_rng():      # first on a shape-only copy: an adapter that does not fit changes nothing
        for target in (meta_copy(model), model):
            IMPORTERS[kind](target, cfg, {k: v for k, v in state.items() if k not in saved})
            _load_modules_to_save(target, cfg, saved)
    return model


# --------------------------------------------------------------------------------------------- shared steps
def _refuse_options(cfg: dict) -> None:
    """peft options that change the arithmetic in ways minipeft does not implement: a clear error, not a wrong model."""
    set_ = [k for k in ("lora_bias", "use_qalora", "layer_replication") if cfg.get(k)]
    if cfg.get("bias", "none") != "none":
        set_.append(f"bias={cfg['bias']!r}")
    if set_:
        raise ValueError(f"This peft adapter uses {set_}, which minipeft does not implement (it would compute a "
                         "different model). Load it with peft.PeftModel.from_pretrained instead.")


def _is_saved_module(key: str, cfg: dict) -> bool:
    names = list(cfg.get("modules_to_save") or [])
    body = key.removeprefix(TUNER).removeprefix("base_model.")
    return any(body == n or body.startswith(n + ".") or re.search(rf"(^|\.){re.escape(n)}\.", body)
               for n in names) and not body.startswith("prompt_")


def _load_modules_to_save(model: nn.Module, cfg: dict, saved: dict[str, torch.Tensor]) -> None:
    """Copy modules saved in full (a classifier head, peft's ModulesToSaveWrapper) and train them, as inject would."""
    if not saved:
        return
    params = dict(model.named_parameters(remove_duplicate=False))
    found = {}
    for key, tensor in saved.items():
        name = key.removeprefix(TUNER).removeprefix("base_model.").replace(".modules_to_save", "")
        if name not in params:
            raise ValueError(f"The adapter saves {key!r} (modules_to_save) but this {type(model).__name__} has no "
                             f"parameter {name!r}: was it saved from a different base model?")
        found[name] = tensor
    modules = sorted({name.rsplit(".", 1)[0] for name in found})
    shared = {id(p) for partner in tied_partners(model, modules)
              for p in model.get_submodule(partner).parameters(recurse=False)}
    with torch.no_grad():
        for name, tensor in found.items():
            module_name, _, pname = name.rpartition(".")
            module = model.get_submodule(module_name)
            if id(params[name]) in shared:
                # peft copied only this module (a tied lm_head): its input embeddings kept the base values, so
                # untie here too, or loading the head would change the embeddings as well
                setattr(module, pname, nn.Parameter(tensor.clone().to(params[name].device, params[name].dtype)))
            else:
                params[name].copy_(tensor)
    config = model.minipeft_configs[-1]
    config.modules_to_save = list(config.modules_to_save) + [m for m in modules if m not in config.modules_to_save]
    from .inject import mark_trainable

    model.minipeft_modules_to_save = sorted(set(model.minipeft_modules_to_save) | set(modules))
    mark_trainable(model)


def _modules(state: dict[str, torch.Tensor], tensor: str) -> list[str]:
    """Full module names of the tuner tensors called ``tensor`` (e.g. 'lora_A.weight'), in file order."""
    suffix = "." + tensor
    return [k[len(TUNER):-len(suffix)] for k in state if k.startswith(TUNER) and k.endswith(suffix)]


def _pattern(cfg: dict, field: str, name: str, default):
    """peft's rank_pattern / alpha_pattern lookup (utils.other.get_pattern_key): a key matches a module name that
    ends with it at a "." boundary."""
    for key, value in (cfg.get(field) or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def _targets(model: nn.Module, cfg: dict, names: list[str]):
    """peft's own target_modules where it names exactly these modules in this model, else the full names."""
    spec = cfg.get("target_modules")
    if isinstance(spec, (list, str)) and spec:
        try:
            if sorted(resolve_targets(model, spec)) == sorted(names):
                return spec
        except ValueError:
            pass
    return list(names)


def _by_rank(model: nn.Module, cfg: dict, names: list[str], make) -> list:
    """One config per (rank, alpha) group of modules (``make(targets, r, alpha)``), injected into ``model``."""
    groups: dict[tuple, list[str]] = {}
    for name in names:
        r = _pattern(cfg, "rank_pattern", name, cfg["r"])
        alpha = _pattern(cfg, "alpha_pattern", name, cfg.get("lora_alpha", cfg.get("alpha")))
        groups.setdefault((r, alpha), []).append(name)
    configs = []
    for (r, alpha), members in groups.items():
        targets = _targets(model, cfg, members) if len(groups) == 1 else members
        configs.append(inject(model, make(targets, r, alpha)).minipeft_configs[-1])
    return configs


def _copy(model: nn.Module, pairs) -> None:
    """Copy (peft tensor, our parameter) pairs, checking every shape first."""
    pairs = list(pairs)
    wrong = [f"{tuple(t.shape)} into {tuple(p.shape)}" for t, p in pairs if t.shape != p.shape]
    if wrong:
        raise ValueError(f"The adapter's tensors do not fit this {type(model).__name__} ({wrong[:3]}): was it saved "
                         "from a different base model?")
    with torch.no_grad():
        for tensor, param in pairs:
            param.copy_(tensor)


# --------------------------------------------------------------------------------------------- per method
def _lora(model, cfg, state):
    from ..methods.dora import DoRAConfig
    from ..methods.lora import LoRAConfig

    names = _modules(state, "lora_A.weight")
    dora = bool(cfg.get("use_dora"))                        # LoRA with a magnitude vector: methods/dora.py
    _by_rank(model, cfg, names, lambda targets, r, alpha: (DoRAConfig if dora else LoRAConfig)(
        targets=targets, r=r, alpha=alpha, dropout=cfg.get("lora_dropout", 0.0),
        use_rslora=bool(cfg.get("use_rslora", False))))
    _copy(model, [(state[f"{TUNER}{n}.lora_{x}.weight"], getattr(model.get_submodule(n), f"lora_{x}").weight)
                  for n in names for x in "AB"]
          + [(state[f"{TUNER}{n}.lora_magnitude_vector"], model.get_submodule(n).magnitude) for n in names if dora])


def _ia3(model, cfg, state):
    from ..methods.ia3 import IA3Config

    names = _modules(state, "ia3_l")
    feedforward = [n for n in names if state[f"{TUNER}{n}.ia3_l"].shape[0] == 1]  # a row (1, in): input scaling
    inject(model, IA3Config(targets=names, feedforward=feedforward))
    _copy(model, [(state[f"{TUNER}{n}.ia3_l"].flatten(), model.get_submodule(n).ia3_l) for n in names])


def _loha(model, cfg, state):
    from ..methods.hadamard import LoHaConfig

    names = _modules(state, "hada_w1_a")
    _by_rank(model, cfg, names, lambda targets, r, alpha: LoHaConfig(targets=targets, r=r, alpha=alpha))
    ours = {"hada_w1_a": "X1", "hada_w1_b": "Y1", "hada_w2_a": "X2", "hada_w2_b": "Y2"}
    _copy(model, [(state[f"{TUNER}{n}.{k}"], getattr(model.get_submodule(n), v)) for n in names
                  for k, v in ours.items()])


def _lokr(model, cfg, state):
    from ..methods.lokr import LoKrConfig

    names = sorted({k[len(TUNER):].rsplit(".lokr_", 1)[0] for k in state if ".lokr_" in k},
                   key=lambda n: next(i for i, k in enumerate(state) if k.startswith(f"{TUNER}{n}.lokr_")))
    _by_rank(model, cfg, names, lambda targets, r, alpha: LoKrConfig(
        targets=targets, r=r, alpha=alpha, decompose_factor=cfg.get("decompose_factor", -1),
        decompose_both=bool(cfg.get("decompose_both", False))))
    pairs = []
    for n in names:
        layer = dict(model.get_submodule(n).peft_named_parameters())
        keys = {k.rsplit(".lokr_", 1)[1]: k for k in state if k.startswith(f"{TUNER}{n}.lokr_")}
        if set(keys) != set(layer):
            raise ValueError(f"peft's LoKr factors of {n} are {sorted(keys)}, minipeft's for this config "
                             f"{sorted(layer)}: the adapter uses options minipeft does not implement.")
        pairs += [(state[k], layer[p]) for p, k in keys.items()]
    _copy(model, pairs)


def _adalora(model, cfg, state):
    from ..methods.adalora import AdaLoRAConfig

    names = _modules(state, "lora_E")
    fields = dict(init_r=cfg["init_r"], target_r=cfg["target_r"], alpha=cfg["lora_alpha"],
                  dropout=cfg.get("lora_dropout", 0.0), total_steps=cfg["total_step"], tinit=cfg["tinit"],
                  tfinal=cfg["tfinal"], delta_t=cfg["deltaT"], beta1=cfg["beta1"], beta2=cfg["beta2"],
                  orth_reg_weight=cfg["orth_reg_weight"])
    inject(model, AdaLoRAConfig(targets=_targets(model, cfg, names), **fields))
    with torch.no_grad():
        for n in names:
            layer = model.get_submodule(n)
            A, E, B = (state[f"{TUNER}{n}.lora_{x}"] for x in "AEB")   # (r', d_in), (r', 1), (d_out, r')
            kept = E.shape[0]                                          # peft resized the pruned matrices to r'
            if kept > layer.lam.shape[0] or A.shape[1] != layer.Q.shape[1] or B.shape[0] != layer.P.shape[0]:
                raise ValueError(f"peft's AdaLoRA tensors of {n} do not fit this model: was it saved from a "
                                 "different base model?")
            layer.Q[:kept], layer.lam[:kept], layer.P[:, :kept] = A, E.flatten(), B
            layer.lam[kept:] = 0                                       # dropped triplets contribute nothing
            layer.mask[:] = torch.arange(layer.mask.shape[0], device=layer.mask.device) < kept


def _prompt(model, cfg, state):
    """Prompt tuning, and P-tuning: peft saves only the prompt P its encoder computes (get_prompt_embedding_to_save),
    which is what minipeft.fold_prompt_encoder keeps too, so both become a PromptConfig holding P."""
    from ..methods.prompt import PromptConfig

    P = state["prompt_embeddings"]                                     # (n, d)
    inject(model, PromptConfig(length=P.shape[0]))
    _copy(model, [(P, find_backbone(model).prompt_encoder.embedding.weight)])


def _prefix(model, cfg, state):
    from ..methods.prefix import PrefixConfig, RotaryPrefixAttention, prefix_encoder, prefix_layers

    table = state["prompt_embeddings"]                                 # (n, L · 2 · d_kv)
    n = table.shape[0]
    inject(model, PrefixConfig(length=n))
    layers = prefix_layers(model)
    if not all(isinstance(layer, RotaryPrefixAttention) for layer in layers):
        raise TypeError("A peft prefix on an encoder numbers the tokens after the prefix (absolute positions "
                        "n..n+T-1), which minipeft's BERT prefix deliberately does not do: the outputs would differ. "
                        "import_peft reads prefixes of rotary decoders (Llama, Qwen, Mistral, Gemma, Phi-3).")
    encoder = prefix_encoder(model)
    L, d_kv = encoder.L, encoder.d_kv
    if table.shape[1] != L * 2 * d_kv:
        raise ValueError(f"The prefix table is {tuple(table.shape)}, this model needs (n, {L * 2 * d_kv}) = "
                         f"(n, L · 2 · d_kv) with L={L}, d_kv={d_kv} (peft saves the table an MLP computes only "
                         "when not in inference mode): was it saved from a different base model?")
    _copy(model, [(table.view(n, L, 2, d_kv).permute(1, 2, 0, 3), encoder.prefix)])   # (L, 2, n, d_kv)


IMPORTERS = {"LORA": _lora, "IA3": _ia3, "LOHA": _loha, "LOKR": _lokr, "ADALORA": _adalora,
             "PROMPT_TUNING": _prompt, "P_TUNING": _prompt, "PREFIX_TUNING": _prefix}
