"""The student's language for exercise feedback: English by default, Chinese with MINIPEFT_LANG=zh.

    MINIPEFT_LANG=zh jupyter lab                           every exercise's hints in Chinese
    grader = mp.exercises.grader("02_lora", lang="zh")     the same from inside a notebook (one line)
    python tools/grade.py subs --chapter 02_lora --lang zh the grader's feedback files in Chinese

The setting lives in the environment variable, so one choice reaches the notebook's feedback, a kernel started
from it and the grader's feedback files alike. What is translated: the hint of each failed public check (the table in
hints_zh.py, keyed by the English hint) and the few fixed lines around it. A hint without a Chinese twin is shown in
English: a student always reads the current hint, never a stale translation.
"""

from __future__ import annotations

import os

LANGUAGES = ("en", "zh")
ENV = "MINIPEFT_LANG"


def language() -> str:
    """'en' or 'zh', from MINIPEFT_LANG ('zh', 'zh_CN', 'zh-Hans' ... all mean Chinese; unset or empty: English)."""
    value = os.environ.get(ENV, "").strip().lower()
    return _check(value[:2] if value else "en")


def set_language(lang: str) -> str:
    """Choose the feedback language for this process and what it starts ('en' or 'zh'); returns it."""
    lang = _check((lang or "").strip().lower()[:2])
    os.environ[ENV] = lang
    return lang


def say(en: str, zh: str, lang: str | None = None) -> str:
    """The text in the chosen language (`lang`, or the current setting)."""
    return zh if (lang or language()) == "zh" else en


def hint(text: str, lang: str | None = None) -> str:
    """A public check's hint in the chosen language: its Chinese twin when there is one, else the English."""
    if (lang or language()) != "zh" or not text:
        return text
    from .hints_zh import ZH

    return ZH.get(text.strip(), text)


def _check(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown feedback language {lang!r}: use 'en' (English, the default) or 'zh' (中文), "
                         f"e.g. MINIPEFT_LANG=zh or mp.exercises.grader(chapter, lang='zh').")
    return lang
