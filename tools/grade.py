"""Grade a folder of student notebooks: a gradebook CSV and one feedback file (markdown) per student.

    make grade SUBMISSIONS=folder [CHAPTER=00_adaptation]
    python tools/grade.py folder [--chapter 00_adaptation | --autograder x.zip] [--out build/grades]
                                 [--cell-timeout 120] [--test-timeout 30] [--budget 900] [--jobs 1] [--full]
                                 [--lang en | zh]

Where the submissions are (the student's name comes from the file or folder name):

    folder/<student>.ipynb              flat: one chapter, so CHAPTER must be given
    folder/<student>/<chapter>.ipynb    a folder per student (sub-folders too, .ipynb in any case; with CHAPTER
                                        given, a folder's only notebook is used whatever its name; see
                                        find_submissions for copies and several notebooks)
    folder/<chapter>/<student>.ipynb    a folder per chapter

The layouts mix; a student with two notebooks for one chapter (say alice.ipynb and alice/<chapter>.ipynb) is not
graded but gets status "collision" naming both. Cells of the CSV that a spreadsheet would run as a formula (they
start with = + - @) get a leading apostrophe: a student names their own file.

Writes build/grades/<chapter>/gradebook.csv (student, one column of points per question, total, possible, status,
reason, file, graded, autograder) and build/grades/<chapter>/feedback/<student>.md (score, public-test hints, hidden
tests as counts only; in Chinese with --lang zh or MINIPEFT_LANG=zh). Grading again into the same folder (one late
student, a fixed test) replaces those students' rows and keeps every other row; history.csv next to it keeps every
grading (when, by whom, which file and its SHA-256, which autograder version). A row graded with an older
autograder version is named in a warning. summary.md: the batch's statistics per question (mean, full / partial /
no points, the public hints failed most often) and the submissions that look copied (tools/class_report.py says how
they are found).
Status: ok | errors (some cells raised or timed out, or a test was stopped; every question still graded) | timeout
(over --budget: the questions checked by then keep their points) | crashed (the kernel died: same) | unreadable |
wrong-assignment | missing | collision | suspicious (the grading guard saw tampering: the reason says what; the
points are as graded, check the notebook). Grading runs in quick mode (MINIPEFT_QUICK=1) unless --full. The reason column is cut
at about 200 characters (at a word, with "…"); the feedback file has it whole.

Why not `otter run`? It executes the notebook with no time limit on a cell, so one `while True:` hangs the whole
batch, and killing it from outside loses every question of that student; a test that never returns (a student
function that loops) is run again by otter's final "check what was not checked" cell and takes the results of
every question down with it; an empty or corrupt .ipynb stops it with a traceback. So this script drives otter's
own machinery instead: the autograder zip built by `otter assign` (tests/*.py: public AND hidden tests), otter's
GradingPreprocessor (grading mode: `grader.check` reads the hidden tests; questions whose check cell was deleted
are checked at the end), otter's test runner and point rules (OKTestFile, Checker). It adds what otter run lacks:
a per-cell timeout that interrupts the cell and goes on (nbclient), a per-test-case time limit (SIGALRM, in the
kernel) and the results saved after every question (so a later crash keeps them), both by tools/grade_guard.py,
an overall budget per submission, and a clear status for files that are not notebooks. One loop costs one time
limit, not the budget: a stopped test case does not run its next lines, the question's next cases get a shorter
limit, and the final check skips what was checked or interrupted (grade_guard.py says why each is needed).

No test file is where the student's code can read or write it: the tests of the zip are held in memory here, written
for each notebook outside its folder, and read by the guard (checked against the zip's SHA-256 digests) and deleted
before the student's first cell; every check builds its test from memory. The guard also checks every value a test
uses and puts back a patched otter before each check; what it sees makes the status "suspicious" (grade_guard.py
says what it closes and what it cannot: the student's code runs in the same process as the checks).

Student code runs with your permissions, as with otter run: grade on a machine or account you do not mind.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import getpass
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import class_report  # noqa: E402 - tools/class_report.py: the class statistics and the copy flags of summary.md
import roster as class_roster  # noqa: E402 - tools/roster.py: --roster, students by id, the LMS exports

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, RELEASE = ROOT / "solutions", ROOT / "build" / "release"
GUARD = Path(__file__).with_name("grade_guard.py")  # what runs inside the student's kernel (see its docstring)


def guard_cell(seconds: float, path: Path | str, tests: dict | None = None) -> str:
    """The code cell that installs the guard in the student's kernel, right after otter's grading-mode init cell.

    It holds the source of `install` from tools/grade_guard.py alone (every name the guard uses lives inside it, so
    student code cannot clobber them), the call with the time limit and the results file, then `del install`: the
    kernel's globals keep nothing of it. Hidden-test output is dropped there, before anything leaves the kernel.
    `tests`: where the released tests are and their digests (see `install`), read and deleted before the student's
    first cell.
    """
    source = GUARD.read_text(encoding="utf-8")
    install = next(node for node in ast.parse(source).body
                   if isinstance(node, ast.FunctionDef) and node.name == "install")
    return ("# Added by tools/grade.py: a time limit on every test case, and each question's results saved once "
            f"checked.\n{ast.get_source_segment(source, install)}\n\n"
            f"install({float(seconds)!r}, {str(path)!r}{'' if tests is None else f', {tests!r}'})\ndel install\n")


@dataclass
class Autograder:
    name: str                 # the assignment (chapter) name, as in the notebook's otter metadata
    folder: Path              # the unpacked autograder zip: tests/*.py, files/ (support files), otter_config.json
    points: dict[str, float]  # question -> points possible, in question order
    digests: dict[str, str] = field(default_factory=dict)  # question -> SHA-256 of tests/<question>.py in the zip
    tests: dict[str, bytes] = field(default_factory=dict)  # question -> tests/<question>.py, held in memory

    @property
    def version(self) -> str:
        """A short fingerprint of the tests and points: two gradebook rows with the same version were graded alike."""
        text = json.dumps([self.name, self.points, self.digests], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Grade:
    student: str
    status: str = "ok"
    problems: list[str] = field(default_factory=list)  # what went wrong, in words (gradebook reason + feedback)
    questions: dict = field(default_factory=dict)       # question -> {"score", "cases"} as saved in the kernel
    file: str = ""                                      # the notebook graded (several: a collision)
    sha256: str = ""                                    # of that file's bytes, for the history
    graded: str = ""                                    # when (ISO 8601, UTC, to the second)

    def score(self, question: str) -> float:
        return self.questions.get(question, {}).get("score", 0.0)


class Rejected(Exception):
    """A submission that cannot be graded at all (scored 0); args: status, reason."""


class BudgetExceeded(Exception):
    pass


def load_autograder(zip_path: Path, into: Path) -> Autograder:
    """Unpack an otter autograder zip into `into` and read its questions and points with otter's own parser.

    The test files stay in memory only (their unpacked copies are deleted): a folder of tests in /tmp for the whole
    batch is one the students' code could find and read."""
    from otter.test_files import OKTestFile

    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(into)
        digests = {Path(n).stem: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()
                   if n.startswith("tests/") and n.endswith(".py")}
    name = json.loads((into / "otter_config.json").read_text()).get("assignment_name") or zip_path.stem
    tests = sorted((into / "tests").glob("*.py"))
    points = {t.stem: OKTestFile.from_file(str(t)).possible for t in tests}
    held = {t.stem: t.read_bytes() for t in tests}
    shutil.rmtree(into / "tests")
    return Autograder(name, into, points, digests, held)


