"""lab/fewshot.py: rank classification with a decoder and T-Few's losses, on the tiny Llama (token ids)."""

import pytest
import torch
import torch.nn.functional as F

import minipeft as mp
from helpers import CharTokenizer
from minipeft.lab import fewshot

PROMPTS = [[5, 9, 14, 3], [7, 7], [20, 21, 22, 23, 24, 25]]   # different lengths: padding must not matter
ANSWERS = [[40], [50, 51, 52]]                                  # label 0: one token, label 1: three


def _naive_logp(model, prompt, answer) -> list[float]:
    """One sequence at a time, no padding: log p of each answer token."""
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return [logp[len(prompt) + i - 1, tok].item() for i, tok in enumerate(answer)]


def test_scores_equal_one_sequence_at_a_time_and_count_tokens():
    model = mp.tiny_decoder()
    batch = fewshot.choices_from_ids(PROMPTS, ANSWERS)
    assert batch.input_ids.shape == (6, 9) and batch.tokens == sum(2 * len(p) + 4 for p in PROMPTS)
    with torch.no_grad():
        logp = fewshot.token_log_probs(model, batch)
    total, mean = fewshot.answer_scores(logp, batch), fewshot.answer_scores(logp, batch, normalise=True)
    for b, prompt in enumerate(PROMPTS):
        for c, answer in enumerate(ANSWERS):
            naive = _naive_logp(model, prompt, answer)
            assert total[b, c].item() == pytest.approx(sum(naive), abs=1e-5)
            assert mean[b, c].item() == pytest.approx(sum(naive) / len(naive), abs=1e-5)
    assert fewshot.predict(model, batch) == total.argmax(-1).tolist()
    assert fewshot.predict(model, batch, normalise=True) == mean.argmax(-1).tolist()


def test_tfew_losses_follow_the_paper_s_formulas():
    model = mp.tiny_decoder()
    batch, labels = fewshot.choices_from_ids(PROMPTS, ANSWERS), torch.tensor([1, 0, 1])
    losses = fewshot.tfew_losses(model, batch, labels)
    lm, ul, ln = [], [], []
    for b, prompt in enumerate(PROMPTS):
        logps = [_naive_logp(model, prompt, a) for a in ANSWERS]
        y = labels[b].item()
        lm.append(-sum(logps[y]) / len(logps[y]))
        wrong = [lp for n, lps in enumerate(logps) if n != y for lp in lps]
        ul.append(-sum(torch.log1p(-torch.tensor(lp).exp()).item() for lp in wrong) / len(wrong))
        beta = torch.tensor([sum(lps) / len(lps) for lps in logps])
        ln.append(-torch.log_softmax(beta, 0)[y].item())
    for name, expected in (("lm", lm), ("ul", ul), ("ln", ln)):
        assert losses[name].item() == pytest.approx(sum(expected) / 3, abs=1e-5), name


def test_peft_trained_with_the_three_losses_learns_the_labels():
    """8 prompts, their labels from the first token's parity: LoRA on the tiny random Llama fits them with T-Few's
    summed losses. (IA3, T-Few's own method, only rescales activations: on a random d = 32 model it moves the loss
    by 5 % in 40 steps; on the pre-trained SmolLM2 of chapter 10 it has real features to rescale.)"""
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 100, (5,), generator=gen).tolist() for _ in range(8)]
    labels = torch.tensor([p[0] % 2 for p in prompts])
    batch = fewshot.choices_from_ids(prompts, ANSWERS)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    history = []
    for _ in range(40):
        losses = fewshot.tfew_losses(model, batch, labels)
        history.append({k: v.item() for k, v in losses.items()})
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    # the ranking loss falls most (two answers to choose from); L_LM can only fall as far as a random d = 32 model
    # can raise an absolute token probability over a 128-token vocabulary
    assert history[-1]["ln"] < 0.6 * history[0]["ln"] and history[-1]["lm"] < history[0]["lm"], history[-1]
    assert fewshot.predict(model, batch, normalise=True) == labels.tolist()


