"""What a student notebook in exercises/ runs: the checks, found wherever the notebook is opened, and feedback that
leads with the hint.

    import minipeft as mp
    grader = mp.exercises.grader("03_prefix")   # the first cell of every exercise notebook
    grader.check("q1")                           # -> "q1: 4 of 5 checks pass. ✗ check 5: Padding is leaking in ..."

Behind it is otter-grader (its `otter.Notebook`, its test runner and point rules, untouched: `make grade` grades
with the same tests). Two things are added:

* **Where the tests are.** The public tests live in the exercise notebook's metadata, and `otter.Notebook("x.ipynb")`
  reads them from that file in the current folder: a notebook opened from another folder, or renamed, failed with
  FileNotFoundError. `grader` looks in the current folder, then at the notebook Jupyter says is running
  (JPY_SESSION_NAME), then at the course's own copy in exercises/ (next to this package), and says what to do if
  none is found.
* **Feedback a student reads.** otter's report prints every test case's doctest transcript ("Trying: ... Expecting
  nothing ... Traceback ..."), which buries the hint. `check` returns the same result, shown as one line per failed
  check: its hint first, then the failing line and the error in a few words.

**Language.** Hints and the lines around them are in English, or in Chinese with MINIPEFT_LANG=zh or
`grader(chapter, lang="zh")` (lang.py; the Chinese twins of the hints are in hints_zh.py).

`sealed(value)` is how a public check tests a predicted number without printing it: the test compares fingerprints,
so neither the failure output nor the notebook's metadata shows the expected value (hidden tests check it plainly).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import warnings
from pathlib import Path

from .lang import hint, say, set_language

COURSE_EXERCISES = Path(__file__).resolve().parents[3] / "exercises"  # lib/minipeft/lab/ -> the course's exercises/


def sealed(value, digits: int = 6) -> str:
    """A 12-character fingerprint of a number (or bool, or tuple of them), rounded to `digits` significant digits.

    sealed(0.4) == sealed(10 / 25) == sealed(1 - 0.6); sealed(True) != sealed(1). Anything else (None, ..., a
    tensor) gets a fingerprint no number has, so a check `sealed(x) == "..."` simply fails on it.
    """
    def canonical(v):
        if isinstance(v, bool):
            return repr(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            if v != v:
                return "nan"
            if v == int(v) and abs(v) < 1e15:
                return str(int(v))  # 2.0 and 2 are the same prediction
            return f"{v:.{digits}g}"
        if isinstance(v, (tuple, list)):
            return "(" + ",".join(canonical(x) for x in v) + ")"
        return f"<{type(v).__name__}>"

    text = canonical(value)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _assignment(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["metadata"]["otter"]["assignment_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_notebook(chapter: str) -> Path:
    """The exercise notebook whose metadata holds `chapter`'s public tests (see the module docstring)."""
    here = Path(f"{chapter}.ipynb")
    candidates = [here]
    session = os.environ.get("JPY_SESSION_NAME")  # set by Jupyter for a kernel it started from a notebook
    if session:
        candidates.append(Path(session))
    candidates.append(COURSE_EXERCISES / f"{chapter}.ipynb")
    for path in candidates:
        if path.is_file() and _assignment(path) == chapter:
            return path
    raise FileNotFoundError(
        f"Cannot find the checks of exercise {chapter}: no {here} here ({Path.cwd()}) and no course copy in "
        f"{COURSE_EXERCISES}. Open the notebook from the course's exercises/ folder (or copy it back there), or "
        f"reinstall the course (make course).")


