"""pFedPara (methods/pfedpara.py) and the simulated federated round (lab/train/federated.py) on tiny random models."""

import numpy as np
import pytest
import torch
from datasets import Dataset

import minipeft as mp
from minipeft import chapter
from minipeft.lab.train import TrainConfig, predict
from minipeft.lab.train.federated import fedavg, fedavg_training, load_shared, numbers_sent, shared_state
from minipeft.methods.pfedpara import PFedParaLinear


def test_pfedpara_is_w1_times_w2_plus_one_starts_at_zero_and_shared_only_is_a_rank_r_update():
    layer = PFedParaLinear(torch.nn.Linear(12, 10), r=3, alpha=3.0, shared_only=False)
    assert layer.delta_weight().abs().max() == 0                      # Y1 = 0: the model starts unchanged
    with torch.no_grad():
        layer.Y1.normal_()
    W1, W2 = layer.X1 @ layer.Y1, layer.X2 @ layer.Y2
    assert torch.allclose(layer.delta_weight(), W1 * W2 + W1)
    x = torch.randn(4, 12)
    assert torch.allclose(layer(x), layer.base_layer(x) + x @ layer.delta_weight().T, atol=1e-6)
    shared = PFedParaLinear(torch.nn.Linear(12, 10), r=3, alpha=3.0, shared_only=True)
    with torch.no_grad():
        shared.Y1.normal_()
    assert torch.linalg.matrix_rank(shared.delta_weight()) <= 3 and not shared.X2.requires_grad


def test_shared_only_trains_no_local_factor_even_after_injection():
    # inject unfreezes every parameter of a wrapped layer: W2 must not be one, or "shared only" learns a W2 too
    model = chapter.classifier(mp.tiny_encoder(), mp.PFedParaConfig(r=2, shared_only=True), seed=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(n.endswith((".X2", ".Y2")) for n in trainable)
    layer = next(m for m in model.modules() if isinstance(m, PFedParaLinear))
    assert layer.Y2.abs().max() == 0
    pfed = chapter.classifier(mp.tiny_encoder(), mp.PFedParaConfig(r=2), seed=0)
    assert mp.trainable_parameters(pfed)[0] > mp.trainable_parameters(model)[0]


def test_fedavg_weights_clients_by_size_and_refuses_mismatched_states():
    a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    assert torch.allclose(fedavg([a, b], [1, 3])["w"], torch.full((2,), 0.75))
    assert torch.allclose(fedavg([a, b])["w"], torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="same tensors"):
        fedavg([a, {"v": torch.ones(2)}])


def test_pfedpara_keeps_its_local_factors_at_home_and_sends_fewer_numbers():
    model = chapter.classifier(mp.tiny_encoder(), mp.PFedParaConfig(r=2), seed=0)
    sent = shared_state(model)
    assert sent and not any(n.endswith((".X2", ".Y2")) for n in sent)
    loha = chapter.classifier(mp.tiny_encoder(), mp.LoHaConfig(r=2), seed=0)
    head = chapter.head_parameters(model)
    assert numbers_sent(model) - head == (numbers_sent(loha) - head) // 2   # X1, Y1 of the four factors


def _toy(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (n, 8), generator=g)
    labels = (ids[:, 0] > 60).long()
    return Dataset.from_dict(dict(input_ids=ids.tolist(), attention_mask=[[1] * 8] * n, label=labels.tolist()))


class _Tok:
    pad_token_id = 0


def test_a_federated_round_averages_the_shared_state_and_keeps_each_clients_local_state():
    model = chapter.classifier(mp.tiny_encoder(), mp.PFedParaConfig(r=2), seed=0)
    clients = {"a": (_toy(32, 0), _toy(16, 1)), "b": (_toy(16, 2), _toy(16, 3))}
    result = fedavg_training(model, _Tok(), clients, rounds=2, config=TrainConfig(max_steps=2, batch_size=8, lr=1e-2))
    assert len(result.accuracy) == 2 and set(result.accuracy[0]) == {"a", "b"}
    for name, (_, eval_ds) in clients.items():                       # the last round's 0/1 per snippet, rescored
        again = predict(result.models[name], _Tok(), eval_ds, 8, 64)
        assert result.correct[name] == [int(p == y) for p, y in zip(again, eval_ds["label"])]
        assert np.mean(result.correct[name]) == pytest.approx(result.accuracy[-1][name])
    a, b = result.models["a"], result.models["b"]
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        if n.endswith((".X1", ".Y1")) or n.startswith("head"):
            assert torch.equal(pa, pb), n                     # the server's average, on both
    Y2 = [dict(m.named_parameters()) for m in (a, b)]
    name = next(n for n in Y2[0] if n.endswith(".Y2"))
    assert not torch.equal(Y2[0][name], Y2[1][name])        # each client's own W2
    load_shared(a, shared_state(b))
    assert result.sent_per_round == numbers_sent(model)
