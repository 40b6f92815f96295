"""A simulated federated round (FedAvg, McMahan et al. 2017) over clients that each hold their own data, for the
ADAPTER only: the frozen backbone is on every client already, so only trainable tensors travel.

    model = chapter.classifier(encoder, mp.LoHaConfig(r=4), seed=0)
    result = fedavg_training(model, tokenizer, clients, rounds=3, config=TrainConfig(max_steps=8, lr=5e-3))
    result.accuracy[-1]        # {"amazon": ..., "nyt": ..., "tweets": ...} after the last round
    result.correct["nyt"]      # 0/1 per evaluation snippet after the last round: for a paired comparison
    numbers_sent(model)        # numbers each client uploads per round (and downloads)

One round: every client starts from the server's shared state (plus its own LOCAL tensors, which never travel:
pFedPara's X2, Y2), trains ``config.max_steps`` steps on its data, and uploads its shared tensors; the server
averages them weighted by the clients' data sizes (FedAvg) and sends the average back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from ...methods.pfedpara import LOCAL, PFedParaLinear
from .loop import TrainConfig, accuracy, fit, predict

def local_names(model: nn.Module) -> set[str]:
    """The parameters that never leave a client: pFedPara's local factors (methods/pfedpara.py LOCAL)."""
    return {f"{prefix}.{p}" for prefix, m in model.named_modules() if isinstance(m, PFedParaLinear) for p in LOCAL}


def shared_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a client uploads: every trainable tensor (adapter + head) except its local ones, detached copies."""
    local = local_names(model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and n not in local}


def numbers_sent(model: nn.Module) -> int:
    """Numbers one client uploads per round (the server sends as many back)."""
    return sum(t.numel() for t in shared_state(model).values())


def fedavg(states: list[dict[str, torch.Tensor]], weights=None) -> dict[str, torch.Tensor]:
    """The weighted mean of the clients' shared states, tensor by tensor (weights: e.g. each client's data size)."""
    if not states:
        raise ValueError("fedavg needs at least one client's state.")
    if set().union(*states) != set(states[0]) or any(set(s) != set(states[0]) for s in states):
        raise ValueError("fedavg: the clients' states do not hold the same tensors (a local name uploaded?).")
    w = torch.tensor([1.0] * len(states) if weights is None else [float(v) for v in weights], dtype=torch.float64)
    w = w / w.sum()
    return {k: sum(wi * s[k].double() for wi, s in zip(w, states)).to(states[0][k].dtype) for k in states[0]}


@torch.no_grad()
def load_shared(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)


@dataclass
class FederatedResult:
    accuracy: list[dict[str, float]]   # per round, each client's accuracy on its own evaluation set
    sent_per_round: int                # numbers uploaded per client per round
    models: dict[str, nn.Module]       # each client's model after the last round (shared part = the server's)
    correct: dict[str, list[int]]      # per client, 1/0 per evaluation snippet after the last round (scored once:
                                       # a paired comparison of two trainings needs no second pass)


def fedavg_training(model: nn.Module, tokenizer, clients: dict, rounds: int, config: TrainConfig) -> FederatedResult:
    """``clients``: {name: (train_ds, eval_ds)}. Every client starts from a copy of ``model``; each round trains
    ``config.max_steps`` steps per client (data order seeded by round and client), then FedAvg of the shared state."""
    models = {name: copy.deepcopy(model) for name in clients}
    sizes = [len(train_ds) for train_ds, _ in clients.values()]
    history = []
    for round_ in range(rounds):
        states = []
        for k, (name, (train_ds, _)) in enumerate(clients.items()):
            fit(models[name], tokenizer, train_ds, None,
                replace(config, seed=config.seed + 1000 * round_ + k, progress=False))
            states.append(shared_state(models[name]))
        server = fedavg(states, sizes)
        scores, correct = {}, {}
        for name, (_, eval_ds) in clients.items():
            load_shared(models[name], server)
            preds = predict(models[name], tokenizer, eval_ds, config.eval_batch_size, config.max_length)
            scores[name] = accuracy(preds, eval_ds["label"])
            correct[name] = [int(p == y) for p, y in zip(preds, eval_ds["label"])]
        history.append(scores)
    return FederatedResult(history, numbers_sent(model), models, correct)
