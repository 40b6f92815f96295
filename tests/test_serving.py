"""AdapterBank (minipeft/serving.py): many users' LoRA / prefix adapters in one batch equal each user run alone,
equal peft's own mixed batches, generate per row, and refuse what cannot share a batch with the fix."""

import warnings

import pytest
import torch

import minipeft as mp
from helpers import randomise
from minipeft.serving import BankLoRALinear

ATOL = 1e-5
# module names per family: LoRA on q/v, on every attention projection, and the prefix's attention modules
ALL_PROJ = {"bert": ["query", "key", "value", "attention.output.dense"],
            "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
            "gpt2": ["c_attn", "attn.c_proj"]}                              # GPT-2's Conv1D: weights stored (in, out)
LAYER0 = {"bert": ["encoder.layer.0.attention.self"], "llama": ["model.layers.0.self_attn"]}
FAMILIES = {"bert": mp.tiny_encoder, "llama": mp.tiny_decoder}             # prefix tuning: BERT and Llama
MODELS = {**FAMILIES, "gpt2": mp.tiny_gpt2}                                # LoRA: GPT-2 too


def batch(rows=7, t=9, left=False):
    """Token ids with padding: row b keeps t - b % 4 real tokens (right padding, or left padding for generate)."""
    ids = torch.randint(3, 100, (rows, t))
    mask = torch.ones(rows, t, dtype=torch.long)
    for b in range(rows):
        pad = b % 4
        if pad:
            (mask[b, :pad] if left else mask[b, t - pad:]).zero_()
    ids = ids.masked_fill(mask == 0, 0)
    return {"input_ids": ids, "attention_mask": mask}


def first(output):
    return output[0]


def user(family, tmp_path, name, *configs, seed=1):
    """A user's adapter: ``configs`` injected into the family's tiny model, random values, saved; the directory."""
    model = MODELS[family]()
    for config in configs:
        mp.inject(model, config)
    torch.manual_seed(seed)
    randomise(model, std=0.2)
    return mp.save_adapter(model, tmp_path / name)


def alone(family, directory, inputs):
    """What the user gets from their adapter alone on a fresh base model (the whole batch, every row)."""
    model = MODELS[family]()
    if directory is not None:
        mp.load_adapter(model, directory)
    with torch.no_grad():
        return first(model.eval()(**inputs))


def assert_rows_equal_alone(family, bank, dirs, names, inputs):
    with torch.no_grad():
        served = first(bank(**inputs, adapter_names=names))
    for who in set(names):
        rows = [b for b, n in enumerate(names) if n == who]
        expected = alone(family, dirs.get(who), inputs)[rows]
        gap = (served[rows] - expected).abs().max().item()
        assert gap <= ATOL, (who, gap)
    return served


# --------------------------------------------------------------------------------------------- equal to alone
@pytest.mark.parametrize("family", MODELS)
def test_lora_users_with_different_ranks_alphas_and_rslora(family, tmp_path):
    dirs = {
        "alice": user(family, tmp_path, "alice", mp.LoRAConfig(r=2, alpha=4), seed=1),                 # q, v
        "bob": user(family, tmp_path, "bob", mp.LoRAConfig(r=8, alpha=3, use_rslora=True,              # rsLoRA
                                                            targets=ALL_PROJ[family]), seed=2),
        "carol": user(family, tmp_path, "carol", mp.LoRAConfig(r=4, alpha=32), seed=3),
    }
    bank = mp.AdapterBank(MODELS[family](), dirs)
    names = ["alice", None, "bob", "carol", "alice", None, "bob"]
    inputs = batch(len(names))
    served = assert_rows_equal_alone(family, bank, dirs, names, inputs)
    base = alone(family, None, inputs)
    assert (served[2] - base[2]).abs().max() > 1e-2                    # the adapters matter: the check can fail
    q = next(m for n, m in bank.model.named_modules() if isinstance(m, BankLoRALinear))
    assert q.lora_A.shape[:2] == (4, 8)                                 # base + 3 users, ranks padded to 8
    assert torch.count_nonzero(q.lora_A[0]) == 0                        # slot 0: the base model


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_and_prefix_users_share_one_batch(family, tmp_path):
    dirs = {
        "alice": user(family, tmp_path, "alice", mp.LoRAConfig(r=4), seed=1),
        "bob": user(family, tmp_path, "bob", mp.PrefixConfig(length=3), seed=2),
        "carol": user(family, tmp_path, "carol", mp.PrefixConfig(length=5, projection_hidden=16,
                                                                  targets=LAYER0[family]), seed=3),
        "dave": user(family, tmp_path, "dave", mp.LoRAConfig(r=2), mp.PrefixConfig(length=2), seed=4),  # stacked
    }
    bank = mp.AdapterBank(FAMILIES[family](), dirs)
    names = ["bob", "alice", None, "carol", "dave", "bob", None, "carol"]
    assert_rows_equal_alone(family, bank, dirs, names, batch(len(names)))


