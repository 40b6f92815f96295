"""Run a chapter for a live walk-through, in quick mode, and keep the executed copies.

    make demo CHAPTER=00_adaptation [DEMO=both|course|solutions] [OPEN=1]
    python tools/demo.py 00_adaptation [--what both] [--out build/demo] [--open]

* course:    course/<chapter>.ipynb, executed         -> build/demo/course/<chapter>.ipynb
* solutions: the exercises with their answers filled in, executed, every `grader.check` passing
                                                        -> build/demo/exercises/<chapter>.ipynb
  This is the student notebook (public tests only) with the answer cells of otter's autograder copy: safe to show
  on a projector, since the hidden tests never enter it.
--open starts JupyterLab on build/demo once the notebooks are written, in quick mode (a cell re-run live takes
seconds); the solved answer cells show no otter markers (# BEGIN SOLUTION ...).
--slides also writes the executed chapter as a reveal.js slide show, build/demo/slides/<chapter>.slides.html
(`make slides CHAPTER=...`): every `#` / `##` heading starts a slide, `###` a sub-slide (below it), the parameters
cell is left out; the figures are inside the file. reveal.js (and require.js) are loaded from their CDNs when the
file is opened, so the browser needs the internet; --reveal-prefix points at a local copy of reveal.js 4 instead.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release import assign, without_solution_markers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ANSWER_TAG = "otter_answer_cell"  # otter assign tags the student's answer cells with it


def solved(student: dict, autograder: dict) -> dict:
    """The student notebook with each answer cell replaced by the matching solution cell of the autograder copy.

    otter assign writes both notebooks cell for cell from the same source; only the student one is kept whole,
    so its metadata (the public tests `grader.check` runs) is what the demo uses.
    """
    if len(student["cells"]) != len(autograder["cells"]):
        raise ValueError("the student and autograder notebooks do not line up cell for cell: re-run otter assign")
    nb = copy.deepcopy(student)
    nb["cells"] = [dict(copy.deepcopy(a), source=without_solution_markers(a["source"]))
                   if ANSWER_TAG in s.get("metadata", {}).get("tags", []) else s
                   for s, a in zip(nb["cells"], autograder["cells"])]
    return nb


def demo(chapter: str, out: Path, what: str = "both") -> list[Path]:
    """Execute the chapter and/or its solved exercises in quick mode; returns the executed notebooks' paths."""
    from minipeft.lab.runbook import execute

    written = []
    if what in ("both", "course"):
        execute(ROOT / "course" / f"{chapter}.ipynb", quick=True, out=out / "course")
        written.append(out / "course" / f"{chapter}.ipynb")
    source = ROOT / "solutions" / f"{chapter}.ipynb"
    if what == "solutions" and not source.is_file():
        raise SystemExit(f"{chapter} has no exercises ({source.relative_to(ROOT)} does not exist)")
    if what in ("both", "solutions") and source.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            release = assign(source, Path(tmp) / chapter)
            nb = solved(*(json.loads((release / part / f"{chapter}.ipynb").read_text(encoding="utf-8"))
                          for part in ("student", "autograder")))
        target = out / "exercises" / f"{chapter}.ipynb"  # otter.Notebook("<chapter>.ipynb") reads its tests here
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
        execute(target, quick=True, out=target.parent)
        written.append(target)
    return written


SLIDE_TYPES = (("### ", "subslide"), ("## ", "slide"), ("# ", "slide"))  # a heading's level -> where it starts


def slide_types(nb: dict) -> dict:
    """A copy of the notebook with RISE / nbconvert slide metadata: headings start (sub-)slides, the rest follows."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        first = "".join(cell["source"]).lstrip().split("\n", 1)[0] if cell["cell_type"] == "markdown" else ""
        kind = next((kind for prefix, kind in SLIDE_TYPES if first.startswith(prefix)), "-")
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            kind = "skip"                                   # QUICK = ...: for the test runner, not for a lecture
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
    return nb


def slides(executed: Path, out: Path, reveal_prefix: str | None = None) -> Path:
    """The executed notebook as a reveal.js slide show (HTML, figures inside): out/<chapter>.slides.html."""
    import nbformat
    from nbconvert import SlidesExporter

    # a long output scrolls instead of leaving the slide; 1400 px wide: the chapters' 120-character code lines fit
    exporter = SlidesExporter(reveal_scroll=True, reveal_width="1400", reveal_number="c/t")
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    nb = nbformat.from_dict(slide_types(nbformat.read(executed, as_version=4)))  # sources as strings
    body, _ = exporter.from_notebook_node(nb)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{executed.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", help="e.g. 00_adaptation")
    parser.add_argument("--what", choices=["both", "course", "solutions"], default="both")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--open", action="store_true", help="start JupyterLab on the executed copies")
    parser.add_argument("--slides", action="store_true", help="also write the chapter as slides (HTML)")
    parser.add_argument("--reveal-prefix", help="where reveal.js is (default: its CDN)")
    args = parser.parse_args(argv)
    if not (ROOT / "course" / f"{args.chapter}.ipynb").is_file():
        chapters = ", ".join(sorted(p.stem for p in (ROOT / "course").glob("[0-9][0-9]_*.ipynb")))
        parser.error(f"no chapter {args.chapter!r} (chapters: {chapters})")
    written = demo(args.chapter, args.out, "both" if args.slides and args.what == "solutions" else args.what)
    for path in written:
        print(f"[demo] {path}")
    if args.slides:
        print(f"[demo] {slides(written[0], args.out / 'slides', args.reveal_prefix)}: open it in a browser "
              "(arrow keys; Esc shows every slide)")
    if args.open:
        # quick mode in JupyterLab too: a cell re-run live takes seconds, as the executed copies did
        from course import serve  # tools/course.py: what make course runs (URL printed, Ctrl-C twice stops it)

        first = written[0].relative_to(args.out).as_posix()
        return serve(args.out, first, env=dict(os.environ, MINIPEFT_QUICK="1"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
