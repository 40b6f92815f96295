"""P-tuning (minipeft/ptuning.py): peft's PromptEncoder architecture, peft equality, folding, bad inputs."""

import copy

import pytest
import torch

import minipeft as mp
from helpers import assert_inject_refused, assert_matches_peft, assert_round_trip, fit_next_token, ids, randomise
from minipeft.core.targets import find_backbone
from minipeft.methods.prompt import SoftPrompt
from minipeft.methods.softprompt import prepend_prompt, prompt_embeddings
from minipeft.methods.ptuning import PromptEncoder, fold_prompt_encoder

N, D, H = 5, 32, 16
ENCODERS = ["mlp", "lstm"]


def batch():
    x = ids(3, 6)
    mask = torch.ones_like(x)
    mask[0, :2] = 0
    return dict(input_ids=x, attention_mask=mask)


def peft_training_copy(model, base, encoder, task):
    """peft's own P-tuning model (training mode, with its encoder) carrying our encoder's weights."""
    from peft import PromptEncoderConfig, get_peft_model

    theirs = get_peft_model(base, PromptEncoderConfig(task_type=task, num_virtual_tokens=N, encoder_hidden_size=H,
                                                      encoder_reparameterization_type=encoder.upper()))
    theirs.prompt_encoder["default"].load_state_dict(find_backbone(model).prompt_encoder.state_dict(), strict=True)
    return theirs.eval()


# --------------------------------------------------------------------------------------------- architecture
def test_parameter_counts():
    mlp = mp.inject(mp.tiny_encoder(), mp.PTuningConfig(length=N, encoder="mlp", hidden=H))
    assert mp.trainable_parameters(mlp)[0] == N * D + (D * H + H) + (H * H + H) + (H * D + D)
    lstm = mp.inject(mp.tiny_encoder(), mp.PTuningConfig(length=N, encoder="lstm", hidden=H, lstm_layers=2))
    per_direction = (4 * H * D + 4 * H * H + 8 * H) + (4 * H * 2 * H + 4 * H * H + 8 * H)  # layer 1 reads 2h
    head = (2 * H * 2 * H + 2 * H) + (2 * H * D + D)
    assert mp.trainable_parameters(lstm)[0] == N * D + 2 * per_direction + head
    default = mp.inject(mp.tiny_encoder(), mp.PTuningConfig(length=N))  # hidden=None -> d, as peft
    assert find_backbone(default).prompt_encoder.mlp_head[0].out_features == D


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("factory, task", [(mp.tiny_encoder, "FEATURE_EXTRACTION"), (mp.tiny_decoder, "CAUSAL_LM")])
def test_matches_peft_prompt_encoder_in_training_mode(factory, task, encoder):
    """Same parameter names and shapes (strict load) and the same outputs as peft's P_TUNING model."""
    model = mp.inject(factory(), mp.PTuningConfig(length=N, encoder=encoder, hidden=H))
    randomise(model)
    theirs = peft_training_copy(model, factory(), encoder, task)
    with torch.no_grad():
        P = theirs.get_prompt(batch_size=1)[0]  # peft's encoder output (n, d)
        assert (P - prompt_embeddings(model)).abs().max() <= 1e-6
        inputs = batch()
        assert (theirs(**inputs)[0] - model(**inputs)[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("encoder", ENCODERS)
def test_export_matches_peft(encoder, tmp_path):
    """peft saves the encoder's output P; loaded for inference, it gives our outputs."""
    model = mp.inject(mp.tiny_decoder(), mp.PTuningConfig(length=N, encoder=encoder, hidden=H))
    randomise(model)
    theirs = assert_matches_peft(model, mp.tiny_decoder, tmp_path, **batch())  # the logits, ≤ 1e-5
    assert theirs.peft_config["default"].encoder_reparameterization_type == encoder.upper()


def test_shares_prompt_tunings_input_machinery():
    model = mp.inject(mp.tiny_encoder(), mp.PTuningConfig(length=N))
    assert list(model._forward_pre_hooks.values()) == [prepend_prompt]
    assert isinstance(model.prompt_encoder, PromptEncoder)
    with torch.no_grad():
        assert model(ids(2, 7))[0].shape == (2, N + 7, D)


# --------------------------------------------------------------------------------------------- folding
@pytest.mark.parametrize("encoder", ENCODERS)
def test_fold_gives_a_plain_soft_prompt_with_the_same_outputs(encoder, tmp_path):
    model = mp.inject(mp.tiny_decoder(), mp.PTuningConfig(length=N, encoder=encoder, hidden=H))
    randomise(model)
    inputs = batch()
    with torch.no_grad():
        before = model(**inputs).logits
        fold_prompt_encoder(model)
        assert (model(**inputs).logits - before).abs().max() <= 1e-5
    assert isinstance(model.prompt_encoder, SoftPrompt)
    assert mp.trainable_parameters(model)[0] == N * D
    assert [c.method for c in model.minipeft_configs] == ["prompt"]
    mp.save_adapter(model, tmp_path)  # the folded model saves and loads as plain prompt tuning
    fresh = mp.load_adapter(mp.tiny_decoder(), tmp_path)
    with torch.no_grad():
        assert torch.equal(fresh(**inputs).logits, model(**inputs).logits)


def test_generate_with_a_prompt_encoder():
    model = mp.inject(mp.tiny_decoder(), mp.PTuningConfig(length=N, encoder="lstm", hidden=H))
    randomise(model, std=0.5)
    x = ids(2, 5)
    kwargs = dict(max_new_tokens=5, do_sample=False, output_scores=True, return_dict_in_generate=True)
    ours = model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kwargs)
    folded = fold_prompt_encoder(copy.deepcopy(model)).generate(input_ids=x, attention_mask=torch.ones_like(x),
                                                                 **kwargs)
    assert ours.sequences.shape == (2, 10) and torch.equal(ours.sequences, folded.sequences)
    assert (torch.stack(ours.scores) - torch.stack(folded.scores)).abs().max() <= 1e-4


def test_save_and_load_before_folding(tmp_path):
    model = mp.inject(mp.tiny_encoder(), mp.PTuningConfig(length=N, encoder="lstm", hidden=H))
    randomise(model)
    assert_round_trip(model, mp.tiny_encoder(), tmp_path, ids())  # bit-identical outputs


# --------------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("encoder", ENCODERS)
def test_only_the_encoder_learns(encoder):
    model = mp.inject(mp.tiny_decoder(), mp.PTuningConfig(length=4, encoder=encoder, hidden=H))
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "prompt_encoder" not in k}
    losses = fit_next_token(model, lr=3e-2)
    assert losses[-1] < losses[0] - 0.1, (losses[0], losses[-1])  # measured drops: 0.17 (mlp), 0.28 (lstm)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(length=0), ValueError, "length must be a positive int"),
    (dict(length=-1), ValueError, "length must be a positive int"),
    (dict(encoder="gru"), ValueError, "Unknown prompt encoder 'gru'"),
    (dict(encoder="MLP"), ValueError, "Unknown prompt encoder 'MLP'"),
    (dict(hidden=0), ValueError, "hidden must be a positive int"),
    (dict(hidden=2.5), ValueError, "hidden must be a positive int"),
    (dict(lstm_layers=0), ValueError, "lstm_layers must be a positive int"),
    (dict(dropout=1.0), ValueError, r"dropout is a probability in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, r"dropout is a probability in \[0, 1\)"),
    (dict(targets=["query"]), ValueError, "PTuningConfig prepends vectors to the input .* takes no targets"),
])
def test_bad_inputs(kwargs, error, phrase):
    assert_inject_refused(mp.tiny_encoder(), mp.PTuningConfig(**kwargs), error, phrase)  # no prompt_encoder...


