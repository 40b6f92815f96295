"""Every method, with its DEFAULT targets, on a tiny random model of every family a student may load.

The families differ in everything the methods touch: module names (query / q_proj / q_lin / q), fused q/k/v
projections (GPT-2's Conv1D c_attn, GPT-NeoX, Phi-3), the FFN's form (BERT's split in two, Llama's gated mlp, BART's
fc1/fc2 directly in the layer), rotary or learned positions, encoder-decoders. Defaults come from recognising the
structure (minipeft.core.arch), so each case checks, per family × method:

    inject with targets=None works (or is refused with an error that says why: COVERAGE below)
    identity at init           the base model's outputs, bit for bit (every method but soft prompts and prefixes)
    one training step          lowers a loss on the outputs
    merge                      ΔW methods: mp.merge keeps the outputs (up to float32 rounding)
    peft                       export_peft -> peft.PeftModel.from_pretrained: the same outputs (max |Δ| ≤ 1e-5),
                               for every method peft has, where the export is possible (else a TypeError)
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import minipeft as mp
from helpers import randomise
from minipeft.core.arch import recognise
from minipeft.methods.mpt import set_task

# --------------------------------------------------------------------------------------------- the tiny families
D = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=128,
         max_position_embeddings=64)
GQA = dict(D, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
SEQ2SEQ = dict(vocab_size=128, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
FAMILIES = {  # family -> (model_type, the auto class, config fields), every model d = 32, 2 layers
    "bert": ("bert", "AutoModel", D),
    "roberta": ("roberta", "AutoModel", dict(D, pad_token_id=1)),
    "xlm-roberta": ("xlm-roberta", "AutoModel", dict(D, pad_token_id=1)),
    "distilbert": ("distilbert", "AutoModel", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=128,
                                                   max_position_embeddings=64)),
    "deberta-v2": ("deberta-v2", "AutoModel", D),
    "electra": ("electra", "AutoModel", dict(D, embedding_size=32)),
    "mpnet": ("mpnet", "AutoModel", D),
    "t5": ("t5", "AutoModelForSeq2SeqLM", dict(SEQ2SEQ, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)),
    "mt5": ("mt5", "AutoModelForSeq2SeqLM", dict(SEQ2SEQ, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)),
    "bart": ("bart", "AutoModelForSeq2SeqLM", dict(SEQ2SEQ, d_model=32, encoder_layers=2, decoder_layers=2,
                                                   encoder_attention_heads=4, decoder_attention_heads=4,
                                                   encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)),
    "gpt2": ("gpt2", "AutoModelForCausalLM", dict(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64,
                                                  bos_token_id=1, eos_token_id=2)),
    "gpt-neox": ("gpt_neox", "AutoModelForCausalLM", dict(D, bos_token_id=1, eos_token_id=2)),
    "opt": ("opt", "AutoModelForCausalLM", dict(D, ffn_dim=64, word_embed_proj_dim=32, pad_token_id=0,
                                                bos_token_id=1, eos_token_id=2)),
    "llama": ("llama", "AutoModelForCausalLM", GQA),
    "mistral": ("mistral", "AutoModelForCausalLM", GQA),
    "qwen2": ("qwen2", "AutoModelForCausalLM", GQA),
    "qwen3": ("qwen3", "AutoModelForCausalLM", dict(GQA, head_dim=8)),
    "gemma": ("gemma", "AutoModelForCausalLM", dict(GQA, head_dim=8)),
    "gemma2": ("gemma2", "AutoModelForCausalLM", dict(GQA, head_dim=8)),
    "phi3": ("phi3", "AutoModelForCausalLM", GQA),
    "vit": ("vit", "AutoModel", dict(D, image_size=16, patch_size=8)),
}
# what each family was recognised as (minipeft.core.arch): the words a student sees in an error message
RECOGNISED = {
    "bert": "encoder, separate q/k/v, FFN split in two modules (the second, output, takes the residual)",
    "distilbert": "encoder, separate q/k/v, FFN in one module (ffn)",
    "t5": "encoder-decoder, separate q/k/v, FFN in one module (DenseReluDense)",
    "mt5": "encoder-decoder, separate q/k/v, gated FFN in one module (DenseReluDense)",
    "bart": "encoder-decoder, separate q/k/v, FFN layers directly in the block (no FFN module)",
    "gpt2": "decoder, fused qkv (c_attn), FFN in one module (mlp)",
    "gpt-neox": "decoder, fused qkv (query_key_value), FFN in one module (mlp)",
    "opt": "decoder, separate q/k/v, FFN layers directly in the block (no FFN module)",
    "llama": "decoder, separate q/k/v (grouped-query), gated FFN in one module (mlp)",
    "phi3": "decoder, fused qkv (qkv_proj), gated FFN in one module (mlp)",
    "vit": "vision encoder, separate q/k/v, FFN in one module (mlp)",
}


def tiny(family: str, seed: int = 0):
    import transformers

    model_type, auto, fields = FAMILIES[family]
    config = transformers.AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, auto).from_config(config).eval()


def inputs(family: str) -> dict:
    g = torch.Generator().manual_seed(0)
    if family == "vit":
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=g)}
    x = torch.randint(3, 100, (2, 7), generator=g)
    # an encoder-decoder builds its decoder input from the labels (shifted right), as peft's seq2seq prompt expects
    return {"input_ids": x, **({"labels": x[:, :4].contiguous()} if FAMILIES[family][1].endswith("Seq2SeqLM") else {})}


def out(model, batch) -> torch.Tensor:
    output = model(**batch)
    return output.logits if getattr(output, "logits", None) is not None else output[0]  # logits or hidden states


# --------------------------------------------------------------------------------------------- the methods
# name -> (config, promises the base model at init, merges, peft has the method)
METHODS = {
    "lora": (mp.LoRAConfig(r=2), True, True, True),
    "dora": (mp.DoRAConfig(r=2), True, True, True),
    "adalora": (mp.AdaLoRAConfig(init_r=4, target_r=2, total_steps=10), True, True, True),
    "loha": (mp.LoHaConfig(r=2), True, True, True),
    "lokr": (mp.LoKrConfig(r=2), True, True, True),
    "ia3": (mp.IA3Config(), True, True, True),
    "krona": (mp.KronAConfig(), True, True, False),
    "pfedpara": (mp.PFedParaConfig(r=2), True, True, False),
    "bitfit": (mp.BitFitConfig(), True, False, False),
    "houlsby": (mp.AdapterConfig(kind="houlsby", bottleneck=4), True, False, False),
    "pfeiffer": (mp.AdapterConfig(kind="pfeiffer", bottleneck=4), True, False, False),
    "parallel": (mp.AdapterConfig(kind="parallel", bottleneck=4), True, False, False),
    "kronab": (mp.KronABConfig(), True, False, False),
    "prompt": (mp.PromptConfig(length=3), False, False, True),
    "ptuning": (mp.PTuningConfig(length=3, hidden=8), False, False, True),
    "mpt": (mp.MPTConfig(length=3, tasks=2), False, False, False),
    "prefix": (mp.PrefixConfig(length=3), False, False, True),
}
ENC_DEC = ("t5", "mt5", "bart")
NO_BIAS = ("t5", "mt5", "llama", "mistral", "qwen3", "gemma", "gemma2", "phi3")
NO_FFN_MODULE = ("bart", "opt")
PREFIX_UNSUPPORTED = ("distilbert", "deberta-v2", "mpnet", "gpt2", "gpt-neox", "opt", "vit", *ENC_DEC)
# the combinations that are refused at inject: the error, the words that say why, the reason in docs/peft.md
COVERAGE: dict[tuple[str, str], tuple[type, str, str]] = {
    **{("bitfit", f): (ValueError, "no bias parameters", "no biases") for f in NO_BIAS},
    **{(m, f): (ValueError, r"no FFN module.*FFN layers directly in the block", "no FFN module")
       for m in ("parallel", "kronab") for f in NO_FFN_MODULE},
    **{(m, "vit"): (TypeError, "not a table of token embeddings", "no tokens") for m in ("prompt", "ptuning", "mpt")},
    **{("prefix", f): (TypeError, "Prefix tuning supports.*Why: prefix tuning recomputes attention", "attention")
       for f in PREFIX_UNSUPPORTED},
}
# where peft has the method but cannot load this model's adapter: the export says why
EXPORT_REFUSED = {
    **{(m, "gpt2"): "Conv1D" for m in ("loha", "lokr")},                        # peft's LyCORIS: no Conv1D
    **{("prefix", f): "past_key_values" for f in ("bert", "roberta", "xlm-roberta", "electra")},  # no shift
}
CASES = [pytest.param(m, f, id=f"{m}-{f}") for f in FAMILIES for m in METHODS if (m, f) not in COVERAGE]
REFUSED = [pytest.param(m, f, id=f"{m}-{f}") for (m, f) in COVERAGE]


pytestmark = pytest.mark.usefixtures("one_thread")  # d = 32 models: one thread is faster (conftest)


def loss_of(model, batch, target) -> torch.Tensor:
    return (out(model, batch).float() - target).pow(2).mean()


@pytest.mark.parametrize("method, family", CASES)
def test_every_method_on_every_family(method, family, tmp_path):
    config, identity, merges, in_peft = METHODS[method]
    batch = inputs(family)
    model = tiny(family)
    with torch.no_grad():
        base = out(model, batch)
    mp.inject(model, copy.deepcopy(config))                      # targets=None: the recognised defaults
    if method == "mpt":
        set_task(model, 0)
    with torch.no_grad():
        start = out(model, batch)
    if identity:
        assert torch.equal(start, base)

    # one training step lowers the loss: a gradient step sized to lower it by 0.1% to first order (a zero-initialised
    # factor makes some gradients tiny: AdaLoRA's Λ = 0 leaves only Λ's own)
    target = torch.randn(start.shape, generator=torch.Generator().manual_seed(1))
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = loss_of(model, batch, target)
    before.backward()
    grads = [(p, p.grad) for p in trainable if p.grad is not None]
    squared = sum(g.pow(2).sum() for _, g in grads)
    assert squared > 0
    with torch.no_grad():
        for p, g in grads:
            p -= 1e-3 * before / squared * g
        after = loss_of(model, batch, target)
    assert after < before, (before.item(), after.item())

    randomise(model, std=0.1, ones=("ia3_l",))                   # a live update: a check that can fail
    with torch.no_grad():
        adapted = out(model, batch)
    if identity:                                                 # (a soft prompt also makes the output longer)
        assert (adapted - base).abs().max() > 1e-4

    if in_peft and (method, family) not in EXPORT_REFUSED:
        import peft

        mp.export_peft(model, tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = peft.PeftModel.from_pretrained(tiny(family), str(tmp_path)).eval()
            with torch.no_grad():
                diff = (out(theirs, batch) - adapted).abs().max().item()
        assert diff <= 1e-5, diff
    elif in_peft:
        with pytest.raises(TypeError, match=EXPORT_REFUSED[(method, family)]):
            mp.export_peft(model, tmp_path / "refused")

    if merges:
        mp.merge(model)
        assert not mp.peft_layers(model)
        with torch.no_grad():
            # float32 rounding of W0 + ΔW, relative to the outputs' size (mT5's untied head gives logits up to 19)
            assert (out(model, batch) - adapted).abs().max() <= 1e-6 * max(10, adapted.abs().max())


@pytest.mark.parametrize("method, family", REFUSED)
def test_an_unsupported_combination_is_refused_with_the_reason(method, family):
    error, why, _ = COVERAGE[(method, family)]
    model = tiny(family)
    with pytest.raises(error, match=why):
        mp.inject(model, copy.deepcopy(METHODS[method][0]))
    assert not mp.peft_layers(model) and not hasattr(model, "minipeft_configs")


@pytest.mark.parametrize("family", RECOGNISED)
def test_each_family_is_recognised_as_what_it_is(family):
    assert str(recognise(tiny(family))) == RECOGNISED[family]


@pytest.mark.parametrize("family, lora, ia3", [
    ("bert", ["query", "value"], ["key", "value", "output.dense"]),    # IA3 on BERT: peft's own choice, pinned
    ("llama", ["q_proj", "v_proj"], ["k_proj", "v_proj", "down_proj"]),
    ("gpt2", ["c_attn"], ["c_attn", "mlp.c_proj"]),
    ("t5", ["q", "v"], ["k", "v", "wo"]),
    ("distilbert", ["q_lin", "v_lin"], ["k_lin", "v_lin", "lin2"]),
    ("gpt-neox", ["query_key_value"], ["query_key_value", "dense_4h_to_h"]),
    ("phi3", ["qkv_proj"], ["qkv_proj", "down_proj"]),
])
def test_defaults_are_the_names_peft_uses(family, lora, ia3):
    """The recognised defaults are the target_modules peft's own tables give these model types."""
    from minipeft.core.targets import default_targets

    model = tiny(family)
    assert default_targets(mp.LoRAConfig(), model) == lora
    assert default_targets(mp.IA3Config(), model) == ia3


