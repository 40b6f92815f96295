"""lab/train/continual.py: one model trained task after task forgets; one adapter per task cannot (tiny encoder)."""

import pytest
import torch
from datasets import Dataset

import minipeft as mp
from minipeft.lab import chapter, train


class _Tok:
    """Characters as tokens (the tiny encoder's vocabulary), enough for fit on toy tasks."""
    pad_token_id = 0

    def __call__(self, texts, truncation=True, max_length=64, **_):
        return {"input_ids": [[1] + [3 + (ord(c) % 120) for c in t][: max_length - 1] for t in texts]}


def _task(flip: bool, n: int, seed: int) -> Dataset:
    """Sentiment words; `flip` swaps what the words mean: the second task undoes the first."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g).tolist()
    words = [["good", "great", "fine"], ["bad", "awful", "poor"]]
    texts = [" ".join(words[y][int(torch.randint(0, 3, (1,), generator=g))] for _ in range(3)) for y in labels]
    return Dataset.from_dict({"text": texts, "label": [1 - y if flip else y for y in labels]})


CONFIG = train.TrainConfig(epochs=3, lr=3e-3, batch_size=16, progress=False, seed=0)
TRAIN = {"a": _task(False, 192, 0), "b": _task(True, 192, 1)}
TEST = {"a": _task(False, 64, 2), "b": _task(True, 64, 3)}


def test_one_model_trained_in_sequence_forgets_the_first_task():
    """(10 epochs at 1e-3: unlearning task a before learning b takes a random tiny model longer than learning a;
    with 3 epochs it stops half-way, at chance on both.)"""
    model = train.MeanPoolClassifier(mp.tiny_encoder(seed=0))
    result = train.fit_sequence(model, _Tok(), TRAIN, TEST, train.TrainConfig(**{**CONFIG.__dict__, "lr": 1e-3,
                                                                                "epochs": 10}))
    assert result.order == ["a", "b"] and len(result.accuracy) == 2 and len(result.losses) == 2
    assert result.accuracy[0]["a"] > 0.9 and result.accuracy[1]["b"] > 0.9          # each stage learns its task
    assert result.forgetting("a") > 0.9 and result.curve("a") == [1.0, 0.0]          # b's meaning overwrote a's
    assert result.forgetting("b") == 0.0


def test_one_adapter_per_task_forgets_nothing_measured_on_its_predictions():
    models = {t: chapter.classifier(mp.tiny_encoder(seed=0), mp.LoRAConfig(r=4, targets=["query", "value"]), seed=0)
              for t in TRAIN}
    result = train.fit_per_task(models, _Tok(), TRAIN, TEST, train.TrainConfig(**{**CONFIG.__dict__, "lr": 1e-2}))
    assert result.accuracy[0]["a"] > 0.9 and result.accuracy[1]["b"] > 0.9
    assert result.predictions[1]["a"] == result.predictions[0]["a"] and result.forgetting("a") == 0.0
    with pytest.raises(ValueError, match="one model per task"):
        train.fit_per_task({"a": models["a"]}, _Tok(), TRAIN, TEST, CONFIG)
    with pytest.raises(ValueError, match="training and an evaluation set"):
        train.fit_sequence(models["a"], _Tok(), TRAIN, {"a": TEST["a"]}, CONFIG)


def test_backward_transfer_is_the_mean_change_on_the_earlier_tasks():
    """GEM's BWT on a 3-task matrix worked by hand: task 0 falls 0.9 -> 0.6, task 1 rises 0.8 -> 0.9, task 2 (last)
    has no later stage: (−0.3 + 0.1) / 2 = −0.1. One per seed for a stack; the matrix of a run is R[stage][task]."""
    R = [[0.9, 0.5, 0.4],
         [0.7, 0.8, 0.5],
         [0.6, 0.9, 0.85]]
    assert train.backward_transfer(R) == pytest.approx(-0.1)
    assert train.backward_transfer([[1.0, 0.0], [1.0, 1.0]]) == 0.0        # nothing forgotten
    stacked = train.backward_transfer(torch.tensor([R, [[1.0, 0.2, 0.1], [0.5, 1.0, 0.3], [0.5, 1.0, 0.9]]]).numpy())
    assert stacked.shape == (2,) and stacked == pytest.approx([-0.1, -0.25])
    result = train.SequenceResult(order=["a", "b"], accuracy=[{"a": 0.9, "b": 0.5}, {"a": 0.6, "b": 0.8}],
                                  predictions=[])
    assert result.matrix() == [[0.9, 0.5], [0.6, 0.8]]
    assert train.backward_transfer(result.matrix()) == pytest.approx(-result.forgetting("a"))
    with pytest.raises(ValueError, match="square accuracy matrix"):
        train.backward_transfer([[0.9, 0.5, 0.4], [0.7, 0.8, 0.5]])
