"""save_adapter / load_adapter (minipeft/checkpoint.py) and export_peft's shared checks (minipeft/interop.py)."""

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file, save_file

import helpers
import minipeft as mp
from helpers import assert_same_state, classifier, ids, state
from minipeft.core.checkpoint import CONFIG_FILE, WEIGHTS_FILE

randomise = partial(helpers.randomise, add=True)  # + N(0, 0.1²) on every trainable parameter


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


STACKS = {
    "lora+head": [mp.LoRAConfig(r=4, modules_to_save=["head"])],
    "ia3": [mp.IA3Config()],
    "bitfit-subset": [mp.BitFitConfig(targets=["query", "intermediate.dense"])],
    "lora+ia3+bitfit": [mp.LoRAConfig(r=2, targets=["query"]), mp.IA3Config(targets=["key"], feedforward=[]),
                        mp.BitFitConfig(modules_to_save=["head"])],
}


# --------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("stack", STACKS, ids=list(STACKS))
def test_round_trip_is_bit_identical(stack, tmp_path):
    model, x = classifier(), ids()
    for config in STACKS[stack]:
        mp.inject(model, config)
    randomise(model)
    mp.save_adapter(model, tmp_path)

    saved = load_file(tmp_path / WEIGHTS_FILE)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert saved.keys() == trainable.keys()  # only the trainable state, nothing of the frozen base

    fresh = mp.load_adapter(classifier(), tmp_path)  # a base model: the saved configs are injected first
    assert [c.to_dict() for c in fresh.minipeft_configs] == [c.to_dict() for c in model.minipeft_configs]
    state = dict(fresh.named_parameters())
    assert all(torch.equal(state[n], p) for n, p in trainable.items())
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == trainable.keys()
    assert torch.equal(logits(fresh, x), logits(model, x))


def test_load_into_a_model_with_the_same_configs(tmp_path):
    model = mp.inject(classifier(), mp.LoRAConfig(r=4, modules_to_save=["head"]))
    randomise(model)
    mp.save_adapter(model, tmp_path)
    other = mp.inject(classifier(), mp.LoRAConfig(r=4, modules_to_save=["head"]))
    mp.load_adapter(other, tmp_path)
    x = ids()
    assert torch.equal(logits(other, x), logits(model, x)) and len(other.minipeft_configs) == 1


def test_adapter_is_small(tmp_path):
    model = mp.inject(classifier(), mp.LoRAConfig(r=4))
    mp.save_adapter(model, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["configs"][0]["method"] == "lora" and meta["configs"][0]["r"] == 4
    assert (tmp_path / WEIGHTS_FILE).stat().st_size < 4 * 1024 + 4 * 2 * 2 * 4 * 64  # header + 1024 floats


# --------------------------------------------------------------------------------------------- mismatches
def test_config_mismatch_lists_the_fields(tmp_path):
    mp.save_adapter(mp.inject(classifier(), mp.LoRAConfig(r=4, alpha=8)), tmp_path)
    other = mp.inject(classifier(), mp.LoRAConfig(r=8, alpha=8, modules_to_save=["head"]))
    before = state(other)
    with pytest.raises(ValueError) as err:
        mp.load_adapter(other, tmp_path)
    msg = str(err.value)
    assert "lora.r: saved 4, model has 8" in msg and "lora.modules_to_save: saved [], model has ['head']" in msg
    assert "alpha" not in msg and "Load it into a fresh base model" in msg
    assert_same_state(other, before)


def test_load_into_merged_layers_is_refused(tmp_path):
    model = mp.inject(classifier(), mp.LoRAConfig(r=4))
    mp.save_adapter(model, tmp_path)
    next(iter(mp.peft_layers(model).values())).merge()
    with pytest.raises(ValueError, match="merged into their base weights.*unmerge"):
        mp.load_adapter(model, tmp_path)


def test_method_mismatch(tmp_path):
    mp.save_adapter(mp.inject(classifier(), mp.IA3Config()), tmp_path)
    with pytest.raises(ValueError, match=r"methods: saved \['ia3'\], model has \['lora'\]"):
        mp.load_adapter(mp.inject(classifier(), mp.LoRAConfig()), tmp_path)


def test_shape_mismatch_changes_nothing(tmp_path):
    mp.save_adapter(mp.inject(classifier(), mp.LoRAConfig(r=4)), tmp_path)
    other = classifier(hidden_size=48, intermediate_size=96)  # another base model: d = 48
    before = state(other)
    with pytest.raises(ValueError, match=r"does not fit .*lora_A.weight: saved \(4, 32\), model needs \(4, 48\)"):
        mp.load_adapter(other, tmp_path)
    assert not hasattr(other, "minipeft_configs") and not mp.peft_layers(other)  # not even injected
    assert_same_state(other, before)


def test_missing_and_unexpected_keys(tmp_path):
    mp.save_adapter(mp.inject(classifier(), mp.LoRAConfig(r=4)), tmp_path)
    state = load_file(tmp_path / WEIGHTS_FILE)
    dropped = sorted(state)[0]
    state["encoder.stray.weight"] = state.pop(dropped)
    save_file(state, tmp_path / WEIGHTS_FILE)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    del meta["weights_sha256"]                       # as an adapter saved before the digest existed: still read
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"missing {dropped}.*unexpected encoder.stray.weight"):
        mp.load_adapter(classifier(), tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="minipeft_config.json / minipeft_adapter.safetensors"):
        mp.load_adapter(classifier(), tmp_path)
    mp.export_peft(mp.inject(classifier(), mp.LoRAConfig(r=2)), tmp_path)
    with pytest.raises(FileNotFoundError, match="looks like a Hugging Face peft adapter"):
        mp.load_adapter(classifier(), tmp_path)


