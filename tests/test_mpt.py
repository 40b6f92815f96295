"""Multitask prompt tuning (minipeft/mpt.py): P_k = P* ∘ (U_k V_k), task selection, counts, the multitask loop."""

import copy

import pytest
import torch

import minipeft as mp
from helpers import ids
from minipeft.lab.train import Distilled, fit_multitask, transfer_prompt
from minipeft.methods.mpt import (MPTConfig, MultitaskPrompt, multitask_prompt, set_task, task_prompts,
                          use_task)
from minipeft.methods.softprompt import prompt_embeddings
from minipeft.lab.train import MeanPoolClassifier, TrainConfig

N, D = 4, 32  # tiny_encoder: d = 32
TASKS = ["amazon", "nyt", "tweets"]


def mpt_model(rank=1, **kw):
    return mp.inject(mp.tiny_encoder(), MPTConfig(length=N, tasks=TASKS, rank=rank, **kw))


# --------------------------------------------------------------------------------------------- the decomposition
@pytest.mark.parametrize("rank", [1, 3])
def test_parameter_count_is_shared_plus_rank_per_task(rank):
    model = mpt_model(rank)
    assert mp.trainable_parameters(model)[0] == N * D + len(TASKS) * rank * (N + D)


def test_task_prompt_is_shared_prompt_times_rank1_outer_product():
    model = mpt_model()
    prompt = multitask_prompt(model)
    with torch.no_grad():
        prompt.prefix_task_cols.normal_()
        prompt.prefix_task_rows.normal_()
    P_star = prompt.embedding.weight
    for k, name in enumerate(TASKS):
        u, v = prompt.prefix_task_cols[k, :, 0], prompt.prefix_task_rows[k, 0]  # (n,), (d,)
        with use_task(model, name):
            assert torch.allclose(prompt_embeddings(model), P_star * torch.outer(u, v), atol=1e-6)
    assert task_prompts(model).shape == (len(TASKS), N, D)
    assert torch.linalg.matrix_rank(prompt.task_matrix(1)).item() == 1


@pytest.mark.parametrize("rank", [1, 2])
def test_every_task_starts_at_the_shared_prompt(rank):
    model = mpt_model(rank)
    P_star = multitask_prompt(model).embedding.weight.detach()
    for k in range(len(TASKS)):
        assert torch.allclose(task_prompts(model)[k], P_star, atol=1e-6)


def test_vocab_init_uses_word_embedding_rows():
    model = mpt_model(init="vocab")
    E = model.get_input_embeddings().weight
    P_star = multitask_prompt(model).embedding.weight
    assert all(any(torch.equal(row, e) for e in E) for row in P_star)


# --------------------------------------------------------------------------------------------- picking the task
def test_the_task_changes_the_output_and_matches_plain_prompt_tuning():
    """With task k selected, the model is exactly prompt tuning with the prompt P_k."""
    model = mpt_model()
    with torch.no_grad():
        multitask_prompt(model).prefix_task_cols.normal_()
    x = ids(t=6)
    outs = []
    for name in TASKS:
        set_task(model, name)
        plain = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=N))
        with torch.no_grad():
            plain.prompt_encoder.embedding.weight.copy_(prompt_embeddings(model))
            out = model(input_ids=x).last_hidden_state
            assert torch.allclose(out, plain(input_ids=x).last_hidden_state, atol=1e-5)
        outs.append(out)
    assert not torch.allclose(outs[0], outs[1])


def test_use_task_restores_the_previous_task():
    model = mpt_model()
    set_task(model, "nyt")
    with use_task(model, 2):
        assert multitask_prompt(model).task == 2
    assert multitask_prompt(model).task == 1


def test_bad_tasks_and_configs_raise_clear_errors():
    model = mpt_model()
    with pytest.raises(ValueError, match="needs a task"):
        model(input_ids=ids(t=6))
    with pytest.raises(ValueError, match="Unknown task 'imdb'"):
        set_task(model, "imdb")
    with pytest.raises(ValueError, match="index 0..2"):
        set_task(model, 3)
    with pytest.raises(ValueError, match="no multitask prompt"):
        set_task(mp.tiny_encoder(), 0)
    with pytest.raises(ValueError, match="distinct"):
        MPTConfig(tasks=["a", "a"]).validate()
    with pytest.raises(ValueError, match="rank"):
        MPTConfig(rank=0).validate()
    with pytest.raises(ValueError, match="init"):
        MPTConfig(init="labels").validate()
    with pytest.raises(ValueError, match="MPTConfig prepends vectors to the input .* takes no targets"):
        MPTConfig(targets=["query"]).validate()
    with pytest.raises(TypeError, match="save_adapter"):
        mp.export_peft(model, "/tmp/never")


def test_integer_tasks_get_default_names():
    model = mp.inject(mp.tiny_encoder(), MPTConfig(length=2, tasks=2))
    assert multitask_prompt(model).tasks == ["task0", "task1"]


def test_save_and_load_roundtrip(tmp_path):
    model = mpt_model()
    with torch.no_grad():
        multitask_prompt(model).prefix_task_rows.normal_()
    mp.save_adapter(model, tmp_path)
    loaded = mp.load_adapter(mp.tiny_encoder(), tmp_path)
    assert isinstance(multitask_prompt(loaded), MultitaskPrompt)
    assert torch.allclose(task_prompts(loaded), task_prompts(model))


# --------------------------------------------------------------------------------------------- the multitask loop
def _toy_sets():
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    sets = {}
    for k, name in enumerate(TASKS):
        x = torch.randint(5, 100, (24, 6), generator=g)
        label = (x[:, 0] > 50).long()
        sets[name] = Dataset.from_dict({"input_ids": x.tolist(), "attention_mask": [[1] * 6] * 24,
                                        "label": label.tolist()})
    return sets


