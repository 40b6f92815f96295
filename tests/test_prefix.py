"""Prefix tuning (minipeft/prefix.py): counts, masks, a hand-written reference, peft equality, fold, bad inputs."""

import math
from functools import partial

import pytest
import torch

import helpers
import minipeft as mp
from helpers import learn_rotten_tomatoes, loss_fell, minilm_classifier, peft_from
from minipeft.methods.prefix import PrefixConfig, prefix_encoder, extend_mask, fold_prefix, prefix_attention_mass, prefix_layers, prefix_table

IMPLS = ["sdpa", "eager"]


randomise = partial(helpers.randomise, std=1.0)  # large enough that the prefix clearly matters


def batch(left_pad=False):
    """Two sequences of 6 tokens, the first with 2 padding positions (right for BERT, left for a decoder)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    if left_pad:
        mask[0, :2] = 0
    else:
        mask[0, -2:] = 0
    return ids, mask


def recorded(model, **inputs):
    """Run ``model`` once (no gradients) and return ({i: (args, kwargs, output) of PrefixAttention i}, its output),
    captured with forward hooks that are removed again."""
    seen, hooks = {}, []
    for i, layer in enumerate(prefix_layers(model)):
        hooks.append(layer.register_forward_hook(
            lambda mod, args, kwargs, out, i=i: seen.__setitem__(i, (args, dict(kwargs), out[0])), with_kwargs=True))
    try:
        with torch.no_grad():
            return seen, model(**inputs)
    finally:
        for h in hooks:
            h.remove()


# --------------------------------------------------------------------------------------------- hand-written reference
def reference_bert(att, x, p_k, p_v, mask2d):
    """Plain softmax attention of BertSelfAttention ``att`` with the prefix concatenated explicitly in d-space."""
    B, T, d = x.shape
    H = att.num_attention_heads
    dh = d // H
    n = p_k.shape[0]
    heads = lambda t: t.view(B, t.shape[1], H, dh).transpose(1, 2)               # (B, H, *, dh)
    q = heads(x @ att.query.weight.T + att.query.bias)
    k = heads(torch.cat([p_k.expand(B, n, d), x @ att.key.weight.T + att.key.bias], dim=1))
    v = heads(torch.cat([p_v.expand(B, n, d), x @ att.value.weight.T + att.value.bias], dim=1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)                             # (B, H, T, n+T)
    keep = torch.cat([torch.ones(B, n), mask2d.float()], dim=1).bool()          # the prefix: always visible
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)


def reference_llama(att, rotary, x, p_k, p_v, mask2d):
    """LlamaAttention with the prefix: RoPE (positions n..n+T-1) on real q/k only, GQA, causal + padding mask."""
    B, T, d = x.shape
    cfg = att.config
    H, Hkv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, att.head_dim
    n = p_k.shape[0]
    q = (x @ att.q_proj.weight.T).view(B, T, H, dh).transpose(1, 2)
    k = (x @ att.k_proj.weight.T).view(B, T, Hkv, dh).transpose(1, 2)
    v = (x @ att.v_proj.weight.T).view(B, T, Hkv, dh).transpose(1, 2)
    cos, sin = rotary(x, (torch.arange(T) + n)[None])                             # the MODEL's rotary embedding
    rot = lambda t: t * cos[:, None] + torch.cat([-t[..., dh // 2:], t[..., : dh // 2]], -1) * sin[:, None]
    q, k = rot(q), rot(k)
    pk = p_k.view(n, Hkv, dh).transpose(0, 1).expand(B, -1, -1, -1)             # never rotated
    pv = p_v.view(n, Hkv, dh).transpose(0, 1).expand(B, -1, -1, -1)
    K, V = torch.cat([pk, k], 2), torch.cat([pv, v], 2)                          # (B, Hkv, n+T, dh)
    group = torch.arange(H) // (H // Hkv)                                        # query head h reads kv head h // g
    scores = q @ K[:, group].transpose(-1, -2) / math.sqrt(dh)                   # (B, H, T, n+T)
    causal = torch.ones(T, T).tril().bool()
    keep = torch.cat([torch.ones(B, T, n).bool(), causal[None] & mask2d.bool()[:, None, :]], dim=-1)
    scores = scores.masked_fill(~keep[:, None], float("-inf"))
    out = (scores.softmax(-1) @ V[:, group]).transpose(1, 2).reshape(B, T, H * dh)
    return out @ att.o_proj.weight.T


# --------------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize("factory, L, d_kv", [(mp.tiny_encoder, 2, 32), (mp.tiny_decoder, 2, 2 * 8)])
def test_closed_form_counts(factory, L, d_kv):
    n, h = 5, 7
    model = mp.inject(factory(), PrefixConfig(length=n))
    assert mp.trainable_parameters(model)[0] == L * 2 * n * d_kv          # tiny_decoder: GQA, d_kv = 2 heads · 8
    assert prefix_table(model).shape == (L, 2, n, d_kv)
    model = mp.inject(factory(), PrefixConfig(length=n, projection_hidden=h))
    mlp = n * d_kv + (d_kv * h + h) + (h * L * 2 * d_kv + L * 2 * d_kv)
    assert mp.trainable_parameters(model)[0] == mlp
    fold_prefix(model)
    assert mp.trainable_parameters(model)[0] == L * 2 * n * d_kv


@pytest.mark.parametrize("projection", [False, True])
def test_counts_equal_peft(projection):
    import peft

    n, h = 4, 6
    config = peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, prefix_projection=projection,
                                     encoder_hidden_size=h)
    theirs = peft.get_peft_model(mp.tiny_decoder(), config)
    ours = mp.inject(mp.tiny_decoder(), PrefixConfig(length=n, projection_hidden=h if projection else None))
    assert mp.trainable_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0]


def test_mlp_is_peft_prefix_encoder():
    """Same modules, names and flat output as peft's PrefixEncoder(prefix_projection=True)."""
    from peft import PrefixTuningConfig
    from peft.tuners.prefix_tuning import PrefixEncoder

    n, h, L, d_kv = 3, 5, 2, 16
    model = mp.inject(mp.tiny_decoder(), PrefixConfig(length=n, projection_hidden=h))
    ours = prefix_encoder(model)
    theirs = PrefixEncoder(PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, token_dim=d_kv,
                                              num_layers=L, encoder_hidden_size=h, prefix_projection=True))
    theirs.load_state_dict(ours.state_dict())                     # strict: the parameter names match
    flat = theirs(torch.arange(n)[None])[0]                       # (n, L·2·d_kv)
    assert torch.equal(ours().permute(2, 0, 1, 3).reshape(n, -1), flat)


