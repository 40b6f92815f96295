"""Mutation testing of the exercises: every typical wrong answer must fail a PUBLIC check whose hint names the mistake.

    python tools/mutants.py                    every chapter: questions, mutants, caught, catch rate, knock-on blame
    python tools/mutants.py 03_prefix -v       one chapter, each mutant with the hint a student would read first

The mistakes are data. Each question of a solutions/NN_x.ipynb source lists its typical wrong answers in a raw cell
that starts with `# MUTANTS` (anywhere between its `# BEGIN QUESTION` and `# END QUESTION`; `make release` drops
these cells, students never see them), as YAML:

    # MUTANTS
    - mistake: the scores are not divided by sqrt(d_h)      what the student did, in words
      replace: " / d_h**0.5"                                text of the answer cell (as a student sees it) ...
      with: ""                                              ... and what the student wrote instead
      hint: sqrt|scal                                       a regular expression the first failed check's hint matches

(`edits: [[old, new], ...]` for several edits, `code: |` for a whole answer cell.) A mutant is CAUGHT when the first
public check that fails has a hint matching `hint`. Two more rules are checked on every mutant:

* no knock-on blame: a later question that uses a name the mutant's question defines must still pass its public
  checks, or fail with a hint that names the question ("fix q1 first");
* the correct answers pass every public and hidden check for each seed the course uses (a question that trains reads
  `SEED`; seeds 0, 1, 2 as in the reference runs).

How it runs, cheaply: the solution notebook's code runs once, in this process, cell by cell, in quick mode (as
grading does), with one torch thread. At the start of each question the process forks: each child runs one mutant,
the question's public checks and the later questions that depend on it, and reports back (as many children at a
time as there are cores, up to 4); the parent goes on with the correct answer. A fork starts from the state right
before the question (models loaded, data embedded), so no mutant pays for the cells before it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import select
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from release import is_mutant_cell, without_solution_markers  # noqa: E402,F401 - one definition each

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
SEEDS = (0, 1, 2)
CHILD_TIMEOUT = 300.0  # seconds for one mutant (its question and the later ones that depend on it)


# ---------------------------------------------------------------------------------------------------------- parsing
@dataclass
class Case:
    code: str
    hint: str                   # the failure message ("" for a hidden case)
    hidden: bool
    points: float | None = None  # set in the case's config (0: a hint only); None: a share of the question's


@dataclass
class Mutant:
    mistake: str
    hint: str                                     # regular expression for the hint of the first failed check
    edits: list = field(default_factory=list)     # [(old, new)] applied to the answer cell
    code: str | None = None                       # or the whole answer cell

    def apply(self, answer: str) -> str:
        if self.code is not None:
            return self.code
        for old, new in self.edits:
            if old not in answer:
                raise ValueError(f"mutant {self.mistake!r}: {old!r} is not in the answer cell:\n{answer}")
            answer = answer.replace(old, new, 1)
        return answer


@dataclass
class Question:
    name: str
    given: list = field(default_factory=list)     # code cells of the question that are not the answer
    answer: str = ""                              # the answer cell(s), as a student who got it right sees them
    cases: list = field(default_factory=list)
    mutants: list = field(default_factory=list)
    blank: list = field(default_factory=list)     # the answer cells as handed out (exercises/NN_x.ipynb: `...`)

    @property
    def public(self) -> list[Case]:
        return [c for c in self.cases if not c.hidden]

    def defines(self) -> set[str]:
        """Top-level names the answer binds (functions, classes, variables)."""
        names = set()
        for node in ast.parse(self.answer).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        return names

    def uses(self) -> set[str]:
        code = "\n".join([*self.given, self.answer, *(c.code for c in self.public)])
        return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}


@dataclass
class Exercise:
    chapter: str
    items: list                                   # str (a code cell outside questions) or Question, in order

    @property
    def questions(self) -> list[Question]:
        return [i for i in self.items if isinstance(i, Question)]


def _case(source: str) -> Case:
    if source.lstrip().startswith("# HIDDEN"):
        return Case(source, "", True)
    match = re.match(r'\s*""" # BEGIN TEST CONFIG\n(.*?)""" # END TEST CONFIG\n', source, re.S)
    config = (yaml.safe_load(match.group(1)) if match else {}) or {}
    return Case(source[match.end():] if match else source, config.get("failure_message", ""), False,
                config.get("points"))