def chapter_autograder(chapter: str, into: Path) -> Autograder:
    """The chapter's autograder from `make release`; rebuilt first when missing or older than its solutions/ source."""
    source = SOLUTIONS / f"{chapter}.ipynb"
    if not source.is_file():
        raise SystemExit(f"No chapter {chapter!r}: expected {source.relative_to(ROOT)}")
    zips = sorted((RELEASE / chapter / "autograder").glob("*.zip"))
    if not zips or zips[-1].stat().st_mtime < source.stat().st_mtime:
        print(f"[grade] building the autograder for {chapter} (otter assign)", flush=True)
        from release import assign

        assign(source, RELEASE / chapter)
        zips = sorted((RELEASE / chapter / "autograder").glob("*.zip"))
        if not zips:
            raise SystemExit(f"otter assign made no autograder zip: set `generate: true` in the ASSIGNMENT CONFIG "
                             f"of {source.relative_to(ROOT)}")
    return load_autograder(zips[-1], into)


def read_submission(path: Path, assignment: str):
    """The submission as a notebook, or Rejected with a reason a student understands."""
    import nbformat

    if path.parent.name == class_roster.NOTHING:
        raise Rejected("missing", "nothing handed in: on the roster, but no notebook of theirs was found")
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob("*.ipynb")) if path.parent.is_dir() else []
        raise Rejected("missing", f"no notebook found ({path.name})"
                       + (f"; in {path.parent.name}/: {', '.join(others)}" if others else ""))
    if path.stat().st_size == 0:
        raise Rejected("unreadable", f"{path.name} is an empty file: save the notebook in Jupyter and resubmit")
    try:
        with warnings.catch_warnings():  # e.g. cells without ids: Jupyter adds them, nbclient does not need them
            warnings.simplefilter("ignore")
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any parse or schema error means "not a notebook"
        first = shorten((str(err).strip().splitlines() or [type(err).__name__])[0])
        raise Rejected("unreadable", f"{path.name} is not a valid Jupyter notebook ({first})") from None
    got = nb.metadata.get("otter", {}).get("assignment_name")
    if got and got != assignment:
        raise Rejected("wrong-assignment", f"{path.name} is the notebook of assignment {got!r}, not {assignment!r}")
    return nb