class Feedback:
    """One question's result (otter's TestFile, as `.result`), shown hint first."""

    def __init__(self, result):
        self.result = result

    @property
    def passed(self) -> bool:
        return self.result.passed_all

    def failures(self) -> list[tuple[int, str, str, str]]:
        """(check number, hint, failing line, error) for each failed public check, in order."""
        public = [r for r in self.result.test_case_results if not r.test_case.hidden]
        return [(i, hint((r.test_case.failure_message or "").strip()), *what_failed(r.message or ""))
                for i, r in enumerate(public, 1) if not r.passed]

    def lines(self) -> list[str]:
        public = [r for r in self.result.test_case_results if not r.test_case.hidden]
        hidden = [r for r in self.result.test_case_results if r.test_case.hidden]  # only in a teacher's copy
        hidden_failed = sum(not r.passed for r in hidden)
        tail = [say(f"✗ {hidden_failed} of {len(hidden)} hidden checks fail",
                    f"✗ {len(hidden)} 项隐藏检查中有 {hidden_failed} 项未通过")] if hidden_failed else []
        failed = self.failures()
        if not failed:
            more = (say(f" (and {len(hidden) - hidden_failed} of {len(hidden)} hidden ones)",
                        f"（隐藏检查 {len(hidden)} 项中通过 {len(hidden) - hidden_failed} 项）") if hidden else
                    say(" (your teacher's grading adds hidden checks: make the code right, not just passing)",
                        "（老师评分时还有隐藏检查：要让代码真正正确，而不只是通过检查）"))
            return [say(f"{self.result.name}: all {len(public)} public checks pass ✓{more}",
                        f"{self.result.name}：全部 {len(public)} 项公开检查通过 ✓{more}")] + tail
        lines = [say(f"{self.result.name}: {len(public) - len(failed)} of {len(public)} public checks pass.",
                     f"{self.result.name}：{len(public)} 项公开检查中通过 {len(public) - len(failed)} 项。")]
        seen = {}  # error -> the first check that raised it: one broken line fails several checks
        for i, message, failed_line, error in failed:
            if error and not error.startswith("AssertionError") and error in seen:
                lines.append(say(f"✗ check {i}: the same error as check {seen[error]}: fix that first.",
                                 f"✗ 检查 {i}：与检查 {seen[error]} 的错误相同，请先修正那一处。"))
                continue
            seen.setdefault(error, i)
            lines += _line(i, message, failed_line, error)
        return lines + tail

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        from html import escape

        lines = self.lines()
        colour = "#1a7f37" if self.passed else "#b42318"
        body = [f"<p style='margin:0'><strong style='color:{colour}'>{escape(lines[0])}</strong></p>"]
        for line in lines[1:]:
            if line.startswith("✗"):
                body.append(f"<p style='margin:0.3em 0 0 0'>{escape(line)}</p>")
            else:
                body.append(f"<p style='margin:0 0 0 2em;color:#555;font-family:monospace;font-size:90%'>"
                            f"{escape(line.strip())}</p>")
        return "".join(body)


def what_failed(transcript: str) -> tuple[str, str]:
    """From a doctest transcript, the first failing line and its error ("NameError: name 'x' is not defined").

    The FIRST failure: later lines of a test case often fail only because of it (`out = f(x)` raised, so the next
    line's `out` is undefined). The error is the exception as Python printed it below the traceback's frames, its
    lines joined: a message of several lines is not cut down to its last line, which lacks the exception's name.
    `make grade`'s feedback files read transcripts with it too.
    """
    lines = [line.rstrip() for line in transcript.splitlines() if line.strip()]
    stripped = [line.strip() for line in lines]
    if "Failed example:" not in stripped[:-1]:
        return "", (stripped[-1] if stripped and "Test case failed" not in stripped[-1] else "")
    start = stripped.index("Failed example:") + 1
    block = []
    for line in lines[start + 1:]:
        if line.strip().startswith(("Trying:", "*****")):
            break
        block.append(line)
    text = [line.strip() for line in block]
    if "Exception raised:" in text:
        return stripped[start], _exception(block)
    # a value that differed: "Expected: ... Got: ..." (after the example's own next lines, if it has several)
    return stripped[start], " ".join(text[text.index("Expected:"):] if "Expected:" in text else text)


