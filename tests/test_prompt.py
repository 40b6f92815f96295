"""Prompt tuning (minipeft/prompt.py): where the prompt enters, peft equality, inits, generate, nearest tokens."""

import copy
import warnings

import pytest
import torch

import minipeft as mp
from helpers import (TINY, assert_inject_refused, assert_matches_peft, assert_round_trip, fit_next_token, ids, out,
                     peft_from, randomise)
from minipeft.core.targets import find_backbone
from minipeft.methods.prompt import SoftPrompt
from minipeft.methods.softprompt import prompt_embeddings

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "terrible", "good", "bad",
         "classify", "sentiment", "of", "this", "review", "un", "##believable", "positive", "negative", "a", "film"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A 23-word BERT tokenizer saved to disk (so it has a name_or_path), ids < tiny_encoder's vocabulary of 128."""
    from transformers import AutoTokenizer, BertTokenizer

    path = tmp_path_factory.mktemp("tok")
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def padded_batch():
    x = ids(3, 6)
    mask = torch.ones_like(x)
    mask[0, :2] = 0  # a left-padded row
    mask[1, -1] = 0  # a right-padded row
    return x, mask


# --------------------------------------------------------------------------------------------- counts and shapes
@pytest.mark.parametrize("factory", TINY)
def test_count_is_n_times_d_and_sequence_grows_by_n(factory):
    model = mp.inject(factory(), mp.PromptConfig(length=5))
    assert mp.trainable_parameters(model)[0] == 5 * 32
    assert prompt_embeddings(model).shape == (5, 32)
    with torch.no_grad():
        assert model(ids(2, 7))[0].shape[:2] == (2, 5 + 7)  # hidden states / logits: n positions longer


# --------------------------------------------------------------------------------------------- equal to peft
@pytest.mark.parametrize("factory", TINY)
def test_matches_peft(factory, tmp_path):
    model = mp.inject(factory(), mp.PromptConfig(length=5))
    randomise(model)
    theirs = peft_from(model, factory, tmp_path)
    x, mask = padded_batch()
    with torch.no_grad():
        ours, ref = model(input_ids=x, attention_mask=mask)[0], theirs(input_ids=x, attention_mask=mask)[0]
        assert (ours - ref).abs().max() <= 1e-5
        assert (theirs(input_ids=x)[0] - model(input_ids=x)[0]).abs().max() <= 1e-5
        assert not torch.allclose(theirs(input_ids=x)[0][:, 5:], factory()(input_ids=x)[0])  # the prompt acts


def test_loss_with_labels_matches_peft(tmp_path):
    """Labels are extended with -100 on the prompt positions, exactly as peft does."""
    model = mp.inject(mp.tiny_decoder(), mp.PromptConfig(length=4))
    randomise(model)
    theirs = peft_from(model, mp.tiny_decoder, tmp_path)
    x, mask = padded_batch()
    labels = x.masked_fill(mask == 0, -100)
    with torch.no_grad():
        ours, ref = model(input_ids=x, attention_mask=mask, labels=labels), theirs(input_ids=x, attention_mask=mask,
                                                                                  labels=labels)
    assert abs(ours.loss.item() - ref.loss.item()) <= 1e-5


def test_inside_a_classifier_wrapper():
    from minipeft.lab.train import MeanPoolClassifier

    encoder = mp.tiny_encoder()
    bare = mp.inject(copy.deepcopy(encoder), mp.PromptConfig(length=3))
    clf = mp.inject(MeanPoolClassifier(encoder), mp.PromptConfig(length=3, modules_to_save=["head"]))
    with torch.no_grad():
        find_backbone(clf).prompt_encoder.embedding.weight.copy_(prompt_embeddings(bare))
    assert find_backbone(clf) is clf.encoder
    x, mask = padded_batch()
    out = clf(input_ids=x, attention_mask=mask, labels=torch.tensor([0, 1, 1]))
    assert out.logits.shape == (3, 2) and out.loss.requires_grad
    out.loss.backward()
    assert clf.encoder.prompt_encoder.embedding.weight.grad.abs().sum() > 0
    hidden = bare(input_ids=x, attention_mask=mask).last_hidden_state  # (B, n+T, d), mean over prompt + real tokens
    full_mask = torch.cat([torch.ones(3, 3), mask], 1).unsqueeze(-1)
    pooled = (hidden * full_mask).sum(1) / full_mask.sum(1)
    with torch.no_grad():
        assert torch.allclose(clf.eval()(input_ids=x, attention_mask=mask).logits, clf.head(pooled), atol=1e-5)