def parse(path: Path) -> Exercise:
    nb = json.loads(path.read_text(encoding="utf-8"))
    items, question, block = [], None, None
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        first = source.strip().splitlines()[0] if source.strip() else ""
        if cell["cell_type"] == "raw":
            if first == "# BEGIN QUESTION":
                question = Question(yaml.safe_load(source.split("\n", 1)[1])["name"])
                items.append(question)
            elif first == "# END QUESTION":
                question = None
            elif first in ("# BEGIN SOLUTION", "# BEGIN TESTS"):
                block = first.split()[-1]
            elif first in ("# END SOLUTION", "# END TESTS"):
                block = None
            elif first == "# MUTANTS":
                if question is None:
                    raise ValueError(f"{path.name}: a # MUTANTS cell outside a question")
                for m in yaml.safe_load(source.split("\n", 1)[1]):
                    edits = m.get("edits") or ([[m["replace"], m.get("with", "")]] if "replace" in m else [])
                    question.mutants.append(Mutant(m["mistake"], m["hint"], [tuple(e) for e in edits], m.get("code")))
            continue
        if cell["cell_type"] != "code":
            continue
        if question is None:
            items.append(source)
        elif block == "SOLUTION":
            question.answer += without_solution_markers(source)
        elif block == "TESTS":
            question.cases.append(_case(source))
        else:
            question.given.append(source)
    exercise = EXERCISES / path.name
    if exercise.is_file():
        for name, cells in blank_answers(exercise).items():
            for q in items:
                if isinstance(q, Question) and q.name == name:
                    q.blank = cells
    return Exercise(path.stem, items)


def blank_answers(path: Path) -> dict[str, list[str]]:
    """{question: its answer cells as the student gets them}: the code cells with a `...` before its check cell."""
    nb, out, cells = json.loads(path.read_text(encoding="utf-8")), {}, []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        checked = re.match(r'\s*grader\.check\("(\w+)"\)', source)
        if checked:
            out[checked.group(1)], cells = cells, []
        elif any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(ast.parse(source))):
            cells.append(source)
    return out


# -------------------------------------------------------------------------------------------------------- execution
def run_cell(code: str, env: dict) -> str | None:
    """Run a cell in the notebook's namespace, its output dropped; the error in a line (None if it ran)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, "<cell>", "exec"), env)
        return None
    except BaseException as err:  # noqa: BLE001 - a student's cell may raise anything
        return f"{type(err).__name__}: {err}".splitlines()[0][:600]


def check(question: Question, env: dict, hidden: bool = False) -> list[dict]:
    """Run a question's public (and hidden) cases; [{"case", "hidden", "passed", "hint", "error"}]."""
    results = []
    for i, case in enumerate(c for c in question.cases if hidden or not c.hidden):
        error = run_cell(case.code, dict(env))  # as otter's doctest: each case in a copy of the notebook's names
        results.append({"case": i + 1, "hidden": case.hidden, "passed": error is None, "hint": case.hint,
                        "error": error})
    return results