# --------------------------------------------------------------------------------------------- masks
def test_extend_mask_forms():
    f32 = torch.float32
    low = torch.finfo(f32).min
    # None + causal (SDPA skipped the mask): the prefix columns visible, causal over the tokens
    m = extend_mask(None, 3, 3, 2, True, f32, "cpu")
    assert (m[0, 0] == 0).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    # decoding with a cache: one query, 4 cached keys, it sees everything
    assert (extend_mask(None, 1, 4, 2, True, f32, "cpu") == 0).all()
    # boolean (SDPA) mask with a padding column
    pad = torch.tensor([True, True, False])[None, None, None].expand(1, 1, 3, 3)
    m = extend_mask(pad, 3, 3, 2, False, f32, "cpu")
    assert (m[..., :2] == 0).all() and (m[..., 4] == low).all() and (m[..., 2:4] == 0).all()
    # additive (eager) mask passes through behind the prefix
    add = torch.zeros(2, 1, 3, 3)
    add[1, ..., 0] = low
    m = extend_mask(add, 3, 3, 2, False, f32, "cpu")
    assert m.shape == (2, 1, 3, 5) and (m[..., :2] == 0).all() and torch.equal(m[..., 2:], add)
    # the debug switch hides the prefix
    assert (extend_mask(None, 3, 3, 2, True, f32, "cpu", hide_prefix=True)[..., :2] == low).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_padding_stays_masked_and_prefix_always_visible(impl):
    model = mp.inject(mp.tiny_encoder(attn_implementation=impl), PrefixConfig(length=3))
    randomise(model)
    ids, mask = batch()
    other = ids.clone()
    other[0, -2:] = 7                                           # change only the padded tokens
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).last_hidden_state
        b = model(input_ids=other, attention_mask=mask).last_hidden_state
    assert (a - b)[mask.bool()].abs().max() <= 1e-6             # real tokens never see padding
    for layer in prefix_layers(model):
        layer.record_mass = True
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for layer in prefix_layers(model):
        assert (layer.last_mass > 1e-4).all()                     # (B, H, T): every query reads the prefix
        layer.record_mass = False