def test_a_failed_save_keeps_the_previous_adapter_whole(tmp_path, monkeypatch):
    old = mp.inject(classifier(), mp.LoRAConfig(r=4, modules_to_save=["head"]))
    randomise(old)
    mp.save_adapter(old, tmp_path)
    before = {f: (tmp_path / f).read_bytes() for f in (CONFIG_FILE, WEIGHTS_FILE)}
    new = mp.inject(classifier(), mp.LoRAConfig(r=2))
    real = type(tmp_path).write_bytes

    def disk_full(self, data):                       # the second file cannot be written
        if self.name.startswith(CONFIG_FILE):
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        mp.save_adapter(new, tmp_path)
    monkeypatch.undo()
    assert {f: (tmp_path / f).read_bytes() for f in (CONFIG_FILE, WEIGHTS_FILE)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)          # no .part left behind
    x = ids()
    assert torch.equal(logits(mp.load_adapter(classifier(), tmp_path), x), logits(old, x))


def test_a_config_that_cannot_be_saved_is_refused_at_inject_and_a_range_is_stored_as_a_list(tmp_path):
    model = classifier()
    config = mp.LoRAConfig(r=2)
    config.targets = [object()]                      # nothing JSON can store
    with pytest.raises(TypeError, match=r"cannot be saved: field\(s\) \['targets'\]"):
        mp.inject(model, config)
    assert not mp.peft_layers(model)
    adapter = mp.AdapterConfig(bottleneck=4, layers=range(1))        # issue: weights written, then the config failed
    mp.save_adapter(mp.inject(model, adapter), tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["configs"][0]["layers"] == [0]
    assert mp.load_adapter(classifier(), tmp_path).minipeft_configs[0].layers == [0]


def test_weights_that_do_not_belong_to_the_config_or_damaged_files_name_the_file(tmp_path):
    mp.save_adapter(mp.inject(classifier(), mp.LoRAConfig(r=4)), tmp_path / "a")
    mp.save_adapter(mp.inject(classifier(), mp.LoRAConfig(r=4, targets=["query"])), tmp_path / "b")
    (tmp_path / "a" / WEIGHTS_FILE).write_bytes((tmp_path / "b" / WEIGHTS_FILE).read_bytes())   # a mixed pair
    with pytest.raises(ValueError, match=r"a/minipeft_adapter.safetensors is not the file .* was saved with"):
        mp.load_adapter(classifier(), tmp_path / "a")
    weights = (tmp_path / "b" / WEIGHTS_FILE).read_bytes()
    (tmp_path / "b" / WEIGHTS_FILE).write_bytes(weights[: len(weights) // 2])                   # truncated
    meta = json.loads((tmp_path / "b" / CONFIG_FILE).read_text())
    del meta["weights_sha256"]
    (tmp_path / "b" / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"b/minipeft_adapter.safetensors cannot be read as safetensors"):
        mp.load_adapter(classifier(), tmp_path / "b")
    (tmp_path / "b" / CONFIG_FILE).write_text('{"configs": [')                                  # truncated JSON
    with pytest.raises(ValueError, match=r"b/minipeft_config.json is not valid JSON"):
        mp.load_adapter(classifier(), tmp_path / "b")


def test_adalora_reloads_the_triplets_it_pruned(tmp_path):
    from minipeft.methods.adalora import adalora_layers, rank_pattern

    model = mp.inject(classifier(), mp.AdaLoRAConfig(init_r=4, target_r=2, total_steps=10, modules_to_save=["head"]))
    randomise(model)
    with torch.no_grad():
        for layer in adalora_layers(model).values():
            layer.mask.copy_(torch.tensor([True, False, True, False]))     # what the allocator leaves behind
    mp.save_adapter(model, tmp_path)
    fresh = mp.load_adapter(classifier(), tmp_path)
    assert rank_pattern(fresh) == rank_pattern(model)                  # was [T, T, T, T]: the mask was not saved
    assert all(p == [True, False, True, False] for p in rank_pattern(fresh).values())
    x = ids()
    assert torch.equal(logits(fresh, x), logits(model, x))


def test_nothing_to_save(tmp_path):
    with pytest.raises(ValueError, match="carries no PEFT method to save"):
        mp.save_adapter(classifier(), tmp_path)


@pytest.fixture
def drawing_lora():
    """LoRA whose wrap draws from the CPU random stream (as a method creating CPU tensors at random would)."""

    class DrawingLoRA(mp.LoRAConfig):
        method = "drawing_lora_test"

        def wrap(self, module, name):
            torch.rand(1)
            return super().wrap(module, name)

    yield DrawingLoRA
    mp.PeftConfig.REGISTRY.pop(DrawingLoRA.method)  # leave the registry as other tests expect it


def test_load_does_not_shift_the_random_stream(drawing_lora, tmp_path):
    mp.save_adapter(mp.inject(classifier(), drawing_lora(r=4)), tmp_path)
    model, reference = classifier(), classifier()
    torch.manual_seed(0)
    mp.inject(reference, drawing_lora(r=4))  # one real inject's worth of random draws
    expected = torch.rand(3)
    torch.manual_seed(0)
    mp.load_adapter(model, tmp_path)  # the shape check on a meta copy injects too, but draws from a forked stream
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------------- export_peft
def test_export_refuses_stacks_merged_layers_and_plain_models(tmp_path):
    with pytest.raises(ValueError, match="carries no PEFT method to export"):
        mp.export_peft(classifier(), tmp_path)
    stacked = mp.inject(mp.inject(classifier(), mp.LoRAConfig(targets=["query"])), mp.BitFitConfig())
    with pytest.raises(ValueError, match=r"stacks several methods \(lora \+ bitfit\)"):
        mp.export_peft(stacked, tmp_path)
    model = mp.inject(classifier(), mp.LoRAConfig(r=2))
    next(iter(mp.peft_layers(model).values())).merge()
    with pytest.raises(ValueError, match="merged into their base weights"):
        mp.export_peft(model, tmp_path)
    assert not any(tmp_path.iterdir())


def test_export_writes_peft_files_with_the_head(tmp_path):
    model = mp.inject(classifier(), mp.IA3Config(modules_to_save=["head"]))
    mp.export_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and config["modules_to_save"] == ["head"]
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert {"base_model.model.head.weight", "base_model.model.head.bias"} <= keys
    assert "base_model.model.encoder.encoder.layer.0.attention.self.key.ia3_l" in keys