def _spawn(work) -> tuple[int, int]:
    """Fork a child that runs work() -> dict (one torch thread, output silenced) and writes it as JSON to a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        try:
            import torch

            torch.set_num_threads(1)  # an OpenMP pool does not survive fork; one thread does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            out = work()
        except BaseException:  # noqa: BLE001
            out = {"crash": traceback.format_exc()[-2000:]}
        with os.fdopen(write, "w") as f:
            json.dump(out, f)
        os._exit(0)
    os.close(write)
    return pid, read


def in_children(works: list, workers: int | None = None, timeout: float = CHILD_TIMEOUT) -> list[dict]:
    """Run each work() -> dict in its own forked child, `workers` at a time; their dicts, in order."""
    workers = workers or max(1, min(len(os.sched_getaffinity(0)), 4))
    results, running, todo = [None] * len(works), {}, list(enumerate(works))
    while todo or running:
        while todo and len(running) < workers:
            i, work = todo.pop(0)
            pid, fd = _spawn(work)
            running[fd] = (i, pid, time.monotonic() + timeout, [])
        now = time.monotonic()
        ready, _, _ = select.select(list(running), [], [], max(0.0, min(d for _, _, d, _ in running.values()) - now))
        for fd in ready:
            i, pid, deadline, chunks = running[fd]
            chunk = os.read(fd, 1 << 16)
            if chunk:
                chunks.append(chunk)
                continue
            os.close(fd)
            os.waitpid(pid, 0)
            del running[fd]
            text = b"".join(chunks).decode()
            results[i] = json.loads(text) if text else {"crash": "the child died without a report"}
        for fd, (i, pid, deadline, _) in list(running.items()):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(fd)
                del running[fd]
                results[i] = {"crash": f"timed out after {timeout:g} s"}
    return results


@dataclass
class MutantResult:
    question: str
    mistake: str
    caught: bool
    first: dict | None          # the first failed public check (None: every public check passed)
    knock_on: list              # later questions' failed checks whose hint does not name the question
    crash: str | None = None
    raised: str | None = None   # the answer cell's own error, if it raised


@dataclass
class Report:
    chapter: str
    questions: int
    mutants: list = field(default_factory=list)           # MutantResult
    correct_failures: list = field(default_factory=list)  # (seed, question, case, hint or "hidden", error)
    blank_points: list = field(default_factory=list)      # (question, case, hidden?) a blank answer passes for points
    seconds: float = 0.0

    @property
    def caught(self) -> int:
        return sum(m.caught and not m.knock_on for m in self.mutants)


def run_mutant(ex: Exercise, k: int, mutant: Mutant, env: dict) -> dict:
    """In the child: the mutant's answer, its question's public checks, then the later questions that depend on it."""
    q = ex.questions[k]
    raised = run_cell(mutant.apply(q.answer), env)
    results = check(q, env)
    failed = [r for r in results if not r["passed"]]
    knock_on, defined = [], q.defines()
    for later in ex.items[ex.items.index(q) + 1:]:
        if isinstance(later, str):
            run_cell(later, env)
            continue
        if not (later.uses() & defined):
            continue
        for code in later.given:
            run_cell(code, env)
        run_cell(later.answer, env)
        for r in check(later, env):
            if not r["passed"] and not re.search(rf"\b{re.escape(q.name)}\b", r["hint"]):
                knock_on.append({"question": later.name, **r})
    return {"raised": raised, "first": failed[0] if failed else None, "knock_on": knock_on}


def run(path: Path, seeds=SEEDS, only: set[str] | None = None) -> Report:
    """Run one chapter's exercise with its correct answers (every seed) and every mutant; see the module docstring."""
    ex, start = parse(path), time.perf_counter()
    os.environ["MINIPEFT_QUICK"] = "1"
    import torch

    torch.set_num_threads(1)
    report = Report(ex.chapter, len(ex.questions))
    env = {"__name__": "__main__"}
    old = os.getcwd()
    os.chdir(path.parent)
    try:
        for item in ex.items:
            if isinstance(item, str):
                error = run_cell(item, env)
                if error:
                    report.correct_failures.append((seeds[0], "set-up", 0, "a given cell", error))
                continue
            q, k = item, ex.questions.index(item)
            for code in q.given:
                run_cell(code, env)
            if only is None or q.name in only:
                def other_seed(seed):
                    env["SEED"] = seed
                    for code in q.given:
                        run_cell(code, env)
                    return {"error": run_cell(q.answer, env), "results": check(q, env, hidden=True)}

                # a question that trains reads SEED: its answer must pass with the course's other seeds too
                seeded = seeds[1:] if "SEED" in q.answer + "".join(q.given) else ()
                def blank():
                    for code in q.blank:
                        run_cell(code, env)
                    return {"results": check(q, env, hidden=True)}

                outs = in_children([lambda m=m: run_mutant(ex, k, m, env) for m in q.mutants]
                                   + [lambda s=s: other_seed(s) for s in seeded] + [blank])
                for r in outs[-1].get("results", []):  # a check a blank answer passes must be a hint only
                    if r["passed"] and q.cases[r["case"] - 1].points != 0:
                        report.blank_points.append((q.name, r["case"], r["hidden"]))
                for mutant, out in zip(q.mutants, outs):
                    first, raised = out.get("first"), out.get("raised")
                    # what the student reads first: the answer cell's own error (minipeft's messages name the
                    # mistake too), then the first failed check's hint
                    caught = bool(raised and re.search(mutant.hint, raised, re.I)
                                  or first and re.search(mutant.hint, first["hint"] or "", re.I))
                    report.mutants.append(MutantResult(q.name, mutant.mistake, caught, first,
                                                       out.get("knock_on", []), out.get("crash"), raised))
                for seed, out in zip(seeded, outs[len(q.mutants):]):
                    _correct(report, seed, q, out)
            error = run_cell(q.answer, env)
            _correct(report, seeds[0], q, {"error": error, "results": check(q, env, hidden=True)})
    finally:
        os.chdir(old)
    report.seconds = time.perf_counter() - start
    return report


