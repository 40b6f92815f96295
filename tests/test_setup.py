"""`make setup`'s choice of torch build (tools/install_torch.py): the CPU build where there is no GPU, PyPI as the
fallback, and the teacher's own TORCH= as given."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import install_torch  # noqa: E402


def test_linux_without_a_gpu_asks_the_cpu_index_first_then_pypi():
    (first, why_first), (second, why_second) = install_torch.plans("Linux", "x86_64", gpu=False)
    assert first[:3] == ["torch==2.13.0", "--index-url", install_torch.CPU_INDEX] and "--retries" in first
    assert second == ["torch==2.13.0"] and "could not be reached" in why_second and "CPU build" in why_first


def test_a_gpu_a_mac_and_the_teacher_s_choice_use_what_they_say():
    assert install_torch.plans("Linux", "x86_64", gpu=True) == [(["torch==2.13.0"], install_torch.plans(
        "Darwin", "arm64", gpu=False)[0][1])]
    assert [p for p, _ in install_torch.plans("Windows", "AMD64", gpu=False)] == [["torch==2.13.0"]]
    assert install_torch.plans("Linux", "x86_64", False, "torch==2.13.0 --index-url https://x/cu126")[0][0] == \
        ["torch==2.13.0", "--index-url", "https://x/cu126"]


def test_install_falls_back_when_the_cpu_index_fails_and_stops_at_the_first_success(capsys):
    calls = []

    def pip(args, ok=(False, True)):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0 if ok[len(calls) - 1] else 1)

    assert install_torch.install(install_torch.plans("Linux", "x86_64", gpu=False), run=pip, python="py") == 0
    assert [c[5:] for c in calls] == [p for p, _ in install_torch.plans("Linux", "x86_64", gpu=False)]
    assert calls[0][:4] == ["py", "-m", "pip", "install"] and "could not be reached" in capsys.readouterr().out
    calls.clear()
    assert install_torch.install(install_torch.plans("Linux", "x86_64", gpu=True), run=pip, python="py") == 1
    assert len(calls) == 1  # a failure that has no fallback is reported (make stops)
