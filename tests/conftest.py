"""Shared test set-up: deterministic, 2 threads (the reference laptop), offline; tests/helpers.py importable."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from helpers import ...` in any import mode

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """For modules of d = 32 models (`pytestmark = pytest.mark.usefixtures("one_thread")`): a second thread only adds
    a synchronisation to every tiny op (3x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


QUICK_BUDGET_S = 30  # the chapter standard: ≤ 30 s per chapter in quick mode on the 2-core reference laptop


TIMINGS = Path(__file__).resolve().parents[1] / "build" / "timings" / "quick_mode.json"


def pytest_sessionstart(session):
    TIMINGS.unlink(missing_ok=True)  # only this run's chapters are reported


def pytest_terminal_summary(terminalreporter):
    """Report the quick-mode time of every chapter executed in this run (tests/test_notebooks.py records them)."""
    if not TIMINGS.is_file():
        return
    terminalreporter.section("quick-mode chapter times")
    for name, seconds in sorted(json.loads(TIMINGS.read_text()).items()):
        flag = "" if seconds <= QUICK_BUDGET_S else f"  (over the {QUICK_BUDGET_S} s budget of the reference laptop)"
        terminalreporter.write_line(f"{name:<28} {seconds:6.1f} s{flag}")