# --------------------------------------------------------------------------------------------- where the prompt enters
def test_prompt_joins_before_position_embeddings():
    """BERT: the embeddings layer receives [P ; X] as inputs_embeds and adds position/type embeddings to ALL n+T."""
    n = 4
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=n))
    emb = model.embeddings
    seen = {}
    emb.register_forward_pre_hook(lambda mod, a, kw: seen.update(kw), with_kwargs=True)
    emb.register_forward_hook(lambda mod, a, o: seen.__setitem__("out", o))
    x = ids(2, 5)
    with torch.no_grad():
        model(input_ids=x)
        P = prompt_embeddings(model)
        assert seen["input_ids"] is None
        assert torch.equal(seen["inputs_embeds"][:, :n], P.expand(2, n, -1))
        assert torch.equal(seen["inputs_embeds"][:, n:], emb.word_embeddings(x))
        pos, typ = emb.position_embeddings.weight, emb.token_type_embeddings.weight
        assert torch.allclose(seen["out"][0, :n], emb.LayerNorm(P + pos[:n] + typ[0]), atol=1e-6)
        assert torch.allclose(seen["out"][0, n:], emb.LayerNorm(emb.word_embeddings(x[0]) + pos[n:n + 5] + typ[0]),
                              atol=1e-6)


def test_mask_token_types_labels_and_positions_are_extended():
    n = 3
    seen = {}
    enc = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=n))
    enc.register_forward_pre_hook(lambda mod, a, kw: seen.update(enc=dict(kw)), with_kwargs=True)  # runs after ours
    x, mask = padded_batch()
    types = torch.ones_like(x)
    with torch.no_grad():
        enc(x, mask, types)  # positional arguments are understood too
    kw = seen["enc"]
    assert torch.equal(kw["attention_mask"], torch.cat([torch.ones(3, n, dtype=mask.dtype), mask], 1))
    assert torch.equal(kw["token_type_ids"], torch.cat([torch.zeros(3, n, dtype=types.dtype), types], 1))

    dec = mp.inject(mp.tiny_decoder(), mp.PromptConfig(length=n))
    dec.register_forward_pre_hook(lambda mod, a, kw: seen.update(dec=dict(kw)), with_kwargs=True)
    pos = torch.arange(6).expand(3, 6)
    with torch.no_grad():
        dec(input_ids=x, attention_mask=mask, labels=x, position_ids=pos)
    kw = seen["dec"]
    assert torch.equal(kw["labels"][:, :n], torch.full((3, n), -100)) and torch.equal(kw["labels"][:, n:], x)
    assert torch.equal(kw["position_ids"], torch.arange(n + 6).expand(3, n + 6))  # prompt 0..n-1, text after it


# --------------------------------------------------------------------------------------------- generate
def _scores(model, x, mask, steps=6):
    out = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=steps, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    return out.sequences, torch.stack(out.scores, 1)  # (B, T+steps), (B, steps, V)


def test_generate_with_a_soft_prompt_matches_a_full_forward_and_peft(tmp_path):
    model = mp.inject(mp.tiny_decoder(), mp.PromptConfig(length=4))
    randomise(model, std=1.0)
    x = ids(2, 5)
    seqs, scores = _scores(model, x, torch.ones_like(x))
    assert seqs.shape == (2, 5 + 6) and torch.equal(seqs[:, :5], x)  # the prompt is not part of the output
    with torch.no_grad():  # no cache: each step recomputes [P ; tokens so far] from scratch
        for step in range(6):
            logits = model(input_ids=seqs[:, :5 + step]).logits[:, -1]
            assert (logits - scores[:, step]).abs().max() <= 1e-4
    theirs = peft_from(model, mp.tiny_decoder, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(_scores(theirs, x, torch.ones_like(x))[0], seqs)


def test_generate_left_padded_batch_equals_each_row_alone():
    model = mp.inject(mp.tiny_decoder(), mp.PromptConfig(length=4))
    randomise(model, std=1.0)
    long, short = ids(1, 6), ids(1, 3)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=long.dtype), short], 1)])
    mask = torch.cat([torch.ones(1, 6), torch.cat([torch.zeros(1, 3), torch.ones(1, 3)], 1)]).long()
    _, together = _scores(model, batch, mask)
    for row, x in enumerate([long, short]):
        _, alone = _scores(model, x, torch.ones_like(x))
        assert (together[row] - alone[0]).abs().max() <= 1e-4


