"""Both directions between minipeft and Hugging Face peft, beyond the contract's export check:

    import_peft     an adapter saved by peft itself (get_peft_model -> save_pretrained) loads into a fresh base model
                    as minipeft configs, with peft's outputs (LoRA incl. rsLoRA and rank / alpha patterns, IA3, LoHa,
                    LoKr, AdaLoRA, prompt tuning, P-tuning, prefix tuning)
    round trip      minipeft -> export_peft -> import_peft gives the same outputs, bit for bit
    tied weights    modules_to_save=["lm_head"] on a model whose head IS its input embedding exports faithfully
                    (the tied partner is saved too), or, where peft cannot load it faithfully, is refused
"""

from __future__ import annotations

import warnings

import pytest
import torch

import minipeft as mp
from helpers import MODELS, randomise

X = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(0))


pytestmark = pytest.mark.usefixtures("one_thread")  # d = 32 models: one thread is faster (conftest)


def first(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=X)[0]


def peft_saved(arch: str, config, tmp_path):
    """A peft model of ``config`` on the tiny ``arch`` model, every adapter tensor random, saved by peft itself."""
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(MODELS[arch](), config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_((1.0 if "ia3_l" in name else 0.0) + 0.3 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    return model


def peft_configs():
    import peft

    return {
        "lora-bert": ("bert", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])),
        "lora-gpt2": ("gpt2", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True)),
        "rslora-llama": ("llama", peft.LoraConfig(r=4, lora_alpha=8, use_rslora=True,
                                                  target_modules=["q_proj", "v_proj", "down_proj"])),
        "lora-patterns-llama": ("llama", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"],
                                                         rank_pattern={"v_proj": 2}, alpha_pattern={"o_proj": 3})),
        "dora-llama": ("llama", peft.LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj"])),
        "dora-gpt2": ("gpt2", peft.LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["c_attn"],
                                              fan_in_fan_out=True)),
        "lora-head-llama": ("llama", peft.LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"])),
        "ia3-bert": ("bert", peft.IA3Config(target_modules=["key", "value", "output.dense"],
                                            feedforward_modules=["output.dense"])),
        "ia3-llama": ("llama", peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                              feedforward_modules=["down_proj"])),
        "ia3-gpt2": ("gpt2", peft.IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"],
                                            fan_in_fan_out=True)),
        "loha-bert": ("bert", peft.LoHaConfig(r=2, alpha=4, target_modules=["query", "value"])),
        "lokr-llama": ("llama", peft.LoKrConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"])),
        "lokr-patterns-bert": ("bert", peft.LoKrConfig(r=2, alpha=4, target_modules=["query", "value"],
                                                       rank_pattern={"value": 1})),
        "adalora-llama": ("llama", peft.AdaLoraConfig(init_r=4, target_r=2, total_step=10,
                                                      target_modules=["q_proj", "v_proj"])),
        "prompt-llama": ("llama", peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
        "prompt-bert": ("bert", peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=3)),
        "ptuning-llama": ("llama", peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3,
                                                            encoder_hidden_size=8)),
        "prefix-llama": ("llama", peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    }


CASES = list(peft_configs())  # every adapter above, saved by peft itself


@pytest.mark.parametrize("case", CASES)
def test_import_an_adapter_saved_by_peft(case, tmp_path):
    arch, config = peft_configs()[case]
    theirs = peft_saved(arch, config, tmp_path)
    ours = mp.import_peft(MODELS[arch](), tmp_path)
    diff = (first(ours) - first(theirs)).abs().max().item()
    assert diff <= 1e-5, diff
    if not case.startswith(("prompt", "ptuning", "prefix")):    # an update that changes the outputs: a live check
        assert (first(ours) - first(MODELS[arch]())).abs().max() > 1e-3
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    # AdaLoRA: peft keeps no P/Q of pruned triplets, ours has them (at λ = 0); P-tuning: peft saved only P
    if "adalora" not in case and "ptuning" not in case:
        assert trainable == sum(p.numel() for p in theirs.parameters() if p.requires_grad)


def test_rank_and_alpha_patterns_become_one_config_per_group(tmp_path):
    arch, config = peft_configs()["lora-patterns-llama"]
    peft_saved(arch, config, tmp_path)
    ours = mp.import_peft(MODELS[arch](), tmp_path)
    groups = sorted((c.r, c.alpha, len(c.targets)) for c in ours.minipeft_configs)
    assert groups == [(2, 8, 2), (4, 3, 2), (4, 8, 2)]        # v_proj r=2; o_proj alpha=3; q_proj the defaults


