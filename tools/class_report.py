"""What a teacher reads after a grading batch: per-question class statistics and submissions that look copied.

    build/grades/<chapter>/summary.md     written by tools/grade.py after every batch (this module has no command)

Per question: the mean points, how many students got full / partial / no points, and the public hints students
failed most often (the hint names the mistake, so the most common one says what to go over in class). Then the
statuses, and the pairs of submissions whose own code is identical or nearly so.

Similarity compares what students wrote, not what they were given: each notebook's code cells become normalised
lines (comments, blank lines and all spaces dropped), and a line that many notebooks share (at least 3 and at least
30 % of the batch: the handed-out code, and the answer everybody finds) is removed. Two notebooks whose remaining
lines agree for at least 90 % (difflib's ratio over the line sequences) and hold at least MIN_LINES such lines are
flagged. So are two files that are byte for byte the same (the same SHA-256: two students who each ran and saved
their notebook never hand in the same bytes). Two notebooks that both score nothing are never flagged (the handed-out
notebook, untouched, handed in by several students; copying it gains nothing). A flag
is a reason to look, not proof: two students who took the same tutorial can agree too, and renamed variables escape
it.
"""

from __future__ import annotations

import collections
import difflib
import itertools
import json
import re
from pathlib import Path

SHARED = 0.30      # a line in at least this share of the notebooks (and in at least 3) is common, not evidence
THRESHOLD = 0.90   # difflib ratio of two notebooks' own lines above which they are flagged
MIN_LINES = 3      # fewer own lines than this (an unanswered notebook) is never flagged


def code_lines(path: Path) -> list[str]:
    """The notebook's code as normalised lines; [] for anything that is not a readable notebook."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
    except (OSError, ValueError, AttributeError):
        return []
    lines = []
    for cell in cells:
        source = cell.get("source", "")
        for line in ("".join(source) if isinstance(source, list) else str(source)).splitlines():
            line = re.sub(r"\s+", "", line.split("#", 1)[0] if "'" not in line and '"' not in line else line)
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def similar_pairs(code: dict[str, list[str]]) -> list[tuple[str, str, float]]:
    """[(student a, student b, ratio)] of submissions whose own lines agree at least THRESHOLD, most similar first."""
    counts = collections.Counter(line for lines in code.values() for line in set(lines))
    common = {line for line, n in counts.items() if n >= max(3, SHARED * len(code))}
    own = {s: [line for line in lines if line not in common] for s, lines in code.items()}
    pairs = []
    for a, b in itertools.combinations(sorted(s for s, lines in own.items() if len(lines) >= MIN_LINES), 2):
        matcher = difflib.SequenceMatcher(None, own[a], own[b], autojunk=False)
        if matcher.real_quick_ratio() >= THRESHOLD and matcher.quick_ratio() >= THRESHOLD:
            ratio = matcher.ratio()
            if ratio >= THRESHOLD:
                pairs.append((a, b, ratio))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def copies(code: dict[str, list[str]], digests: dict[str, str], totals: dict[str, float]) -> list[tuple[str, str, str]]:
    """[(student a, student b, why)]: the same file (digests: student -> SHA-256 of the file), then similar own code."""
    same = collections.defaultdict(list)
    for student, digest in digests.items():
        if digest:
            same[digest].append(student)
    found = [(a, b, "the same file (SHA-256)") for group in same.values() if any(totals.get(s, 0) > 0 for s in group)
             for a, b in itertools.combinations(sorted(group), 2)]
    flagged = {(a, b) for a, b, _ in found}
    found += [(a, b, f"{ratio:.0%} of their own code") for a, b, ratio in similar_pairs(code)
              if (a, b) not in flagged and (totals.get(a, 0) > 0 or totals.get(b, 0) > 0)]
    return found


def summary(name: str, grades: dict, points: dict[str, float], pairs: list[tuple[str, str, str]]) -> str:
    """The Markdown report of one batch. grades: {student: tools.grade.Grade}; points: question -> points possible."""
    n = len(grades)
    lines = [f"# {name}: class summary ({n} notebooks graded in this batch)", "",
             "| question | points | mean | full | partial | none | most failed public hint (students) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for question, possible in points.items():
        scores = [g.score(question) for g in grades.values()]
        hints = collections.Counter()
        for g in grades.values():
            cases = g.questions.get(question, {}).get("cases", [])
            for hint in {c.get("hint") for c in cases if not c.get("hidden") and not c.get("passed") and c.get("hint")}:
                hints[hint] += 1
        top = "; ".join(f"{_cell(h)} ({k})" for h, k in hints.most_common(2)) or "—"
        lines.append(f"| {question} | {possible:g} | {sum(scores) / max(n, 1):.2f} | "
                     f"{sum(s >= possible for s in scores)} | {sum(0 < s < possible for s in scores)} | "
                     f"{sum(s <= 0 for s in scores)} | {top} |")
    totals = sorted(sum(g.score(q) for q in points) for g in grades.values())
    if totals:
        lines += ["", f"Total out of {sum(points.values()):g}: mean {sum(totals) / n:.2f}, median "
                      f"{totals[n // 2] if n % 2 else (totals[n // 2 - 1] + totals[n // 2]) / 2:g}, "
                      f"lowest {totals[0]:g}, highest {totals[-1]:g}."]
    statuses = collections.Counter(g.status for g in grades.values())
    lines += ["", "Statuses: " + ", ".join(f"{s} {k}" for s, k in sorted(statuses.items())) + "."]
    lines += ["", "## Submissions that look copied", ""]
    if pairs:
        lines += [f"The same file, or own code (the lines that at least {SHARED:.0%} of the batch share left out) that "
                  f"agrees for at least {THRESHOLD:.0%}. A reason to look, not proof.", "",
                  "| student | student | what is the same |", "|---|---|---|"]
        lines += [f"| {_cell(a)} | {_cell(b)} | {why} |" for a, b, why in pairs]
    else:
        lines.append(f"None: no two files are the same and no two notebooks agree for {THRESHOLD:.0%} of their own code "
                     f"(lines shared by at least {SHARED:.0%} of the batch left out).")
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 160) -> str:
    """Text that cannot break a Markdown table row, cut at a word (with "…") past `limit` characters."""
    text = " ".join(str(text).replace("|", "\\|").split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