def test_a_model_without_blocks_says_what_it_was_recognised_as():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"query projection \+ value projection.*recognised as: encoder, no "
                                         r"attention projections recognised"):
        mp.inject(model, mp.LoRAConfig())


# --------------------------------------------------------------------------------------------- the docs
def coverage_table() -> str:
    """docs/peft.md's table: ✓ (= peft where export_peft gives peft's outputs) or the reason a case is refused."""
    def cell(method, family):
        if (method, family) in COVERAGE:
            return "✗ " + COVERAGE[(method, family)][2]
        in_peft = METHODS[method][3] and (method, family) not in EXPORT_REFUSED
        return "✓ = peft" if in_peft else "✓"
    rows = ["| family | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    rows += [f"| {f} | " + " | ".join(cell(m, f) for m in METHODS) + " |" for f in FAMILIES]
    return "\n".join(rows)


def names_table() -> str:
    """docs/peft.md's table of peft's field names and minipeft's."""
    from minipeft.core.config import PEFT_NAMES, PEFT_ONLY

    rows = ["| peft | minipeft |", "|---|---|"]
    for peft_name, ours in PEFT_NAMES.items():
        ours = (", ".join(f"`{f}` ({m})" for m, f in ours.items()) if isinstance(ours, dict) else f"`{ours}`")
        rows.append(f"| `{peft_name}` | {ours} |")
    rows += [f"| `{peft_name}` | none: {why} |" for peft_name, why in PEFT_ONLY.items()]
    return "\n".join(rows)


def test_the_docs_show_the_tables_the_code_has():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "peft.md").read_text()
    assert coverage_table() in text, "regenerate docs/peft.md's coverage table: tests/test_architectures.py"
    assert names_table() in text, "regenerate docs/peft.md's names table: tests/test_architectures.py"