def shorten(text: str, limit: int = 200) -> str:
    """`text` in at most `limit` characters, cut at its last space in the second half, then "…": not mid-word."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def _stopped(question: str, result: dict) -> str | None:
    """What the test time limit stopped in a question, in words (None: nothing): the first case and its limit."""
    cases = result.get("cases", [])
    stopped = [c for c in cases if c.get("stopped")]
    if not stopped:
        return None
    first, public = stopped[0], [c for c in cases if not c["hidden"]]
    number = next((i for i, c in enumerate(public, 1) if c is first), 0)
    which = "a hidden test" if first["hidden"] else f"public test {number}"
    more = (f"; {len(stopped) - 1} more of its tests stopped after {stopped[1]['stopped']:g} s"
            if len(stopped) > 1 else "")
    return f"{question}: {which} ran longer than {first['stopped']:g} s and was stopped (an infinite loop?){more}"


def _cell_name(cell) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {cell.metadata['grade_cell']} (`{first[:50]}`)"


def _run(nb, work: Path, ag: Autograder, cell_timeout: float, test_timeout: float, budget: float,
         quick: bool) -> Grade:
    """Execute the submission in grading mode in `work`; the results are read from what the kernel saved."""
    from minipeft.lab.runbook import notebook_client
    from nbclient.exceptions import DeadKernelError
    from nbformat.v4 import new_code_cell
    from otter.execute.logging import start_server
    from otter.execute.preprocessor import GradingPreprocessor
    from traitlets.config import Config

    grade, results = Grade(""), work / "results.json"
    for i, cell in enumerate(nb.cells):
        cell.metadata["grade_cell"] = i + 1  # numbering of the student's own cells (grading adds cells)
    (host, port), stop_server = start_server()
    try:
        config = Config()
        config.GradingPreprocessor.update(
            cwd=str(work), test_dir=str(work / "tests"),  # absolute: a student's os.chdir() cannot lose them
            tests_glob=[str(work / "tests" / f"{q}.py") for q in ag.points],
            results_path=str(work / "otter_results.pkl"), logging_server_host=host, logging_server_port=port,
            seed=None, seed_variable=None, force_python3_kernel=True)
        nb, _ = GradingPreprocessor(config=config).preprocess(nb)
        tests = {"from": str(work.parent / "released-tests"), "to": str(work / "tests"), "digests": ag.digests}
        nb.cells.insert(1, new_code_cell(guard_cell(test_timeout, results, tests)))

        deadline, current = time.monotonic() + budget, {}

        def on_cell_start(cell, cell_index):
            current["cell"] = cell
            if time.monotonic() > deadline:
                raise BudgetExceeded

        def timeout(cell):  # the student's cells get cell_timeout; grading's own cells (import otter...) do not
            left = max(1.0, deadline - time.monotonic())
            limit = min(cell_timeout, left) if "grade_cell" in cell.metadata else left
            current["budget"] = limit == left  # a timeout of this cell is the budget's (e.g. otter's final checks)
            return limit

        def on_cell_error(cell, cell_index, execute_reply):
            content = execute_reply["content"]
            if content.get("ename") == "CellTimeoutError" and current.get("budget"):  # not "a grading step failed"
                raise BudgetExceeded("" if "grade_cell" in cell.metadata else " during otter's final checks")
            if "grade_cell" not in cell.metadata:
                grade.problems.append(f"a grading step failed ({content.get('ename')})")
            elif content.get("ename") == "CellTimeoutError":
                grade.problems.append(f"{_cell_name(cell)} ran longer than {cell_timeout:g} s and was interrupted")
            else:
                message = str(content.get("evalue", "")).strip().splitlines()
                grade.problems.append(f"{_cell_name(cell)} raised {content.get('ename')}"
                                      + (f": {shorten(message[0], 1000)}" if message else ""))

        client = notebook_client(
            nb, timeout_func=timeout, interrupt_on_timeout=True, allow_errors=True, kernel_name="python3",
            error_on_timeout={"ename": "CellTimeoutError", "evalue": "", "traceback": []},
            shutdown_kernel="immediate", resources={"metadata": {"path": str(work)}},
            on_cell_start=on_cell_start, on_cell_error=on_cell_error)
        try:
            client.execute(env={**os.environ, "MINIPEFT_QUICK": "1" if quick else "0"})
        except BudgetExceeded as err:
            grade.status = "timeout"
            grade.problems.append(f"grading stopped after {budget:g} s (the budget for one notebook)"
                                  + "".join(err.args))
        except DeadKernelError:
            grade.status = "crashed"
            cell = current.get("cell")
            where = _cell_name(cell) if cell is not None and "grade_cell" in cell.metadata else "the final checks"
            grade.problems.append(f"the Python kernel died while running {where}")
    finally:
        stop_server()
    if results.is_file():
        grade.questions = json.loads(results.read_text(encoding="utf-8"))
    _suspicious(grade, ag, Path(f"{results}.guard"))
    stopped = [_stopped(q, grade.questions[q]) for q in ag.points if q in grade.questions]
    grade.problems += [p for p in stopped if p]
    interrupted = [q for q in ag.points if grade.questions.get(q, {}).get("interrupted")]
    unchecked = [q + (" (its check was interrupted)" if q in interrupted else "")
                 for q in ag.points if q not in grade.questions or q in interrupted]
    if unchecked:
        grade.problems.append("not graded (0 points): " + ", ".join(unchecked))
    if grade.status == "ok" and grade.problems:
        grade.status = "errors"
    return grade


def _suspicious(grade: Grade, ag: Autograder, guard: Path):
    """Status "suspicious" with the reasons, for tampering the guard saw (see grade_guard.py) or results that the
    guard cannot have written: the teacher looks at the notebook, the points stay as graded."""
    report = json.loads(guard.read_text(encoding="utf-8")) if guard.is_file() else {}
    reasons = list(report.get("suspicious", []))
    if not report.get("finished") and grade.status == "ok" and not any(
            p.startswith("a grading step failed") for p in grade.problems):
        reasons.append("otter's final checks did not run through the grading guard (a patched checker?)")
    for question, result in grade.questions.items():
        score = result.get("score") if isinstance(result, dict) else None
        if question not in ag.points or not isinstance(score, (int, float)) or not 0 <= score <= ag.points[question]:
            reasons.append(f"the results file has {question}: {shorten(repr(result), 80)}, which no test gives")
    if reasons:
        grade.status = "suspicious"
        grade.problems[:0] = [f"suspicious: {r}" for r in reasons]


def grade_submission(path: Path | tuple, ag: Autograder, cell_timeout: float = 120, test_timeout: float = 30,
                     budget: float = 900, quick: bool = True) -> Grade:
    """Grade one notebook against an unpacked autograder. Never raises: a failure is a status and a reason."""
    try:
        if isinstance(path, tuple):  # see find_submissions
            top = Path(os.path.commonpath(path))  # the submissions folder
            raise Rejected("collision", f"{len(path)} notebooks for {ag.name}: "
                           + ", ".join(p.relative_to(top).as_posix() for p in path)
                           + ": keep one (remove or rename the others) and grade again")
        nb = read_submission(path, ag.name)
        with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
            work = Path(tmp) / "work"
            work.mkdir()
            if (ag.folder / "files").is_dir():  # support files next to the notebook, as otter run does
                shutil.copytree(ag.folder / "files", work, dirs_exist_ok=True)
            # not in the notebook's folder: the guard reads them into memory and deletes them before the student's
            # first cell (grade_guard.py says why)
            (Path(tmp) / "released-tests").mkdir()
            for question, text in ag.tests.items():
                (Path(tmp) / "released-tests" / f"{question}.py").write_bytes(text)
            (work / f"{ag.name}.ipynb").write_text(json.dumps(nb), encoding="utf-8")  # otter.Notebook() reads it
            grade = _run(nb, work, ag, cell_timeout, test_timeout, budget, quick)
    except Rejected as err:
        grade = Grade("", status=err.args[0], problems=[err.args[1]])
    except Exception as err:  # noqa: BLE001 - one broken submission must not stop the batch
        grade = Grade("", status="crashed", problems=[shorten(f"grader error: {type(err).__name__}: {err}", 500)])
    return grade


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (a formula in Excel, LibreOffice, Google
    Sheets), a tab or a CR gets a leading apostrophe (OWASP's CSV-injection mitigation). A student names their own
    file, and `=HYPERLINK(...)` as a name would otherwise run as a formula in the teacher's gradebook."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _copy_base(stem: str) -> str:
    """A notebook's name without the marks of a copy: 'Lab1 (1)', 'lab1-Copy2', 'Lab1 copy' -> 'lab1'."""
    stem = re.sub(r"\s*\(\d+\)$", "", stem.strip())
    return re.sub(r"[ _-]?copy\s*\d*$", "", stem, flags=re.IGNORECASE).strip().lower()


