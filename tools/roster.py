"""A class roster for tools/grade.py: who the students are, whatever the LMS named their folders, and the files the
LMS takes back.

    make grade SUBMISSIONS=folder CHAPTER=01_adapters ROSTER=students.csv

students.csv has a header row with at least `id`, `name` and `email` (other columns are ignored): `id` is what the
gradebook keys a student by (a student number, a login); `name` as the LMS spells it. A submission is the student's
whose

1. `id` or `email` (or the part of the email before @) is the file or folder name, or
2. `name` starts the name of an LMS download folder or file: Moodle's "download all submissions" names them
   `Kim Nguyen_4412345_assignsubmission_file_` (full name, Moodle's participant number, the plugin). Canvas names
   files `nguyenkim_12345_67890_lab1.ipynb` (login, user id, file id, the student's file name): rule 1 then looks
   for the login or the user id. Names compare without case, accents or extra spaces.

A name that fits two roster rows, or none, is not guessed: the submission keeps its folder name and the gradebook's
reason says "not on the roster" (or which rows it fits). Every roster student gets a row, status `missing` when
nothing of theirs was found.

Exports (build/grades/<chapter>/lms/), from the whole merged gradebook:

* canvas.csv   Canvas's gradebook import: Student, ID, SIS User ID (the roster id), SIS Login ID (the email), Section,
               and one column named after the chapter; a "Points Possible" row first. Canvas matches students on
               SIS User ID, so put Canvas's SIS ids in the roster's `id` column.
* moodle.csv   for Moodle's Grades > Import > CSV file: Email address, ID number, Full name, the chapter's points and
               Feedback (status and reason); map "Email address" to the user's email when importing.
* moodle-feedback.zip   each student's feedback file named as Moodle's own download names it
               (`Kim Nguyen_4412345_assignsubmission_file_01_adapters-feedback.md`), for the assignment's "Upload
               multiple feedback files in a zip"; only students whose submission came from a Moodle-named folder or
               file (the participant number is in that name, kept in the gradebook's `file` column, and nowhere
               else). Written from Moodle's documented naming; not tried against a live Moodle here.
"""

from __future__ import annotations

import csv
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

MOODLE = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_assign(?:submission|feedback)_[a-z]+_?")
CANVAS = re.compile(r"^(?P<login>[^_\s]+?)(?:_LATE|_late)?_(?P<user>\d+)_(?P<file>\d+)_")
NOTHING = "(nothing handed in)"   # the folder of the path a roster student without a submission is graded from


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    email: str


def _plain(text: str) -> str:
    """Lower case, no accents, single spaces: 'Nguyễn  Kim' -> 'nguyen kim'."""
    text = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).lower().split())


def read(path: Path) -> list[Student]:
    """The roster's rows; a clear SystemExit for a file a teacher must fix (missing columns, duplicate ids)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel's CSV starts with a BOM
            reader = csv.DictReader(f)
            fields = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
            missing = [c for c in ("id", "name", "email") if c not in fields]
            if missing:
                raise SystemExit(f"The roster {path} needs a header row with id, name and email; it lacks "
                                 f"{', '.join(missing)} (it has: {', '.join(reader.fieldnames or []) or 'nothing'})")
            students = [Student(*((row.get(fields[c]) or "").strip() for c in ("id", "name", "email")))
                        for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SystemExit(f"Cannot read the roster {path}: {err}") from None
    ids = [s.id for s in students]
    blank = [i + 2 for i, s in enumerate(students) if not s.id]
    twice = sorted({i for i in ids if i and ids.count(i) > 1})
    if blank or twice:
        raise SystemExit(f"The roster {path}: every student needs an id of their own"
                         + (f"; no id on line(s) {blank}" if blank else "")
                         + (f"; the same id twice: {twice}" if twice else ""))
    return students


def match(key: str, roster: list[Student]) -> tuple[Student | None, str]:
    """The roster student a submission's file or folder name belongs to, or (None, why not)."""
    canvas = CANVAS.match(key)
    names = {key, canvas["login"], canvas["user"]} if canvas else {key}
    exact = [s for s in roster if names & {s.id, s.email, s.email.split("@")[0] if s.email else s.id}]
    if len(exact) == 1:
        return exact[0], ""
    moodle = MOODLE.match(key)
    name = _plain(moodle["name"] if moodle else key)
    by_name = [s for s in roster if s.name and _plain(s.name) == name]
    if len(by_name) == 1:
        return by_name[0], ""
    fits = exact or by_name
    if fits:
        return None, f"fits {len(fits)} roster rows ({', '.join(s.id for s in fits)}): rename the folder to one id"
    return None, "not on the roster"


def assign(submissions: dict, roster: list[Student], graded: set[str] = frozenset()) -> tuple[dict, dict, dict]:
    """Re-key {folder or file name: path} by roster id. Returns (submissions, reasons, renamed): reasons for the
    submissions left under their own name; renamed: {folder or file name: roster id}. A roster student with nothing
    found gets a path that does not exist (graded as `missing`) — unless the gradebook already has a row for them
    (`graded`: those roster ids): re-grading one late student must not turn everybody else into `missing`."""
    keyed, reasons, renamed = {}, {}, {}
    for key, path in submissions.items():
        student, why = match(key, roster)
        if student is None:
            keyed[key], reasons[key] = path, why
        elif student.id in keyed:  # two folders of one student: both kept, graded as a collision
            first = keyed[student.id]
            keyed[student.id] = (*(first if isinstance(first, tuple) else (first,)),
                                 *(path if isinstance(path, tuple) else (path,)))
        else:
            keyed[student.id] = path
        if student is not None:
            renamed[key] = student.id
    for student in roster:
        if student.id not in graded:
            keyed.setdefault(student.id, Path(NOTHING) / f"{student.id}.ipynb")
    return keyed, reasons, renamed


def export(out: Path, chapter: str, roster: list[Student]) -> Path:
    """Write out/lms/{canvas.csv, moodle.csv, moodle-feedback.zip} from out/gradebook.csv (every row, not only this
    batch's) and out/feedback/."""
    from grade import spreadsheet_safe as _safe  # tools/grade.py, which imports this module

    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    lms = out / "lms"
    lms.mkdir(parents=True, exist_ok=True)
    possible = next((r.get("possible", "") for r in rows.values()), "")
    with open(lms / "canvas.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", chapter])
        writer.writerow(["    Points Possible", "", "", "", "", possible])
        for s in roster:
            writer.writerow([_safe(s.name), "", _safe(s.id), _safe(s.email), "", rows.get(_safe(s.id), {}).get("total", "")])
    with open(lms / "moodle.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Email address", "ID number", "Full name", chapter, "Feedback"])
        for s in roster:
            row = rows.get(_safe(s.id), {})
            note = row.get("status", "")
            note = f"{note}: {row['reason']}" if row.get("reason") else note
            writer.writerow([_safe(s.email), _safe(s.id), _safe(s.name), row.get("total", ""), _safe(note)])
    with zipfile.ZipFile(lms / "moodle-feedback.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for s in roster:
            graded_from = rows.get(_safe(s.id), {}).get("file", "")  # the LMS folder or file it was graded from
            moodle = MOODLE.match(graded_from.split("/")[0]) if graded_from.count(";") == 0 else None
            feedback = out / "feedback" / f"{s.id}.md"
            if moodle and feedback.is_file():
                zf.write(feedback, f"{moodle['name']}_{moodle['participant']}_assignsubmission_file_"
                                   f"{chapter}-feedback.md")
    return lms
