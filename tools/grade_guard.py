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

Why the tests are held in memory (grade.py passes `tests`): a test file on disk is one the student's code can read
(the hidden tests, copied to a file and handed around) or rewrite (`.replace('>>> assert ', '>>> assert True or ')`:
otter reads the file again at every check). The guard runs before the student's first cell: it reads the released
tests from a folder outside the notebook's, checks each against the SHA-256 digest grade.py recorded from the
autograder zip, keeps them in this closure and deletes the folder. otter's test folder gets empty placeholders
(otter's Notebook.check wants a file there) and every check builds its test from memory.

Why test code is compiled by the guard: a value from the student can cheat a test without touching it: an object
whose `__eq__` always returns True passes `assert f(2) == 4`; one whose `__sub__` returns 0 passes
`assert abs(f(2) - 4) < 1e-6`; `isinstance = lambda *a: True` or `math.isnan = lambda x: False` in the notebook
passes what relies on them. So every name, attribute, item and call result a test case uses goes through a check
first: a value whose type takes its comparison or arithmetic (`__eq__`, `__sub__`, `__bool__`, ...) from code that
is not installed code (a class or a patch in the notebook), a builtin the notebook shadows, a module attribute the
notebook replaced with its own function, or a fake module: the case fails (Suspicious, a BaseException) and the
reason is recorded. Before and after each check the guard also compares otter's, doctest's and the builtins' own
functions with what they were at install: a patched checker is recorded the same way. The reasons go to
`<path>.guard` ({"suspicious": [...], "finished": bool}), which grade.py reads into the status `suspicious`.

What this cannot do: the student's code runs in the same process, so a student who reads this guard (its source is
in the kernel's input history) can find its closures and undo it, or write the results after the last save. The
checks close what a notebook can do without aiming at this guard; only a separate process closes the rest.
"""


def install(seconds, path, tests=None):
    """Patch otter in this process: time limits on test cases; each check saves all results to `path`.

    `path` gets {question: {"score": float, "cases": [{"hidden", "passed", "hint", "output"}, ...]}} for every
    question checked so far; "hint" (the case's failure message) and "output" (what the doctest printed) are None
    for a hidden case. A case the time limit stopped also has "stopped": the limit, in seconds. A question whose
    check was interrupted (the cell ran out of time) is saved as {"score": 0.0, "cases": [], "interrupted": True}.

    `tests` (from grade.py): {"from": the released tests' folder (read, then deleted), "to": otter's test_dir (empty
    placeholders), "digests": {question: SHA-256 of its test file}}. Without it, tests are read from disk as otter
    does (the unit tests of this guard).
    """
    import ast
    import builtins
    import doctest
    import hashlib
    import json
    import math
    import os
    import shutil
    import signal
    import sys
    import types

    import otter.test_files.abstract_test as abstract
    import otter.test_files.ok_test as ok
    from otter.execute import Checker

    # every builtin the closures below use, bound now: this code runs in the kernel's global namespace, where the
    # student's code may later shadow any builtin (`isinstance = lambda *a: True` must not blind the guard)
    (BaseException, FileNotFoundError, KeyboardInterrupt, SyntaxError, any, bool, callable, classmethod,
     compile, dict, enumerate, exec, getattr, isinstance, max, min, next, open, property, set, setattr, sorted,
     staticmethod, super, tuple, type, vars) = (builtins.__dict__[name] for name in (
        'BaseException', 'FileNotFoundError', 'KeyboardInterrupt', 'SyntaxError', 'any', 'bool', 'callable',
        'classmethod', 'compile', 'dict', 'enumerate', 'exec', 'getattr', 'isinstance', 'max', 'min', 'next',
        'open', 'property', 'set', 'setattr', 'sorted', 'staticmethod', 'super', 'tuple', 'type', 'vars'))

    class Suspicious(BaseException):  # fails the test case; a student's `except Exception:` cannot swallow it
        pass

    Suspicious.__qualname__ = "Suspicious"
    guard_state = {"suspicious": [], "finished": False}

    def write(target, data):
        with open(target + ".part", "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(target + ".part", target)  # atomic: a kernel killed mid-write leaves the previous file whole

    def suspect(reason):
        if reason not in guard_state["suspicious"]:
            guard_state["suspicious"].append(reason)
            write(path + ".guard", guard_state)

    specs = {}  # question -> its OK-format test, as JSON text (a fresh copy for every check)
    if tests is not None:
        for name in sorted(os.listdir(tests["from"])):
            question, data = name[:-3], open(os.path.join(tests["from"], name), "rb").read()
            if hashlib.sha256(data).hexdigest() != tests["digests"].get(question):
                suspect(f"tests/{name} differs from the released autograder")
            namespace = {}
            exec(data.decode("utf-8"), namespace)
            specs[question] = json.dumps(namespace["test"])
        shutil.rmtree(tests["from"])
        suspicious_missing = sorted(set(tests["digests"]) - set(specs))
        if suspicious_missing:
            suspect("tests missing before grading: " + ", ".join(suspicious_missing))
        os.makedirs(tests["to"], exist_ok=True)
        for question in specs:
            open(os.path.join(tests["to"], question + ".py"), "w").close()

    # installed code (the standard library, site-packages, minipeft): the folders of sys.path at install, but not
    # the notebook's own folder, where the student's code can write modules
    here = os.path.realpath(os.getcwd())
    roots = {os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path] if p}
    roots = tuple(r + os.sep for r in roots if os.path.isdir(r) and not (here + os.sep).startswith(r + os.sep))

    def installed(function):
        """A function from installed code: C, or Python whose module is a file under an installed folder."""
        if isinstance(function, (classmethod, staticmethod)):
            function = function.__func__
        if isinstance(function, property):
            function = function.fget
        if isinstance(function, types.MethodType):
            function = function.__func__
        if function is None or type(function) in c_code:
            return True
        module = getattr(function, "__globals__", {}).get("__file__")
        return isinstance(function, types.FunctionType) and bool(module) and (
            os.path.realpath(module) + os.sep).startswith(roots)

    c_code = {types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType,
              types.MethodWrapperType, types.GetSetDescriptorType, types.MemberDescriptorType,
              types.ClassMethodDescriptorType}

    dunders = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__contains__",
               "__hash__", "__float__", "__int__", "__index__", "__abs__", "__round__", "__neg__", "__add__",
               "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
               "__iter__", "__getattr__", "__getattribute__", "__instancecheck__", "__class__")

    def not_installed(kind):
        """The first of `dunders` that type `kind` takes from code that is not installed code, or None."""
        for name in dunders:
            owner = next((k for k in type.__getattribute__(kind, "__mro__") if name in k.__dict__), None)
            if owner is not None and not installed(owner.__dict__[name]):
                return f"{owner.__qualname__}.{name}"
        return None

    checking = {"question": None}

    def refuse(reason):
        reason = f"{checking['question']}: {reason}"
        suspect(reason)
        raise Suspicious(reason)

    def value(x, how, label):
        """What a test case uses: x, once checked (see the module docstring)."""
        kind = type(x)
        if how == "name" and label in vars(builtins) and x is not vars(builtins)[label] and callable(x):
            refuse(f"the notebook replaces the builtin `{label}`, which the tests use")
        if isinstance(x, types.ModuleType):
            if sys.modules.get(x.__name__) is not x:
                refuse(f"`{label}` is not the module {x.__name__} the tests expect")
            return x
        odd = not_installed(kind) if kind is not type else None
        if odd:
            refuse(f"a value of type {kind.__qualname__} whose {odd.rsplit('.', 1)[1]} is the notebook's own "
                   f"({odd}) reached a test: it could make any comparison pass")
        return x

    def attribute(owner, name):
        x = getattr(owner, name)
        if isinstance(owner, types.ModuleType) and not installed(x) and isinstance(x, types.FunctionType):
            refuse(f"{owner.__name__}.{name} was replaced by the notebook's own function")
        return value(x, "attr", name)

    helpers = {"value": f"_grade_value_{os.urandom(8).hex()}", "attribute": f"_grade_attr_{os.urandom(8).hex()}"}

    class Checked(ast.NodeTransformer):
        """A test case's code with every name, attribute, item and call result passed through `value`."""

        def wrap(self, node, how, label, helper="value", args=None):
            call = ast.Call(ast.Name(helpers[helper], ast.Load()),
                            args or [node, ast.Constant(how), ast.Constant(label)], [])
            return ast.copy_location(call, node)

        def visit_Name(self, node):
            return self.wrap(node, "name", node.id) if isinstance(node.ctx, ast.Load) else node

        def visit_Attribute(self, node):
            self.generic_visit(node)
            if not isinstance(node.ctx, ast.Load):
                return node
            return self.wrap(node, "attr", node.attr, "attribute", [node.value, ast.Constant(node.attr)])

        def visit_Subscript(self, node):
            self.generic_visit(node)
            return self.wrap(node, "item", "") if isinstance(node.ctx, ast.Load) else node

        def visit_Call(self, node):
            self.generic_visit(node)
            return self.wrap(node, "call", "")

    def checked_compile(source, filename, mode, flags=0, dont_inherit=False):
        try:
            tree = ast.fix_missing_locations(Checked().visit(ast.parse(source, filename, mode)))
        except SyntaxError:
            return compile(source, filename, mode, flags, dont_inherit)  # doctest reports it as doctest would
        return compile(tree, filename, mode, flags, dont_inherit)

    doctest_run = doctest.DocTestRunner._DocTestRunner__run
    checked_run = types.FunctionType(doctest_run.__code__, {**vars(doctest), "compile": checked_compile},
                                     doctest_run.__name__, doctest_run.__defaults__, doctest_run.__closure__)

    class TestTimeout(BaseException):  # not an Exception, so a student's `except Exception:` cannot swallow it
        pass

    TestTimeout.__qualname__ = "TestTimeout"  # how the failure reads in the feedback (not install.<locals>...)

    # the check being run: its cases' time limits (None: not stopped) and the doctest runner of its current case
    current = {"stopped": [], "runner": None, "limit": seconds}
    after_stop = min(seconds, max(1.0, seconds / 10))  # the limit of a question's cases once one was stopped

    class Runner(doctest.DocTestRunner):  # otter's run_doctest makes one per test case: stop() needs it
        _DocTestRunner__run = checked_run  # compiles each example with its values checked

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
        env.update({helpers["value"]: value, helpers["attribute"]: attribute})
        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, current["limit"])
        try:
            return run_doctest(name, code, env)
        except TestTimeout as err:  # the alarm hit doctest's own code, between two lines of the test
            return False, f"TestTimeout: {err}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # a test that finished in time leaves no alarm behind
            if env.pop(helpers["value"], None) is not value or env.pop(helpers["attribute"], None) is not attribute:
                suspect(f"{checking['question']}: the notebook's code replaced the grader's checks during a test")

    def case(result, stopped):
        hidden = result.test_case.hidden
        saved_case = {"hidden": hidden, "passed": result.passed,
                      "hint": None if hidden else result.test_case.failure_message,
                      "output": None if hidden else result.message}
        return {**saved_case, "stopped": stopped} if stopped else saved_case

    def save(name, result):
        if name is not None:
            saved[name] = result
        write(path, saved)

    def from_memory(test_path, nbmeta_config, test_name, env):
        """Checker.check, with the test built from the copy read at install (never from the file at test_path)."""
        question = os.path.splitext(os.path.basename(test_path))[0]
        if question not in specs:
            raise FileNotFoundError(f"Test {question} does not exist")
        test = OKTestFile.from_spec(json.loads(specs[question]), path=test_path)
        test.run(env)
        if Checker._track_results:
            Checker._test_files.append(test)
        return test

    def intact():
        """Record otter's, doctest's and the builtins' functions that are no longer what they were at install, and
        put them back: the check runs with the grader's own code."""
        changed = []
        for label, (owner, members) in snapshot.items():
            for name, member in members.items():
                if vars(owner).get(name) is not member:
                    changed.append(f"{label}.{name}")
                    setattr(owner, name, member)
        for name in (n for n in changed if n not in snapshot_seen):
            suspect(f"{name} was replaced (a patched grader or builtin), seen at the check of {checking['question']}")
            snapshot_seen.add(name)

    def saving_check(nb_or_test_path, nbmeta_config, test_name=None, global_env=None):  # as Checker.check
        current["stopped"] = []
        checking["question"] = test_name or os.path.splitext(os.path.basename(nb_or_test_path))[0]
        env = sys._getframe(1).f_globals if global_env is None else global_env  # as otter: the caller's globals
        intact()
        try:
            test = (check if tests is None else from_memory)(nb_or_test_path, nbmeta_config, test_name, env)
        except KeyboardInterrupt:  # the cell's time ran out: the final check-all must not run this again
            save(checking["question"], {"score": 0.0, "cases": [], "interrupted": True})
            raise
        intact()
        stopped = dict(enumerate(current["stopped"]))  # one entry per case run by run_doctest (OK-format tests)
        save(test.name, {"score": test.score,
                         "cases": [case(r, stopped.get(i)) for i, r in enumerate(test.test_case_results)]})
        return test

    def check_if_not_already_checked(test_path, global_env=None):
        """otter's final "check what was not checked" cell: a question already saved (checked, or interrupted) is
        not run again."""
        if guard_state["finished"] is False:
            guard_state["finished"] = True  # the student's cells are over: otter's last cell runs through the guard
            write(path + ".guard", guard_state)
        if os.path.splitext(os.path.basename(test_path))[0] in saved:
            save(None, None)  # the results again, after the student's last cell (which may have written them)
            return None
        return check_rest(test_path, sys._getframe(1).f_globals if global_env is None else global_env)

    ok.doctest, ok.run_doctest = otter_doctest, limited_run_doctest
    Checker.check, Checker.check_if_not_already_checked = saving_check, check_if_not_already_checked
    OKTestFile = ok.OKTestFile
    kernel_own = {"input", "getpass", "display", "get_ipython", "exit", "quit", "help", "copyright", "credits",
                  "license"}  # ipykernel swaps `input` at every cell; the others are the site's and IPython's
    owners = {"builtins": builtins, "math": math, "doctest": doctest, "doctest.DocTestRunner": doctest.DocTestRunner,
              "doctest.DocTestParser": doctest.DocTestParser, "doctest.DocTest": doctest.DocTest,
              "otter.test_files.ok_test": ok, "OKTestFile": OKTestFile, "TestFile": abstract.TestFile,
              "TestCase": abstract.TestCase, "TestCaseResult": abstract.TestCaseResult, "Checker": Checker,
              "os": os, "os.path": os.path, "signal": signal, "Runner": Runner}
    snapshot = {label: (owner, {name: member for name, member in vars(owner).items()
                                if (callable(member) or isinstance(member, (classmethod, staticmethod, property)))
                                and not (owner is builtins and (name.startswith("_") or name in kernel_own))})
                for label, owner in owners.items()}
    snapshot_seen = set()
