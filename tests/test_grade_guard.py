"""tools/grade_guard.py, the code tools/grade.py runs in a student's kernel, tested here without a kernel.

The guard patches otter in the current process, so these tests run otter's real test runner (Checker.check on tiny
OK-format test files, whose test cases otter runs with ok_test.run_doctest) in pytest's main thread, with a time
limit of a fraction of a second; the `guard` fixture puts otter and SIGALRM back as they were after each test.
"""

import json
import signal
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:Traits should be given as instances:DeprecationWarning")  # otter's

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import grade  # noqa: E402
import grade_guard  # noqa: E402

LIMIT = 0.3  # seconds per test case
STOPPED = f"TestTimeout: this test ran longer than {LIMIT:g} s and was stopped (an infinite loop?)"

# A student function that loops, swallowing every Exception. The loop ends by itself after 5 s, so that a guard
# that does not stop it (or whose timeout an `except Exception:` can catch) fails these tests instead of hanging.
LOOPING = """\
import time

def square(x):
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            time.sleep(0.01)
        except Exception as err:
            swallowed.append(err)
    return x * x
"""


@pytest.fixture
def guard(monkeypatch):
    """Undo the guard after the test: otter's run_doctest, doctest, Checker methods, the SIGALRM handler and timer."""
    import otter.test_files.ok_test as ok
    from otter.execute import Checker

    monkeypatch.setattr(ok, "run_doctest", ok.run_doctest)  # restored at teardown
    monkeypatch.setattr(ok, "doctest", ok.doctest)
    monkeypatch.setattr(Checker, "check", Checker.__dict__["check"])  # the classmethod itself
    monkeypatch.setattr(Checker, "check_if_not_already_checked", Checker.__dict__["check_if_not_already_checked"])
    handler = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)


def ok_test(folder: Path, name: str, *cases: dict) -> str:
    """An OK-format test file, as `otter assign` writes them into tests/; cases: code, hidden, points, hint."""
    spec = {"name": name, "points": None, "suites": [{"type": "doctest", "scored": True, "setup": "", "teardown": "",
                                                      "cases": [{"code": c["code"], "hidden": c.get("hidden", False),
                                                                 "points": c.get("points", 1),
                                                                 "failure_message": c.get("hint")} for c in cases]}]}
    path = folder / f"{name}.py"
    path.write_text(f"OK_FORMAT = True\n\ntest = {spec!r}\n", encoding="utf-8")
    return str(path)


def check(test_path: str, env: dict):
    """What `grader.check("q1")` does in grading mode: Checker.check on the test file, in the notebook's globals."""
    from otter.execute import Checker
    from otter.nbmeta_config import NBMetadataConfig

    return Checker.check(test_path, NBMetadataConfig(), global_env=env)


def student(source: str, env: dict | None = None) -> dict:
    env = {"swallowed": []} if env is None else env
    exec(source, env)
    return env


def test_a_looping_test_case_is_stopped_after_the_limit_and_the_next_case_runs(guard, tmp_path):
    grade_guard.install(LIMIT, str(tmp_path / "results.json"))
    env = student(LOOPING)
    path = ok_test(tmp_path, "q1", {"code": ">>> square(3)\n9", "points": 2}, {"code": ">>> 1 + 1\n2", "points": 1})
    start = time.monotonic()
    result = check(path, env)
    elapsed = time.monotonic() - start
    assert LIMIT * 0.9 <= elapsed < LIMIT + 3, elapsed  # stopped by the guard, not by the loop's own 5 s
    looped, after = result.test_case_results
    assert not looped.passed and after.passed and result.score == 1
    assert STOPPED in looped.message, looped.message  # what the feedback shows
    assert env["swallowed"] == []  # the student's `except Exception:` never saw it

    caught = []

    def catches_everything():  # what the alarm raises, caught as a student's `except Exception:` cannot
        try:
            time.sleep(LIMIT * 10)
        except BaseException as err:  # noqa: BLE001 - the point of the probe
            caught.append(err)

    check(ok_test(tmp_path, "q2", {"code": ">>> catches_everything()"}), {"catches_everything": catches_everything})
    assert [type(err).__name__ for err in caught] == ["TestTimeout"]
    assert not isinstance(caught[0], Exception) and str(caught[0]) in STOPPED


