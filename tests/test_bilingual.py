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
    diagrams, the **Follows.** citations (a paper's title is not a use of its terms) and the check-your-understanding
    questions (they look ahead on purpose)."""
    parts = []
    for cell in cells(path):
        if cell["cell_type"] != "markdown" or is_zh(cell):
            continue
        body = re.sub(r"```.*?```", " ", text(cell), flags=re.S)
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
    summary (the last one); the Chinese says the same numbers and writes the same formulas, so that a changed English
    cell fails here until its Chinese twin follows."""
    nb = cells(path)
    pairs = [(0, 1, "**中文 · 学习目标**"), (len(nb) - 2, len(nb) - 1, "**中文 · 小结**")]
    for en_at, zh_at, heading in pairs:
        english, chinese = nb[en_at], nb[zh_at]
        assert not is_zh(english) and english["cell_type"] == "markdown", f"{path.name}: cell {en_at} is not English"
        assert is_zh(chinese) and chinese["cell_type"] == "markdown", f"{path.name}: no 中文 cell after cell {en_at}"
        en, zh = text(english).split("**Check your understanding.**")[0], text(chinese)
        assert zh.startswith(heading) and len(re.findall(r"[\u4e00-\u9fff]", zh)) > 100
        assert numbers(en) <= numbers(zh), f"{path.name}: numbers missing in Chinese: {numbers(en) - numbers(zh)}"
        assert formulas(en) <= formulas(zh), f"{path.name}: formulas missing in Chinese: {formulas(en) - formulas(zh)}"
    assert text(nb[0]).startswith(f"# Chapter {path.stem[:2]}") and "**Objectives.**" in text(nb[0])
    assert text(nb[-2]).startswith("## Summary")
    assert sum(is_zh(c) for c in nb) == 2 and all(c["cell_type"] == "markdown" for c in nb if is_zh(c))