# --------------------------------------------------------------------------------------------- initialisations
def test_random_and_vocab_inits_equal_peft_for_the_same_seed():
    from peft import PromptTuningConfig, get_peft_model

    for init, peft_init in [("random", "RANDOM"), ("vocab", "SAMPLE_VOCAB")]:
        model, base = mp.tiny_encoder(), mp.tiny_encoder()  # (tiny_encoder seeds the generator itself)
        torch.manual_seed(3)
        ours = prompt_embeddings(mp.inject(model, mp.PromptConfig(length=6, init=init)))
        torch.manual_seed(3)
        theirs = get_peft_model(base, PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6,
                                                         prompt_tuning_init=peft_init))
        assert torch.equal(ours, theirs.prompt_encoder["default"].embedding.weight)
    E = mp.tiny_encoder().embeddings.word_embeddings.weight
    assert all((E == row).all(1).any() for row in ours)  # vocab: every row is a row of E


def test_text_init_repeats_the_tokens_like_peft(tok):
    from peft import PromptTuningConfig, get_peft_model

    text = "classify the sentiment"  # [CLS] classify the sentiment [SEP]: 5 tokens, repeated to fill 12
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=12, init="text", init_text=text, tokenizer=tok))
    E = mp.tiny_encoder().embeddings.word_embeddings.weight
    expected = tok(text)["input_ids"] * 3
    assert torch.equal(prompt_embeddings(model), E[expected[:12]])
    theirs = get_peft_model(mp.tiny_encoder(), PromptTuningConfig(
        task_type="FEATURE_EXTRACTION", num_virtual_tokens=12, prompt_tuning_init="TEXT", prompt_tuning_init_text=text,
        tokenizer_name_or_path=tok.name_or_path))
    assert torch.equal(prompt_embeddings(model), theirs.prompt_encoder["default"].embedding.weight)


def test_label_init_averages_subtokens_and_cycles(tok):
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=5, init="labels", label_words=["bad", "unbelievable"],
                                                          tokenizer=tok))
    E = mp.tiny_encoder().embeddings.word_embeddings.weight
    bad, unbelievable = E[WORDS.index("bad")], E[[WORDS.index("un"), WORDS.index("##believable")]].mean(0)
    assert torch.allclose(prompt_embeddings(model), torch.stack([bad, unbelievable, bad, unbelievable, bad]))


def test_nearest_tokens_reads_back_a_text_prompt(tok):
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=6, init="text", init_text="the movie was good",
                                                          tokenizer=tok))
    tokens = mp.nearest_tokens(model, tok, k=3)
    assert [row[0] for row in tokens] == ["[CLS]", "the", "movie", "was", "good", "[SEP]"]
    assert all(len(row) == 3 for row in tokens)
    scored = mp.nearest_tokens(model, tok, k=2, with_scores=True)
    assert all(abs(row[0][1] - 1) <= 1e-5 and row[1][1] < row[0][1] for row in scored)


# --------------------------------------------------------------------------------------------- learning, saving
def test_only_the_prompt_learns():
    """A next-token target reachable only through the prompt: the loss falls, nothing else changes."""
    model = mp.inject(mp.tiny_decoder(), mp.PromptConfig(length=4))
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "prompt_encoder" not in k}
    losses = fit_next_token(model, lr=0.3)
    assert losses[-1] < losses[0] - 0.2, (losses[0], losses[-1])  # measured 4.88 -> 4.61 (a random 2-layer model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())


def test_save_and_load_round_trip(tok, tmp_path):
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=4, init="labels", label_words=["good", "bad"],
                                                          tokenizer=tok))
    randomise(model)
    fresh = assert_round_trip(model, mp.tiny_encoder(), tmp_path, ids())  # bit-identical outputs
    assert fresh.minipeft_configs[0].tokenizer == tok.name_or_path  # the config stored the tokenizer as its path


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(length=0), ValueError, "length must be a positive int"),
    (dict(length=-3), ValueError, "length must be a positive int"),
    (dict(length=2.5), ValueError, "length must be a positive int"),
    (dict(init="zeros"), ValueError, "Unknown prompt init 'zeros'"),
    (dict(init="text"), ValueError, "init='text' needs init_text"),
    (dict(init_text="the movie"), ValueError, "only used with init='text'"),
    (dict(init="labels", label_words=[]), ValueError, "needs label_words"),
    (dict(label_words=["good"]), ValueError, "only used with init='labels'"),
    (dict(init="labels", label_words=["good", "bad", "great"], length=2), ValueError, "do not fit in a prompt"),
    (dict(init="text", init_text="the movie"), ValueError, "needs the backbone's tokenizer"),
    (dict(init="labels", label_words=["good"], tokenizer=5), TypeError, "tokenizer must be a tokenizer object"),
    (dict(init="text", init_text="the movie was good", length=4, tokenizer="TOK"), ValueError,
     r"6 tokens long but the prompt has only length=4 positions: shorten the text or raise length"),
    (dict(init="labels", label_words=["good", "zebra"], tokenizer="TOK"), ValueError,
     r"Label word 'zebra' is not in the tokenizer's vocabulary"),    (dict(targets=["query"]), ValueError, r"takes no targets \(got targets=\['query'\]\)"),
])
def test_bad_inputs(kwargs, error, phrase, tok):
    if kwargs.get("tokenizer") == "TOK":
        kwargs = {**kwargs, "tokenizer": tok}
    model, x = mp.tiny_encoder(), ids()
    before = out(model, x)
    assert_inject_refused(model, mp.PromptConfig(**kwargs), error, phrase)  # no prompt_encoder, no configs...
    assert torch.equal(out(model, x), before)


