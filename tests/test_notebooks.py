"""Every notebook runs top to bottom, headless, in quick mode (same code path, less data).

* course/*.ipynb        execute without error; each chapter's time is recorded in build/timings/quick_mode.json and
                        reported at the end of the run against the 30 s budget (timings are reported, not asserted:
                        they depend on the machine and on whatever else it runs)
* solutions/*.ipynb     the otter-generated autograder copy (solutions + public AND hidden tests) passes every check
* exercises/*.ipynb     the committed student copy is exactly what its source generates, runs without crashing,
                        and its checks fail with the hint written for the mistake (unanswered questions)
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minipeft.lab.runbook import execute

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import release  # noqa: E402

CHAPTERS = sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
TIMINGS = ROOT / "build" / "timings" / "quick_mode.json"  # {chapter: seconds}, read by conftest's summary

pytestmark = pytest.mark.notebook


def _check_outputs(nb):
    """{question: text printed by grader.check(question)} for every check cell of an executed notebook."""
    results = {}
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "code" and src.startswith("grader.check(") and "check_all" not in src:
            question = src.split('"')[1]
            results[question] = "\n".join(o.get("data", {}).get("text/plain", o.get("text", ""))
                                          for o in cell.outputs)
    return results


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_runs_in_quick_mode(path, tmp_path):
    nb, seconds = execute(path, quick=True, out=tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
    TIMINGS.write_text(json.dumps({**times, path.name: round(seconds, 1)}, indent=1))


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """otter assign every solution notebook into a temporary folder (never touching the repo), as `make release`
    does: student/ and autograder/ per chapter. Done once for the tests below (it takes a minute)."""
    out = tmp_path_factory.mktemp("release")
    release.assign_many(SOLUTIONS, out)
    return out


def test_student_notebooks_are_generated_from_solutions(released, tmp_path, monkeypatch):
    assigned = {s.stem: released / s.stem for s in SOLUTIONS}
    stale = release.stale(SOLUTIONS, assigned)
    assert not stale, f"out of date with their solutions/ source: {[p.name for p in stale]}; run `make release`"
    # the comparison can fail: a student notebook edited by hand, and one that is missing, are both stale
    edited = tmp_path / "exercises"
    edited.mkdir()
    for s in SOLUTIONS[1:]:
        (edited / s.name).write_text((release.EXERCISES / s.name).read_text(encoding="utf-8"), encoding="utf-8")
    (edited / SOLUTIONS[1].name).write_text((edited / SOLUTIONS[1].name).read_text(encoding="utf-8")
                                            .replace("grader.check(", "grader.check (", 1), encoding="utf-8")
    monkeypatch.setattr(release, "EXERCISES", edited)
    assert [p.name for p in release.stale(SOLUTIONS, assigned)] == [SOLUTIONS[0].name, SOLUTIONS[1].name]


def test_release_check_command_compares_a_chapter(tmp_path):
    """The command line `make release` and CI's check call (one chapter: the comparison itself is tested above)."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--check", SOLUTIONS[0].stem],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--check", "99_nothing"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "No solution source" in result.stdout


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_pass_every_check(source, released):
    autograder = released / source.stem / "autograder" / source.name
    nb, _ = execute(autograder, quick=True)
    checks = _check_outputs(nb)
    meta = json.loads(autograder.read_text())["metadata"]["otter"]["tests"]
    assert set(checks) == set(meta) and len(checks) >= 3
    hidden = sum(case["hidden"] for q in meta.values() for s in q["suites"] for case in s["cases"])
    assert hidden >= len(meta), "every question should have hidden tests for grading"
    for question, text in checks.items():
        assert "public checks pass ✓" in text and "hidden checks fail" not in text, f"{question}: {text}"


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.name)
def test_hidden_tests_carry_most_points_and_students_see_each_question_s_points(source, released):
    """A notebook that hard-codes what the public checks look for cannot pass a question: the hidden tests (other
    inputs) carry at least 60 % of every question's points; the student notebook states each question's points."""
    import re

    tests = json.loads((released / source.stem / "autograder" / source.name).read_text())["metadata"]["otter"]["tests"]
    student = json.loads((ROOT / "exercises" / source.name).read_text())
    prompts = {m.group(1): m.group(2) for c in student["cells"] if c["cell_type"] == "markdown"
               for m in [re.match(r"\*\*Q(\d+) — [^*]+\*\* \*\(([\d.]+) points?", "".join(c["source"]))] if m}
    for question, test in tests.items():
        cases = [case for suite in test["suites"] for case in suite["cases"]]
        points = test["points"]
        assert isinstance(points, list) and len(points) == len(cases), f"{question}: one value per test case"
        hidden = sum(p for p, case in zip(points, cases) if case["hidden"])
        assert hidden >= 0.6 * sum(points) - 1e-9, f"{question}: hidden tests carry {hidden} of {sum(points)}"
        assert float(prompts[question.lstrip("q")]) == pytest.approx(sum(points)), f"{question}: prompt vs config"


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.name)
def test_unanswered_student_notebook_runs_and_gives_hints(source):
    student = ROOT / "exercises" / source.name
    nb, _ = execute(student, quick=True)
    checks = _check_outputs(nb)
    assert len(checks) >= 3
    meta = nb.metadata["otter"]["tests"]
    for question, text in checks.items():
        assert "public checks pass ✓" not in text, f"{question} passes with no answer: the check cannot fail"
        hints = [c["failure_message"] for s in meta[question]["suites"] for c in s["cases"] if c.get("failure_message")]
        assert any(h in text for h in hints), f"{question}: no hint shown in\n{text}"
    source_text = source.read_text()
    assert "BEGIN SOLUTION" in source_text and "BEGIN SOLUTION" not in student.read_text()


