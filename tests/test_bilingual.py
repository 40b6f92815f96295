"""The course in two languages (issue 17): the glossary matches the chapters, every chapter has its Chinese objectives
and summary in step with the English ones, and every public check's hint exists in English and Chinese."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minipeft.lab import glossary

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb"))
WRITTEN = [p.stem[:2] for p in CHAPTERS]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"])


def is_zh(cell: dict) -> bool:
    return "zh" in cell.get("metadata", {}).get("tags", [])


def english_prose(path: Path) -> str:
    """What a chapter says in English, as prose that uses terms: its markdown cells without the Chinese ones, fenced
    diagrams, the **Follows.** citations and titles in 《》 (a title is not a use of its terms) and the
    check-your-understanding questions (they look ahead on purpose)."""
    parts = []
    for cell in cells(path):
        if cell["cell_type"] != "markdown" or is_zh(cell):
            continue
        body = re.sub(r"```.*?```|《[^》]*》", " ", text(cell), flags=re.S)
        body = re.split(r"\*\*Follows\.\*\*|\*\*Check your understanding\.\*\*", body)[0]
        parts.append(body)
    return "\n\n".join(parts)


def sentences(prose: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;:!?])\s+|\n\s*(?:[*]|\d+\.)\s|\n\n", prose) if s.strip()]


def uses(term: glossary.Term, prose: str, chapter: int) -> bool:
    """The chapter's prose uses the term, not counting a sentence that points ahead to the chapter introducing it
    ("... in chapter 06", "Next: Chapter 02 — LoRA")."""
    for sentence in sentences(prose):
        if term.found_in(sentence):
            pointed = [int(n) for m in re.finditer(r"[Cc]hapters? (\d\d)(?:[–-](\d\d))?", sentence)
                       for n in m.groups() if n]
            if not any(n > chapter for n in pointed) and not sentence.lstrip().startswith("Next:"):
                return True
    return False


PROSE = {p.stem[:2]: english_prose(p) for p in CHAPTERS}


def test_the_glossary_has_80_terms_at_least_each_once():
    terms = glossary.TERMS
    assert len(terms) >= 80
    assert len({t.en.lower() for t in terms}) == len(terms), "a term is listed twice"
    assert all(t.zh and re.search(r"[\u4e00-\u9fff]|^[A-Za-z0-9 ()\-]+$", t.zh) for t in terms)
    assert all(re.fullmatch(r"(0\d|1[0-2])", t.chapter) for t in terms)


@pytest.mark.parametrize("term", glossary.TERMS, ids=lambda t: t.en[:30])
def test_each_term_is_introduced_where_the_glossary_says(term):
    """The chapter column is the first chapter whose English prose uses the term (a forward pointer to a later
    chapter, a citation or a question does not count); a planned chapter's term appears in no written chapter."""
    used = [ch for ch in WRITTEN if uses(term, PROSE[ch], int(ch))]
    if term.chapter in WRITTEN:
        assert used and used[0] == term.chapter, (
            f"{term.en!r}: the glossary says chapter {term.chapter}, the chapters first use it in "
            f"{used[0] if used else 'none'} (match: {term.match!r})")
    else:
        assert not used, f"{term.en!r} is planned for chapter {term.chapter} but chapters {used} use it already"