@pytest.mark.parametrize("impl", IMPLS)
def test_decoder_stays_causal(impl):
    model = mp.inject(mp.tiny_decoder(attn_implementation=impl), PrefixConfig(length=3))
    randomise(model)
    ids, mask = batch(left_pad=True)
    other = ids.clone()
    other[:, -1] = 7                                            # change only the last token
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).logits
        b = model(input_ids=other, attention_mask=mask).logits
    assert (a - b)[:, :-1].abs().max() <= 1e-6                  # earlier positions never see it
    assert (a - b)[:, -1].abs().max() > 1e-3


# --------------------------------------------------------------------------------------------- re-implementation
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("factory, left", [(mp.tiny_encoder, False), (mp.tiny_decoder, True)])
def test_hidden_prefix_reproduces_the_base_model(factory, left, impl):
    """With every prefix key masked out, the re-implemented attention must be the original one (≤ 1e-6)."""
    base = factory(attn_implementation=impl)
    model = mp.inject(factory(attn_implementation=impl), PrefixConfig(length=4))
    randomise(model)
    for layer in prefix_layers(model):
        layer.hide_prefix = True
    ids, mask = batch(left_pad=left)
    seen, ours = recorded(model, input_ids=ids, attention_mask=mask, use_cache=False)  # no cache: layers are replayed
    with torch.no_grad():
        theirs = base(input_ids=ids, attention_mask=mask)[0]
        assert (ours[0] - theirs)[mask.bool()].abs().max() <= 1e-6
        for i, layer in enumerate(prefix_layers(model)):        # layer by layer against the original module
            args, kwargs, out = seen[i]
            original = layer.base_layer(*args, **kwargs)[0]
            assert (out - original)[mask.bool()].abs().max() <= 1e-6


def bert_reference(model, layer, args, kwargs, p_k, p_v, mask):
    x = args[0] if args else kwargs["hidden_states"]
    return reference_bert(layer.base_layer, x, p_k, p_v, mask)


def llama_reference(model, layer, args, kwargs, p_k, p_v, mask):
    return reference_llama(layer.base_layer, model.model.rotary_emb, kwargs["hidden_states"], p_k, p_v, mask)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("factory, left, reference", [(mp.tiny_encoder, False, bert_reference),
                                                      (mp.tiny_decoder, True, llama_reference)], ids=["bert", "llama"])
def test_matches_reference_attention(factory, left, reference, impl):
    """Every layer's output equals the hand-written reference (BERT: right padding; Llama: left padding)."""
    model = mp.inject(factory(attn_implementation=impl), PrefixConfig(length=3))
    randomise(model)
    ids, mask = batch(left_pad=left)
    seen, _ = recorded(model, input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        table = prefix_table(model)
        for i, layer in enumerate(prefix_layers(model)):
            args, kwargs, out = seen[i]
            ref = reference(model, layer, args, kwargs, table[i, 0], table[i, 1], mask)
            assert (out - ref)[mask.bool()].abs().max() <= 1e-5


def test_bert_matches_peft_at_the_same_positions():
    """peft runs a bare BertModel with the prefix as past_key_values (tokens at positions n..n+T-1). Given those
    positions explicitly, our attention path must give its numbers: an independent check of the BERT wrapper."""
    import peft

    n = 3
    model = mp.inject(mp.tiny_encoder(), PrefixConfig(length=n))
    randomise(model)
    theirs = peft.get_peft_model(mp.tiny_encoder(), peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION",
                                                                            num_virtual_tokens=n)).eval()
    with torch.no_grad():
        theirs.prompt_encoder["default"].embedding.weight.copy_(prefix_table(model).permute(2, 0, 1, 3).reshape(n, -1))
    ids, mask = batch()
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(6)[None] + n).last_hidden_state
        ref = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - ref)[mask.bool()].abs().max() <= 1e-5


