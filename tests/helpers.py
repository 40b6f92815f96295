"""What the test files share: inputs, outputs, random PEFT parameters, the checks every method's tests repeat
(merge, save/load, refused inputs, equality with Hugging Face peft) and the Rotten Tomatoes integration run.

    from helpers import ids, out, randomise, peft_from

tests/ is on sys.path (see conftest.py), so this is a plain module, not a package.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import minipeft as mp

TINY = [mp.tiny_encoder, mp.tiny_decoder, mp.tiny_gpt2]
MODELS = {"bert": mp.tiny_encoder, "llama": mp.tiny_decoder, "gpt2": mp.tiny_gpt2}


# --------------------------------------------------------------------------------------------- inputs and outputs
def ids(n=2, t=7):
    """A batch of n random token ids of length t, inside every tiny model's vocabulary, above the special ids."""
    return torch.randint(3, 100, (n, t))


def out(model, x):
    """The first output (hidden states or logits) for token ids ``x``, without gradients."""
    with torch.no_grad():
        return model(input_ids=x)[0]


def classifier(seed=0, **overrides):
    """tiny_encoder + MeanPoolClassifier's fresh head: the same model for the same seed (tiny_encoder seeds)."""
    from minipeft.lab.train import MeanPoolClassifier

    return MeanPoolClassifier(mp.tiny_encoder(seed, **overrides)).eval()


@torch.no_grad()
def randomise(model, std=0.1, ones=(), add=False):
    """Random values for every trainable parameter: a zero-initialised factor (LoRA's B, an adapter's up
    projection) must not hide a bug. N(0, std²); 1 + N(0, std²) for parameters whose name ends with one of
    ``ones`` (IA3's scales start at 1); ``add=True`` adds the noise to the current values instead."""
    ones = tuple(ones)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if add:
            p.add_(std * torch.randn_like(p))
        elif ones and name.endswith(ones):
            p.copy_(1.0 + std * torch.randn_like(p))
        else:
            p.normal_(0, std)


# --------------------------------------------------------------------------------------------- the shared checks
def state(model):
    """A copy of the state_dict, to compare with after something that must change nothing."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before):
    now = model.state_dict()
    assert now.keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in now.items())


def assert_inject_refused(model, config, error, match=None):
    """inject raises ``error`` and leaves the model as it was: same tensors, no PEFT layer, no configs, no
    prompt or prefix module, no new forward hook, nothing frozen."""
    before, hooks = state(model), len(model._forward_pre_hooks)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with pytest.raises(error, match=match):
        mp.inject(model, config)
    assert_same_state(model, before)
    assert not mp.peft_layers(model) and not hasattr(model, "minipeft_configs")
    assert not hasattr(model, "prompt_encoder") and len(model._forward_pre_hooks) == hooks
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable


def assert_merges(model, x, atol=1e-5, weight_atol=1e-6):
    """For a ΔW method with a non-zero update: every layer's merge() keeps the outputs, unmerge() restores its
    base layer's weight and bias, and mp.merge(model) gives an ordinary model with the same outputs."""
    expected = out(model, x)
    layers = mp.peft_layers(model)
    w0 = {n: state(layer.base_layer) for n, layer in layers.items()}
    for layer in layers.values():
        layer.merge()
    assert all(layer.merged for layer in layers.values())
    assert (out(model, x) - expected).abs().max() <= atol
    for n, layer in layers.items():
        layer.unmerge()
        assert not layer.merged
        for k, v in layer.base_layer.state_dict().items():  # weight and bias
            assert (v - w0[n][k]).abs().max() <= weight_atol, (n, k)
    after = out(model, x)
    assert (after - expected).abs().max() <= atol and torch.allclose(after, expected, atol=1e-6)
    mp.merge(model)
    assert not mp.peft_layers(model) and not hasattr(model, "minipeft_configs")
    assert (out(model, x) - expected).abs().max() <= atol