ROUND_TRIP = {
    "lora": ("llama", mp.LoRAConfig(r=2)), "rslora": ("bert", mp.LoRAConfig(r=4, use_rslora=True)),
    "lora-gpt2": ("gpt2", mp.LoRAConfig(r=2)), "ia3": ("bert", mp.IA3Config()), "ia3-llama": ("llama", mp.IA3Config()),
    "loha": ("llama", mp.LoHaConfig(r=2)), "lokr": ("bert", mp.LoKrConfig(r=2)),
    "adalora": ("llama", mp.AdaLoRAConfig(init_r=4, target_r=2, total_steps=10)),
    "prompt": ("bert", mp.PromptConfig(length=3)), "ptuning": ("llama", mp.PTuningConfig(length=3, hidden=8)),
    "prefix": ("llama", mp.PrefixConfig(length=3)),
    "head": ("bert", mp.LoRAConfig(r=2, modules_to_save=["pooler.dense"])),
}


@pytest.mark.parametrize("case", ROUND_TRIP)
def test_round_trip_through_peft_is_bit_identical(case, tmp_path):
    arch, config = ROUND_TRIP[case]
    model = mp.inject(MODELS[arch](), config)
    randomise(model, ones=("ia3_l",))
    if case == "adalora":  # a pruned triplet: the export keeps only the kept ones, the import puts them back
        layer = next(iter(mp.peft_layers(model).values()))
        with torch.no_grad():
            layer.mask[-1], layer.lam[-1] = False, 0.0
    mp.export_peft(model, tmp_path)
    back = mp.import_peft(MODELS[arch](), tmp_path)
    assert torch.equal(first(back), first(model))


# --------------------------------------------------------------------------------------------- tied embeddings
@pytest.mark.parametrize("config", [mp.LoRAConfig(r=2, modules_to_save=["lm_head"]),
                                    mp.IA3Config(modules_to_save=["lm_head"]),
                                    mp.LoRAConfig(r=2, modules_to_save=["embed_tokens"])],
                         ids=["lora-lm_head", "ia3-lm_head", "lora-embed_tokens"])
def test_a_tied_head_in_modules_to_save_exports_faithfully(config, tmp_path):
    import json

    import peft

    model = mp.inject(mp.tiny_decoder(), config)                 # tiny_decoder ties lm_head to embed_tokens
    assert model.lm_head.weight is model.model.embed_tokens.weight
    randomise(model, ones=("ia3_l",))
    mp.export_peft(model, tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert sorted(saved["modules_to_save"]) == ["lm_head", "model.embed_tokens"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(mp.tiny_decoder(), str(tmp_path)).eval()
    assert (first(theirs) - first(model)).abs().max() <= 1e-6   # was 3.97 when only lm_head was saved
    back = mp.import_peft(mp.tiny_decoder(), tmp_path)
    assert torch.equal(first(back), first(model))


def test_a_prompt_with_the_tied_head_in_modules_to_save_is_refused(tmp_path):
    model = mp.inject(mp.tiny_decoder(), mp.PromptConfig(length=3, modules_to_save=["lm_head"]))
    with pytest.raises(TypeError, match="ORIGINAL embedding layer"):
        mp.export_peft(model, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_import_refusals(tmp_path):
    import json

    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2))
    mp.export_peft(model, tmp_path)
    with pytest.raises(ValueError, match="fresh base model"):
        mp.import_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "lora_bias": True}))
    with pytest.raises(ValueError, match="lora_bias.*does not implement"):
        mp.import_peft(mp.tiny_encoder(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "VERA"}))
    with pytest.raises(ValueError, match="'VERA' has no minipeft equivalent"):
        mp.import_peft(mp.tiny_encoder(), tmp_path)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        mp.import_peft(mp.tiny_encoder(), tmp_path / "nothing")


def test_an_adapter_for_another_model_changes_nothing(tmp_path):
    mp.export_peft(mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=2)), tmp_path)
    other = mp.tiny_decoder(hidden_size=48, num_attention_heads=4)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="different base model"):
        mp.import_peft(other, tmp_path)
    assert not mp.peft_layers(other) and not hasattr(other, "minipeft_configs")
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())