# --------------------------------------------------------------------------------------------- peft: decoder
def greedy(forward, ids, mask, steps):
    """Greedy decoding without a cache, with generate()'s position ids (cumsum of the mask)."""
    for _ in range(steps):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            nxt = forward(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].argmax(-1)
        ids, mask = torch.cat([ids, nxt[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids


@pytest.mark.parametrize("projection", [None, 8])
def test_decoder_equals_peft_logits_and_generation(tmp_path, projection):
    base = mp.tiny_decoder()
    model = mp.inject(mp.tiny_decoder(), PrefixConfig(length=3, projection_hidden=projection))
    randomise(model, std=0.5)
    theirs = peft_from(model, mp.tiny_decoder, tmp_path)
    ids, mask = batch(left_pad=True)
    with torch.no_grad():
        for m in (mask, None):
            ours = model(input_ids=ids, attention_mask=m).logits
            assert (ours - theirs(input_ids=ids, attention_mask=m).logits).abs().max() <= 1e-5
            assert (ours - base(input_ids=ids, attention_mask=m).logits).abs().max() > 1e-2  # the prefix matters
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(generated, greedy(theirs, ids, mask, 6))    # KV-cache generation = peft, step by step
    assert torch.equal(generated, greedy(model, ids, mask, 6))


def test_export_layout(tmp_path):
    from safetensors.torch import load_file

    model = mp.inject(mp.tiny_decoder(), PrefixConfig(length=3))
    config, state = PrefixConfig(length=3).to_peft(model)
    assert config["peft_type"] == "PREFIX_TUNING" and config["task_type"] == "CAUSAL_LM"
    assert (config["token_dim"], config["num_attention_heads"], config["num_layers"]) == (16, 2, 2)  # GQA
    table = prefix_table(model)                                     # (L, 2, n, d_kv)
    flat = state["prompt_embeddings"]                               # (n, L·2·d_kv)
    assert torch.equal(flat.view(3, 2, 2, 16).permute(1, 2, 0, 3), table)
    mp.export_peft(model, tmp_path)
    assert torch.equal(load_file(tmp_path / "adapter_model.safetensors")["prompt_embeddings"], flat)


# --------------------------------------------------------------------------------------------- fold / layers
@pytest.mark.parametrize("factory", [mp.tiny_encoder, mp.tiny_decoder])
def test_fold_keeps_outputs(factory, tmp_path):
    model = mp.inject(factory(), PrefixConfig(length=4, projection_hidden=6))
    randomise(model, std=0.5)
    ids, mask = batch()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask)[0]
        fold_prefix(model)
        after = model(input_ids=ids, attention_mask=mask)[0]
    assert (before - after).abs().max() <= 1e-6
    assert prefix_encoder(model).folded and prefix_encoder(model).prefix.requires_grad
    assert model.minipeft_configs[0].projection_hidden is None       # saved adapters rebuild a direct table
    mp.save_adapter(model, tmp_path)
    fresh = mp.load_adapter(factory(), tmp_path)
    with torch.no_grad():
        assert (fresh(input_ids=ids, attention_mask=mask)[0] - after).abs().max() <= 1e-6


def test_every_layer_sees_its_own_prefix():
    model = mp.inject(mp.tiny_decoder(num_hidden_layers=3), PrefixConfig(length=3))
    randomise(model, std=0.5)
    ids, mask = batch(left_pad=True)
    seen, _ = recorded(model, input_ids=ids, attention_mask=mask, use_cache=False)  # no cache: replayed below
    layers = prefix_layers(model)
    for target in range(3):
        saved = prefix_encoder(model).prefix[target].detach().clone()
        with torch.no_grad():
            prefix_encoder(model).prefix[target].zero_()              # zero layer `target`'s prefix
            for i, layer in enumerate(layers):                      # replay every layer on its recorded input
                args, kwargs, out = seen[i]
                diff = (layer(*args, **kwargs)[0] - out)[mask.bool()].abs().max()
                assert (diff > 1e-3) if i == target else (diff == 0), (target, i, diff)
            prefix_encoder(model).prefix[target].copy_(saved)
    # and the loss reaches every layer's keys and values
    model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    grad = prefix_encoder(model).prefix.grad                         # (L, 2, n, d_kv)
    assert (grad.abs().sum((2, 3)) > 0).all()
    assert all(p.grad is None for n, p in model.named_parameters() if "prefix_encoder" not in n)


def test_first_layer_only_via_targets():
    model = mp.inject(mp.tiny_encoder(), PrefixConfig(length=2, targets=["encoder.layer.0.attention.self"]))
    assert len(prefix_layers(model)) == 1 and mp.trainable_parameters(model)[0] == 1 * 2 * 2 * 32


@pytest.mark.parametrize("factory", [mp.tiny_encoder, mp.tiny_decoder])
def test_prefix_attention_mass(factory):
    model = mp.inject(factory(), PrefixConfig(length=3))
    randomise(model, std=0.5)
    ids, mask = batch()                                          # sequence 0: 4 real tokens, then 2 padding
    mass = prefix_attention_mass(model, input_ids=ids, attention_mask=mask)
    assert mass.shape == (2, 4) and ((mass > 0) & (mass < 1)).all()          # (L, query heads)
    # padding queries are left out: the batch value is the token-weighted mean of the two sequences alone
    first = prefix_attention_mass(model, input_ids=ids[:1, :4])
    second = prefix_attention_mass(model, input_ids=ids[1:])
    assert torch.allclose(mass, (4 * first + 6 * second) / 10, atol=1e-6)
    for layer in prefix_layers(model):
        layer.hide_prefix = True
    assert prefix_attention_mass(model, input_ids=ids, attention_mask=mask).abs().max() == 0
    assert all(not layer.record_mass and layer.last_mass is None for layer in prefix_layers(model))


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, match", [
    (dict(length=0), "positive integer"),
    (dict(length=-3), "positive integer"),
    (dict(length=2.5), "positive integer"),
    (dict(length=True), "positive integer"),
    (dict(projection_hidden=0), "projection_hidden"),
    (dict(projection_hidden=-4), "projection_hidden"),
])
def test_bad_hyper_parameters(kwargs, match):
    model = mp.tiny_encoder()
    with pytest.raises(ValueError, match=match):
        mp.inject(model, PrefixConfig(**kwargs))
    assert not mp.peft_layers(model)