def _newest(paths: list[Path]) -> Path:
    return max(sorted(paths), key=lambda p: p.stat().st_mtime)


def _in_folder(sub: Path, chapter: str, single: bool, notes: dict, student: str) -> Path | tuple:
    """The notebook of one student folder (any depth; .ipynb in any case), by the rule in the module docstring."""
    found = sorted(p for p in sub.rglob("*") if p.suffix.lower() == ".ipynb" and p.is_file()
                   and not any(part.startswith((".", "_")) for part in p.relative_to(sub).parts[:-1]))
    named = [p for p in found if _copy_base(p.stem) == chapter.lower()]
    if named:
        pick = _newest(named)
    elif single and found and len({_copy_base(p.stem) for p in found}) == 1:
        pick = _newest(found)  # copies of one notebook ('Lab1.ipynb', 'Lab1 (1).ipynb'): the newest
    elif single and len(found) > 1:
        return tuple(found)  # different notebooks and none named after the chapter: a collision, never a guess
    else:
        return sub / f"{chapter}.ipynb"  # missing (read_submission names what the folder holds)
    others = [p.relative_to(sub).as_posix() for p in found if p != pick]
    if others:
        notes[student] = (f"graded {pick.relative_to(sub).as_posix()} (named after the chapter or the newest copy); "
                          f"also in the folder, not graded: {', '.join(others)}")
    return pick


