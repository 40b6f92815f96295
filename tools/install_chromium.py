"""Install Chromium for the browser test (`tests/test_browser.py`), as part of `make setup`.

    python tools/install_chromium.py             what `make setup` runs: install when missing and possible, say what
    python tools/install_chromium.py --dry-run   say what it would do, install nothing

Why Debian's Chromium and not Playwright's: the test drives the browser with Playwright for Python, whose own browser
download (`playwright install`) needs a CDN that a classroom mirror or an offline laptop often cannot reach; the
distribution's package comes from the same apt mirror as everything else. So: a Chromium already on the PATH is used
as is (any distribution, or CHROMIUM=/path/to/chrome); otherwise, on a machine with apt-get, it is installed when this
runs as root or with password-less sudo. Otherwise nothing is installed, the reason is printed with the command to run
by hand, and set-up goes on (the browser test then skips, saying the same): the course itself needs no browser here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")  # Debian, Ubuntu, Google's builds
APT = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]


def find() -> str | None:
    """The Chromium to use: $CHROMIUM if set, else the first of NAMES on the PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return next((path for path in map(shutil.which, NAMES) if path), None)


def plan() -> tuple[list[list[str]] | None, str]:
    """(the commands that install Chromium here, or None; why). Runs nothing but `sudo -n true`."""
    if shutil.which("apt-get") is None:
        return None, "no apt-get here: install Chromium (or Chrome) with this system's package manager, or set CHROMIUM"
    if os.geteuid() == 0:
        return [["apt-get", "update", "-qq"], APT], "root: apt-get installs Debian's chromium package"
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ([["sudo", "-n", "apt-get", "update", "-qq"], ["sudo", "-n", *APT]],
                "password-less sudo: apt-get installs Debian's chromium package")
    return None, f"not root and no password-less sudo: run `sudo {' '.join(APT)}` yourself"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, install nothing")
    args = parser.parse_args(argv)
    found = find()
    if found:
        print(f"[setup] chromium: {found} (already installed)")
        return 0
    commands, why = plan()
    if commands is None:
        print(f"[setup] chromium: NOT installed — {why}. Only the browser test needs it (it will skip).")
        return 0
    print(f"[setup] chromium: {why}" + ("  (dry run: nothing installed)" if args.dry_run else ""))
    for command in commands:
        print(f"[setup]   {' '.join(command)}", flush=True)
        if not args.dry_run and subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"[setup] chromium: `{' '.join(command)}` failed (output above); the browser test will skip.")
            return 0
    if not args.dry_run:
        print(f"[setup] chromium: installed, {find()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
