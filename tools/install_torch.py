"""Install torch for `make setup`: the CPU build where there is no GPU, without needing anything but PyPI.

    python tools/install_torch.py               what `make setup` runs
    python tools/install_torch.py --dry-run     print the pip commands it would try, in order, and why
    TORCH="torch==2.13.0 --index-url <CUDA wheel index>" make setup      your own choice, passed to pip as is

Why: on Linux, PyPI's `torch` is the CUDA build (several GB of NVIDIA libraries) even on a laptop without a GPU;
PyTorch's own CPU index (https://download.pytorch.org/whl/cpu) has the CPU build (≈ 200 MB). On macOS and Windows
PyPI's build is already the CPU one. So on Linux x86_64 without an NVIDIA GPU this tries the CPU index first, with a
short timeout and no retries, and falls back to PyPI (or whatever index pip is configured with) when that index cannot
be reached, saying so, and which build it got. With an NVIDIA GPU, PyPI's CUDA build is what you want.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded (Linux) or nvidia-smi is on the PATH."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def plans(system: str, machine: str, gpu: bool, override: str = "") -> list[tuple[list[str], str]]:
    """The pip arguments to try, in order, each with why: the first that succeeds is kept."""
    if override.strip():
        return [(override.split(), "TORCH was given: passed to pip as is")]
    default = ([VERSION], "PyPI (or the index pip is configured with)")
    if system == "Linux" and machine in ("x86_64", "AMD64") and not gpu:
        return [([VERSION, "--index-url", CPU_INDEX, "--timeout", "15", "--retries", "0"],
                 "Linux without an NVIDIA GPU: the CPU build from PyTorch's CPU index"),
                (default[0], "the CPU index could not be reached: " + default[1]
                 + " (on Linux that is the CUDA build, several GB larger; it runs on the CPU all the same)")]
    return [default]


def install(tries: list[tuple[list[str], str]], run=subprocess.run, python: str = sys.executable) -> int:
    """pip install each plan until one succeeds; returns pip's exit status of the last try."""
    status = 1
    for args, why in tries:
        print(f"[setup] torch: {why}\n[setup]   pip install {' '.join(args)}", flush=True)
        status = run([python, "-m", "pip", "install", "--quiet", *args]).returncode
        if status == 0:
            return 0
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and install nothing")
    args = parser.parse_args(argv)
    tries = plans(platform.system(), platform.machine(), has_nvidia_gpu(), os.environ.get("TORCH", ""))
    if args.dry_run:
        for pip_args, why in tries:
            print(f"pip install {' '.join(pip_args)}    # {why}")
        return 0
    status = install(tries)
    if status == 0:
        build = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__, 'CUDA ' + "
                                "str(torch.version.cuda) if torch.version.cuda else 'CPU build')"],
                               capture_output=True, text=True).stdout.strip()
        print(f"[setup] torch installed: {build}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