def find_submissions(folder: Path, chapter: str, chapters: list[str], single: bool,
                     notes: dict[str, str] | None = None) -> dict[str, Path | tuple]:
    """{student: notebook path} for one chapter (layouts in the module docstring); a missing file is a Path too.

    The layouts mix, so one student may hand in the same chapter twice (alice.ipynb and alice/<chapter>.ipynb): that
    student gets a tuple of every path, graded as status "collision", never one picked in silence. A folder named
    after the chapter (or any course chapter) is a chapter folder, never a student: with --autograder the chapter
    need not be a course chapter. In a student's folder (sub-folders too, `.ipynb` in any case) the notebook named
    after the chapter is graded (the newest, if the LMS kept copies like `01_adapters (1).ipynb`); with CHAPTER
    given, the only notebook, or the newest of copies of one notebook (`Lab1.ipynb`, `Lab1 (1).ipynb`); several
    different notebooks, none named after the chapter: "collision". Whenever a folder holds notebooks that were not
    graded, `notes` (if given) gets a line for that student saying which one was graded and which were not.
    """
    found: dict[str, list[Path]] = {}
    notes = {} if notes is None else notes

    def add(student: str, path: Path):
        found.setdefault(student, []).append(path)

    if (folder / chapter).is_dir():
        for p in sorted((folder / chapter).glob("*.ipynb")):
            add(p.stem, p)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in {*chapters, chapter}):
        if sub.name.startswith((".", "_")):
            continue  # .ipynb_checkpoints, __MACOSX and the like
        picked = _in_folder(sub, chapter, single, notes, sub.name)
        for p in picked if isinstance(picked, tuple) else (picked,):
            add(sub.name, p)
    if single:
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() == ".ipynb":
                add(p.stem, p)
    for student, paths in found.items():  # a student folder without this chapter, next to a real submission
        handed_in = [p for p in paths if p.is_file()] or paths[:1]
        found[student] = handed_in
    return {s: paths[0] if len(paths) == 1 else tuple(paths) for s, paths in found.items()}


