"""Open the course in JupyterLab (`make course`), and the course's index notebook, generated from the chapters.

    python tools/course.py                  start JupyterLab on the repository, open course/index.ipynb, print its URL
    python tools/course.py --quick          the same with MINIPEFT_QUICK=1 (every chapter in quick mode: a live demo)
    python tools/course.py --write-index    regenerate course/index.ipynb from the chapters' first cells
    python tools/course.py --check-index    exit 1 when the committed index is out of date (the tests check it too)

JupyterLab is served from the repository root, so a student reaches both course/ and exercises/ from the file browser,
on a loopback port with a token this script makes and prints (Jupyter's own start-up lines bury the URL). The index
(course/index.ipynb, markdown cells only) links every chapter and its exercises with the chapter's own title,
objectives and estimated time: it is generated from each chapter's first cell, never typed, so it cannot drift.
tests/test_browser.py starts JupyterLab with the same `lab_command` that `make course` uses.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "course" / "index.ipynb"


def chapters(folder: Path = ROOT / "course") -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def _field(text: str, name: str) -> str:
    """The paragraph that starts with **name.** in a chapter's first cell, up to the next **Field.** or blank line."""
    match = re.search(rf"^\*\*{name}\.\*\*(.*?)(?=^\*\*[A-Z][a-z]+\.\*\*|\n\s*\n|\Z)", text, re.M | re.S)
    if not match:
        raise ValueError(f"the first cell has no **{name}.** paragraph (every chapter's first cell has its "
                         "**Objectives.** and **Estimated time.**)")
    return match.group(1).strip()


def chapter_entry(path: Path) -> str:
    """One chapter's index cell: title linked to the chapter, its time, its objectives, a link to its exercises."""
    first = "".join(nbformat.read(path, as_version=4).cells[0].source)
    title = first.splitlines()[0].lstrip("# ").strip()
    try:
        objectives, time = _field(first, "Objectives"), _field(first, "Estimated time")
    except ValueError as error:
        raise ValueError(f"{path.name}: {error}") from None
    time = " ".join(time.split())
    exercises = ROOT / "exercises" / path.name
    link = f"\n\n**Exercises.** [exercises/{path.name}](../exercises/{path.name})" if exercises.is_file() else ""
    return f"## [{title}]({path.name})\n\n**Estimated time.** {time}\n\n**Objectives.** {objectives}{link}"


def index_notebook(paths: list[Path] | None = None):
    paths = chapters() if paths is None else paths
    intro = ("# PEFT from First Principles — the course\n\n"
             "Open a chapter below (each link opens the notebook), then run its cells from the top with Shift-Enter, "
             "or "
             "**Run → Run All Cells**. Every chapter has an exercise notebook in `exercises/` with instant checks: "
             "`grader.check(\"q1\")` under each question.\n\n"
             "*Generated from the chapters' first cells by `python tools/course.py --write-index`: edit the chapters, "
             "not this page.*")
    nb = new_notebook(cells=[new_markdown_cell(intro)] + [new_markdown_cell(chapter_entry(p)) for p in paths])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (minipeft)", "language": "python", "name": "python3"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"index-{i:02d}"  # fixed ids: the same chapters give the same file, byte for byte
    return nb


def index_text(paths: list[Path] | None = None) -> str:
    return nbformat.writes(index_notebook(paths)) + "\n"


def index_is_current(index: Path = INDEX, paths: list[Path] | None = None) -> bool:
    """The index's cells are what the chapters generate. Only the text counts: JupyterLab adds its kernel's
    language_info when a student opens the page (and may autosave it), which changes nothing a student reads."""
    if not index.is_file():
        return False
    cells = [(c.cell_type, c.source) for c in nbformat.read(index, as_version=4).cells]
    return cells == [(c.cell_type, c.source) for c in index_notebook(paths).cells]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(root: Path, port: int, token: str, open_path: str = "course/index.ipynb",
                browser: bool = True) -> list[str]:
    """The `jupyter lab` command line: served from `root` on 127.0.0.1:port with `token`, opening `open_path`."""
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--LabApp.default_url=/lab/tree/{open_path}"]
    if not browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses to start as root otherwise (e.g. in a container)
    return command


def wait_for_port(port: int, timeout: float) -> bool:
    """True once something accepts connections on 127.0.0.1:port (JupyterLab is up), False after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def url(port: int, token: str, open_path: str = "course/index.ipynb") -> str:
    return f"http://127.0.0.1:{port}/lab/tree/{open_path}?token={token}"


def serve(root: Path, open_path: str, env: dict | None = None, port: int = 0, browser: bool = True) -> int:
    """JupyterLab on `root` opening `open_path`; once it is up, its URL and how to stop it are printed (Jupyter's
    start-up lines bury its own URL). Returns when it stops (make course, make demo OPEN=1)."""
    port, token = port or free_port(), secrets.token_hex(16)
    lab = subprocess.Popen(lab_command(root, port, token, open_path, browser=browser), env=env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is JupyterLab's: it asks, a second one stops its kernels
    while lab.poll() is None and not wait_for_port(port, timeout=1.0):
        pass
    if lab.poll() is None:
        print(f"\n[course] The course is open at  {url(port, token, open_path)}\n"
              f"[course] To stop it: press Ctrl-C twice in this terminal.\n", flush=True)
    status = lab.wait()
    return 0 if status == -signal.SIGINT else status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--quick", action="store_true", help="MINIPEFT_QUICK=1: chapters run in quick mode")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    parser.add_argument("--write-index", action="store_true", help=f"regenerate {INDEX.relative_to(ROOT)}")
    parser.add_argument("--check-index", action="store_true", help="exit 1 when the index is out of date")
    args = parser.parse_args(argv)
    if args.write_index:
        INDEX.write_text(index_text(), encoding="utf-8")
        print(f"[course] wrote {INDEX.relative_to(ROOT)} ({len(chapters())} chapters)")
        return 0
    if args.check_index:
        if not index_is_current():
            print(f"[course] {INDEX.relative_to(ROOT)} is out of date: run `python tools/course.py --write-index`")
            return 1
        return 0
    env = dict(os.environ, MINIPEFT_QUICK="1") if args.quick else None
    return serve(ROOT, "course/index.ipynb", env, args.port, browser=not args.no_browser)


if __name__ == "__main__":
    sys.exit(main())