@pytest.mark.parametrize("config, peft_name, ours", [
    (mp.LoRAConfig, "lora_alpha", "alpha"), (mp.LoRAConfig, "target_modules", "targets"),
    (mp.LoRAConfig, "lora_dropout", "dropout"), (mp.AdaLoRAConfig, "total_step", "total_steps"),
    (mp.AdaLoRAConfig, "deltaT", "delta_t"), (mp.IA3Config, "feedforward_modules", "feedforward"),
    (mp.PromptConfig, "num_virtual_tokens", "length"), (mp.PromptConfig, "prompt_tuning_init", "init"),
    (mp.PTuningConfig, "encoder_hidden_size", "hidden"), (mp.PrefixConfig, "encoder_hidden_size", "projection_hidden"),
    (mp.MPTConfig, "num_tasks", "tasks"),
])
def test_a_peft_field_name_gets_an_error_naming_the_minipeft_field(config, peft_name, ours):
    with pytest.raises(TypeError, match=f"'{peft_name}' is peft's name: minipeft calls it '{ours}'"):
        config(**{peft_name: 1})


def test_other_unknown_fields_are_explained():
    with pytest.raises(TypeError, match="'task_type' is a peft field: minipeft needs no task type"):
        mp.LoRAConfig(task_type="CAUSAL_LM")
    with pytest.raises(TypeError, match=r"'rr' is not a field \(did you mean 'r'\?\)"):
        mp.LoRAConfig(rr=4)


