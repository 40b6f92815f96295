"""The grading guard: time limits on test cases, and each checked question's results saved as it is checked.

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
case's failure ("TestTimeout: this test ran longer than 30 s and was stopped (an infinite loop?)") and otter scores
the case as failed. One loop must cost one time limit, not the whole budget, so three more rules:

* The timer covers the whole test case, and the case ends at its TestTimeout. doctest catches it like any error and
  goes on with the case's next `>>>` line, which usually calls the looping function again, with no timer left: the
  cell timeout then interrupts the whole check and the question is lost. So otter's run_doctest gets a doctest
  runner that sets FAIL_FAST when the timer fires (the rest of the case is not run; it fails anyway).
* Once a case of a question was stopped, the question's other cases get a tenth of the limit (at least 1 s): they
  most likely call the same loop, and six cases of 30 s would outlast the check cell's own time limit. A case that
  does not loop still finishes (and passes) in that time.
* otter's last cell, "check what was not checked" (Checker.check_if_not_already_checked), runs with no time limit
  but the notebook's whole budget. It skips a question otter recorded as checked; the guard makes it also skip one
  whose check was interrupted (the check cell ran out of time, KeyboardInterrupt): run again, that check would
  loop again, now until the budget. Such a question is saved as interrupted (0 points) before the interrupt goes on.
"""


def install(seconds, path):
    """Patch otter in this process: time limits on test cases; each check saves all results to `path`.

    `path` gets {question: {"score": float, "cases": [{"hidden", "passed", "hint", "output"}, ...]}} for every
    question checked so far; "hint" (the case's failure message) and "output" (what the doctest printed) are None
    for a hidden case. A case the time limit stopped also has "stopped": the limit, in seconds. A question whose
    check was interrupted (the cell ran out of time) is saved as {"score": 0.0, "cases": [], "interrupted": True}.
    """
    import doctest
    import json
    import os
    import signal
    import sys
    import types

    import otter.test_files.ok_test as ok
    from otter.execute import Checker

    class TestTimeout(BaseException):  # not an Exception, so a student's `except Exception:` cannot swallow it
        pass

    TestTimeout.__qualname__ = "TestTimeout"  # how the failure reads in the feedback (not install.<locals>...)

    # the check being run: its cases' time limits (None: not stopped) and the doctest runner of its current case
    current = {"stopped": [], "runner": None, "limit": seconds}
    after_stop = min(seconds, max(1.0, seconds / 10))  # the limit of a question's cases once one was stopped

    class Runner(doctest.DocTestRunner):  # otter's run_doctest makes one per test case: stop() needs it
        def run(self, *args, **kwargs):
            current["runner"] = self
            return super().run(*args, **kwargs)

    def stop(signum, frame):
        current["stopped"][-1] = current["limit"]
        if current["runner"] is not None:  # the case's next lines would call the loop again: end the case here
            current["runner"].optionflags |= doctest.FAIL_FAST
        raise TestTimeout(f"this test ran longer than {current['limit']:g} s and was stopped (an infinite loop?)")

    run_doctest, check, check_rest, saved = ok.run_doctest, Checker.check, Checker.check_if_not_already_checked, {}
    otter_doctest = types.ModuleType("doctest")  # otter's run_doctest sees the doctest module with our runner
    otter_doctest.__dict__.update(vars(doctest), DocTestRunner=Runner)

    def limited_run_doctest(name, code, env):
        current["limit"] = after_stop if any(current["stopped"]) else seconds
        current["stopped"].append(None)
        current["runner"] = None
        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, current["limit"])
        try:
            return run_doctest(name, code, env)
        except TestTimeout as err:  # the alarm hit doctest's own code, between two lines of the test
            return False, f"TestTimeout: {err}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # a test that finished in time leaves no alarm behind

    def case(result, stopped):
        hidden = result.test_case.hidden
        saved_case = {"hidden": hidden, "passed": result.passed,
                      "hint": None if hidden else result.test_case.failure_message,
                      "output": None if hidden else result.message}
        return {**saved_case, "stopped": stopped} if stopped else saved_case

    def save(name, result):
        saved[name] = result
        with open(path + ".part", "w", encoding="utf-8") as f:
            json.dump(saved, f)
        os.replace(path + ".part", path)  # atomic: a kernel killed mid-write leaves the previous results whole

    def saving_check(nb_or_test_path, nbmeta_config, test_name=None, global_env=None):  # as Checker.check
        current["stopped"] = []
        env = sys._getframe(1).f_globals if global_env is None else global_env  # as otter: the caller's globals
        try:
            test = check(nb_or_test_path, nbmeta_config, test_name, env)
        except KeyboardInterrupt:  # the cell's time ran out: the final check-all must not run this again
            save(test_name or os.path.splitext(os.path.basename(nb_or_test_path))[0],
                 {"score": 0.0, "cases": [], "interrupted": True})
            raise
        stopped = dict(enumerate(current["stopped"]))  # one entry per case run by run_doctest (OK-format tests)
        save(test.name, {"score": test.score,
                         "cases": [case(r, stopped.get(i)) for i, r in enumerate(test.test_case_results)]})
        return test

    def check_if_not_already_checked(test_path, global_env=None):
        """otter's final "check what was not checked" cell: a question already saved (checked, or interrupted) is
        not run again."""
        if os.path.splitext(os.path.basename(test_path))[0] in saved:
            return None
        return check_rest(test_path, sys._getframe(1).f_globals if global_env is None else global_env)

    ok.doctest, ok.run_doctest = otter_doctest, limited_run_doctest
    Checker.check, Checker.check_if_not_already_checked = saving_check, check_if_not_already_checked
