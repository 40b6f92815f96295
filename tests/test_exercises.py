"""The exercises' checks can be trusted: every typical wrong answer fails a public check that names it, the correct
answers pass with every seed, a student's failed check reads hint first, and the checks are found wherever the
notebook is opened.

The mutants (typical wrong answers) are listed next to each question in solutions/NN_x.ipynb; tools/mutants.py runs
them (`python tools/mutants.py -v` prints each one with the hint a student would read).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import mutants  # noqa: E402

import minipeft as mp  # noqa: E402

SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.stem)
def test_every_typical_mistake_fails_a_public_check_that_names_it(source):
    report = mutants.run(source)
    per_question = {q.name: len(q.mutants) for q in mutants.parse(source).questions}
    assert min(per_question.values()) >= 3, f"fewer than 3 mutants for a question: {per_question}"
    assert report.caught == len(report.mutants) and not report.correct_failures and not report.blank_points, \
        "\n" + mutants.describe(report)


def test_the_mutant_runner_notices_an_escape_and_knock_on_blame(tmp_path):
    """The runner itself: a mutant no check catches, and a later question that blames the wrong thing, are reported."""
    nb = json.loads((ROOT / "solutions" / "00_adaptation.ipynb").read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if not mutants.is_mutant_cell(c)]

    def raw(text):
        return {"cell_type": "raw", "metadata": {}, "source": text}

    def code(text):
        return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": text}

    test = '""" # BEGIN TEST CONFIG\nfailure_message: "{}"\n""" # END TEST CONFIG\n{}'
    toy = [cells[0], code("import torch\n"),
           raw("# BEGIN QUESTION\nname: q1\npoints: 1"), raw("# BEGIN SOLUTION"),
           code("def double(x):\n    return 2 * x  # SOLUTION\n"), raw("# END SOLUTION"), raw("# BEGIN TESTS"),
           code(test.format("double must double.", "assert double(3) == 6")), raw("# END TESTS"),
           raw("# MUTANTS\n- mistake: triples\n  replace: '2 * x'\n  with: '3 * x'\n  hint: double\n"
               "- mistake: adds two (passes the public check)\n  replace: '2 * x'\n  with: 'x + 3'\n  hint: double"),
           raw("# END QUESTION"),
           raw("# BEGIN QUESTION\nname: q2\npoints: 1"), raw("# BEGIN SOLUTION"),
           code("four = double(2)  # SOLUTION\n"), raw("# END SOLUTION"), raw("# BEGIN TESTS"),
           code(test.format("four is wrong: 2 + 2.", "assert four == 4")), raw("# END TESTS"), raw("# END QUESTION")]
    path = tmp_path / "99_toy.ipynb"
    path.write_text(json.dumps({**nb, "cells": toy}), encoding="utf-8")
    report = mutants.run(path, seeds=(0,))
    triples, adds = report.mutants
    assert triples.caught and triples.knock_on and triples.knock_on[0]["question"] == "q2"  # q2 blames "2 + 2"
    assert not adds.caught and adds.first is None                                          # double(3) == 6 passes
    assert report.caught == 0 and "ESCAPED q1 adds two" in mutants.describe(report)


def test_mutant_cells_never_reach_students():
    for path in sorted((ROOT / "exercises").glob("*.ipynb")):
        assert "# MUTANTS" not in path.read_text(encoding="utf-8"), path.name


@pytest.mark.parametrize("chapter, predicted", [
    ("00_adaptation", ["770"]), ("01_adapters", ["595200", "49600"]), ("02_lora", ["36864"]),
    ("03_prefix", ["115200", "46080", "0.4"]), ("04_prompt", ["seq_len == 32"]), ("05_adalora", ["498096", "305"]),
    ("06_kronecker", ["144"]), ("07_scaling", ["23424"]), ("08_unified", ["184320", "== 20"]),
    ("09_choosing", ["74498", "297992", "0.328"]),
    ("11_serving", ["73728"])])
def test_predicted_numbers_are_not_shown_to_students(chapter, predicted):
    """A "predict a number" question's public checks compare fingerprints (mp.exercises.sealed), never the value."""
    nb = json.loads((ROOT / "exercises" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    public = json.dumps([{k: v for k, v in case.items() if k != "points"}  # a case's points are not its answer
                         for test in nb["metadata"]["otter"]["tests"].values()
                         for suite in test["suites"] for case in suite["cases"]])
    assert "assert" in public and not [value for value in predicted if value in public]


def test_sealed_fingerprints_a_prediction_not_its_spelling():
    sealed = mp.exercises.sealed
    assert sealed(0.4) == sealed(10 / 25) == sealed(1 - 0.6) != sealed(0.41)
    assert sealed(2.0) == sealed(2) != sealed(True)
    assert sealed((False, True)) != sealed((True, False))
    assert sealed(None) != sealed(0) and sealed(...) != sealed(0) and sealed("0.4") != sealed(0.4)


def _student_run(code: str, cwd: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "default", "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_checks_are_found_from_another_folder_and_a_renamed_notebook_without_warnings(tmp_path):
    code = ("import minipeft as mp\n"
            "grader = mp.exercises.grader('03_prefix')\n"
            "lam = 10 / 25\n"
            "print(grader.check('q3'))\n")
    elsewhere = _student_run(code, tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "q3: all 5 public checks pass" in elsewhere.stdout
    assert "Warning" not in elsewhere.stderr, elsewhere.stderr

    renamed = tmp_path / "my copy.ipynb"  # Jupyter names the running notebook in JPY_SESSION_NAME
    shutil.copy(ROOT / "exercises" / "03_prefix.ipynb", renamed)
    session = _student_run(code, tmp_path, env={"JPY_SESSION_NAME": str(renamed)})
    assert "all 5 public checks pass" in session.stdout, session.stderr
    assert mp.exercises.find_notebook("03_prefix") == ROOT / "exercises" / "03_prefix.ipynb"


def test_no_checks_anywhere_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mp.exercises, "COURSE_EXERCISES", tmp_path / "nowhere")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(FileNotFoundError, match="Open the notebook from the course's exercises/ folder"):
        mp.exercises.grader("03_prefix")


def test_a_failed_check_shows_the_hint_first_and_no_doctest_transcript():
    grader = mp.exercises.grader("03_prefix")
    env = {"lam": 10 / 30, "mp": mp}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning noise either
        out = repr(grader.check("q3", env))
    lines = out.splitlines()
    assert lines[0] == "q3: 3 of 5 public checks pass."
    assert lines[1].startswith("✗ check 2: You counted the padding positions")  # the mistake named first
    assert lines[2] == "    `assert abs(lam - 10 / 30) > 0.001` gave AssertionError"
    assert lines[3].startswith("✗ check 5: Not the share") and len(lines) == 5
    assert not any(word in out for word in ("Trying:", "Expecting nothing", "Traceback", "0.4"))
    html = grader.check("q3", env)._repr_html_()
    assert "You counted the padding positions" in html and "Trying" not in html


def test_a_missing_answer_and_a_repeated_error_are_not_blamed_on_the_hint():
    import torch

    grader = mp.exercises.grader("03_prefix")
    missing = repr(grader.check("q1", {"torch": torch, "mp": mp}))
    assert "`prefix_attention` is not defined: run the cell with your answer first" in missing

    def prefix_attention(*args):
        raise RuntimeError("boom")

    raising = repr(grader.check("q1", {"torch": torch, "mp": mp, "prefix_attention": prefix_attention}))
    assert "0 of 6 public checks pass" in raising  # a function that raises passes nothing
    assert raising.count("RuntimeError: boom") == 1 and "the same error as check 1: fix that first" in raising