def assert_round_trip(model, base, tmp_path, x, prepare=None):
    """save_adapter -> load_adapter into ``base`` (a fresh base model) gives bit-identical outputs; returns it.
    ``prepare(model)`` runs on the loaded model before its forward (MPT: select the task)."""
    mp.save_adapter(model, tmp_path)
    fresh = mp.load_adapter(base, tmp_path)
    if prepare is not None:
        prepare(fresh)
    assert torch.equal(out(fresh, x), out(model, x))
    return fresh


def peft_from(model, factory, tmp_path):
    """Export ``model`` and load the adapter with Hugging Face peft onto ``factory()``, a fresh copy of its base."""
    import peft

    mp.export_peft(model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes about fan_in_fan_out / unknown base names
        return peft.PeftModel.from_pretrained(factory(), str(tmp_path)).eval()


def assert_matches_peft(model, factory, tmp_path, atol=1e-5, **inputs):
    """peft, loading our export onto ``factory()``, gives our first output on ``inputs``; returns peft's model."""
    theirs = peft_from(model, factory, tmp_path)
    with torch.no_grad():
        diff = (theirs(**inputs)[0] - model(**inputs)[0]).abs().max()
    assert diff <= atol, diff
    return theirs


# --------------------------------------------------------------------------------------------- real model
def minilm_classifier(config=None):
    """(the embedded MiniLM under a fresh MeanPoolClassifier head, with ``config`` injected, its tokenizer)."""
    from minipeft.lab.train import MeanPoolClassifier

    encoder, tok = mp.load_encoder()
    model = MeanPoolClassifier(encoder)
    return (model if config is None else mp.inject(model, config)), tok


def learn_rotten_tomatoes(model, tok, train=384, val=200, extra_loss=None, after_step=None, **settings):
    """Train ``model`` on ``train`` Rotten Tomatoes reviews and evaluate on ``val`` validation reviews
    (val=None: on the training reviews themselves). ``settings`` override TrainConfig(epochs=1, lr=1e-2,
    max_length=48, progress=False). Returns fit's TrainResult."""
    from minipeft.lab.data import rotten_tomatoes, subsample
    from minipeft.lab.train import TrainConfig, fit

    data = rotten_tomatoes()
    train_set = subsample(data["train"], train)
    eval_set = train_set if val is None else subsample(data["validation"], val)
    config = TrainConfig(**{**dict(epochs=1, lr=1e-2, max_length=48, progress=False), **settings})
    return fit(model, tok, train_set, eval_set, config, extra_loss=extra_loss, after_step=after_step)


def loss_fell(result):
    """The mean of the last three training losses is below the mean of the first three."""
    return sum(result.losses[-3:]) / 3 < sum(result.losses[:3]) / 3


# --------------------------------------------------------------------------------------------- tiny training
def fit_next_token(model, lr, steps=12):
    """Adam on the PEFT parameters towards one next token (id 42 after 6 random tokens, 8 rows), a target a random
    tiny decoder does not predict; returns the losses."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    x = ids(8, 6)
    labels = torch.where(torch.arange(6) == 5, 42, -100).expand(8, 6).clone()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


class CharTokenizer:
    """One token per character (ids 3..127), 1 = end of text: enough to test the text-level helpers on the tiny
    Llama (and to sample from it: equal-length prompts as tensors, ids decoded back to characters)."""
    pad_token_id, eos_token_id, padding_side = 0, 1, "right"

    def __call__(self, texts, add_special_tokens=False, return_tensors=None):
        one = isinstance(texts, str)
        ids = [[3 + ord(ch) % 125 for ch in t] for t in ([texts] if one else texts)]
        if return_tensors == "pt":          # (sampling: the same prompt on every row, no padding needed)
            return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), len(ids[0]), dtype=torch.long)}
        return {"input_ids": ids[0] if one else ids}

    def batch_decode(self, rows, skip_special_tokens=True):
        return ["".join(chr(t - 3) for t in row.tolist() if t >= 3) for row in rows]