def _exception(traceback: list[str]) -> str:
    """The exception of a traceback as doctest prints it (indented): after the last "Traceback ..." line, its frames
    are indented deeper; the exception's text starts at the first line back at the traceback's own indentation."""
    def indent(line):
        return len(line) - len(line.lstrip())

    heads = [i for i, line in enumerate(traceback) if line.strip() == "Traceback (most recent call last):"]
    if not heads:
        return traceback[-1].strip()
    base, rest = indent(traceback[heads[-1]]), traceback[heads[-1] + 1:]
    first = next((i for i, line in enumerate(rest) if indent(line) <= base), None)
    return " ".join(line.strip() for line in rest[first:]) if first is not None else traceback[-1].strip()


def _line(i: int, message: str, failed: str, error: str) -> list[str]:
    missing = re.match(r"NameError: name '(\w+)' is not defined", error)
    if missing:  # not the mistake the hint names: the answer was never run (or is spelled differently)
        return [say(f"✗ check {i}: `{missing.group(1)}` is not defined: run the cell with your answer first "
                    "(and check that the name is spelled as in the question).",
                    f"✗ 检查 {i}：`{missing.group(1)}` 未定义：请先运行写有你答案的单元格"
                    "（并检查名字是否与题目中的拼写一致）。")]
    gave = say("gave", "得到")
    what = f"`{failed[:160]}` {gave} {error[:200]}" if failed and error else (f"`{failed[:160]}`" if failed else error)
    first = say(f"✗ check {i}: {message or '(no hint)'}", f"✗ 检查 {i}：{message or '（无提示）'}")
    return [first] + ([f"    {what}"] if what else [])


class Summary:
    """`grader.check_all()`: every question's feedback, one block each."""

    def __init__(self, feedbacks: list[Feedback]):
        self.feedbacks = feedbacks

    def __repr__(self) -> str:
        return "\n\n".join(repr(f) for f in self.feedbacks)

    def _repr_html_(self) -> str:
        return "<br>".join(f._repr_html_() for f in self.feedbacks)


class Grader:
    """otter.Notebook with feedback that leads with the hint; every other attribute is otter's."""

    def __init__(self, notebook):
        self._notebook = notebook

    def check(self, question: str, global_env: dict | None = None) -> Feedback:
        if global_env is None:
            global_env = sys._getframe(1).f_globals  # the student's namespace (otter would otherwise see ours)
        return Feedback(self._notebook.check(question, global_env))

    def check_all(self) -> Summary | None:
        """Every question checked again; nothing in grading mode (make grade), as otter's own check_all: grading
        checks each question once, in its check cell or at the end, and a second run would count instead (against
        the notebook's later state), and run a looping test again."""
        from otter import Notebook
        from otter.check.utils import list_available_tests

        if Notebook._grading_mode:
            return None
        nb = self._notebook
        env = sys._getframe(1).f_globals
        return Summary([self.check(q, env) for q in list_available_tests(nb._tests_dir, nb._nbmeta_config)])

    def __getattr__(self, name):
        return getattr(self._notebook, name)


def grader(chapter: str, lang: str | None = None) -> Grader:
    """The checks of exercise `chapter` ("03_prefix"), wherever its notebook was opened; `lang="zh"` shows their
    hints in Chinese (the same as MINIPEFT_LANG=zh; None keeps the current setting, English by default)."""
    if lang is not None:
        set_language(lang)
    with warnings.catch_warnings():  # otter's and nbformat's own warnings (traitlets deprecations, missing cell
        warnings.simplefilter("ignore")  # ids): not the student's business
        import otter

        if otter.Notebook._grading_mode:  # make grade: otter's own grading set-up says where the tests are
            return Grader(otter.Notebook(f"{chapter}.ipynb"))
        # tests_dir=None: the public tests are in the notebook's metadata. otter's default, "./tests", would make it
        # look for tests/q1.py in whatever folder the notebook runs from, if that folder has a tests/ of its own
        return Grader(otter.Notebook(str(find_notebook(chapter)), tests_dir=None))
