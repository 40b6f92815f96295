"""`make setup`'s choice of torch build (tools/install_torch.py): the CPU build where there is no GPU, PyPI as the
fallback, and the teacher's own TORCH= as given; and its Chromium for the browser test (tools/install_chromium.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import install_chromium  # noqa: E402
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


# ------------------------------------------------------------------- Chromium for the browser test (make setup)

def test_chromium_given_or_on_the_path_is_used_as_is(monkeypatch, tmp_path):
    fake = tmp_path / "chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert install_chromium.find() == str(fake)
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "missing"))
    assert install_chromium.find() is None


def test_chromium_is_installed_with_apt_as_root_or_with_sudo_and_otherwise_says_what_to_run(monkeypatch):
    monkeypatch.setattr(install_chromium.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(install_chromium.os, "geteuid", lambda: 0)
    commands, why = install_chromium.plan()
    assert commands[-1] == install_chromium.APT and "root" in why
    monkeypatch.setattr(install_chromium.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(install_chromium.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0))
    commands, why = install_chromium.plan()
    assert commands[-1] == ["sudo", "-n", *install_chromium.APT] and "sudo" in why
    monkeypatch.setattr(install_chromium.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1))
    commands, why = install_chromium.plan()
    assert commands is None and f"sudo {' '.join(install_chromium.APT)}" in why
    monkeypatch.setattr(install_chromium.shutil, "which", lambda name: None)
    commands, why = install_chromium.plan()
    assert commands is None and "no apt-get" in why


def test_chromium_dry_run_installs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(install_chromium, "find", lambda: None)
    monkeypatch.setattr(install_chromium, "plan", lambda: ([["apt-get", "install", "chromium"]], "root"))
    monkeypatch.setattr(install_chromium.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    assert install_chromium.main(["--dry-run"]) == 0
    assert "dry run: nothing installed" in capsys.readouterr().out


def test_the_browser_test_skips_only_where_chromium_cannot_be_installed(monkeypatch):
    import test_browser

    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setattr(install_chromium, "find", lambda: None)
    monkeypatch.setattr(install_chromium, "plan", lambda: (None, "not root and no password-less sudo"))
    with pytest.raises(pytest.skip.Exception, match="cannot be installed on this machine .not root"):
        test_browser.chromium.__wrapped__()
    monkeypatch.setattr(install_chromium, "plan", lambda: ([install_chromium.APT], "root"))
    with pytest.raises(pytest.fail.Exception, match="run `make setup`"):
        test_browser.chromium.__wrapped__()
