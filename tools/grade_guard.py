"""The grading guard: a time limit on every test case, and each checked question's results saved as it is checked.

tools/grade.py does not import this module. It copies the source of `install` into a code cell that runs in the
student's Jupyter kernel, right after otter's grading-mode init cell and before the student's first cell, followed
by the call `install(<--test-timeout>, "<work>/results.json")` and `del install` (see `grade.guard_cell`).

Why in the kernel: otter's tests run there (`grader.check` calls `Checker.check`, which runs each test case's
doctest with `otter.test_files.ok_test.run_doctest` in the student's globals), so a test case that never returns (a
student function that loops) can only be stopped there; and the results must leave the kernel as soon as a question
is checked, so that a later crash, hang or budget stop keeps them. They leave as a JSON file, written atomically
(a `.part` file, then os.replace), with the output and hint of hidden test cases dropped before they are written:
nothing about a hidden test is ever outside the kernel.

Why every name lives inside `install`: the student's code runs in the same global namespace afterwards and may
rebind or delete any global name (`json = None`, `del os`, a function of its own called `stop`). The closures
below hold their own references to what they use, bound at install time; after `del install` the kernel's globals
hold nothing from the guard. For the same reason this module has nothing at module level but this docstring and
`install`, and grade.py copies `install` alone.

The time limit is a SIGALRM timer (so it works in the kernel's main thread, where otter runs the tests) that raises
TestTimeout, a BaseException: a student's `except Exception:` cannot swallow it. doctest reports it as the test
case's failure ("TestTimeout: this test ran longer than 30 s and was stopped (an infinite loop?)"), otter scores
the case as failed, and the next test case runs.
"""


def install(seconds, path):
    """Patch otter in this process: each test case stops after `seconds`; each check saves all results to `path`.

    `path` gets {question: {"score": float, "cases": [{"hidden", "passed", "hint", "output"}, ...]}} for every
    question checked so far; "hint" (the case's failure message) and "output" (what the doctest printed) are None
    for a hidden case.
    """
    import json
    import os
    import signal

    import otter.test_files.ok_test as ok
    from otter.execute import Checker

    class TestTimeout(BaseException):  # not an Exception, so a student's `except Exception:` cannot swallow it
        pass

    TestTimeout.__qualname__ = "TestTimeout"  # how the failure reads in the feedback (not install.<locals>...)

    def stop(signum, frame):
        raise TestTimeout(f"this test ran longer than {seconds:g} s and was stopped (an infinite loop?)")

    run_doctest, check, saved = ok.run_doctest, Checker.check, {}

    def limited_run_doctest(name, code, env):
        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return run_doctest(name, code, env)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # a test that finished in time leaves no alarm behind

    def saving_check(*args, **kwargs):
        test = check(*args, **kwargs)
        cases = [{"hidden": r.test_case.hidden, "passed": r.passed,
                  "hint": None if r.test_case.hidden else r.test_case.failure_message,
                  "output": None if r.test_case.hidden else r.message}
                 for r in test.test_case_results]
        saved[test.name] = {"score": test.score, "cases": cases}
        with open(path + ".part", "w", encoding="utf-8") as f:
            json.dump(saved, f)
        os.replace(path + ".part", path)  # atomic: a kernel killed mid-write leaves the previous results whole
        return test

    ok.run_doctest, Checker.check = limited_run_doctest, saving_check