class _Tok:
    pad_token_id = 0


def test_fit_multitask_trains_shared_and_task_parameters_round_robin():
    clf = mp.inject(MeanPoolClassifier(mp.tiny_encoder()), MPTConfig(length=N, tasks=TASKS, modules_to_save=["head"]))
    prompt = multitask_prompt(clf)
    before = copy.deepcopy(prompt.state_dict())
    sets = _toy_sets()
    result = fit_multitask(clf, _Tok(), sets, sets, TrainConfig(max_steps=6, batch_size=8, lr=1e-2, progress=False))
    assert [t for t, _ in result.losses] == TASKS * 2
    assert set(result.accuracy) == set(TASKS) and all(0 <= a <= 1 for a in result.accuracy.values())
    assert result.trainable == N * D + len(TASKS) * (N + D) + D * 2 + 2
    after = prompt.state_dict()
    assert not torch.equal(before["embedding.weight"], after["embedding.weight"])
    for k in range(len(TASKS)):
        assert not torch.equal(before["prefix_task_rows"][k], after["prefix_task_rows"][k])
    assert prompt.task is None  # the loop leaves no task selected behind


def test_fit_multitask_needs_one_dataset_per_task():
    clf = mp.inject(MeanPoolClassifier(mp.tiny_encoder()), MPTConfig(length=N, tasks=TASKS, modules_to_save=["head"]))
    sets = _toy_sets()
    with pytest.raises(ValueError, match="one dataset per task"):
        fit_multitask(clf, _Tok(), {"amazon": sets["amazon"]}, sets, TrainConfig(max_steps=1, progress=False))


def _teacher(seed):
    torch.manual_seed(seed)
    teacher = mp.inject(MeanPoolClassifier(mp.tiny_encoder()), mp.PromptConfig(length=N, modules_to_save=["head"]))
    with torch.no_grad():                             # a trained teacher's head is not the fresh one's zeros
        gen = torch.Generator().manual_seed(seed)     # (inject seeds the global generator itself)
        for p in teacher.head.parameters():
            p.normal_(generator=gen)
    return teacher


def test_distillation_adds_the_kl_to_each_task_s_own_teacher_and_trains_only_the_student():
    """Wang §3.2: L = L_task + w·τ²·KL(teacher ‖ student), the teacher of the batch's task, frozen, in eval mode."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    student = mp.inject(MeanPoolClassifier(mp.tiny_encoder()), MPTConfig(length=N, tasks=TASKS[:2],
                                                                         modules_to_save=["head"]))
    teachers = {"amazon": _teacher(1), "nyt": _teacher(2)}
    wrapped = Distilled(student, teachers, weight=0.5, temperature=2.0).train()
    assert not any(t.training for t in wrapped.teachers.values()) and student.training
    wrapped.eval()                                    # (no dropout: the two forward passes below must agree)
    batch = dict(input_ids=ids(3, 6), attention_mask=torch.ones(3, 6, dtype=torch.long), labels=torch.tensor([0, 1, 1]))
    with use_task(student, "nyt"):
        out = wrapped(**batch)
        own = student(**batch)
    teacher = teachers["nyt"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    kl = F.kl_div(F.log_softmax(own.logits / 2, -1), F.log_softmax(teacher / 2, -1), log_target=True,
                  reduction="batchmean") * 4
    assert kl > 0 and out.loss.item() == pytest.approx(own.loss.item() + 0.5 * kl.item(), rel=1e-5)
    with use_task(student, "amazon"):                 # the other task: the other teacher
        assert wrapped(**batch).loss.item() != pytest.approx(out.loss.item())
    sets = {k: v for k, v in _toy_sets().items() if k in TASKS[:2]}
    before = [p.clone() for t in teachers.values() for p in t.parameters()]
    result = fit_multitask(student, _Tok(), sets, sets, TrainConfig(max_steps=4, batch_size=8, lr=1e-2, progress=False),
                           teachers=teachers)
    assert all(torch.equal(a, b) for a, b in zip(before, [p for t in teachers.values() for p in t.parameters()]))
    assert result.trainable == N * D + 2 * (N + D) + D * 2 + 2 and result.total == mp.trainable_parameters(student)[1]
    with pytest.raises(ValueError, match="One teacher per task"):
        Distilled(student, {"amazon": teachers["amazon"]})


def test_transfer_starts_the_target_at_the_source_s_shared_prompt():
    source = mpt_model()
    with torch.no_grad():
        multitask_prompt(source).embedding.weight.normal_()
    target = mp.inject(mp.tiny_encoder(), MPTConfig(length=N, tasks=["tweets"]))
    transfer_prompt(source, target)
    assert torch.equal(task_prompts(target)[0], multitask_prompt(source).embedding.weight)   # u, v = 1: P = P*
    with pytest.raises(ValueError, match="differ in shape"):
        transfer_prompt(source, mp.inject(mp.tiny_encoder(), MPTConfig(length=N + 1, tasks=["tweets"])))


def test_labels_init_copies_the_label_word_embeddings(tmp_path):
    from transformers import AutoTokenizer, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "bad", "good"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    config = MPTConfig(length=N, tasks=TASKS, init="labels", label_words=["bad", "good"], tokenizer=tok)
    model = mp.inject(mp.tiny_encoder(), config)
    E = model.get_input_embeddings().weight
    assert torch.equal(multitask_prompt(model).embedding.weight, E[[4, 5, 4, 5]])
    assert config.to_dict()["tokenizer"] == str(tmp_path)  # JSON-safe: the tokenizer's path, not the object
    with pytest.raises(ValueError, match="label_words"):
        MPTConfig(init="labels", tokenizer=tok).validate()