def test_outside_the_bank_the_model_is_the_base_model(tmp_path):
    dirs = {"alice": user("llama", tmp_path, "alice", mp.LoRAConfig(r=4), mp.PrefixConfig(length=3))}
    bank = mp.AdapterBank(mp.tiny_decoder(), dirs)
    inputs = batch(3)
    with torch.no_grad():
        plain = first(bank.model(**inputs))
        base_rows = first(bank(**inputs, adapter_names=[None] * 3))
    expected = alone("llama", None, inputs)
    assert (plain - expected).abs().max() <= ATOL and (base_rows - expected).abs().max() <= ATOL


# --------------------------------------------------------------------------------------------- peft
@pytest.mark.parametrize("family", FAMILIES)
def test_equals_peft_mixed_batch_inference(family, tmp_path):
    import peft

    configs = {"alice": mp.LoRAConfig(r=2, alpha=4), "bob": mp.LoRAConfig(r=6, alpha=5, use_rslora=True)}
    dirs, exported = {}, {}
    for seed, (name, config) in enumerate(configs.items(), start=1):
        model = mp.inject(FAMILIES[family](), config)
        torch.manual_seed(seed)
        randomise(model, std=0.2)
        dirs[name] = mp.save_adapter(model, tmp_path / name)
        exported[name] = mp.export_peft(model, tmp_path / f"{name}-peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(FAMILIES[family](), str(exported["alice"]), adapter_name="alice")
        theirs.load_adapter(str(exported["bob"]), adapter_name="bob")
    names = ["bob", None, "alice", "alice", None, "bob"]
    inputs = batch(len(names))
    with torch.no_grad():
        expected = first(theirs.eval()(**inputs, adapter_names=[n or "__base__" for n in names]))
        served = first(mp.AdapterBank(FAMILIES[family](), dirs)(**inputs, adapter_names=names))
    assert (served - expected).abs().max() <= ATOL


# --------------------------------------------------------------------------------------------- generate
def test_generate_per_row_equals_each_user_alone(tmp_path):
    dirs = {"alice": user("llama", tmp_path, "alice", mp.LoRAConfig(r=4, alpha=16), seed=1),
            "bob": user("llama", tmp_path, "bob", mp.PrefixConfig(length=4), seed=2),
            "carol": user("llama", tmp_path, "carol", mp.LoRAConfig(r=8, use_rslora=True), seed=3),
            "dave": user("llama", tmp_path, "dave", mp.PrefixConfig(length=2), seed=4)}   # a shorter prefix
    names = ["alice", "bob", None, "carol", "dave", "bob", "alice"]
    prompts = batch(len(names), t=6, left=True)
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, output_scores=True,
                    return_dict_in_generate=True)
    bank = mp.AdapterBank(mp.tiny_decoder(), dirs)
    with torch.no_grad():
        served = bank.generate(**prompts, adapter_names=names, **settings)
    outputs = {}
    for who in set(names):
        model = mp.tiny_decoder()
        if who is not None:
            mp.load_adapter(model, dirs[who])
        with torch.no_grad():
            outputs[who] = model.generate(**prompts, **settings)
    for b, who in enumerate(names):
        assert torch.equal(served.sequences[b], outputs[who].sequences[b]), (b, who)      # token for token
        gap = max((mine[b] - alone[b]).abs().max().item() for mine, alone in zip(served.scores, outputs[who].scores))
        assert gap <= ATOL, (b, who, gap)                                               # and every step's logits
    assert len({tuple(o.sequences[0, 6:].tolist()) for o in outputs.values()}) > 1     # users write differently


