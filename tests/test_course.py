"""`make course` (tools/course.py): the index it opens links every chapter with the chapter's own objectives and time,
and the JupyterLab it starts listens on the loopback with a token and says how to reach and stop it. The browser test
(tests/test_browser.py) opens that index in Chromium."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import course  # noqa: E402


def test_the_index_is_in_step_with_the_chapters_and_links_each_with_its_objectives_time_and_exercises():
    assert course.index_is_current(), "course/index.ipynb is out of date: run `python tools/course.py --write-index`"
    cells = [c.source for c in nbformat.read(course.INDEX, as_version=4).cells]
    chapters = course.chapters()
    assert len(chapters) >= 9 and len(cells) == 1 + len(chapters)
    assert all(c.cell_type == "markdown" for c in nbformat.read(course.INDEX, as_version=4).cells)
    for path, cell in zip(chapters, cells[1:]):
        first = nbformat.read(path, as_version=4).cells[0].source
        objectives = first[first.index("**Objectives.**"):first.index("**Prerequisites.**")].strip()
        time = " ".join(first[first.index("**Estimated time.**"):].split("\n\n")[0].split("**Follows.**")[0].split())
        assert f"]({path.name})" in cell and f"](../exercises/{path.name})" in cell
        assert objectives in cell and time in cell, path.name


def test_the_index_check_fails_when_a_chapter_changes_and_a_chapter_without_its_time_is_named(tmp_path):
    copies = []
    for path in course.chapters():
        copies.append(tmp_path / path.name)
        copies[-1].write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert course.index_is_current(course.INDEX, copies)
    nb = nbformat.read(copies[2], as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("**Estimated time.** ", "**Estimated time.** 50 minutes; ", 1)
    nbformat.write(nb, copies[2])
    assert not course.index_is_current(course.INDEX, copies)
    nb.cells[0].source = nb.cells[0].source.replace("**Estimated time.**", "Time:", 1)
    nbformat.write(nb, copies[2])
    with pytest.raises(ValueError, match=f"{copies[2].name}: the first cell has no \\*\\*Estimated time"):
        course.index_notebook(copies)


def test_jupyterlab_listens_on_the_loopback_with_a_token_and_opens_the_index():
    command = course.lab_command(ROOT, 8765, "t0ken", browser=False)
    assert command[:4] == [sys.executable, "-m", "jupyter", "lab"] and "--no-browser" in command
    assert {"--ServerApp.ip=127.0.0.1", "--ServerApp.port=8765", "--IdentityProvider.token=t0ken",
            f"--ServerApp.root_dir={ROOT}", "--LabApp.default_url=/lab/tree/course/index.ipynb"} <= set(command)
    assert "--no-browser" not in course.lab_command(ROOT, 8765, "t0ken")


def test_make_course_prints_the_url_and_how_to_stop_it(monkeypatch, capsys):
    started = []

    class Lab:  # stands in for JupyterLab: up at once, stopped after one wait
        returncode = None

        def __init__(self, command, env=None):
            started.append((command, env))

        def poll(self):
            return self.returncode

        def wait(self):
            self.returncode = 0
            return 0

    monkeypatch.setattr(subprocess, "Popen", Lab)
    monkeypatch.setattr(course, "wait_for_port", lambda port, timeout: True)
    monkeypatch.setattr(course.signal, "signal", lambda *args: None)  # leave pytest's Ctrl-C alone
    assert course.main(["--port", "8765", "--quick"]) == 0
    out = capsys.readouterr().out
    (command, env), = started
    token = next(a for a in command if a.startswith("--IdentityProvider.token=")).split("=", 1)[1]
    assert len(token) == 32 and f"http://127.0.0.1:8765/lab/tree/course/index.ipynb?token={token}" in out
    assert "Ctrl-C" in out and env["MINIPEFT_QUICK"] == "1"