def test_a_widget_cell_runs_headless_without_the_output_widget_mirror(tmp_path):
    """nbclient's mirror of an Output widget writes to the kernel's shell channel while the reply to the cell is being
    read from it (jupyter/nbclient#312): the runbook turns the mirror off, and what `interact` prints is kept."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from minipeft.lab.runbook import notebook_client

    nb = new_notebook(cells=[
        new_code_cell("import ipywidgets as widgets\nwidgets.interact(lambda x: print('twice:', 2 * x), x=21);"),
        new_code_cell("print('next cell ran')")])
    path = tmp_path / "widget.ipynb"
    nbformat.write(nb, path)
    done, _ = execute(path)
    text = "\n".join(o.get("text", "") for cell in done.cells for o in cell.outputs)
    assert "twice: 42" in text and "next cell ran" in text
    client = notebook_client(new_notebook())
    assert client.comm_open_handlers["jupyter.widget"]({"content": {}}) is None


def test_profile_notebook_reads_each_cell_s_time(tmp_path):
    """scripts/profile_notebook.py: the seconds of each cell, from nbclient's timestamps."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    sys.path.insert(0, str(ROOT / "scripts"))
    import profile_notebook

    path = tmp_path / "slow.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("import time\ntime.sleep(0.6)"), new_markdown_cell("text"),
                                       new_code_cell("x = 1")]), path)
    done, total = execute(path)
    (slow, i, first), (fast, j, _) = sorted(profile_notebook.cell_seconds(done), reverse=True)
    assert (i, j, first) == (0, 2, "import time") and 0.6 <= slow < total and fast < 0.5


def test_an_executed_copy_shows_each_progress_bar_finished_not_frozen_at_zero(tmp_path):
    """tqdm's notebook bar keeps, as its plain text, what it showed when displayed (0 %); the runbook writes the final
    state from the saved widget state into it, so nbconvert, GitHub or a JupyterLab without the widget show 100 %."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from minipeft.lab.runbook import finish_progress_bars

    path = tmp_path / "bars.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(103), desc='Loading weights'): pass\n"
        "bar = tqdm(total=8, desc='half')\nbar.update(4)\nbar.close()")]), path)
    done, _ = execute(path)
    texts = [o["data"]["text/plain"] for o in done.cells[0].outputs if "text/plain" in o.get("data", {})]
    assert len(texts) == 2, texts
    assert texts[0].startswith("Loading weights: 100%|██████████| 103/103"), texts[0]
    assert texts[1].startswith("half:  50%|█████     | 4/8"), texts[1]          # an unfinished bar stays unfinished
    assert finish_progress_bars(done) == 2 and finish_progress_bars(new_notebook()) == 0