def test_b_each_checked_question_is_saved_atomically_without_hidden_output(guard, tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    results = tmp_path / "out" / "results.json"
    grade_guard.install(LIMIT, str(results))
    env = student("def square(x):\n    return x + x\n")  # right for 2, wrong for 3 and -2.5
    q1 = ok_test(tmp_path, "q1",
                 {"code": ">>> square(2)\n4", "hint": "square(2) should be 4"},
                 {"code": ">>> square(3)\n9", "hint": "square(3) should be 9", "points": 2},
                 {"code": ">>> assert square(-2.5) == 6.25", "hidden": True, "hint": "SECRET HINT"})
    check(q1, env)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.json"]  # no results.json.part left
    saved = json.loads(results.read_text(encoding="utf-8"))
    assert list(saved) == ["q1"] and saved["q1"]["score"] == 1
    public_pass, public_fail, hidden = saved["q1"]["cases"]
    assert public_pass == {"hidden": False, "passed": True, "hint": "square(2) should be 4",
                           "output": "✅ Test case passed"}
    assert public_fail["hidden"] is False and public_fail["passed"] is False
    assert public_fail["hint"] == "square(3) should be 9"
    assert public_fail["output"].startswith("❌ Test case failed\n") and "Got:\n    6" in public_fail["output"]
    assert hidden == {"hidden": True, "passed": False, "hint": None, "output": None}
    text = results.read_text(encoding="utf-8")
    assert "SECRET HINT" not in text and "-2.5" not in text and "AssertionError" not in text

    # the next question adds to the file; a write that dies half-way (a killed kernel) leaves the previous one whole
    q2 = ok_test(tmp_path, "q2", {"code": ">>> square(0)\n0", "hidden": True})
    check(q2, env)
    assert json.loads(results.read_text(encoding="utf-8"))["q2"] == {
        "score": 1, "cases": [{"hidden": True, "passed": True, "hint": None, "output": None}]}

    def dies_half_way(obj, f):
        f.write(json.dumps(obj)[:20])
        raise KeyboardInterrupt("the kernel is killed")

    q3 = ok_test(tmp_path, "q3", {"code": ">>> square(1)\n1"})
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(json, "dump", dies_half_way)
        check(q3, env)
    assert list(json.loads(results.read_text(encoding="utf-8"))) == ["q1", "q2"]


def test_c_the_timer_is_cleared_after_every_test_case(guard, tmp_path):
    grade_guard.install(LIMIT, str(tmp_path / "results.json"))
    env = student(LOOPING)
    check(ok_test(tmp_path, "q1", {"code": ">>> 2 * 3\n6"}), env)  # a normal run, well within the limit
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    time.sleep(LIMIT * 1.5)  # a stray alarm would raise TestTimeout here, in the grader's own code
    check(ok_test(tmp_path, "q2", {"code": ">>> square(3)\n9"}), env)  # a stopped run
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    time.sleep(LIMIT * 1.5)
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["q2"]["cases"][0]["passed"] is False


def test_the_cell_grade_py_injects_keeps_no_name_and_survives_clobbered_globals(guard, tmp_path):
    results = str(tmp_path / "results.json")
    cell = grade.guard_cell(LIMIT, results)
    assert cell.count("def install(") == 1 and cell.endswith(f"\ninstall({LIMIT!r}, {results!r})\ndel install\n")
    kernel = {"__name__": "__main__"}  # the kernel's globals, as after otter's init cell
    exec(compile(cell, "<guard cell>", "exec"), kernel)
    assert set(kernel) == {"__name__", "__builtins__"}
    # the student's cells run in the same globals: they may rebind any name the guard's code uses
    student("json = os = signal = ok = Checker = TestTimeout = stop = saved = None\nswallowed = []\n" + LOOPING,
            kernel)
    result = check(ok_test(tmp_path, "q1", {"code": ">>> square(3)\n9"}), kernel)
    output = [line.strip() for line in result.test_case_results[0].message.splitlines() if line.strip()]
    assert output[-1] == STOPPED  # the feedback's line, exactly as in the kernel (__main__, no module prefix)
    assert json.loads(Path(results).read_text(encoding="utf-8"))["q1"]["score"] == 0


def test_d_a_stopped_test_case_runs_no_more_lines_and_its_question_s_next_cases_get_a_short_limit(guard, tmp_path):
    grade_guard.install(1.5, str(tmp_path / "results.json"))  # a tenth of it is under 1 s: the short limit is 1 s
    env = student(LOOPING)
    q1 = ok_test(tmp_path, "q1",
                 {"code": ">>> square(3)\n9\n>>> square(4)\n16\n>>> square(5)\n25", "points": 2},  # each line loops
                 {"code": ">>> square(6)\n36", "hidden": True},
                 {"code": ">>> 1 + 1\n2"})  # a case that does not loop still passes
    start = time.monotonic()
    result = check(q1, env)
    elapsed = time.monotonic() - start
    # before: square(4) and square(5) ran with no time limit (5 s each, this loop's own end), then square(6) 1.5 s
    assert 2.5 * 0.9 <= elapsed < 2.5 + 2, elapsed
    first, hidden, plain = result.test_case_results
    assert not first.passed and not hidden.passed and plain.passed and result.score == 1
    assert "square(3)" in first.message and "square(4)" not in first.message  # the case ended at the stop
    assert first.message.count("Failed example:") == 1 and "ran longer than 1.5 s" in first.message
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["q1"]["cases"]
    assert [case.get("stopped") for case in saved] == [1.5, 1.0, None]  # the limit that stopped it, hidden too
    assert saved[1] == {"hidden": True, "passed": False, "hint": None, "output": None, "stopped": 1.0}

    start = time.monotonic()  # the next question starts again with the whole limit
    check(ok_test(tmp_path, "q2", {"code": ">>> square(7)\n49"}), env)
    assert 1.5 * 0.9 <= time.monotonic() - start < 1.5 + 2
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["q2"]["cases"][0]["stopped"] == 1.5


def test_e_otter_s_final_check_skips_a_question_checked_or_interrupted_and_runs_the_others(guard, tmp_path):
    from otter.execute import Checker

    results = tmp_path / "results.json"
    grade_guard.install(LIMIT, str(results))
    runs = []

    def interrupted():  # as the cell timeout interrupts a check cell: SIGINT, KeyboardInterrupt (doctest re-raises it)
        runs.append("q1")
        raise KeyboardInterrupt

    env = {"interrupted": interrupted, "runs": runs}
    q1 = ok_test(tmp_path, "q1", {"code": ">>> interrupted()"})
    q2 = ok_test(tmp_path, "q2", {"code": ">>> runs.append('q2')"})
    q3 = ok_test(tmp_path, "q3", {"code": ">>> runs.append('q3')"})
    with pytest.raises(KeyboardInterrupt):
        check(q1, env)
    assert json.loads(results.read_text(encoding="utf-8")) == {
        "q1": {"score": 0.0, "cases": [], "interrupted": True}}  # before: nothing saved, q1 run again at the end
    check(q2, env)
    for path in (q1, q2, q3):  # otter's last cell: Checker.check_if_not_already_checked for every test file
        Checker.check_if_not_already_checked(path, env)
    assert runs == ["q1", "q2", "q3"]  # q1 (interrupted) and q2 (checked) were not run again
    assert list(json.loads(results.read_text(encoding="utf-8"))) == ["q1", "q2", "q3"]


def test_f_tests_are_read_once_checked_against_their_digests_and_deleted_before_the_student_s_code(guard, tmp_path):
    import hashlib

    released, otter_dir = tmp_path / "released", tmp_path / "work" / "tests"
    released.mkdir()
    q1 = Path(ok_test(released, "q1", {"code": ">>> assert square(3) == 9"},
                      {"code": ">>> assert square(-2.5) == 6.25", "hidden": True}))
    ok_test(released, "q2", {"code": ">>> assert square(0) == 0"})                 # on disk, digest below differs
    digests = {"q1": hashlib.sha256(q1.read_bytes()).hexdigest(), "q2": "0" * 64}  # q2 is not the released one
    results = tmp_path / "results.json"
    grade_guard.install(LIMIT, str(results), {"from": str(released), "to": str(otter_dir), "digests": digests})
    # before: the tests sat in the notebook's folder, readable and writable by the student's code, read at each check
    assert not released.exists()
    assert sorted(p.name for p in otter_dir.iterdir()) == ["q1.py", "q2.py"]
    assert all(p.read_text() == "" for p in otter_dir.iterdir())  # placeholders: otter's Notebook.check wants a file
    ok_test(otter_dir, "q1", {"code": ">>> assert True"})  # the student's code writes a test that passes
    result = check(str(otter_dir / "q1.py"), student("def square(x):\n    return x + x\n"))
    assert [r.passed for r in result.test_case_results] == [False, False]  # the released tests, from memory
    guard_file = json.loads((tmp_path / "results.json.guard").read_text(encoding="utf-8"))
    assert guard_file["suspicious"] == ["tests/q2.py differs from the released autograder"]


def test_g_a_value_built_to_pass_any_comparison_fails_and_is_reported(guard, tmp_path):
    results = tmp_path / "results.json"
    grade_guard.install(LIMIT, str(results))
    env = student("class Always:\n    def __eq__(self, other):\n        return True\n\n"
                  "def square(x):\n    return Always()\n\nisinstance = lambda *args: True\n")
    path = ok_test(tmp_path, "q1", {"code": ">>> assert square(3) == 9"},
                   {"code": ">>> assert isinstance(square, int)"}, {"code": ">>> assert 2 * 3 == 6"})
    result = check(path, env)
    # before: the first two passed
    assert [r.passed for r in result.test_case_results] == [False, False, True]
    assert "Suspicious: q1: a value of type Always whose __eq__ is the notebook's own" in (
        result.test_case_results[0].message)
    reasons = json.loads((tmp_path / "results.json.guard").read_text(encoding="utf-8"))["suspicious"]
    assert reasons == ["q1: a value of type Always whose __eq__ is the notebook's own (Always.__eq__) reached a "
                       "test: it could make any comparison pass",
                       "q1: the notebook replaces the builtin `isinstance`, which the tests use"]