# --------------------------------------------------------------------------------------------- refused
def test_unknown_or_miscounted_names_are_refused(tmp_path):
    bank = mp.AdapterBank(mp.tiny_encoder(), {"alice": user("bert", tmp_path, "alice", mp.LoRAConfig())})
    inputs = batch(2)
    with pytest.raises(ValueError, match=r"Unknown adapter name\(s\) \['bob'\].*holds \['alice'\]"):
        bank(**inputs, adapter_names=["alice", "bob"])
    with pytest.raises(ValueError, match="2 rows but adapter_names named 3"):
        bank(**inputs, adapter_names=["alice", None, None])
    with pytest.raises(TypeError, match="one name per row"):
        bank(**inputs, adapter_names="alice")
    with pytest.raises(ValueError, match="at least one adapter"):
        mp.AdapterBank(mp.tiny_encoder(), {})


def test_beam_search_that_multiplies_rows_is_refused(tmp_path):
    bank = mp.AdapterBank(mp.tiny_decoder(), {"alice": user("llama", tmp_path, "alice", mp.LoRAConfig())})
    with pytest.raises(ValueError, match="num_beams=1"):
        bank.generate(**batch(2, left=True), adapter_names=["alice", None], num_beams=2, max_new_tokens=2,
                      pad_token_id=0)


def test_adapter_of_another_base_model_is_refused(tmp_path):
    llama = user("llama", tmp_path, "llama", mp.LoRAConfig())
    wider = mp.save_adapter(mp.inject(mp.tiny_encoder(hidden_size=64), mp.LoRAConfig()), tmp_path / "wide")
    for directory in (llama, wider):
        with pytest.raises(ValueError, match="'zed'.s adapter does not fit this BertModel.*base model the adapter "
                                             "was trained on"):
            mp.AdapterBank(mp.tiny_encoder(), {"zed": directory})


@pytest.mark.parametrize("config, match", [
    (mp.IA3Config(), r"\['ia3'\].*serves LoRA and prefix"),
    (mp.LoRAConfig(modules_to_save=["pooler"]), "modules_to_save"),
])
def test_methods_that_cannot_share_a_batch_are_refused(tmp_path, config, match):
    directory = user("bert", tmp_path, "odd", config)
    with pytest.raises(ValueError, match=match):
        mp.AdapterBank(mp.tiny_encoder(), {"ok": user("bert", tmp_path, "ok", mp.LoRAConfig()), "odd": directory})


def test_merged_or_adapted_models_are_refused_and_the_bank_does_not_merge(tmp_path):
    directory = user("bert", tmp_path, "alice", mp.LoRAConfig())
    merged = mp.load_adapter(mp.tiny_encoder(), directory)
    mp.merge(merged)
    with pytest.raises(ValueError, match=r"\['lora'\] merged into its weights.*Swap, do not merge"):
        mp.AdapterBank(merged, {"alice": directory})
    with pytest.raises(ValueError, match="needs the plain base model"):
        mp.AdapterBank(mp.load_adapter(mp.tiny_encoder(), directory), {"alice": directory})
    bank = mp.AdapterBank(mp.tiny_encoder(), {"alice": directory})
    with pytest.raises(TypeError, match="cannot be merged"):
        mp.merge(bank.model)
    with pytest.raises(ValueError, match="needs the plain base model"):
        mp.AdapterBank(bank.model, {"alice": directory})
