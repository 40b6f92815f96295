"""Execute notebooks headless, top to bottom, and time them (used by `make chapters`, `make quick` and the tests).

    python -m minipeft.lab.runbook course/*.ipynb [--quick] [--out build/course] [--timeout 600]

Quick mode sets MINIPEFT_QUICK=1 in the kernel's environment; every chapter's parameters cell reads it
(``QUICK = minipeft.quick_mode()``), so the same code runs on less data and fewer steps.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path

WIDGET_VIEW, WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"
TQDM_TEXT = re.compile(r"^.*\d+%\|.*\|")  # tqdm's text form: "desc:  40%|████      | 2/5 [...]"


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


def finish_progress_bars(nb) -> int:
    """Give each tqdm progress bar of an executed notebook the text of its final state; returns how many changed.

    A tqdm bar in a notebook is an ipywidgets HBox (description, FloatProgress, postfix). Its output keeps, as the
    plain-text form for viewers without the widget (nbconvert, GitHub, a JupyterLab that cannot load the widget), the
    text it had when it was displayed: "Loading weights:   0%|          | 0/103". The executed copy then shows every
    finished bar frozen at 0 %. The final values are in the notebook's saved widget state; this writes them into
    the plain text ("Loading weights: 100%|██████████| 103/103 [...]"). Bars whose state was not saved are left."""
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    changed = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            box = state.get(data.get(WIDGET_VIEW, {}).get("model_id", ""), {})
            parts = [state.get(c.replace("IPY_MODEL_", ""), {}) for c in box.get("state", {}).get("children", [])]
            if (len(parts) != 3 or not TQDM_TEXT.match(str(data.get("text/plain", "")))
                    or parts[1].get("model_name") != "FloatProgressModel"):
                continue
            left, right = (html.unescape(p.get("state", {}).get("value", "")).replace("\u2007", " ")
                           for p in (parts[0], parts[2]))
            bar = parts[1]["state"]
            filled = round(10 * bar.get("value", 0) / bar["max"]) if bar.get("max") else 0
            data["text/plain"] = f"{left}|{'█' * filled}{' ' * (10 - filled)}|{right}"
            changed += 1
    return changed


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
    finish_progress_bars(nb)
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
