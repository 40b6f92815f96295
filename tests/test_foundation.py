"""The course's offline world: backbones, datasets, the training loop, the parameter counter, set-up files."""

import re
from pathlib import Path

import pytest
import torch

import minipeft as mp
from minipeft.lab import assets, backbones, data, train

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- tiny models
def test_tiny_models_are_small_and_seeded():
    a, b = mp.tiny_encoder(seed=3), mp.tiny_encoder(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert mp.trainable_parameters(a)[1] < 100_000
    dec = mp.tiny_decoder()
    assert dec.config.model_type == "llama" and dec.config.num_key_value_heads < dec.config.num_attention_heads
    assert type(mp.tiny_gpt2().transformer.h[0].attn.c_attn).__name__ == "Conv1D"


def test_trainable_parameters_counts_and_summary():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    assert mp.trainable_parameters(model) == (3 + 3 * 2 + 2, 4 * 3 + 3 + 3 * 2 + 2)
    assert mp.summary(model) == "trainable params: 11 || all params: 23 || trainable%: 47.8261"


def test_trainable_parameters_counts_tied_weights_once():
    dec = mp.tiny_decoder()
    assert dec.lm_head.weight is dec.model.embed_tokens.weight
    assert mp.trainable_parameters(dec)[1] == sum(p.numel() for p in dec.parameters())
    assert mp.trainable_parameters(dec)[1] < sum(p.numel() for p in dec.state_dict().values())


# --------------------------------------------------------------------------------------------- errors
def test_missing_encoder_package_names_the_setup_command(monkeypatch):
    monkeypatch.setattr(backbones, "ENCODER_PACKAGE", "no_such_package_xyz")
    with pytest.raises(mp.MissingAssetError, match="make setup"):
        mp.load_encoder()


def test_missing_decoder_package_names_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPEFT_CACHE", str(tmp_path))
    monkeypatch.setattr(backbones, "DECODER_PACKAGE", "no_such_package_xyz")
    with pytest.raises(mp.MissingAssetError, match="make setup"):
        mp.load_decoder()


def test_unreachable_hub_name_is_a_clear_error_not_a_timeout():
    with pytest.raises(mp.MissingAssetError, match="embedded default"):
        mp.load_encoder("no-such-org/no-such-model-xyz")


def test_missing_data_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPEFT_CACHE", str(tmp_path))
    with pytest.raises(mp.MissingAssetError, match="minipeft.lab.assets"):
        data.vader_domains()
    with pytest.raises(mp.MissingAssetError, match="minipeft.lab.assets"):
        data.kjv()


def test_unknown_vader_domain():
    if not assets.have_vader():
        pytest.skip("VADER data not fetched")
    with pytest.raises(ValueError, match="choose from"):
        data.vader_domains(domains=("imdb",))


# --------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def rt():
    return data.rotten_tomatoes()


def test_rotten_tomatoes_splits(rt):
    sizes = {k: len(v) for k, v in rt.items()}
    assert sum(sizes.values()) > 12_000 and sizes["train"] > 8 * sizes["test"] * 0.9
    texts = [set(rt[s]["text"]) for s in rt]
    assert all(len(t) == len(rt[s]) for t, s in zip(texts, rt))            # no duplicates within a split
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    fractions = [sum(rt[s]["label"]) / len(rt[s]) for s in rt]              # stratified: same fresh share
    assert max(fractions) - min(fractions) < 0.01 and 0.5 < fractions[0] < 0.65
    again = data.rotten_tomatoes()
    assert again["test"]["text"][:50] == rt["test"]["text"][:50]           # fixed seed


def test_data_helpers_refuse_what_would_give_an_empty_split(rt):
    with pytest.raises(ValueError, match=r"three positive fractions .* got \(0.5, 0.5\)"):
        data.rotten_tomatoes(sizes=(0.5, 0.5))                              # gave an empty test split
    with pytest.raises(ValueError, match="leaves the validation and test split"):
        data._split(rt["test"].select(range(4)), (0.98, 0.01, 0.01), seed=0)
    with pytest.raises(ValueError, match="subsample.s n must be a positive integer .* got -5"):
        data.subsample(rt["test"], -5)                                       # gave 0 rows
    import numpy as np
    assert len(data.subsample(rt["test"], np.int64(7))) == 7
    if assets.have_vader():
        with pytest.raises(ValueError, match=r"neutral_band .* in \[0, 4\)"):
            data.vader_domains(neutral_band=10)                              # gave four empty splits
        with pytest.raises(ValueError, match="drops every snippet of the 'movies' domain"):
            data.vader_domains(neutral_band=3.99, domains=("movies",))
        assert list(data.vader_domains(domains="amazon")) == ["amazon"]      # was split into letters


def test_a_missing_model_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(mp.MissingAssetError, match=f"No model folder at {tmp_path}/nope"):
        mp.load_encoder(str(tmp_path / "nope"))                               # was "Repo id must be in the form"


def test_a_prompt_longer_than_the_position_table_is_refused_before_any_edit():
    model = mp.tiny_encoder()                                               # 64 positions
    with pytest.raises(ValueError, match="A prompt of 1000 tokens does not fit this model: it has 64 positions"):
        mp.inject(model, mp.PromptConfig(length=1000))
    assert not hasattr(model, "prompt_encoder") and not hasattr(model, "minipeft_configs")
    mp.inject(model, mp.PromptConfig(length=62))                             # the largest that fits


def test_vader_domains_are_binary_and_drop_neutral():
    if not assets.have_vader():
        pytest.skip("VADER data not fetched")
    vd = data.vader_domains()
    assert set(vd) == {"movies", "amazon", "nyt", "tweets"}
    for split in vd.values():
        ratings = torch.tensor(split["rating"])
        labels = torch.tensor(split["label"])
        assert len(split) > 1000 and ratings.abs().min() > 0.5
        assert torch.equal(labels, (ratings > 0).long())


def test_kjv():
    if not assets.kjv_path().is_file():
        pytest.skip("KJV not fetched")
    bible = data.kjv()
    assert len(bible) > 31_000 and bible[0]["text"].startswith("In the beginning God created")


def test_collate_pads_dynamically_and_masks_labels():
    rows = [{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0}]
    batch = data.pad_batch(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]] and batch["labels"].tolist() == [1, 0]

    class Tok:
        pad_token_id, eos_token_id = 0, 2

    lm = data.CausalLMCollate(Tok())([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert lm["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]               # left padding for generation
    assert lm["labels"].tolist() == [[5, 6, 7], [-100, -100, 8]]


# --------------------------------------------------------------------------------------------- train
def test_mean_pool_ignores_padding_and_handles_soft_prompts():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.allclose(train.mean_pool(h, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    # a hidden sequence 1 longer than the mask: the extra (prompt) position at the front is real
    assert torch.allclose(train.mean_pool(h, torch.tensor([[1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_length_grouped_batches_cover_every_example_once():
    lengths = [int(x) for x in torch.randint(1, 50, (1000,))]
    batches = train.length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # batches hold similar lengths (random batches would spread ~45)


def test_fit_probe_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(200, 5) * 3 + 10                                # far from standardised on purpose
    y = (x[:, 0] > 10).long()
    probe = train.fit_probe(x, y)
    assert (probe(x).argmax(-1) == y).float().mean() > 0.95        # the standardisation is folded in


class _Tok:
    """A character-level stand-in tokenizer, enough for fit() on tiny models."""
    pad_token_id = 0

    def __call__(self, texts, truncation=True, max_length=64, **_):
        return {"input_ids": [[1] + [3 + (ord(c) % 120) for c in t][: max_length - 1] for t in texts]}


def _toy_task(n=256, seed=0):
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g).tolist()
    words = [["good", "great", "fine"], ["bad", "awful", "poor"]]
    texts = [" ".join(words[y][int(torch.randint(0, 3, (1,), generator=g))] for _ in range(3)) for y in labels]
    return Dataset.from_dict({"text": texts, "label": labels})


def test_fit_learns_and_is_reproducible():
    def run():
        model = train.MeanPoolClassifier(mp.tiny_encoder(seed=0))
        cfg = train.TrainConfig(epochs=3, lr=3e-3, batch_size=16, progress=False, seed=7)
        return train.fit(model, _Tok(), _toy_task(), _toy_task(64, seed=1), cfg)

    a, b = run(), run()
    assert a.accuracy > 0.9
    assert a.losses == b.losses and a.accuracy == b.accuracy          # same seed -> same numbers
    assert a.steps == 3 * 16 and a.examples == 3 * 256 and a.trainable == a.total
    assert a.peak_rss_mb > 50 and a.examples_per_s > 0 and a.s_per_epoch > 0


def test_fit_hooks_and_max_steps():
    calls = []
    model = train.MeanPoolClassifier(mp.tiny_encoder())
    cfg = train.TrainConfig(max_steps=5, batch_size=8, progress=False)
    res = train.fit(model, _Tok(), _toy_task(64), _toy_task(16), cfg,
                    extra_loss=lambda m: torch.zeros(()), after_step=lambda m, step: calls.append(step))
    assert res.steps == 5 and calls == [0, 1, 2, 3, 4]


def test_fit_refuses_a_fully_frozen_model():
    model = train.MeanPoolClassifier(mp.tiny_encoder())
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="No trainable parameters"):
        train.fit(model, _Tok(), _toy_task(32), _toy_task(8), train.TrainConfig(progress=False))


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(batch_size=-1), "batch_size must be a positive integer"),        # hung in a busy loop
    (dict(batch_size=0), "batch_size must be a positive integer"),         # ZeroDivisionError
    (dict(batch_size=8.0), "batch_size must be a positive integer"),
    (dict(epochs=0), "epochs must be a positive number"),                 # trained one step anyway
    (dict(epochs=-1), "epochs must be a positive number"),
    (dict(epochs=float("inf")), "epochs must be a positive number"),
    (dict(lr=float("nan")), "lr must be a positive number"),
    (dict(lr=0), "lr must be a positive number"),
    (dict(max_length=0), "max_length must be an integer ≥ 2"),            # was ignored
    (dict(max_steps=0), "max_steps must be a positive integer"),
    (dict(eval_every=0), "eval_every must be a positive integer"),
    (dict(eval_batch_size=-3), "eval_batch_size must be a positive integer"),
    (dict(warmup_ratio=1.5), "warmup_ratio is a share of the steps in \\[0, 1\\)"),
    (dict(weight_decay=-0.1), "weight_decay must be a number ≥ 0"),
    (dict(grad_clip=0), "grad_clip must be a positive number .*None for no clipping"),
    (dict(seed=-1), "seed must be an integer ≥ 0"),
])
def test_a_bad_train_config_fails_when_it_is_made_with_the_fix(kwargs, phrase):
    with pytest.raises(ValueError, match=phrase):
        train.TrainConfig(**kwargs)


def test_a_numpy_batch_size_is_an_int():
    import numpy as np

    config = train.TrainConfig(batch_size=np.int64(8), max_steps=np.int32(3))
    assert type(config.batch_size) is int and config.batch_size == 8 and type(config.max_steps) is int


def test_fit_stops_at_a_non_finite_loss_before_it_reaches_the_weights():
    model = train.MeanPoolClassifier(mp.tiny_encoder())
    cfg = train.TrainConfig(max_steps=5, batch_size=8, progress=False)
    calls = []

    def poison(m):                                    # a NaN in the loss at the third step
        calls.append(1)
        return torch.tensor(float("nan") if len(calls) == 3 else 0.0)

    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3 of 5.*weights of step 2.*learning rate too high"):
        train.fit(model, _Tok(), _toy_task(64), None, cfg, extra_loss=poison)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    ignored = _toy_task(64).map(lambda row: {"label": -100})                 # every label ignored: 0/0
    with pytest.raises(FloatingPointError, match="labels are all -100"):
        train.fit(train.MeanPoolClassifier(mp.tiny_encoder()), _Tok(), ignored, None, cfg)


def test_fit_names_what_is_wrong_with_the_data():
    model, cfg = train.MeanPoolClassifier(mp.tiny_encoder()), train.TrainConfig(max_steps=2, progress=False)
    with pytest.raises(ValueError, match="The evaluation set is empty.*eval_ds=None"):
        train.fit(model, _Tok(), _toy_task(32), _toy_task(8).select([]), cfg)
    with pytest.raises(ValueError, match="The training set has no 'label' column"):
        train.fit(model, _Tok(), _toy_task(32).remove_columns("label"), None, cfg)
    with pytest.raises(ValueError, match="no 'text' column.*rename_column\\(\"sentence\", \"text\"\\)"):
        train.fit(model, _Tok(), _toy_task(32).rename_column("text", "sentence"), None, cfg)
    assert all(p.grad is None for p in model.parameters())                 # nothing trained


# --------------------------------------------------------------------------------------------- set-up files
def test_environment_yml_pins_match_requirements():
    reqs = {l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and l[0] != "#"}
    env = set(re.findall(r"^\s+- ([\w.-]+==[\w.+-]+)\s*$", (ROOT / "environment.yml").read_text(), re.M))
    assert reqs <= env and "torch==2.13.0" in env


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make course" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# --------------------------------------------------------------------------------------------- real models
@pytest.mark.integration
def test_embedded_encoder_offline():
    model, tok = mp.load_encoder()
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    total = mp.trainable_parameters(model)[1]
    assert 22.5e6 < total < 23e6
    enc = tok(["a great movie", "a dull movie"], return_tensors="pt", padding=True)
    with torch.no_grad():
        pooled = train.mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
    assert pooled.shape == (2, 384) and torch.isfinite(pooled).all()


@pytest.mark.integration
def test_embedded_decoder_loads_from_cache_and_generates():
    import time

    backbones.decoder_checkpoint()            # converts once if needed
    start = time.perf_counter()
    model, tok = mp.load_decoder()
    assert time.perf_counter() - start < 10   # the fp32 cache loads fast (< 2 s on the reference laptop)
    assert model.config.model_type == "llama" and model.config.hidden_size == 576
    ids = tok("The movie was", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5


@pytest.mark.integration
def test_minilm_learns_rotten_tomatoes_quickly(rt):
    model, tok = mp.load_encoder()
    clf = train.MeanPoolClassifier(model)
    res = train.fit(clf, tok, data.subsample(rt["train"], 512), data.subsample(rt["validation"], 200),
                    train.TrainConfig(lr=2e-4, batch_size=16, progress=False))
    majority = max(sum(data.subsample(rt["validation"], 200)["label"]), 200 - sum(
        data.subsample(rt["validation"], 200)["label"])) / 200
    assert res.accuracy > majority + 0.05


def test_embed_pools_in_input_order_on_the_chosen_device_and_leaves_the_encoder_where_it_was():
    from transformers import BatchEncoding

    class PadTok:
        def __call__(self, texts, max_length=64, **_):
            ids = [[1] + [3 + (ord(c) % 120) for c in t][: max_length - 1] for t in texts]
            width = max(map(len, ids))
            return BatchEncoding({"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                                  "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i))
                                                                  for i in ids])})

    encoder = mp.tiny_encoder(seed=0)                                # a BertModel: last_hidden_state
    texts = ["a long sentence here", "hi", "medium one", "x"]
    both = train.embed(encoder, PadTok(), texts, batch_size=3, pooling=("mean", "cls"), progress=False, device="cpu")
    one_by_one = torch.cat([train.embed(encoder, PadTok(), [t], progress=False) for t in texts])
    assert both["mean"].shape == (4, encoder.config.hidden_size) and both["mean"].device.type == "cpu"
    assert torch.allclose(both["mean"], one_by_one, atol=1e-5)      # sorted by length inside, returned in order
    assert next(encoder.parameters()).device.type == "cpu"