def _correct(report: Report, seed: int, q: Question, out: dict) -> None:
    if out.get("crash") or out.get("error"):
        report.correct_failures.append((seed, q.name, 0, "the answer cell", out.get("crash") or out["error"]))
    for r in out.get("results", []):
        if not r["passed"]:
            report.correct_failures.append((seed, q.name, r["case"], "hidden" if r["hidden"] else r["hint"],
                                            r["error"]))


# -------------------------------------------------------------------------------------------------------------- CLI
def describe(report: Report, verbose: bool = False) -> str:
    lines = []
    for m in report.mutants:
        ok = m.caught and not m.knock_on
        if not (verbose or not ok):
            continue
        mark = "caught " if ok else "ESCAPED"
        lines.append(f"  {mark} {m.question} {m.mistake}")
        if m.crash:
            lines.append(f"          crashed: {m.crash.strip().splitlines()[-1]}")
        if m.raised:
            lines.append(f"          the cell raised {m.raised[:150]}")
        if m.first is None:
            lines.append("          every public check passed")
        else:
            lines.append(f"          check {m.first['case']}: {m.first['hint'][:150]}")
            if not m.caught:
                lines.append(f"          ({m.first['error']})")
        for k in m.knock_on:
            lines.append(f"          knock-on: {k['question']} check {k['case']} blames: {k['hint'][:120]}")
    for q, case, hidden in report.blank_points:
        lines.append(f"  BLANK ANSWER SCORES {q} {'hidden ' if hidden else ''}case {case}: give it points: 0 "
                     "(a hint only) or make it need an answer")
    for seed, q, case, hint, error in report.correct_failures:
        lines.append(f"  CORRECT ANSWER FAILS (seed {seed}) {q} check {case}: {hint[:100]} ({error})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="e.g. 03_prefix (default: every chapter)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every mutant, not only the escapes")
    args = parser.parse_args(argv)
    paths = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if p.stem in {Path(c).stem for c in args.chapters}]
    rows, bad = [], False
    for path in paths:
        report = run(path)
        counts = {}
        for m in report.mutants:
            counts.setdefault(m.question, []).append(m)
        rows.append((report.chapter, report.questions, len(report.mutants), report.caught, report.seconds))
        text = describe(report, args.verbose)
        print(f"{report.chapter}: {report.caught}/{len(report.mutants)} mutants caught, "
              f"{min((len(v) for v in counts.values()), default=0)}+ per question, {report.seconds:.0f} s", flush=True)
        if text:
            print(text, flush=True)
        bad |= report.caught < len(report.mutants) or bool(report.correct_failures or report.blank_points)
    print("\n| chapter | questions | mutants | caught | catch rate | seconds |\n|---|---|---|---|---|---|")
    for chapter, nq, nm, caught, seconds in rows:
        print(f"| {chapter} | {nq} | {nm} | {caught} | {caught / max(nm, 1):.0%} | {seconds:.0f} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
