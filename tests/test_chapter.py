"""The chapter helpers every live experiment uses (minipeft.lab.chapter), on a tiny model and a tiny dataset."""

import pytest
import torch
from datasets import Dataset

import minipeft as mp
from minipeft import chapter, train


class _Tok:
    """Whitespace 'tokenizer' over tiny_encoder's 128-word vocabulary: enough for tokenize / collate."""

    pad_token_id = 0

    def __call__(self, texts, truncation=True, max_length=64, **_):
        ids = [[1 + sum(map(ord, w)) % 120 for w in t.split()][:max_length] for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}

    def pad(self, features, return_tensors="pt", **_):
        T = max(len(f["input_ids"]) for f in features)
        ids = torch.tensor([f["input_ids"] + [0] * (T - len(f["input_ids"])) for f in features])
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def _data(n=24):
    texts = [("good great fine " if i % 2 else "bad awful poor ") * (1 + i % 3) for i in range(n)]
    return Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(n)]})


def test_majority_accuracy():
    assert chapter.majority_accuracy([0, 1, 1, 1]) == 0.75
    assert chapter.majority_accuracy([2, 2, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least one label"):
        chapter.majority_accuracy([])


@pytest.mark.parametrize("method, trainable", [
    ("head", lambda m: chapter.head_parameters(m)),
    ("full", lambda m: mp.trainable_parameters(m)[1]),
    ("top", lambda m: chapter.head_parameters(m) + sum(p.numel() for p in m.encoder.encoder.layer[-1].parameters())),
    (mp.LoRAConfig(r=2), lambda m: chapter.head_parameters(m) + 2 * 2 * (2 * (32 + 32))),  # 2 layers x (q, v)
])
def test_classifier_trains_what_the_method_says(method, trainable):
    encoder = mp.tiny_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = chapter.classifier(encoder, method, seed=0)
    assert mp.trainable_parameters(model)[0] == trainable(model)
    assert chapter.head_parameters(model) == 32 * 2 + 2
    assert model.head.weight.requires_grad                       # the new head always trains
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())  # the original is untouched
    assert not hasattr(encoder, "minipeft_configs")


def test_the_config_gets_the_head_but_is_not_changed():
    config = mp.LoRAConfig(r=2)
    model = chapter.classifier(mp.tiny_encoder(), config)
    assert config.modules_to_save == [] and model.minipeft_modules_to_save == ["head"]


def test_same_seed_same_model_other_seed_other_head():
    encoder = mp.tiny_encoder()
    a, b = (chapter.classifier(encoder, mp.LoRAConfig(r=2), seed=3) for _ in range(2))
    c = chapter.classifier(encoder, mp.LoRAConfig(r=2), seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_run_is_deterministic_and_matches_classifier_plus_fit():
    encoder, tok, ds = mp.tiny_encoder(), _Tok(), _data()
    config = train.TrainConfig(epochs=2, max_steps=4, batch_size=8, lr=1e-2, seed=1, progress=False)
    model, result = chapter.run(encoder, tok, ds, ds, mp.LoRAConfig(r=2), config)
    _, again = chapter.run(encoder, tok, ds, ds, mp.LoRAConfig(r=2), config)
    by_hand = train.fit(chapter.classifier(encoder, mp.LoRAConfig(r=2), seed=1), tok, ds, ds, config)
    assert result.losses == again.losses == by_hand.losses and result.steps == 4
    assert result.accuracy == again.accuracy == by_hand.accuracy
    assert any(n.endswith("lora_A.weight") for n, _ in model.named_parameters())


def test_bad_method():
    with pytest.raises(ValueError, match="minipeft config .* or one of"):
        chapter.classifier(mp.tiny_encoder(), "lora")


def test_predict_returns_one_label_per_row_in_order_and_evaluate_agrees():
    tok, ds = _Tok(), _data(24)
    model = chapter.classifier(mp.tiny_encoder(), "head", seed=0)
    preds = train.predict(model, tok, ds, batch_size=5)
    assert len(preds) == 24 and set(preds) <= {0, 1}
    one_by_one = [train.predict(model, tok, ds.select([i]))[0] for i in range(24)]
    assert preds == one_by_one                                  # batching by length does not reorder the answers
    assert train.evaluate(model, tok, ds) == sum(p == y for p, y in zip(preds, ds["label"])) / 24


def test_eval_batches_cover_every_row_once_shortest_first_without_labels():
    tok, ds = _Tok(), _data(24)
    seen = []
    for rows, batch in train.eval_batches(ds, tok, batch_size=5):
        assert "labels" not in batch and batch["input_ids"].shape[0] == len(rows) <= 5
        seen += rows
    assert sorted(seen) == list(range(24))
    lengths = [len(tok([ds[i]["text"]])["input_ids"][0]) for i in seen]
    assert lengths == sorted(lengths)                           # similar lengths together: less padding


def test_top_layer_needs_a_valid_k():
    model = chapter.classifier(mp.tiny_encoder(), "head")
    with pytest.raises(ValueError, match="between 1 and"):
        chapter.train_top_layers(model, k=3)


# --------------------------------------------------------------------------------------------- methods with fit hooks
ALL_SIX = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def test_planned_steps_is_what_fit_takes():
    tok, ds = _Tok(), _data(24)
    for epochs, batch, max_steps in [(1.0, 8, None), (2.0, 5, None), (0.5, 8, None), (3.0, 8, 4)]:
        config = train.TrainConfig(epochs=epochs, batch_size=batch, max_steps=max_steps, progress=False)
        result = train.fit(chapter.classifier(mp.tiny_encoder(), "head"), tok, ds, None, config)
        assert train.planned_steps(len(ds), config) == result.steps


def test_run_fits_adalora_to_the_run_and_gives_it_its_hooks():
    """chapter.run sets AdaLoRA's total_steps from the run, adds the penalty and the allocator, then the caller's
    recorder (which sees the budget just allocated); the final budget is reached on every matrix type."""
    from minipeft.methods.adalora import rank_pattern

    tok, ds = _Tok(), _data(48)
    seen, penalties = [], []

    def recorder(model, step):
        seen.append((step, sum(sum(p) for p in rank_pattern(model).values())))

    config = train.TrainConfig(epochs=2, batch_size=8, lr=1e-2, seed=0, progress=False)   # 12 steps
    method = mp.AdaLoRAConfig(init_r=4, target_r=2, tinit=2, tfinal=3, targets=ALL_SIX)
    model, result = chapter.run(mp.tiny_encoder(), tok, ds, ds, method, config, after_step=recorder,
                                extra_loss=lambda m: penalties.append(1) or torch.zeros(()))
    fitted = model.minipeft_configs[0]
    assert method.total_steps is None                                   # the caller's config is not changed
    assert fitted.total_steps == result.steps == 12 and fitted.tinit == 2 and fitted.tfinal == 3
    assert [s for s, _ in seen] == list(range(12)) and len(penalties) == 12
    assert seen[0][1] == 4 * 12 and seen[-1][1] == 2 * 12              # 12 matrices: full budget -> target budget
    hooks = chapter.method_hooks(model, 12)
    assert set(hooks) == {"extra_loss", "after_step"}
    assert chapter.method_hooks(chapter.classifier(mp.tiny_encoder(), mp.LoRAConfig(r=2)), 12) == {}


def test_a_schedule_written_for_another_length_is_stretched_and_a_mismatch_refused():
    method = mp.AdaLoRAConfig(init_r=4, target_r=2, total_steps=320, tinit=32, tfinal=80, delta_t=10)
    short = method.for_steps(10)
    assert (short.total_steps, short.tinit, short.tfinal, short.delta_t) == (10, 1, 2, 1)
    assert method.for_steps(320) == method and method.for_steps(320) is not method
    no_penalty = mp.AdaLoRAConfig(init_r=4, target_r=2, orth_reg_weight=0.0).for_steps(12)
    model = chapter.classifier(mp.tiny_encoder(), no_penalty)
    assert set(chapter.method_hooks(model, 12)) == {"after_step"}      # γ = 0: no penalty term at all
    with pytest.raises(ValueError, match="ends at total_steps=12, but this run takes 30"):
        chapter.method_hooks(model, 30)


# --------------------------------------------------------------------------------------------- combined methods (MAM)
def test_classifier_takes_a_list_of_configs_and_trains_every_part():
    """He et al.'s MAM adapter: a prefix on the attention and a scaled parallel adapter on the FFN, injected in turn.
    Both parts and the head train (and nothing else), the count is the sum of the parts', and one short run moves
    both parts."""
    from minipeft.methods.prefix import prefix_table

    encoder, tok, ds = mp.tiny_encoder(), _Tok(), _data()
    parts = [mp.PrefixConfig(length=3), mp.AdapterConfig(kind="parallel", bottleneck=4, scaling=4.0)]
    model = chapter.classifier(encoder, parts, seed=0)
    assert [type(c).__name__ for c in model.minipeft_configs] == ["PrefixConfig", "AdapterConfig"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("prefix_encoder" in n for n in trainable) and any(".adapter." in n for n in trainable)
    assert model.head.weight.requires_grad
    assert all("prefix_encoder" in n or ".adapter." in n or n.startswith("head.") for n in trainable), trainable
    alone = [mp.trainable_parameters(chapter.classifier(encoder, part, seed=0))[0] - chapter.head_parameters(model)
             for part in parts]
    assert mp.trainable_parameters(model)[0] == sum(alone) + chapter.head_parameters(model)
    assert not hasattr(encoder, "minipeft_configs")                        # the original is untouched

    config = train.TrainConfig(epochs=1, max_steps=2, batch_size=8, lr=1e-2, seed=0, progress=False)
    before = chapter.classifier(encoder, parts, seed=0)
    trained, _ = chapter.run(encoder, tok, ds, ds, parts, config)
    up = trained.encoder.encoder.layer[0].output.adapter.up.weight
    assert not torch.equal(prefix_table(trained), prefix_table(before))    # the first part moved ...
    assert up.abs().sum() > 0 and not torch.equal(up, before.encoder.encoder.layer[0].output.adapter.up.weight)


@pytest.mark.parametrize("method", [[], [mp.LoRAConfig(r=2), "head"], ["lora"]])
def test_a_combined_method_must_be_a_non_empty_list_of_configs(method):
    with pytest.raises(ValueError, match="non-empty list of minipeft configs"):
        chapter.classifier(mp.tiny_encoder(), method)
