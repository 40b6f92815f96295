"""The contract every method keeps, on every tiny model it applies to (after Hugging Face peft's PeftCommonTester).

One table, METHODS, lists every config with small hyper-parameters for the d=32 tiny models and what the method
promises; each test below runs over all of its cases (method × tiny BERT / Llama / GPT-2):

    identity at init        the outputs are the base model's, bit for bit, right after inject (ΔW = 0, up = 0...)
    merge                   ΔW methods: merge() / mp.merge keep the (randomised) outputs, unmerge() restores W0
    merge refused           every other method: TypeError (ValueError for BitFit), and nothing changes
    save / load             save_adapter -> load_adapter into a fresh base model: bit-identical outputs
    a training step         moves the PEFT parameters, and only them
    bad inputs              a bad hyper-parameter, a target that matches nothing, a target of the wrong module type,
                            an architecture the method does not support: an error that names the culprit, and the
                            model untouched (tensors, trainable flags, hooks; no PEFT layer, no configs)
    peft                    export_peft -> peft.PeftModel.from_pretrained gives our outputs, where peft has the
                            method; elsewhere export_peft refuses with a TypeError and writes nothing
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

import pytest
import torch

import minipeft as mp
from helpers import (MODELS, assert_inject_refused, assert_matches_peft, assert_merges, assert_round_trip,
                     assert_same_state, out, randomise, state)
from minipeft.core import peft_parameter_names
from minipeft.methods.mpt import set_task

ALL = ("bert", "llama", "gpt2")
# a module of the wrong type, per architecture: an embedding (not a linear layer) or a linear layer (not an FFN
# block, not an attention module)
EMBEDDING = {"bert": ["word_embeddings"], "llama": ["embed_tokens"], "gpt2": ["wte"]}
LINEAR = {"bert": ["query"], "llama": ["q_proj"], "gpt2": ["c_attn"]}
X = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(0))  # the one input: a few tokens


pytestmark = pytest.mark.usefixtures("one_thread")  # d = 32 models: one thread is faster (conftest)


@dataclass(frozen=True)
class Method:
    config: type
    kwargs: dict = field(default_factory=dict)  # small hyper-parameters that fit the tiny models
    bad: tuple = ()                  # (kwargs of a bad hyper-parameter, the error it raises)
    archs: tuple = ALL               # the tiny models the method applies to
    merge: bool = False              # a weight-space update: merge / unmerge
    identity: bool = True            # exactly the base model right after inject (not soft prompts or prefixes)
    peft: tuple = ()                 # the architectures whose export loads in peft
    refusal: str = "peft has no"     # what export_peft says elsewhere
    wrong: dict | None = None        # a target of the wrong module type (None: the method takes no targets)
    wrong_error: type = TypeError
    ones: tuple = ()                 # parameters that start at 1 (randomised around 1)
    unmerge_atol: float = 1e-7       # W0 + ΔW − ΔW is W0 up to a rounding (measured ≤ 1.5e-8); IA3 divides
    task: bool = False               # MPT: a task must be selected before a forward


METHODS = {
    "lora": Method(mp.LoRAConfig, dict(r=4), (dict(r=0), ValueError), merge=True, peft=ALL, wrong=EMBEDDING),
    "dora": Method(mp.DoRAConfig, dict(r=4), (dict(alpha=float("nan")), ValueError), merge=True, peft=ALL,
                   wrong=EMBEDDING, ones=("magnitude",), unmerge_atol=1e-6),  # unmerge divides by m / ‖·‖_c
    "ia3": Method(mp.IA3Config, {}, (dict(feedforward=3), TypeError), merge=True, peft=ALL, wrong=EMBEDDING,
                  ones=("ia3_l",), unmerge_atol=1e-6),
    "bitfit": Method(mp.BitFitConfig, {}, (dict(targets=[]), ValueError), archs=("bert", "gpt2"),
                     wrong=EMBEDDING, wrong_error=ValueError),  # the wrong module for BitFit: one without a bias
    "houlsby": Method(mp.AdapterConfig, dict(kind="houlsby", bottleneck=8), (dict(bottleneck=0), ValueError),
                      wrong=EMBEDDING),
    "pfeiffer": Method(mp.AdapterConfig, dict(kind="pfeiffer", bottleneck=8), (dict(bottleneck=0), ValueError),
                       wrong=EMBEDDING),
    "parallel": Method(mp.AdapterConfig, dict(kind="parallel", bottleneck=8), (dict(bottleneck=0), ValueError),
                       wrong=LINEAR),
    "prompt": Method(mp.PromptConfig, dict(length=3), (dict(length=0), ValueError), identity=False, peft=ALL),
    "ptuning": Method(mp.PTuningConfig, dict(length=3, hidden=8), (dict(encoder="gru"), ValueError),
                      identity=False, peft=ALL),
    "mpt": Method(mp.MPTConfig, dict(length=3, tasks=2), (dict(rank=0), ValueError), identity=False, task=True,
                  refusal="not implemented"),
    "prefix": Method(mp.PrefixConfig, dict(length=3), (dict(length=0), ValueError), archs=("bert", "llama"),
                     identity=False, peft=("llama",), wrong=LINEAR, refusal="past_key_values"),
    "adalora": Method(mp.AdaLoRAConfig, dict(init_r=4, target_r=2, total_steps=10), (dict(target_r=0), ValueError),
                      merge=True, peft=ALL, wrong=EMBEDDING),
    "krona": Method(mp.KronAConfig, {}, (dict(scale=0), ValueError), merge=True, wrong=EMBEDDING),
    "kronab": Method(mp.KronABConfig, {}, (dict(residual="yes"), TypeError), wrong=LINEAR),
    "kronab-res": Method(mp.KronABConfig, dict(residual=True), (dict(scale=-1), ValueError), wrong=LINEAR),
    "loha": Method(mp.LoHaConfig, dict(r=2), (dict(r=0), ValueError), merge=True, peft=("bert", "llama"),
                   wrong=EMBEDDING, refusal="Conv1D"),
    "lokr": Method(mp.LoKrConfig, dict(r=2), (dict(decompose_factor=0), ValueError), merge=True,
                   peft=("bert", "llama"), wrong=EMBEDDING, refusal="Conv1D"),
    "pfedpara": Method(mp.PFedParaConfig, dict(r=2), (dict(r=0), ValueError), merge=True, wrong=EMBEDDING),
}


def cases(keep=lambda method, arch: True):
    return [pytest.param(name, arch, id=f"{name}-{arch}")
            for name, method in METHODS.items() for arch in method.archs if keep(method, arch)]


def build(name, arch, randomised=True):
    """The tiny ``arch`` model with method ``name`` injected (a task selected), its PEFT parameters randomised."""
    method = METHODS[name]
    model = mp.inject(MODELS[arch](), method.config(**method.kwargs))
    if method.task:
        set_task(model, 0)
    if randomised:
        randomise(model, ones=method.ones)
    return model


@cache
def base_output(arch):
    return out(MODELS[arch](), X)


def assert_update_is_live(model, arch):
    """The randomised update changes the outputs: a check of merge or of a round trip could fail."""
    assert (out(model, X) - base_output(arch)).abs().max() > 1e-3


def test_every_config_is_in_the_contract():
    configs = {v for v in vars(mp).values() if isinstance(v, type) and issubclass(v, mp.PeftConfig)}
    assert configs - {mp.PeftConfig} == {method.config for method in METHODS.values()}


# --------------------------------------------------------------------------------------------- the update
@pytest.mark.parametrize("name, arch", cases(lambda method, arch: method.identity))
def test_identity_at_init(name, arch):
    model, method = MODELS[arch](), METHODS[name]
    assert torch.equal(out(model, X), base_output(arch))
    mp.inject(model, method.config(**method.kwargs))
    assert torch.equal(out(model, X), base_output(arch))


@pytest.mark.parametrize("name, arch", cases())
def test_a_training_step_moves_only_peft_parameters(name, arch):
    model = build(name, arch)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable == set(peft_parameter_names(model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    h = model(input_ids=X)[0]
    (h - torch.randn_like(h)).pow(2).mean().backward()  # not h².mean(): BERT's LayerNorm makes that a constant
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= trainable


@pytest.mark.parametrize("name, arch", cases(lambda method, arch: method.config is not mp.BitFitConfig))
def test_switched_off_it_is_the_base_model_and_back_on_it_is_itself(name, arch):
    """mp.disabled(model): the base model's outputs bit for bit inside the block (DPO's reference model, the same
    network), the adapted outputs after it, nothing changed; a merged layer is refused."""
    model = build(name, arch)
    adapted, before = out(model, X), state(model)
    with mp.disabled(model) as base:
        assert base is model and torch.equal(out(model, X), base_output(arch))
    assert torch.equal(out(model, X), adapted)
    assert_same_state(model, before)
    if METHODS[name].merge:
        next(iter(mp.peft_layers(model).values())).merge()
        with pytest.raises(ValueError, match="merged"), mp.disabled(model):
            pass


def test_nothing_to_switch_off_or_trained_in_place_is_refused():
    with pytest.raises(ValueError, match="trained in place"), mp.disabled(build("bitfit", "bert")):
        pass
    with pytest.raises(ValueError, match="no PEFT layers"), mp.disabled(mp.tiny_encoder()):
        pass


# --------------------------------------------------------------------------------------------- merge
@pytest.mark.parametrize("name, arch", cases(lambda method, arch: method.merge))
def test_merge_keeps_outputs_and_unmerge_restores_the_base(name, arch):
    model = build(name, arch)
    assert_update_is_live(model, arch)
    assert_merges(model, X, weight_atol=METHODS[name].unmerge_atol)


@pytest.mark.parametrize("name, arch", cases(lambda method, arch: method.merge))
def test_bf16_merge_unmerge_cycles_give_back_the_base_bit_for_bit(name, arch):
    # in bf16, W0 + ΔW − ΔW drifts (ten cycles moved W0 by 0.03, mean |W0| 0.016): the layer keeps W0 aside
    model = build(name, arch).to(torch.bfloat16)
    layers = mp.peft_layers(model)
    bias = {n: getattr(layer.base_layer, "bias", None) for n, layer in layers.items()}
    before = {n: (layer.base_layer.weight.clone(), None if bias[n] is None else bias[n].clone())
              for n, layer in layers.items()}
    for _ in range(10):
        for layer in layers.values():
            layer.merge()
        for layer in layers.values():
            layer.unmerge()
    for n, layer in layers.items():
        assert torch.equal(layer.base_layer.weight, before[n][0]), n
        assert before[n][1] is None or torch.equal(layer.base_layer.bias, before[n][1]), n
        assert not any(b.startswith("_unmerged") for b, _ in layer.named_buffers())   # nothing left behind


@pytest.mark.parametrize("name, arch", cases(lambda method, arch: not method.merge))
def test_merge_is_refused_and_changes_nothing(name, arch):
    model = build(name, arch)
    before, layers = state(model), mp.peft_layers(model)
    for layer in layers.values():
        with pytest.raises(TypeError, match="cannot be merged"):
            layer.merge()
        assert not layer.merged
    assert_same_state(model, before)
    with pytest.raises(ValueError if name == "bitfit" else TypeError):  # BitFit: nothing to merge, not a refusal
        mp.merge(model)
    assert_same_state(model, before)
    assert mp.peft_layers(model) == layers and len(model.minipeft_configs) == 1


# --------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name, arch", cases())
def test_save_and_load_is_bit_identical(name, arch, tmp_path):
    model = build(name, arch)
    if METHODS[name].identity:
        assert_update_is_live(model, arch)
    prepare = (lambda fresh: set_task(fresh, 0)) if METHODS[name].task else None
    fresh = assert_round_trip(model, MODELS[arch](), tmp_path, X, prepare)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == set(peft_parameter_names(model))


# --------------------------------------------------------------------------------------------- bad inputs
def bad_inputs(method, arch):
    """(kind, overriding kwargs, error, what the message names) for each bad input that applies."""
    kwargs, error = method.bad
    yield "bad-hyper-parameter", kwargs, error, re.escape(next(iter(kwargs)))
    names = "targets" if method.wrong else "modules_to_save"  # soft prompts wrap nothing: modules_to_save only
    yield "matches-nothing", {names: ["nothing_here"]}, ValueError, r"\['nothing_here'\] matched no module"
    if method.wrong:
        yield "wrong-module-type", dict(targets=method.wrong[arch]), method.wrong_error, method.wrong[arch][0]


BAD = [pytest.param(name, arch, kwargs, error, match, id=f"{name}-{arch}-{kind}")
       for name, method in METHODS.items() for arch in method.archs
       for kind, kwargs, error, match in bad_inputs(method, arch)]


@pytest.mark.parametrize("name, arch, kwargs, error, match", BAD)
def test_bad_input_raises_and_changes_nothing(name, arch, kwargs, error, match):
    method = METHODS[name]
    assert_inject_refused(MODELS[arch](), method.config(**{**method.kwargs, **kwargs}), error, match)


@pytest.mark.parametrize("name, arch, error, match", [("prefix", "gpt2", TypeError, "GPT2Attention.*Why"),
                                                      ("bitfit", "llama", ValueError, "no bias")])
def test_an_architecture_the_method_does_not_support(name, arch, error, match):
    assert arch not in METHODS[name].archs
    method = METHODS[name]
    assert_inject_refused(MODELS[arch](), method.config(**method.kwargs), error, match)


# --------------------------------------------------------------------------------------------- peft
@pytest.mark.parametrize("name, arch", cases(lambda method, arch: arch in method.peft))
def test_matches_peft(name, arch, tmp_path):
    model = build(name, arch)
    if METHODS[name].identity:
        assert_update_is_live(model, arch)
    assert_matches_peft(model, MODELS[arch], tmp_path, input_ids=X)


@pytest.mark.parametrize("name, arch", cases(lambda method, arch: arch not in method.peft))
def test_export_is_refused_where_peft_cannot_load_it(name, arch, tmp_path):
    with pytest.raises(TypeError, match=METHODS[name].refusal):
        mp.export_peft(build(name, arch, randomised=False), tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