def test_a_pattern_renders_demonstrations_before_the_query():
    pattern = fewshot.Pattern()
    assert pattern.prompt(" fine ") == "fine It was"
    text = pattern.prompt("dull", [("a gem", 1), ("a mess", 0)])
    assert text == "a gem It was great.\n\na mess It was terrible.\n\ndull It was"
    with pytest.raises(ValueError, match="non-empty answer"):
        fewshot.choices_from_ids([[5]], [[40], []])


def test_draw_examples_is_balanced_seeded_and_refuses_odd_k():
    texts, labels = [f"t{i}" for i in range(40)], [i % 3 == 0 for i in range(40)]
    labels = [int(y) for y in labels]
    a, b = fewshot.draw_examples(texts, labels, 8, seed=1), fewshot.draw_examples(texts, labels, 8, seed=1)
    assert a == b and len(a) == 8 and sum(y for _, y in a) == 4 and len(set(a)) == 8
    assert all(labels[int(t[1:])] == y for t, y in a)
    assert a != fewshot.draw_examples(texts, labels, 8, seed=2) and fewshot.draw_examples(texts, labels, 0, 0) == []
    with pytest.raises(ValueError, match="even"):
        fewshot.draw_examples(texts, labels, 3, seed=0)


def test_score_texts_with_cached_demonstrations_equals_the_full_prompts():
    """The demonstrations run once (a KV cache): the scores must be those of demonstrations + query as one sequence."""
    model, tok, pattern = mp.tiny_decoder(), CharTokenizer(), fewshot.Pattern(verbaliser=(" no", " yes!"))
    texts = ["a fine film", "dull", "the plot is a mess", "wow", "so-so"]
    demos = [("great fun", 1), ("bad", 0)]
    scored = fewshot.score_texts(model, tok, pattern, texts, demos, batch_size=2)
    prefix = tok(pattern.shown(demos))["input_ids"]
    answers = tok(list(pattern.verbaliser))["input_ids"]
    full = fewshot.choices_from_ids([prefix + tok(pattern.template.format(text=t))["input_ids"] for t in texts],
                                    answers)
    assert scored.predictions == fewshot.predict(model, full, normalise=True)
    assert scored.prefix_tokens == len(prefix) and scored.tokens_per_prediction == full.tokens / len(texts)
    with torch.no_grad():
        scores = fewshot.answer_scores(fewshot.token_log_probs(model, full), full, normalise=True)
    assert len(set(scored.predictions)) == 2 or (scores[:, 1] - scores[:, 0]).abs().min() > 0  # a real choice
    zero = fewshot.score_texts(model, tok, pattern, texts)
    plain = fewshot.encode(tok, [pattern.prompt(t) for t in texts], pattern.verbaliser)
    assert zero.predictions == fewshot.predict(model, plain, normalise=True) and zero.prefix_tokens == 0


def test_train_on_examples_fits_the_examples_and_names_bad_losses():
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
    tok, pattern = CharTokenizer(), fewshot.Pattern(verbaliser=(" no", " yes!"))
    examples = [("good", 1), ("awful", 0), ("lovely", 1), ("boring", 0)]
    history = fewshot.train_on_examples(model, tok, pattern, examples, steps=40, lr=3e-2)
    assert history[-1]["ln"] < 0.6 * history[0]["ln"] and not model.training, history[-1]
    scored = fewshot.score_texts(model, tok, pattern, [t for t, _ in examples])
    assert scored.predictions == [y for _, y in examples]
    with pytest.raises(ValueError, match="'lm', 'ul', 'ln'"):
        fewshot.train_on_examples(model, tok, pattern, examples, steps=1, lr=1e-3, losses=("lm", "kl"))
    with pytest.raises(ValueError, match="inject a PEFT method"):
        fewshot.train_on_examples(mp.tiny_decoder().requires_grad_(False), tok, pattern, examples, steps=1, lr=1e-3)