def feedback(student: str, grade: Grade, ag: Autograder) -> str:
    """The student's report: score, problems, public-test hints. Hidden tests appear only as counts."""
    from minipeft.lab.exercises import what_failed  # the same reading of a failure as the notebook's feedback
    from minipeft.lab.lang import hint, say  # the student's language: --lang or MINIPEFT_LANG, English by default

    total, possible = sum(grade.score(q) for q in ag.points), sum(ag.points.values())
    lines = [say(f"# {ag.name}: feedback for {student}", f"# {ag.name}：{student} 的反馈"), "",
             say(f"**Score: {total:g} / {possible:g}**", f"**得分：{total:g} / {possible:g}**")
             + ("" if grade.status == "ok" else say(f" (status: {grade.status})", f"（状态：{grade.status}）"))]
    if grade.problems:
        lines += ["", say("Problems while grading your notebook:", "评分时你的 notebook 出现的问题：")]
        lines += [f"- {p}" for p in grade.problems]
    for question, points in ag.points.items():
        lines += ["", f"## {question}: {grade.score(question):g} / {points:g}", ""]
        result = grade.questions.get(question)
        if result is None or result.get("interrupted"):
            lines.append(_not_graded(grade, result))
            continue
        public = [c for c in result["cases"] if not c["hidden"]]
        hidden = [c for c in result["cases"] if c["hidden"]]
        for i, case in enumerate(public, 1):
            if case["passed"]:
                lines.append(say(f"- public test {i}: passed", f"- 公开测试 {i}：通过"))
                continue
            failed, error = what_failed(case["output"] or "")
            message = hint(case["hint"] or "")
            lines.append(say(f"- public test {i}: **failed**. {message}", f"- 公开测试 {i}：**未通过**。{message}")
                         .rstrip())
            if failed or error:
                error = shorten(error, 300)
                lines.append(f"  `{failed}` {say('gave', '得到')} `{error}`" if failed else f"  `{error}`")
        if hidden:
            passed, stopped = sum(c["passed"] for c in hidden), sum(bool(c.get("stopped")) for c in hidden)
            lines.append(say(f"- hidden tests: {passed} of {len(hidden)} passed",
                             f"- 隐藏测试：{len(hidden)} 项中通过 {passed} 项")
                         + ("" if passed == len(hidden) else say(" (they try other inputs than the public tests)",
                                                                 "（它们使用与公开测试不同的输入）"))
                         + (say(f"; {stopped} of them ran too long and {'was' if stopped == 1 else 'were'} stopped",
                                f"；其中 {stopped} 项运行时间过长，已被中止") if stopped else ""))
    return "\n".join(lines) + "\n"


def _not_graded(grade: Grade, result: dict | None) -> str:
    """Why a question has no test results: its check cell ran out of time, or grading stopped before its tests."""
    if result is not None:  # interrupted: tools/grade_guard.py saved it so that the final check does not rerun it
        return ("Not graded: its tests ran longer than the time limit of the cell that checks them and were "
                "interrupted (a test that never returns?).")
    if grade.status in ("timeout", "crashed"):
        return f"Not graded: grading stopped (status: {grade.status}) before this question's tests finished."
    return "Not graded: this question's tests did not run."