@pytest.mark.parametrize("targets, match", [
    (["query"], "attention.self"),                                  # a linear layer, not an attention module
    (["encoder.layer.0.attention"], "contains"),                   # BertAttention: its .self is the target
])
def test_non_attention_target(targets, match):
    model = mp.tiny_encoder()
    with pytest.raises(TypeError, match=match):
        mp.inject(model, PrefixConfig(targets=targets))
    assert not mp.peft_layers(model) and not hasattr(model, "prefix_encoder")


def test_unsupported_architecture():
    with pytest.raises(TypeError, match="BERT-style self-attention .* rotary decoder attention.*GPT2Attention"):
        mp.inject(mp.tiny_gpt2(), PrefixConfig(targets=["attn"]))
    with pytest.raises(TypeError, match="Why: prefix tuning recomputes attention"):
        mp.inject(mp.tiny_gpt2(), PrefixConfig())


def test_export_errors():
    bert = mp.inject(mp.tiny_encoder(), PrefixConfig(length=2))
    with pytest.raises(TypeError, match="past_key_values"):
        bert.minipeft_configs[0].to_peft(bert)
    partial = mp.inject(mp.tiny_decoder(), PrefixConfig(length=2, targets=["model.layers.0.self_attn"]))
    with pytest.raises(ValueError, match="every layer"):
        partial.minipeft_configs[0].to_peft(partial)


