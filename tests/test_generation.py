"""lab/generation.py: an adapter steered towards one kind of response, DPO on response pairs, sampling per user
(tiny Llama, a character-level stand-in tokenizer)."""

import pytest
import torch

import minipeft as mp
from minipeft.lab import fewshot, generation

from helpers import randomise


class CharTokenizer:
    """Letters a-z and space -> ids 3..29; 1 = end of text, 0 = padding (the tiny Llama's vocabulary is 128)."""
    eos_token_id, pad_token_id = 1, 0

    def _ids(self, text):
        return [3 + (ord(c) - 97 if c.isalpha() else 26) for c in text.lower()]

    def __call__(self, texts, add_special_tokens=False, return_tensors=None):
        if isinstance(texts, str):
            return {"input_ids": self._ids(texts)}
        ids = [self._ids(t) for t in texts]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), len(ids[0]), dtype=torch.long)}
        return {"input_ids": ids}

    def batch_decode(self, rows, skip_special_tokens=True):
        return ["".join(" " if t == 29 else chr(t - 3 + 97) for t in row.tolist() if 3 <= t <= 29) for row in rows]


TOK = CharTokenizer()
PROMPT = "review"
GOOD, BAD = ["great fun", "a great film", "fun and great"], ["dull", "a dull mess", "dull and bad"]


def test_pairs_mark_the_response_only_and_end_with_the_end_of_text_token():
    prompts, answers = generation.response_pairs(TOK, PROMPT, ["ab"])
    assert prompts == [TOK._ids("review")] and answers == [TOK._ids(" ab") + [1]]
    assert generation.response_pairs(TOK, PROMPT, ["ab"], end=False)[1] == [TOK._ids(" ab")]
    batch = fewshot.pairs_from_ids(prompts, answers)
    assert batch.answer_mask.tolist() == [[0] * 6 + [1] * 4]


def test_steering_lowers_the_response_loss_and_trains_only_the_adapter():
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
    base = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    batch = fewshot.pairs_from_ids(*generation.response_pairs(TOK, PROMPT, GOOD))
    with torch.no_grad():
        before = generation.response_loss(model, batch).item()
    losses = generation.steer(model, TOK, PROMPT, GOOD, steps=25, batch_size=2, lr=1e-2)
    with torch.no_grad():
        after = generation.response_loss(model, batch).item()
    assert len(losses) == 25 and after < before - 0.2 and losses[-1] < losses[0] - 0.2   # 4.90 -> 4.63 measured
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if not p.requires_grad)
    with pytest.raises(ValueError, match="nothing to train"):
        generation.steer(mp.tiny_decoder().requires_grad_(False), TOK, PROMPT, GOOD, steps=1)
    with pytest.raises(ValueError, match="steps >= 1"):
        generation.steer(model, TOK, PROMPT, GOOD, steps=0)


def test_dpo_starts_at_log_2_and_its_margin_grows():
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
    history = generation.dpo(model, TOK, PROMPT, GOOD, BAD, steps=20, batch_size=3, lr=1e-2, beta=0.5)
    assert history[0][1] == 0.0 and history[0][0] == pytest.approx(0.6931472, abs=1e-6)
    assert history[-1][1] > 0.5 and history[-1][0] < 0.5
    with pytest.raises(ValueError, match="one rejected response per chosen"):
        generation.dpo(model, TOK, PROMPT, GOOD, BAD[:2], steps=1)


def test_a_bank_samples_each_user_as_that_user_s_own_model_does(tmp_path):
    steered = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj"]))
    with torch.no_grad():
        randomise(steered, std=0.3)                                          # B = 0 would hide a routing bug
    mp.save_adapter(steered, tmp_path / "z")
    bank = mp.AdapterBank(mp.tiny_decoder(), {"z": tmp_path / "z"})
    alone = generation.sample(steered.generate, TOK, PROMPT, 4, max_new_tokens=6, seed=3)
    base = generation.sample(mp.tiny_decoder().generate, TOK, PROMPT, 4, max_new_tokens=6, seed=3)
    assert len(alone) == 4 and alone != base                                  # the adapter changes the samples
    assert generation.sample(bank.generate, TOK, PROMPT, 4, max_new_tokens=6, seed=3, adapter_names=["z"] * 4) == alone
    assert generation.sample(bank.generate, TOK, PROMPT, 4, max_new_tokens=6, seed=3, adapter_names=[None] * 4) == base


def test_batches_cover_every_row_once_per_epoch_and_follow_the_seed():
    rows = generation.batches(6, steps=5, batch_size=3, seed=0)
    assert len(rows) == 5 and all(len(r) == 3 for r in rows)
    assert sorted(rows[0] + rows[1]) == list(range(6)) and sorted(rows[2] + rows[3]) == list(range(6))
    assert rows == generation.batches(6, 5, 3, seed=0) != generation.batches(6, 5, 3, seed=1)


def test_tune_trains_each_row_on_its_own_prompt_and_steer_is_tune_with_one_prompt():
    torch.manual_seed(0)
    one = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj"]))
    two = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj"]))
    two.load_state_dict(one.state_dict())
    assert generation.steer(one, TOK, PROMPT, GOOD, steps=3, batch_size=2, lr=1e-2, seed=1) == \
        generation.tune(two, TOK, [PROMPT] * 3, GOOD, steps=3, batch_size=2, lr=1e-2, seed=1)
    # two instructions, opposite answers: only each row's own prompt tells them apart
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))

    def preference_for_yes():     # loss of " yes" after "say no" minus after "say yes": grows if prompts are read
        with torch.no_grad():
            return (generation.response_loss(model, fewshot.pairs_from_ids([TOK._ids("say no")], [TOK._ids(" yes")]))
                    - generation.response_loss(model, fewshot.pairs_from_ids([TOK._ids("say yes")],
                                                                             [TOK._ids(" yes")]))).item()

    before = preference_for_yes()
    losses = generation.tune(model, TOK, ["say yes", "say no"] * 2, ["yes", "no"] * 2, steps=40, batch_size=4,
                             lr=3e-2, end=False)
    assert losses[-1] < losses[0] - 0.2 and preference_for_yes() > before + 0.1     # 0.04 -> 0.19 measured
    with pytest.raises(ValueError, match="one prompt per response"):
        generation.tune(model, TOK, ["say yes"], ["yes", "no"], steps=1)
