"""lab/instruct.py: the tuning tasks and the held-out one (chapter 11, FLAN's question): fixed, balanced, disjoint
draws; the control's prompts without the instruction; sentiment has no training rows."""

from collections import Counter

import pytest

from minipeft.lab import instruct


@pytest.mark.parametrize("task", ["source", "bible", "question"])
def test_a_task_s_train_and_test_draws_are_balanced_fixed_and_disjoint(task):
    labels = len(instruct.TASKS[task].verbaliser)
    test, train = instruct.examples(task, "test", 60), instruct.examples(task, "train", 96)
    assert Counter(y for _, y in test) == {y: 60 // labels for y in range(labels)}
    assert Counter(y for _, y in train) == {y: 96 // labels for y in range(labels)}
    assert not {t for t, _ in test} & {t for t, _ in train}
    assert instruct.examples(task, "test", 60) == test                       # the same rows every time
    assert set(instruct.examples(task, "test", 6 * labels)) <= set(test)     # a smaller draw is a subset


def test_the_rows_answer_their_task():
    assert all(t.rstrip().endswith("?") == bool(y) for t, y in instruct.examples("question", "test", 60))
    verses = set(instruct._pools()["bible"][-1:])                            # KJV rows are label 1
    assert all(y == 1 for _, y in verses)
    held = instruct.examples("sentiment", "test", 200)
    assert Counter(y for _, y in held) == {0: 100, 1: 100}
    with pytest.raises(ValueError, match="held-out task"):
        instruct.examples("sentiment", "train", 10)
    with pytest.raises(ValueError, match="multiple of 3"):
        instruct.examples("source", "test", 10)
    with pytest.raises(ValueError, match="at most"):
        instruct.examples("bible", "test", 2 * (instruct.TEST_CAP + 1))
    assert "sentiment" not in instruct.TUNING


def test_the_mixture_with_and_without_the_instructions():
    prompts, answers = instruct.mixture(6)
    bare, same = instruct.mixture(6, instructions=False)
    assert len(prompts) == 18 and answers == same                           # the same rows and answers
    assert sum(p.startswith(instruct.TASKS["bible"].instruction) for p in prompts) == 6
    assert all(p.startswith("Text: ") and p.endswith("\nAnswer:") for p in bare)
    assert [p.split("Text: ", 1)[1] for p in prompts] == [p.split("Text: ", 1)[1] for p in bare]
    assert set(answers) <= {a for t in instruct.TUNING for a in instruct.TASKS[t].verbaliser}