def test_more_misuse(tok):
    small = mp.tiny_encoder(vocab_size=6)  # a tokenizer from another model: ids beyond this vocabulary
    with pytest.raises(ValueError, match="does not belong to this model"):
        mp.inject(small, mp.PromptConfig(length=8, init="text", init_text="the movie", tokenizer=tok))
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=3))
    with pytest.raises(ValueError, match="already has a soft prompt"):
        mp.inject(model, mp.PromptConfig(length=3))
    with pytest.raises(TypeError, match="SoftPrompt cannot be merged"):
        mp.merge(model)
    with pytest.raises(ValueError, match="k must be an int between 1"):
        mp.nearest_tokens(model, tok, k=0)
    with pytest.raises(ValueError, match="no soft prompt"):
        mp.nearest_tokens(mp.tiny_encoder(), tok)
    with pytest.raises(TypeError, match="need a Hugging Face transformers model"):
        mp.inject(torch.nn.Linear(4, 4), mp.PromptConfig(length=3))
    assert isinstance(model.prompt_encoder, SoftPrompt)


# --------------------------------------------------------------------------------------------- real models
@pytest.mark.integration
def test_minilm_prompt_matches_peft(tmp_path):
    model, tok = mp.load_encoder()
    mp.inject(model, mp.PromptConfig(length=20, init="text", init_text="Classify the sentiment of this review",
                                     tokenizer=tok))
    assert mp.trainable_parameters(model)[0] == 20 * 384
    assert mp.nearest_tokens(model, tok, k=1)[1] == ["classify"]  # position 0 is [CLS]
    randomise(model, std=0.05)
    batch = tok(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    batch.pop("token_type_ids")  # peft drops them; ours would be zeros anyway
    assert_matches_peft(model, lambda: mp.load_encoder()[0], tmp_path, **batch)


@pytest.mark.integration
def test_smollm2_prompt_matches_peft_generates_and_learns(tmp_path):
    base, tok = mp.load_decoder()
    model = mp.inject(copy.deepcopy(base), mp.PromptConfig(length=8, init="vocab"))
    assert mp.trainable_parameters(model)[0] == 8 * 576
    batch = tok(["The capital of France is"], return_tensors="pt")
    theirs = assert_matches_peft(model, lambda: copy.deepcopy(base), tmp_path, **batch)  # the logits, ≤ 1e-5
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(generated, theirs.generate(**batch, max_new_tokens=4, do_sample=False))

    target = tok(" banana", add_special_tokens=False)["input_ids"][0]  # teach the prompt to make it say " banana"
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = []
    for _ in range(6):
        logits = model(**batch, logits_to_keep=1).logits[:, -1]  # (1, V) the next-token prediction
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([target]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses  # measured 15.3, 11.0, 7.8, 4.5, 1.9, 0.45


def test_a_text_initialised_prompt_reloads_when_its_tokenizer_is_gone(tok, tmp_path):
    import json
    import shutil

    from minipeft.core.checkpoint import CONFIG_FILE

    folder = tmp_path / "tok"
    tok.save_pretrained(folder)
    own = type(tok).from_pretrained(folder)                          # name_or_path: a folder we then delete
    model = mp.inject(mp.tiny_encoder(), mp.PromptConfig(length=6, init="text", init_text="the movie was good",
                                                          tokenizer=own))
    with torch.no_grad():
        model.prompt_encoder.embedding.weight.add_(0.1)                 # trained away from its start
    mp.save_adapter(model, tmp_path / "adapter")
    shutil.rmtree(folder)                                            # the tokenizer is out of reach
    fresh = mp.load_adapter(mp.tiny_encoder(), tmp_path / "adapter")   # every weight is in the file
    assert torch.equal(prompt_embeddings(fresh), prompt_embeddings(model))
    assert fresh.minipeft_configs[0].init == "text"                   # it remembers how it started
    saved = json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())["configs"][0]
    assert saved["tokenizer"] == str(folder) and saved["init_text"] == "the movie was good"
