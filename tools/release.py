"""Generate the student notebooks in exercises/ from their sources in solutions/ (otter assign).

    python tools/release.py            regenerate exercises/*.ipynb and build/release/<chapter>/ (autograder copies)
    python tools/release.py --check    exit 1 if a committed student notebook differs from what its source generates
    python tools/release.py 02_lora    only the named chapters (stem or file name), with or without --check
    python tools/release.py --answers 02_lora   the answer key: build/answers/02_lora.ipynb (solutions and public
                                                checks, no hidden test, no typical-mistake cell), to hand out after
                                                the deadline

The student version is never edited by hand: edit solutions/NN_*.ipynb, then run `make release`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradescope  # tools/gradescope.py

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, EXERCISES, BUILD = ROOT / "solutions", ROOT / "exercises", ROOT / "build" / "release"
ANSWERS = ROOT / "build" / "answers"


def is_mutant_cell(cell) -> bool:
    """A `# MUTANTS` raw cell: a question's typical wrong answers (tools/mutants.py)."""
    return cell["cell_type"] == "raw" and "".join(cell["source"]).lstrip().startswith("# MUTANTS")


def without_solution_markers(source: str | list) -> str:
    """An answer cell as a student who got it right has it (and as a projector or an answer key shows it): no
    `# BEGIN SOLUTION` / `# END SOLUTION` lines and no trailing `# SOLUTION` markers, which only tell otter what to
    blank out."""
    lines = ("".join(source) if isinstance(source, list) else source).splitlines()
    kept = [re.sub(r"\s*# SOLUTION\s*$", "", line) for line in lines
            if not line.strip().startswith(("# BEGIN SOLUTION", "# END SOLUTION"))]
    return "\n".join(kept) + "\n"


def without_mutants(source: Path) -> dict:
    """The solution notebook without its `# MUTANTS` cells: they are for the course's own tests, not for students or
    the autograder."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    nb["cells"] = [c for c in nb["cells"] if not is_mutant_cell(c)]
    return nb


def assign(source: Path, out: Path) -> Path:
    """Run otter assign on one solution notebook; returns the output folder (student/ and autograder/). The
    autograder zip is made complete for Gradescope (tools/gradescope.py: minipeft, its packages, the course's
    grader)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source.name
        copy.write_text(json.dumps(without_mutants(source), indent=1, ensure_ascii=False), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "otter", "assign", "--no-pdfs", str(copy), str(out.resolve())],
                       check=True, stdout=subprocess.DEVNULL, cwd=source.parent)
    for zip_path in (out / "autograder").glob("*.zip"):
        gradescope.complete(zip_path)
    return out


def assign_many(sources: list[Path], root: Path, workers: int | None = None) -> dict[str, Path]:
    """otter assign every source into root/<stem>/, several at a time: each is a separate Python process that spends
    most of its time importing otter, so two cores halve the wall time. Returns {stem: output folder}."""
    workers = workers or min(len(sources), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(workers) as pool:
        outs = list(pool.map(lambda s: assign(s, root / s.stem), sources))
    return {s.stem: out for s, out in zip(sources, outs)}


def stale(sources: list[Path], assigned: dict[str, Path]) -> list[Path]:
    """The committed student notebooks that differ from what their source generates (assigned: assign_many's)."""
    return [EXERCISES / s.name for s in sources
            if not (EXERCISES / s.name).is_file()
            or (EXERCISES / s.name).read_text(encoding="utf-8") != normalise(assigned[s.stem] / "student" / s.name)]


def normalise(path: Path) -> str:
    """The student notebook as stable text: no authoring metadata (jupytext), sorted keys, one trailing newline.

    Cell ids are numbered (cell-000, cell-001, ...) instead of otter's random ones: stable across releases, and
    present, as nbformat 4.5 requires (without them every read warns MissingIDFieldWarning).
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["metadata"].pop("jupytext", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, max(5, nb.get("nbformat_minor", 5))
    for i, cell in enumerate(nb["cells"]):
        cell.get("metadata", {}).pop("jupytext", None)
        cell["id"] = f"cell-{i:03d}"
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def release(check: bool = False, only: list[str] | None = None) -> int:
    sources = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {Path(name).stem for name in only}
        unknown = sorted(wanted - {s.stem for s in sources})
        if unknown:
            print(f"No solution source for {unknown} in solutions/; there are: {[s.stem for s in sources]}")
            return 2
        sources = [s for s in sources if s.stem in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        assigned = assign_many(sources, Path(tmp) if check else BUILD)
        if check:
            out_of_date = stale(sources, assigned)
            if out_of_date:
                print("Student notebooks out of date with their solutions/ source: "
                      + ", ".join(str(t.relative_to(ROOT)) for t in out_of_date)
                      + "\nRun `make release` and commit the result.")
                return 1
            return 0
        EXERCISES.mkdir(exist_ok=True)
        for source in sources:
            target = EXERCISES / source.name
            target.write_text(normalise(assigned[source.stem] / "student" / source.name), encoding="utf-8")
            print(f"[release] {source.relative_to(ROOT)} -> {target.relative_to(ROOT)} "
                  f"(autograder copy in {(assigned[source.stem] / 'autograder').relative_to(ROOT)})")
    return 0


def answers(only: list[str]) -> int:
    """The answer key of each named chapter: the student notebook with every answer cell replaced by its solution
    (tools/demo.py's ``solved``, what `make demo` shows), normalised like the student version. Its metadata holds the
    public tests only (the student notebook's), so its check cells run the checks a student's notebook runs."""
    from demo import solved  # tools/demo.py (which imports this module: hence here, not at the top)

    if not only:
        print("Name the chapters, e.g. python tools/release.py --answers 02_lora: an answer key is handed out one "
              "chapter at a time, after its deadline.")
        return 2
    sources = {s.stem: s for s in SOLUTIONS.glob("[0-9][0-9]_*.ipynb")}
    unknown = sorted({Path(name).stem for name in only} - set(sources))
    if unknown:
        print(f"No solution source for {unknown} in solutions/; there are: {sorted(sources)}")
        return 2
    ANSWERS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for stem in sorted({Path(name).stem for name in only}):
            out = assign(sources[stem], Path(tmp) / stem)
            key = out / "answers.ipynb"      # the autograder copy carries every test in its metadata: never hand it out
            key.write_text(json.dumps(solved(*(json.loads((out / part / f"{stem}.ipynb").read_text(encoding="utf-8"))
                                               for part in ("student", "autograder")))), encoding="utf-8")
            target = ANSWERS / f"{stem}.ipynb"
            target.write_text(normalise(key), encoding="utf-8")
            print(f"[answers] {target}: the solved notebook with its public checks (no hidden test)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--answers", action="store_true", help="write the answer keys of the named chapters")
    parser.add_argument("chapters", nargs="*", help="only these chapters, e.g. 02_lora (default: every one)")
    args = parser.parse_args()
    sys.exit(answers(args.chapters) if args.answers else release(args.check, args.chapters))