def test_docs_glossary_is_rendered_from_the_table():
    assert (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8") == glossary.markdown(), \
        "docs/glossary.md is out of date: python -m minipeft.lab.glossary"


def numbers(markdown: str) -> set[str]:
    """The numbers of a text outside its formulas ("10,201", "0.1", "§4.3" -> "4.3")."""
    return set(re.findall(r"\d+(?:[.,]\d+)*", re.sub(r"\$[^$]+\$", " ", markdown)))


def formulas(markdown: str) -> set[str]:
    return set(re.findall(r"\$[^$]+\$", markdown))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_its_objectives_and_summary_in_chinese_in_step(path):
    """A 中文 cell (tagged zh) right after the English objectives (the first cell) and right after the English
    summary with its check-your-understanding questions (the last one); the Chinese asks as many questions, says the
    same numbers and writes the same formulas, so that a changed English cell fails here until its twin follows."""
    nb = cells(path)
    pairs = [(0, 1, "**中文 · 学习目标**"), (len(nb) - 2, len(nb) - 1, "**中文 · 小结**")]
    for en_at, zh_at, heading in pairs:
        english, chinese = nb[en_at], nb[zh_at]
        assert not is_zh(english) and english["cell_type"] == "markdown", f"{path.name}: cell {en_at} is not English"
        assert is_zh(chinese) and chinese["cell_type"] == "markdown", f"{path.name}: no 中文 cell after cell {en_at}"
        en, zh = text(english), text(chinese)
        assert zh.startswith(heading) and len(re.findall(r"[\u4e00-\u9fff]", zh)) > 100
        questions = [re.findall(r"^\d\. ", part, re.M) for part in (en.partition("**Check your understanding.**")[2],
                                                                    zh.partition("**检验你的理解。**")[2])]
        assert questions[0] == questions[1], f"{path.name}: the check-your-understanding questions differ in number"
        assert numbers(en) <= numbers(zh), f"{path.name}: numbers missing in Chinese: {numbers(en) - numbers(zh)}"
        assert formulas(en) <= formulas(zh), f"{path.name}: formulas missing in Chinese: {formulas(en) - formulas(zh)}"
    assert text(nb[0]).startswith(f"# Chapter {path.stem[:2]}") and "**Objectives.**" in text(nb[0])
    assert text(nb[-2]).startswith("## Summary")
    assert sum(is_zh(c) for c in nb) == 2 and all(c["cell_type"] == "markdown" for c in nb if is_zh(c))


def public_hints() -> dict[str, str]:
    """{hint: "chapter qN check i"} for every public check of every exercise (as the students' notebooks hold them)."""
    hints = {}
    for path in sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")):
        tests = json.loads(path.read_text(encoding="utf-8"))["metadata"]["otter"]["tests"]
        for question, test in tests.items():
            cases = [c for suite in test["suites"] for c in suite["cases"] if not c.get("hidden")]
            for i, case in enumerate(cases, 1):
                hints[(case.get("failure_message") or "").strip()] = f"{path.stem} {question} check {i}"
    return hints


def test_every_public_hint_exists_in_english_and_chinese():
    """Each public check has an English hint and its Chinese twin, with the same numbers and the same code names;
    the table holds no twin of a hint that no longer exists."""
    from minipeft.lab.hints_zh import ZH

    hints = public_hints()
    assert len(hints) >= 150 and "" not in hints, "a public check without a hint"
    missing = [where for hint, where in hints.items() if hint not in ZH]
    assert not missing, f"no Chinese twin in lib/minipeft/lab/hints_zh.py for: {missing}"
    stale = [en[:80] for en in ZH if en not in hints]
    assert not stale, f"hints_zh.py translates hints no exercise has any more: {stale}"
    for en, zh in ZH.items():
        assert len(re.findall(r"[\u4e00-\u9fff]", zh)) >= 5, en
        assert numbers(en) <= numbers(zh), f"{hints[en]}: numbers missing in Chinese: {numbers(en) - numbers(zh)}"
        names = set(re.findall(r"\b[a-z]+_[a-z0-9_]+\b|\b\w+\(", en))
        assert names <= set(re.findall(r"\b[a-z]+_[a-z0-9_]+\b|\b\w+\(", zh)), f"{hints[en]}: code names differ"


def test_the_language_setting(monkeypatch):
    from minipeft.lab import lang

    monkeypatch.setenv("MINIPEFT_LANG", "")  # recorded, so that the test leaves the setting as it found it
    assert lang.language() == "en" and lang.say("x", "甲") == "x"
    hint = next(iter(public_hints()))
    assert lang.hint(hint) == hint and lang.hint(hint, "zh") != hint
    for value in ("zh", "zh_CN", "ZH-Hans"):
        monkeypatch.setenv("MINIPEFT_LANG", value)
        assert lang.language() == "zh" and lang.say("x", "甲") == "甲"
    assert lang.hint("a hint nobody translated") == "a hint nobody translated"  # English rather than nothing
    monkeypatch.setenv("MINIPEFT_LANG", "fr")
    with pytest.raises(ValueError, match="use 'en' .* or 'zh'"):
        lang.language()
    assert lang.set_language("en") == "en" and lang.language() == "en"


def test_a_failed_check_speaks_the_students_language(monkeypatch):
    """The same failed check as test_exercises' English one, after grader(..., lang="zh"): the hint and the lines
    around it in Chinese; the failing line and the error stay as Python wrote them."""
    import warnings

    import minipeft as mp

    monkeypatch.setenv("MINIPEFT_LANG", "")  # recorded, so that the test leaves the setting as it found it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grader = mp.exercises.grader("03_prefix", lang="zh")
        lines = repr(grader.check("q3", {"lam": 10 / 30, "mp": mp})).splitlines()
    assert lines[0] == "q3：5 项公开检查中通过 3 项。"
    assert lines[1].startswith("✗ 检查 2：你把填充位置也算进去了")
    assert lines[2] == "    `assert abs(lam - 10 / 30) > 0.001` 得到 AssertionError"
    assert lines[3].startswith("✗ 检查 5：这不是前缀上的占比") and len(lines) == 5


def test_the_graders_feedback_file_follows_the_setting(monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import grade

    hint = "Padding is leaking in: with mask [1, 1, 0], the padded token must not count. Multiply by the mask and " \
           "divide by the number of REAL tokens (mask.sum), not by T."
    result = {"score": 0.0, "cases": [{"hidden": False, "passed": False, "hint": hint, "output": ""},
                                      {"hidden": True, "passed": True, "hint": None, "output": ""}]}
    args = ("ada", grade.Grade("ada", questions={"q1": result}), grade.Autograder("00_adaptation", ROOT, {"q1": 2}))
    monkeypatch.setenv("MINIPEFT_LANG", "")  # recorded, so that the test leaves the setting as it found it
    english = grade.feedback(*args)
    assert "- public test 1: **failed**. Padding is leaking in" in english and "hidden tests: 1 of 1 passed" in english
    monkeypatch.setenv("MINIPEFT_LANG", "zh")
    chinese = grade.feedback(*args)
    assert "**得分：0 / 2**" in chinese and "- 公开测试 1：**未通过**。填充位置混进来了" in chinese
    assert "隐藏测试：1 项中通过 1 项" in chinese and "Padding" not in chinese


NOTES = ("《第7章 大模型之Adaptation》", "PEFT (Parameter-Efficient Fine-Tuning)", "Lecture6",
         "《参数高效微调:Adapter、Prefix-tuning与LoRA》", "Parameter-Efficient Transfer Learning for NLP")
VERDICTS = {"reproduce": "复现", "the opposite": "相反", "not significant": "不显著"}


def map_rows(readme: str) -> list[list[str]]:
    """The rows of the table that maps the notes' sections to the chapters (the table after the list of notes)."""
    text = (ROOT / readme).read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.count(" | ") == 3]
    start = next(i for i, row in enumerate(rows) if "《第7章》 7.1" in row)
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[start:]]


