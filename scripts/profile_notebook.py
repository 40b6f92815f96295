"""Where a chapter's time goes: run a notebook headless (as CI and the runbook do) and list its slowest cells.

    python scripts/profile_notebook.py course/02_lora.ipynb [--default] [--top 8]

Quick mode unless --default. Prints the whole run's wall time (kernel start included) and each of the slowest code
cells with its seconds, from the timestamps nbclient records on every cell (execute_input to execute_reply).
"""

from __future__ import annotations

import argparse
import datetime

from minipeft.lab.runbook import execute


def _when(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def cell_seconds(nb) -> list[tuple[float, int, str]]:
    """[(seconds, cell index, first line)] of every executed code cell."""
    rows = []
    for i, cell in enumerate(nb.cells):
        run = cell.metadata.get("execution", {}) if cell.cell_type == "code" else {}
        if "iopub.execute_input" in run and "shell.execute_reply" in run:
            seconds = (_when(run["shell.execute_reply"]) - _when(run["iopub.execute_input"])).total_seconds()
            rows.append((seconds, i, (cell.source.splitlines() or [""])[0][:70]))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook")
    parser.add_argument("--default", action="store_true", help="default mode instead of quick mode")
    parser.add_argument("--top", type=int, default=8, help="how many of the slowest cells to list")
    args = parser.parse_args(argv)
    nb, seconds = execute(args.notebook, quick=not args.default)
    rows = cell_seconds(nb)
    print(f"{args.notebook} ({'default' if args.default else 'quick'} mode): {seconds:.1f} s in all, "
          f"{sum(r[0] for r in rows):.1f} s in its {len(rows)} code cells")
    for sec, i, first in sorted(rows, reverse=True)[:args.top]:
        print(f"  {sec:6.2f} s  cell {i:3d}  {first}")


if __name__ == "__main__":
    main()