def test_demonstrations_for_draws_one_other_example_per_label_repeatably():
    """LM-BFF §6: one example of each label, in label order; in training never the input itself; seeded."""
    pool = [("a", 0), ("b", 1), ("c", 0), ("d", 1), ("e", 1)]
    draw = fewshot.demonstrations_for(pool, 2, torch.Generator().manual_seed(3))
    assert len(draw) == len(pool)
    for i, demos in enumerate(draw):
        assert [y for _, y in demos] == [0, 1] and pool[i] not in demos and all(d in pool for d in demos)
    assert draw[0][0] == ("c", 0) and draw[2][0] == ("a", 0)       # label 0 has two examples: each shows the other
    assert draw == fewshot.demonstrations_for(pool, 2, torch.Generator().manual_seed(3))
    many = [fewshot.demonstrations_for(pool, 2, torch.Generator().manual_seed(s)) for s in range(8)]
    assert len({str(m) for m in many}) > 1                            # the seed moves the draw
    test = fewshot.demonstrations_for(pool, 2, torch.Generator().manual_seed(0), inputs=40)
    assert len(test) == 40 and {d[0] for d in test} == {("a", 0), ("c", 0)}   # at test every example is a candidate
    with pytest.raises(ValueError, match="2 training examples"):
        fewshot.demonstrations_for([("a", 0), ("b", 1), ("c", 1)], 2, torch.Generator())
    with pytest.raises(ValueError, match="labels must be 0 … 1"):
        fewshot.demonstrations_for([("a", 0), ("b", 2)], 2, torch.Generator())


def test_score_with_demonstrations_averages_each_text_s_own_drawn_sets():
    model, tok, pattern = mp.tiny_decoder(), CharTokenizer(), fewshot.Pattern(verbaliser=(" no", " yes!"))
    pool = [("great fun", 1), ("bad", 0), ("a joy", 1), ("dull stuff", 0)]
    texts = ["a fine film", "dull", "the plot is a mess", "wow", "so-so"]
    scored = fewshot.score_with_demonstrations(model, tok, pattern, texts, pool, sets=2, seed=5, batch_size=2)
    gen, total, tokens = torch.Generator().manual_seed(5), 0, 0          # the same draws, one full prompt at a time
    for _ in range(2):
        demos = fewshot.demonstrations_for(pool, 2, gen, inputs=len(texts))
        batch = fewshot.encode(tok, [pattern.prompt(t, d) for t, d in zip(texts, demos)], pattern.verbaliser)
        with torch.no_grad():
            total = total + fewshot.answer_scores(fewshot.token_log_probs(model, batch), batch, normalise=True)
        tokens += batch.tokens
    assert scored.predictions == total.argmax(-1).tolist() and scored.prefix_tokens == 0
    assert scored.tokens_per_prediction == tokens / len(texts)
    assert (total[:, 1] - total[:, 0]).abs().min() > 1e-4              # no tie: the argmax is a real choice
    one = fewshot.score_with_demonstrations(model, tok, pattern, texts, pool, sets=1, seed=5)
    assert one.tokens_per_prediction < scored.tokens_per_prediction
    with pytest.raises(ValueError, match="at least 1"):
        fewshot.score_with_demonstrations(model, tok, pattern, texts, pool, sets=0)


def test_train_on_examples_with_demonstrations_trains_on_the_drawn_prompts():
    """Step 1's losses are those of the examples after the demonstrations the seeded generator draws (nothing has
    moved yet); the same seed gives the same run, and the demonstrations change what is trained on."""
    tok, pattern = CharTokenizer(), fewshot.Pattern(verbaliser=(" no", " yes!"))
    examples = [("good", 1), ("awful", 0), ("lovely", 1), ("boring", 0)]

    def trained(**kw):
        torch.manual_seed(0)
        model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
        return model, fewshot.train_on_examples(model, tok, pattern, examples, steps=40, lr=3e-2, **kw)

    torch.manual_seed(0)
    fresh = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
    demos = fewshot.demonstrations_for(examples, 2, torch.Generator().manual_seed(7))
    batch = fewshot.encode(tok, [pattern.prompt(t, d) for (t, _), d in zip(examples, demos)], pattern.verbaliser)
    with torch.no_grad():
        expected = fewshot.tfew_losses(fresh, batch, torch.tensor([y for _, y in examples]))
    model, history = trained(demonstrations=True, seed=7)
    assert history[0] == {k: round(v.item(), 5) for k, v in expected.items()}
    assert history == trained(demonstrations=True, seed=7)[1] and history[0] != trained()[1][0]
    # it learns, more slowly than on the query alone (40 steps: 0.69 -> 0.52): the demonstrations change every step
    assert history[-1]["ln"] < 0.8 * history[0]["ln"] and history[-1]["lm"] < history[0]["lm"], history[-1]