def test_the_notes_map_is_the_same_in_english_and_chinese():
    """README.md and README.zh.md map the same sections, row by row, to the same chapters, with the same numbers and
    the same verdicts; every written chapter teaches some section, and the sections no chapter teaches yet point to a
    planned one."""
    en, zh = map_rows("README.md"), map_rows("README.zh.md")
    assert len(en) == len(zh) >= 40
    for readme in ("README.md", "README.zh.md"):
        text = (ROOT / readme).read_text(encoding="utf-8")
        assert all(title in text for title in NOTES), readme
    for (e_section, e_where, e_what, e_found), (z_section, z_where, z_what, z_found) in zip(en, zh):
        assert re.findall(r"\b\d\d\b", e_where) == re.findall(r"\b\d\d\b", z_where), (e_section, z_section)
        assert ("planned" in e_where) == ("计划" in z_where), e_section
        assert numbers(e_found) <= numbers(z_found), f"{e_section}: {numbers(e_found) - numbers(z_found)}"
        for english, chinese in VERDICTS.items():
            assert (f"**{english}" in e_found) == (chinese in z_found), (e_section, english)
    taught = {n for _, where, _, _ in en for n in re.findall(r"\b(\d\d)\b", where)}
    assert set(WRITTEN) <= taught
    assert all(int(n) > 8 for _, where, _, _ in en if "planned" in where
               for n in re.findall(r"chapter (\d\d)", where))


def test_nothing_cites_the_notes_by_their_file_names():
    """A student's clone has no shared/ folder: the notes are cited by their titles (the README's map says which)."""
    pattern = re.compile(r"\bseeds?[ _/]?0\d\d|\bseeds/|shared/seeds|\b0\d\d_[0-9a-f]{16}\b")
    files = [ROOT / "README.md", ROOT / "README.zh.md"] + [
        f for folder in ("course", "exercises", "solutions", "docs", "lib", "tools")
        for f in (ROOT / folder).rglob("*") if f.suffix in (".ipynb", ".md", ".py")]
    assert len(files) > 50
    cited = [f.relative_to(ROOT) for f in files if pattern.search(f.read_text(encoding="utf-8"))]
    assert not cited, f"cite the notes by their own titles, not their files: {cited}"


def correction_rows(readme: str) -> list[list[str]]:
    """The rows of the 'where the notes are wrong' table: the notes | the paper | chapter."""
    text = (ROOT / readme).read_text(encoding="utf-8")
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines()
            if line.startswith("| ") and line.count(" | ") == 2 and re.search(r"\| \d\d §\d+ \|$", line)]


def test_every_error_of_the_notes_is_corrected_in_its_chapter_and_listed_in_both_readmes():
    """Each row of the table names a chapter and section; that chapter has a 'The notes say / the paper says' box
    (a markdown cell tagged notes-correction) for each of its rows, and the Chinese table has the same rows."""
    en, zh = correction_rows("README.md"), correction_rows("README.zh.md")
    assert len(en) == len(zh) >= 10 and [r[2] for r in en] == [r[2] for r in zh]
    per_chapter: dict[str, int] = {}
    for _, _, where in en:
        per_chapter[where[:2]] = per_chapter.get(where[:2], 0) + 1
    for chapter, count in per_chapter.items():
        path = next((ROOT / "course").glob(f"{chapter}_*.ipynb"))
        boxes = [text(c) for c in cells(path) if "notes-correction" in c.get("metadata", {}).get("tags", [])]
        assert all(b.startswith("> **The notes say / the paper says.**") for b in boxes), path.name
        # "prompt tuning v2" shares chapter 04's P-tuning box
        assert len(boxes) == count - (chapter == "04"), (path.name, len(boxes), count)