def grade_folder(submissions: dict[str, Path], ag: Autograder, out: Path, jobs: int = 1, root: Path | None = None,
                 notes: dict[str, str] | None = None, **limits) -> dict:
    """Grade every submission (jobs at a time), write out/feedback/<student>.md and merge the grades into
    out/gradebook.csv (write_gradebook). root: the submissions folder, to which the file column is relative; notes:
    {student: a problem to add to the reason} (the roster's "not on the roster")."""
    students = sorted(submissions)

    def one(student):
        start = time.perf_counter()
        grade = grade_submission(submissions[student], ag, **limits)
        grade.student = student
        if notes and student in notes:
            grade.problems.append(notes[student])
        print(f"[grade] {ag.name} {student}: {sum(grade.score(q) for q in ag.points):g}/"
              f"{sum(ag.points.values()):g} {grade.status} ({time.perf_counter() - start:.1f} s)", flush=True)
        return grade

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        grades = dict(zip(students, pool.map(one, students)))
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    for student, grade in grades.items():
        paths = submissions[student] if isinstance(submissions[student], tuple) else (submissions[student],)
        grade.file = "; ".join(_shown(p, root) for p in paths)
        grade.sha256 = "; ".join(hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "" for p in paths)
        grade.graded = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        (out / "feedback" / f"{student}.md").write_text(feedback(student, grade, ag), encoding="utf-8")
    write_gradebook(out, grades, ag)
    paths = {s: p for s, p in submissions.items() if isinstance(p, Path) and p.is_file()}
    pairs = class_report.copies({s: class_report.code_lines(p) for s, p in paths.items()},
                                {s: grades[s].sha256 for s in paths},
                                {s: sum(g.score(q) for q in ag.points) for s, g in grades.items()})
    (out / "summary.md").write_text(class_report.summary(ag.name, grades, ag.points, pairs), encoding="utf-8")
    for a, b, why in pairs:
        print(f"[grade] {ag.name}: {a} and {b} look copied ({why}): see {out / 'summary.md'}", flush=True)
    return grades


def _shown(path: Path, root: Path | None) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() if root else path.as_posix()
    except ValueError:
        return path.as_posix()


GRADEBOOK_TAIL = ["total", "possible", "status", "reason", "file", "graded", "autograder"]
HISTORY = ["graded", "by", "student", "file", "sha256", "autograder", "total", "possible", "status"]


def write_gradebook(out: Path, grades: dict[str, Grade], ag: Autograder) -> list[str]:
    """Merge this batch into out/gradebook.csv and append it to out/history.csv; returns the warnings printed.

    Re-grading a few students (one folder, one file) replaces their rows and keeps every other row as it was: a
    gradebook never loses a row. Rows graded with another autograder version (the tests or points changed since) are
    kept and named in a warning: re-grade them. Columns of an older gradebook that this autograder does not have (a
    renamed question) are kept at the end. A gradebook that cannot be read is moved aside, never overwritten.
    history.csv is append-only: every grading of every student (when, by whom, which file and its SHA-256, which
    autograder version, the points and status)."""
    path, warnings_ = out / "gradebook.csv", []
    rows: dict[str, dict] = {}
    old_fields: list[str] = []
    if path.is_file():
        try:
            rows, old_fields = _read_gradebook(path)
        except UNREADABLE as err:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            aside = path.with_name(f"gradebook.unreadable-{stamp}.csv")
            path.replace(aside)
            warnings_.append(f"{path} could not be read ({err}): moved to {aside.name}; this gradebook starts anew")
            rows, old_fields = {}, []
    fields = ["student", *ag.points, *GRADEBOOK_TAIL]
    fields += [f for f in old_fields if f not in fields]
    history = []
    for student, grade in grades.items():
        scores = [grade.score(q) for q in ag.points]
        row = dict(zip(fields, [spreadsheet_safe(student), *(f"{x:g}" for x in [*scores, sum(scores),
                                                                                 sum(ag.points.values())])]))
        row.update(status=grade.status, reason=spreadsheet_safe("; ".join(shorten(p) for p in grade.problems)),
                   file=spreadsheet_safe(grade.file), graded=grade.graded, autograder=ag.version)
        rows[row["student"]] = row
        history.append(dict(graded=grade.graded, by=spreadsheet_safe(_user()), student=row["student"],
                            file=row["file"], sha256=grade.sha256, autograder=ag.version, total=row["total"],
                            possible=row["possible"], status=grade.status))
    others = sorted(s for s, r in rows.items() if r.get("autograder") != ag.version)
    if others:
        warnings_.append(f"{len(others)} row(s) of {path} were graded with another autograder version (the tests or "
                         f"points changed since, or graded before versions were recorded) and were kept as they were: "
                         f"{', '.join(others[:10])}{' …' if len(others) > 10 else ''}. Re-grade them for one scale.")
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows[s] for s in sorted(rows))
    os.replace(tmp, path)  # never a half-written gradebook
    log = out / "history.csv"
    new = not log.is_file()
    with open(log, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY)
        if new:
            writer.writeheader()
        writer.writerows(history)
    for w in warnings_:
        print(f"[grade] warning: {w}", flush=True)
    return warnings_