def test_misuse():
    with pytest.raises(ValueError, match="no P-tuning prompt encoder to fold"):
        fold_prompt_encoder(mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=3)))
    model = mp.inject(mp.tiny_encoder(), mp.PTuningConfig(length=3))
    with pytest.raises(ValueError, match="already has a soft prompt"):
        mp.inject(model, mp.PromptConfig(length=3))
    with pytest.raises(TypeError, match="PromptEncoder cannot be merged"):
        mp.merge(model)
    fold_prompt_encoder(model)
    with pytest.raises(ValueError, match="no P-tuning prompt encoder to fold"):
        fold_prompt_encoder(model)


# --------------------------------------------------------------------------------------------- real models
@pytest.mark.integration
@pytest.mark.parametrize("encoder", ENCODERS)
def test_minilm_matches_peft(encoder, tmp_path):
    model, tok = mp.load_encoder()
    mp.inject(model, mp.PTuningConfig(length=10, encoder=encoder, hidden=64))
    randomise(model, std=0.05)
    inputs = tok(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    inputs.pop("token_type_ids")
    assert_matches_peft(model, lambda: mp.load_encoder()[0], tmp_path, **inputs)


@pytest.mark.integration
def test_smollm2_matches_peft(tmp_path):
    base, tok = mp.load_decoder()
    model = mp.inject(copy.deepcopy(base), mp.PTuningConfig(length=10, encoder="mlp", hidden=128))
    randomise(model, std=0.02)
    inputs = tok(["The capital of France is"], return_tensors="pt")
    assert_matches_peft(model, lambda: copy.deepcopy(base), tmp_path, **inputs)  # the logits, ≤ 1e-5
