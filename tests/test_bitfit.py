"""BitFit (minipeft/bitfit.py): exactly the biases train, nothing else moves, clear errors without biases."""

import pytest
import torch

import minipeft as mp
from helpers import ids, learn_rotten_tomatoes


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_all_biases_and_only_biases():
    model = mp.inject(mp.tiny_encoder(), mp.BitFitConfig())
    names = trainable(model)
    assert names and all(n.endswith(".bias") for n in names)
    assert "encoder.layer.0.attention.output.LayerNorm.bias" in names  # b_LN: the paper trains these too
    # per layer: q, k, v, attention-out, LN1 (d each), intermediate (d_ff), output, LN2 -> 7d + d_ff;
    # plus the embeddings' LayerNorm and the pooler (d each)
    d, d_ff = 32, 64
    assert mp.trainable_parameters(model)[0] == 2 * (7 * d + d_ff) + 2 * d


def test_nothing_changes_at_inject():
    model, x = mp.tiny_encoder(), ids()
    with torch.no_grad():
        before = model(x).last_hidden_state
        mp.inject(model, mp.BitFitConfig())
        assert torch.equal(model(x).last_hidden_state, before)
    assert not mp.peft_layers(model)


def test_paper_subset_query_and_intermediate():
    model = mp.inject(mp.tiny_encoder(), mp.BitFitConfig(targets=["query", "intermediate.dense"]))
    assert trainable(model) == {f"encoder.layer.{i}.{m}.bias" for i in range(2)
                                for m in ("attention.self.query", "intermediate.dense")}
    assert mp.trainable_parameters(model)[0] == 2 * (32 + 64)  # b_q and b_m2 of §4


def test_a_training_step_moves_only_biases():
    model = mp.inject(mp.tiny_encoder(), mp.BitFitConfig()).train()
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(ids()).last_hidden_state.pow(2).mean().backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.endswith(".bias") for n in moved)


def test_stacks_with_lora_on_the_same_layer():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2, targets=["query"]))
    mp.inject(model, mp.BitFitConfig(targets=["query"]))
    biases = {n for n in trainable(model) if n.endswith("bias")}
    assert biases == {f"encoder.layer.{i}.attention.self.query.base_layer.bias" for i in range(2)}


def test_llama_has_no_biases():
    model = mp.tiny_decoder()
    with pytest.raises(ValueError, match="has no bias parameters .*Use LoRA or IA3"):
        mp.inject(model, mp.BitFitConfig())
    assert not hasattr(model, "minipeft_configs") and all(p.requires_grad for p in model.parameters())


def test_target_without_a_bias():
    with pytest.raises(ValueError, match=r"targets \['embeddings.word_embeddings'\] have no bias"):
        mp.inject(mp.tiny_encoder(), mp.BitFitConfig(targets=["word_embeddings"]))


def test_bad_targets():
    with pytest.raises(ValueError, match="is empty"):
        mp.inject(mp.tiny_encoder(), mp.BitFitConfig(targets=[]))
    with pytest.raises(ValueError, match="matched no module"):
        mp.inject(mp.tiny_encoder(), mp.BitFitConfig(targets=["q_proj"]))


def test_cannot_export_to_peft(tmp_path):
    model = mp.inject(mp.tiny_encoder(), mp.BitFitConfig())
    with pytest.raises(TypeError, match="peft has no BitFit .*save_adapter"):
        mp.export_peft(model, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.integration
def test_bitfit_learns():
    """With the classifier head frozen at random, only the encoder's biases can lower the loss: BitFit fits 32
    reviews (more slowly than LoRA or IA3: 20 full-batch steps)."""
    from minipeft.lab.train import MeanPoolClassifier

    encoder, tok = mp.load_encoder()
    model = MeanPoolClassifier(mp.inject(encoder, mp.BitFitConfig()))  # the encoder's biases, not the head's
    model.head.requires_grad_(False)
    assert mp.trainable_parameters(model)[0] == 6 * (7 * 384 + 1536) + 2 * 384  # 26,112: ~0.1% of MiniLM
    result = learn_rotten_tomatoes(model, tok, train=32, val=None, epochs=20, batch_size=32, lr=1e-2,
                                   max_length=32, warmup_ratio=0)
    assert result.accuracy >= 0.8 and sum(result.losses[-3:]) < 0.75 * sum(result.losses[:3]), result.losses