def test_recognition_sees_through_layers_another_method_added():
    """Defaults of a second method on a model that already carries one (MAM: prefix + parallel adapters): the first
    method's wrappers keep the names a target uses, and its own layers (an adapter's down / up) are not the model's."""
    model = mp.inject(tiny("bert"), mp.AdapterConfig(kind="parallel", bottleneck=4))
    assert str(recognise(model)) == RECOGNISED["bert"]
    model = mp.inject(tiny("llama"), mp.PrefixConfig(length=2))
    assert str(recognise(model)) == RECOGNISED["llama"]
    mp.inject(model, mp.AdapterConfig(kind="parallel", bottleneck=4))
    assert len(mp.peft_layers(model)) == 4                         # 2 prefix attentions + 2 parallel adapters


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_a_prompt_on_an_encoder_decoder_generates_as_peft_does(family, tmp_path):
    """generate() calls the encoder on its own, then the whole model with its output: both see the prompt."""
    import peft

    model = mp.inject(tiny(family), mp.PromptConfig(length=3))
    randomise(model, std=1.0)
    x = inputs(family)["input_ids"]
    mask = torch.ones_like(x)
    mask[1, -2:] = 0                                                   # a padded row
    mp.export_peft(model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(tiny(family), str(tmp_path)).eval()
    ours = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(ours, theirs.generate(input_ids=x, attention_mask=mask, max_new_tokens=5, do_sample=False))
    def first_scores(m):                                               # the prompt is live: the scores move
        return m.generate(input_ids=x, attention_mask=mask, max_new_tokens=1, do_sample=False, output_logits=True,
                          return_dict_in_generate=True).logits[0]
    assert (first_scores(model) - first_scores(tiny(family))).abs().max() > 1e-3
