"""The shared injection mechanism (minipeft.core.inject), exercised through LoRA / IA3 / BitFit on tiny models."""

import pytest
import torch
from torch import nn

import minipeft as mp
from helpers import assert_same_state, classifier, ids, state
from minipeft.core import PeftConfig, PeftModule, peft_parameter_names, resolve_targets


class Classifier(nn.Module):
    """encoder + a fresh head, the shape of minipeft.train.MeanPoolClassifier (self-contained for unit tests)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.config = encoder, encoder.config
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, input_ids):
        return self.head(self.encoder(input_ids).last_hidden_state.mean(1))


def wrapped(model):
    return sorted(mp.peft_layers(model))


# --------------------------------------------------------------------------------------------- target syntax
def test_target_exact_full_name():
    m = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["encoder.layer.0.attention.self.query"]))
    assert wrapped(m) == ["encoder.layer.0.attention.self.query"]


def test_target_suffix_matches_at_a_dot_boundary_only():
    m = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["self.query"]))
    assert wrapped(m) == [f"encoder.layer.{i}.attention.self.query" for i in range(2)]
    with pytest.raises(ValueError, match=r"\['uery'\] matched no module"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["uery"]))


def test_target_regex_is_a_fullmatch():
    m = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=r".*layer\.1\..*(query|value)"))
    assert wrapped(m) == ["encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value"]
    # "query" alone does not fullmatch a dotted name: the error says so and gives the list form
    with pytest.raises(ValueError, match=r"'query' is read as ONE regular expression .*WHOLE module name \(e.g. "
                                         r"encoder.layer.0.attention.self.query\).*pass a list: targets=\['query'\]"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets="query"))
    with pytest.raises(ValueError, match=r"targets='\[' is read as ONE regular expression .* not a valid one"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets="["))          # was a bare re.error


def test_a_module_inside_another_methods_wrapper_is_named_with_the_order_that_works():
    model = mp.inject(mp.tiny_encoder(), mp.PrefixConfig(length=2))
    with pytest.raises(ValueError, match=r"'query' exists only inside another method's wrapper \(encoder.layer.0."
                                         r"attention.self.base_layer.query, wrapped by BertPrefixAttention\).*inject "
                                         r"this method first"):
        mp.inject(model, mp.LoRAConfig(r=2, targets=["query"]))
    both = mp.inject(mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query"])), mp.PrefixConfig(length=2))
    assert len(both.minipeft_configs) == 2                                   # the order the message gives works
    assert torch.isfinite(both(ids()).last_hidden_state).all()


def test_unmatched_target_lists_the_modules_that_exist():
    model = mp.tiny_encoder()
    with pytest.raises(ValueError) as err:
        mp.inject(model, mp.LoRAConfig(targets=["query", "q_proj"]))
    msg = str(err.value)
    assert "['q_proj'] matched no module" in msg and "query (Linear x2)" in msg and "value (Linear x2)" in msg
    assert not mp.peft_layers(model) and not hasattr(model, "minipeft_configs")  # nothing was changed


def test_same_module_twice_is_refused():
    with pytest.raises(ValueError, match="more than once"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(targets=["query", "query"]))
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="already carry a PEFT layer"):
        mp.inject(model, mp.IA3Config(targets=["query", "value"], feedforward=[]))
    assert wrapped(model) == [f"encoder.layer.{i}.attention.self.query" for i in range(2)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(model.minipeft_configs) == 1


def test_empty_and_badly_typed_targets():
    with pytest.raises(ValueError, match="is empty"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(targets=[]))
    with pytest.raises(TypeError, match="list of module names or a regex"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(targets=5))
    with pytest.raises(TypeError, match="must be module names"):
        mp.inject(mp.tiny_encoder(), mp.LoRAConfig(targets=["query", None]))


def test_inject_of_a_non_config():
    with pytest.raises(TypeError, match="takes a minipeft config"):
        mp.inject(mp.tiny_encoder(), {"r": 8, "targets": ["query"]})


def test_no_default_targets_for_an_unknown_architecture():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no default targets for model_type=None"):
        mp.inject(model, mp.LoRAConfig())
    mp.inject(model, mp.LoRAConfig(r=2, targets=["0", "2"]))  # explicit targets work on any model
    assert wrapped(model) == ["0", "2"]


def test_a_failing_wrap_changes_nothing():
    model = mp.tiny_decoder()  # v_proj is 32 -> 16: r=20 fits q_proj (32x32) but not v_proj
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"r=20 is too large for 'model\.layers\.0\.self_attn\.v_proj'"):
        mp.inject(model, mp.LoRAConfig(r=20, targets=["q_proj", "v_proj"]))
    assert not mp.peft_layers(model) and all(p.requires_grad for p in model.parameters())
    assert before.keys() == model.state_dict().keys()


# --------------------------------------------------------------------------------------------- trainable set
def test_only_method_parameters_are_trainable():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query", "value"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"encoder.layer.{i}.attention.self.{w}.lora_{ab}.weight"
                for i in range(2) for w in ("query", "value") for ab in "AB"}
    assert trainable == expected == set(peft_parameter_names(model))


def test_modules_to_save_are_trained_in_full():
    model = mp.inject(Classifier(mp.tiny_encoder()), mp.LoRAConfig(r=2, modules_to_save=["head"]))
    assert model.minipeft_modules_to_save == ["head"]
    assert model.head.weight.requires_grad and model.head.bias.requires_grad
    assert mp.trainable_parameters(model)[0] == 2 * 2 * 2 * (32 + 32) + (32 * 2 + 2)
    with pytest.raises(ValueError, match=r"modules_to_save \['classifier'\] matched no module"):
        mp.inject(Classifier(mp.tiny_encoder()), mp.LoRAConfig(modules_to_save=["classifier"]))


def test_stacking_two_methods_trains_both():
    model = mp.tiny_encoder()
    mp.inject(model, mp.LoRAConfig(r=2, targets=["query"]))
    mp.inject(model, mp.IA3Config(targets=["key", "value"], feedforward=[]))
    assert [c.method for c in model.minipeft_configs] == ["lora", "ia3"]
    assert mp.trainable_parameters(model)[0] == 2 * (2 * 64) + 2 * (32 + 32)


def test_config_dict_round_trip_and_unknown_method():
    cfg = mp.LoRAConfig(r=4, alpha=8, targets=["query"], modules_to_save=["head"])
    assert PeftConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="Unknown PEFT method 'nope'"):
        PeftConfig.from_dict({"method": "nope"})


def test_resolve_targets_skips_the_inside_of_wrappers():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query"]))
    assert resolve_targets(model, ["query"]) == [f"encoder.layer.{i}.attention.self.query" for i in range(2)]


# --------------------------------------------------------------------------------------------- merge
class SoftPrompt(PeftModule):
    """Stands in for a prompt-tuning module: trainable, outside every layer, nothing to fold into a weight."""

    def __init__(self):
        super().__init__()
        self.prompt = nn.Parameter(torch.zeros(4, 32))


def test_merge_refuses_a_soft_prompt_before_changing_anything():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query"]))
    with torch.no_grad():
        for layer in mp.peft_layers(model).values():
            layer.lora_B.weight.normal_()
    model.soft_prompt = SoftPrompt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="SoftPrompt cannot be merged"):
        mp.merge(model)
    assert len(mp.peft_layers(model)) == 2 and not any(layer.merged for layer in mp.peft_layers(model).values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_merge_returns_an_ordinary_model():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query", "value"]))
    x = ids()
    with torch.no_grad():
        for layer in mp.peft_layers(model).values():
            layer.lora_B.weight.normal_(0, 0.1)
        out = model(x).last_hidden_state
        mp.merge(model)
        assert type(model.encoder.layer[0].attention.self.query) is nn.Linear
        assert not mp.peft_layers(model) and not hasattr(model, "minipeft_configs")
        assert (model(x).last_hidden_state - out).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="no PEFT layers to merge: call minipeft.inject"):
        mp.merge(model)
    with pytest.raises(ValueError, match=r"\['bitfit'\] train the model's own parameters"):
        mp.merge(mp.inject(mp.tiny_encoder(), mp.BitFitConfig()))


# --------------------------------------------------------------------------------------------- field types, every method
def _fields_of(kind):
    from dataclasses import fields

    from minipeft.core.config import PeftConfig
    return [(cls, f.name) for cls in PeftConfig.REGISTRY.values() for f in fields(cls) if str(f.type) == kind]


@pytest.mark.parametrize("cls,name", _fields_of("float"), ids=lambda v: getattr(v, "__name__", v))
def test_a_float_field_refuses_nan_and_inf_before_anything_is_injected(cls, name):
    for bad in (float("nan"), float("inf"), -float("inf")):
        config = cls(**{name: bad})
        model = classifier()
        before = state(model)
        with pytest.raises(ValueError, match=f"{cls.__name__}.{name} must be a finite number"):
            mp.inject(model, config)
        assert not mp.peft_layers(model)
        assert_same_state(model, before)
    with pytest.raises(TypeError, match=f"{cls.__name__}.{name} must be a number"):
        cls(**{name: "1e-3"}).check_types()


@pytest.mark.parametrize("cls,name", _fields_of("bool"), ids=lambda v: getattr(v, "__name__", v))
def test_a_bool_field_refuses_a_string_that_would_read_as_true(cls, name):
    with pytest.raises(TypeError, match=f"{cls.__name__}.{name} must be True or False, got 'no' \\(a string"):
        cls(**{name: "no"}).check_types()
    with pytest.raises(TypeError, match="must be True or False, got 1"):
        cls(**{name: 1}).check_types()


@pytest.mark.parametrize("cls,name", _fields_of("int"), ids=lambda v: getattr(v, "__name__", v))
def test_an_int_field_takes_a_numpy_integer_and_stores_a_python_int(cls, name):
    import numpy as np

    value = getattr(cls(), name)
    config = cls(**{name: np.int64(value)})
    config.check_types()
    assert type(getattr(config, name)) is int and getattr(config, name) == value


def test_a_numpy_rank_injects_and_saves(tmp_path):
    import numpy as np

    model = mp.inject(classifier(), mp.LoRAConfig(r=np.int64(4), alpha=np.float32(8.0)))
    assert model.minipeft_configs[0].r == 4 and type(model.minipeft_configs[0].alpha) is float
    mp.save_adapter(model, tmp_path)                 # JSON could not store np.int64