def test_one_prefix_per_model_and_no_merge():
    model = mp.inject(mp.tiny_encoder(), PrefixConfig(length=2, targets=["encoder.layer.0.attention.self"]))
    with pytest.raises(ValueError, match="ONE PrefixConfig"):
        mp.inject(model, PrefixConfig(length=2, targets=["encoder.layer.1.attention.self"]))
    assert list(mp.peft_layers(model)) == ["encoder.layer.0.attention.self"]   # the second call was undone
    with pytest.raises(TypeError, match="cannot be merged"):
        mp.merge(model)


# --------------------------------------------------------------------------------------------- real models
@pytest.mark.integration
def test_minilm_reference_and_hidden_prefix():
    model, tok = mp.load_encoder()
    base, _ = mp.load_encoder()
    mp.inject(model, PrefixConfig(length=10))
    assert mp.trainable_parameters(model)[0] == 6 * 2 * 10 * 384
    randomise(model, std=0.5)
    enc = tok(["a gorgeous, witty film", "dull"], return_tensors="pt", padding=True)
    mask = enc["attention_mask"]
    seen, result = recorded(model, **enc)
    out = result.last_hidden_state
    with torch.no_grad():
        table = prefix_table(model)
        for i in (0, 5):
            args, kwargs, got = seen[i]
            ref = bert_reference(model, prefix_layers(model)[i], args, kwargs, table[i, 0], table[i, 1], mask)
            assert (got - ref)[mask.bool()].abs().max() <= 1e-5
        for layer in prefix_layers(model):
            layer.hide_prefix = True
        hidden = model(**enc).last_hidden_state
        assert (hidden - base(**enc).last_hidden_state)[mask.bool()].abs().max() <= 1e-5
        assert (out - hidden)[mask.bool()].abs().max() > 1e-2


@pytest.mark.integration
def test_smollm2_equals_peft(tmp_path):
    def eager_decoder():
        model = mp.load_decoder()[0]
        model.set_attn_implementation("eager")   # the same attention kernel on both sides, see below
        return model

    model, tok = mp.load_decoder()
    model.set_attn_implementation("eager")
    mp.inject(model, PrefixConfig(length=10))
    assert mp.trainable_parameters(model)[0] == 30 * 2 * 10 * (3 * 64)    # GQA: 3 KV heads of 64
    randomise(model, std=0.5)
    tok.padding_side = "left"
    enc = tok(["The capital of France is", "Hi"], return_tensors="pt", padding=True)
    real = enc["attention_mask"].bool()
    with torch.no_grad():
        ours = model(**enc).logits
        theirs = peft_from(model, eager_decoder, tmp_path)
        assert (theirs(**enc).logits - ours)[real].abs().max() <= 1e-5        # measured: 0.0 (bit-identical)
        # peft on the default SDPA kernel: float rounding over 30 layers only (logits reach ~30)
        generated = model.generate(**enc, max_new_tokens=4, do_sample=False)
        assert torch.equal(generated, greedy(theirs, enc["input_ids"], enc["attention_mask"], 4))
        theirs.get_base_model().set_attn_implementation("sdpa")
        assert (theirs(**enc).logits - ours)[real].abs().max() <= 1e-3         # measured: 1.4e-4


@pytest.mark.integration
def test_prefix_learns_rotten_tomatoes():
    model, tok = minilm_classifier(PrefixConfig(length=10, modules_to_save=["head"]))
    start = prefix_table(model).clone()
    result = learn_rotten_tomatoes(model, tok, lr=3e-2)  # 384 reviews, 1 epoch; 200 to evaluate
    assert result.accuracy >= 0.68, result.accuracy     # measured 0.705; the head alone, same budget: 0.64
    assert loss_fell(result)
    assert (prefix_table(model) - start).abs().max() > 1e-3
