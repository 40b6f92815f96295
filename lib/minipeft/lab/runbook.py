"""Execute notebooks headless, top to bottom, and time them (used by `make chapters`, `make quick` and the tests).

    python -m minipeft.lab.runbook course/*.ipynb [--quick] [--out build/course] [--timeout 600]

Quick mode sets MINIPEFT_QUICK=1 in the kernel's environment; every chapter's parameters cell reads it
(``QUICK = minipeft.quick_mode()``), so the same code runs on less data and fewer steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def notebook_client(nb, **kwargs):
    """An nbclient NotebookClient for headless runs, without nbclient's mirror of ipywidgets' Output widgets.

    That mirror sends the widget's state to the kernel on the shell channel while the same channel is being polled
    for the cell's reply; now and then the next cell's request then waited a whole cell timeout before it was sent
    (jupyter/nbclient#312; seen here once in about a dozen runs, right after an ``interact`` cell: 900 s). Without
    it, what a widget prints lands in the cell's own outputs, which is what an executed copy wants anyway."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, **kwargs)
    client.comm_open_handlers["jupyter.widget"] = lambda msg: None    # keep the state, mirror nothing
    return client


def execute(path: str | Path, quick: bool = False, timeout: int = 600, out: str | Path | None = None,
            cwd: str | Path | None = None):
    """Run one notebook in a fresh kernel. Returns (executed notebook, seconds). Raises on the first failing cell."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("MINIPEFT_QUICK")
    os.environ["MINIPEFT_QUICK"] = "1" if quick else "0"  # the kernel inherits this process's environment
    try:
        client = notebook_client(nb, timeout=timeout, kernel_name="python3",
                                 resources={"metadata": {"path": str(cwd or path.parent)}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        if env_before is None:
            os.environ.pop("MINIPEFT_QUICK", None)
        else:
            os.environ["MINIPEFT_QUICK"] = env_before
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(out) / path.name)
    return nb, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("MINIPEFT_QUICK") == "1")
    parser.add_argument("--out", default="build/course")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    failed = 0
    for nb_path in args.notebooks:
        try:
            _, seconds = execute(nb_path, quick=args.quick, timeout=args.timeout, out=args.out)
            print(f"[OK]   {nb_path}: {seconds:.1f} s ({'quick' if args.quick else 'default'} mode)", flush=True)
        except Exception as err:  # noqa: BLE001 - report and go on with the next notebook
            failed += 1
            print(f"[FAIL] {nb_path}: {str(err)[-2000:]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