UNREADABLE = (ValueError, csv.Error, UnicodeDecodeError)  # what _read_gradebook raises for a file that is not one


def _read_gradebook(path: Path) -> tuple[dict[str, dict], list[str]]:
    """({student cell: row}, columns) of a gradebook.csv; one of UNREADABLE if it is not one. A row with more cells
    than columns (edited by hand) keeps them, in a column "extra cells"."""
    rows: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        if "student" not in fields:
            raise ValueError("it has no 'student' column")
        for row in reader:
            if None in row:
                row["extra cells"] = "; ".join(row.pop(None))
                fields += ["extra cells"] if "extra cells" not in fields else []
            rows[row["student"]] = row
    return rows, fields


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): the history says so
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--chapter", help="grade one chapter (default: every chapter that has submissions)")
    parser.add_argument("--autograder", type=Path, help="an otter autograder zip instead of a course chapter")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "grades")
    parser.add_argument("--cell-timeout", type=float, default=120, help="seconds per cell before it is interrupted")
    parser.add_argument("--test-timeout", type=float, default=30, help="seconds per test case before it fails")
    parser.add_argument("--budget", type=float, default=900, help="seconds per notebook before grading stops")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time")
    parser.add_argument("--full", action="store_true", help="grade in default mode, not quick mode")
    parser.add_argument("--lang", choices=("en", "zh"), help="the feedback files' language (default: MINIPEFT_LANG, "
                                                                 "else English): hints and fixed lines in Chinese with zh")
    parser.add_argument("--roster", type=Path, help="a CSV with id, name, email (tools/roster.py): students by id, a "
                                                      "row for everyone, Canvas and Moodle exports")
    args = parser.parse_args(argv)
    if args.lang:
        from minipeft.lab.lang import set_language

        set_language(args.lang)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of submissions")
    limits = dict(cell_timeout=args.cell_timeout, test_timeout=args.test_timeout, budget=args.budget,
                  quick=not args.full)
    chapters = sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    single = bool(args.chapter or args.autograder)
    students = class_roster.read(args.roster) if args.roster else None
    if not single and any(args.submissions.glob("*.ipynb")):
        parser.error("notebooks directly in the folder (<student>.ipynb) belong to one chapter: give CHAPTER=...")
    graded = 0
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        if args.autograder:
            ag = load_autograder(args.autograder, Path(tmp))
            targets = [(ag.name, lambda: ag)]
        else:
            names = [args.chapter] if args.chapter else chapters
            targets = [(c, lambda c=c: chapter_autograder(c, Path(tmp) / c)) for c in names]
        for name, get_autograder in targets:
            notes: dict[str, str] = {}
            submissions = find_submissions(args.submissions, name, chapters, single, notes)
            if not any(isinstance(p, tuple) or p.is_file() for p in submissions.values()):
                continue  # nobody handed this chapter in
            if students:
                book = args.out / name / "gradebook.csv"
                try:  # the roster students the gradebook already has a row for
                    rows = _read_gradebook(book)[0] if book.is_file() else {}
                except UNREADABLE:
                    rows = {}  # write_gradebook moves it aside and says so
                graded_before = {s.id for s in students if spreadsheet_safe(s.id) in rows}
                submissions, unmatched, renamed = class_roster.assign(submissions, students, graded_before)
                for key, why in unmatched.items():
                    print(f"[grade] warning: {name}: {key}: {why}", flush=True)
                notes = {**{renamed.get(key, key): note for key, note in notes.items()}, **unmatched}
            ag, out = get_autograder(), args.out / name
            grade_folder(submissions, ag, out, jobs=args.jobs, root=args.submissions, notes=notes, **limits)
            graded += len(submissions)
            print(f"[grade] {name}: {len(submissions)} notebooks -> {out / 'gradebook.csv'}, {out / 'feedback'}/")
            if students:
                print(f"[grade] {name}: Canvas and Moodle imports in {class_roster.export(out, name, students)}/")
    if not graded:
        print(f"No submissions found in {args.submissions} (layouts: python tools/grade.py --help)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
