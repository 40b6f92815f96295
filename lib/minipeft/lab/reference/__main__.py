"""python -m minipeft.lab.reference CHAPTER|all [--jobs N] [--list] [--job ID] [--check]

    python -m minipeft.lab.reference 02_lora              run every missing job of the grid, one after the other
    python -m minipeft.lab.reference 02_lora --jobs 2     two jobs at a time (each with cores / 2 threads, or its own GPU)
    python -m minipeft.lab.reference 02_lora --list       one shell command per missing job: hand them to a scheduler
    python -m minipeft.lab.reference 02_lora --job "qv r=4/seed=1"     run exactly that job (what --list prints)
    python -m minipeft.lab.reference --check              every grid against its file (exit 1 if any is stale)
    python -m minipeft.lab.reference 02_lora --summary    the results as a Markdown table (mean, 95 % interval, minutes)

Resumable: a job's record is appended the moment it finishes, and a new start runs only the jobs without one. Records
that belong to no job of the current grid (a configuration changed) are moved to results/<chapter>.stale.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .grids import GRIDS
from . import results as store
from .results import StaleReference, append, check, path, read, status


def set_aside(grid) -> None:
    """Move records that match no job of the grid to <chapter>.stale.jsonl (nothing is deleted)."""
    done, _, foreign = status(grid)
    if not foreign:
        return
    stale = store.RESULTS / f"{grid.chapter}.stale.jsonl"
    with open(stale, "a", encoding="utf-8") as f:
        for record in foreign:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    keep = [r for r in read(grid.chapter) if r.get("key") in done and "limit" not in r]
    path(grid.chapter).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep), encoding="utf-8")
    print(f"{grid.chapter}: {len(foreign)} record(s) from an older grid moved to {stale}")


def job_command(chapter: str, job_id: str, threads: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "minipeft.lab.reference", chapter, "--job", job_id]
    return cmd + (["--threads", str(threads), "--quiet"] if threads else [])


def run_here(grid, jobs, progress: bool) -> None:
    from tqdm.auto import tqdm

    from .jobs import run_job

    bar = tqdm(jobs, desc=f"{grid.chapter}: jobs", unit="job", disable=not progress)
    for job in bar:
        bar.set_postfix_str(job.id)
        record = run_job(job, progress=progress)
        append(record)
        tqdm.write(f"{job.id:<34} accuracy {record['metrics']['accuracy']:.4f}  {record['seconds']:7.1f} s")


def run_parallel(grid, jobs, n: int, threads: int) -> None:
    """Each job in its own process (its own memory, its own threads); GPUs, if any, are dealt out round-robin."""
    from tqdm.auto import tqdm

    import torch

    gpus = torch.cuda.device_count()
    logs = Path("build") / "reference" / grid.chapter
    logs.mkdir(parents=True, exist_ok=True)

    def launch(i, job):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        log = logs / (job.id.replace("/", "_").replace(" ", "_") + ".log")
        with open(log, "w") as out:
            rc = subprocess.run(job_command(grid.chapter, job.id, threads), env=env, stdout=out,
                                stderr=subprocess.STDOUT).returncode
        return job, rc, log

    failed = []
    with ThreadPoolExecutor(n) as pool, tqdm(total=len(jobs), desc=f"{grid.chapter}: jobs", unit="job") as bar:
        for future in as_completed([pool.submit(launch, i, job) for i, job in enumerate(jobs)]):
            job, rc, log = future.result()
            bar.update(1)
            if rc:
                failed.append(job.id)
                tqdm.write(f"{job.id}: FAILED (exit {rc}), see {log}")
    if failed:
        sys.exit(f"{len(failed)} job(s) failed: {failed}. Fix and run the same command again (finished jobs are kept).")


def summary(chapter: str) -> str:
    """The chapter's reference results as Markdown: one row per configuration, then the totals."""
    from .results import load

    ref = load(chapter)
    own = [r for r in ref.records if r["chapter"] == chapter]
    borrowed = f" + {len(ref.records) - len(own)} borrowed" if len(own) < len(ref.records) else ""
    lines = [f"**{chapter}** ({len(own)} runs{borrowed}; their times add up to {ref.minutes():.0f} min, which is the "
             f"wall time only when one job runs at a time; {own[0]['hardware']['cpu']}, "
             f"{own[0]['hardware']['threads']} thread{'s' if own[0]['hardware']['threads'] != 1 else ''} per job; "
             f"majority class {ref.majority:.3f})", "",
             "| experiment | configuration | seeds | test accuracy: mean [95 % interval] | median min per run |",
             "|---|---|---:|---|---:|"]
    for c in ref.grid.configs:
        mean, low, high = ref.interval(c.name)
        seconds = sorted(r["seconds"] for r in ref.runs(c.name))
        lines.append(f"| {c.experiment} | {c.name} | {len(seconds)} | {mean:.4f} [{low:.4f}, {high:.4f}] | "
                     f"{seconds[len(seconds) // 2] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minipeft.lab.reference", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("chapter", nargs="?", help=f"one of {sorted(GRIDS)}, or 'all'")
    parser.add_argument("--jobs", type=int, default=1, help="jobs at a time (default 1)")
    parser.add_argument("--threads", type=int, help="torch threads per job (default: cores / jobs)")
    parser.add_argument("--list", action="store_true", help="print one command per missing job and exit")
    parser.add_argument("--job", help="run exactly this job (an id printed by --list)")
    parser.add_argument("--check", action="store_true", help="check every grid against its file")
    parser.add_argument("--summary", action="store_true", help="print the results as a Markdown table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    if args.check:
        bad = 0
        for grid in ([GRIDS[args.chapter]] if args.chapter not in (None, "all") else GRIDS.values()):
            try:
                check(grid)
                print(f"{grid.chapter}: ok ({len(grid.jobs())} runs)")
            except StaleReference as err:
                bad += 1
                print(err)
        sys.exit(1 if bad else 0)
    if args.chapter is None:
        parser.error("name a chapter (or 'all')")
    if args.summary:
        for chapter in (sorted(GRIDS) if args.chapter == "all" else [args.chapter]):
            print(summary(chapter))
        return
    if args.chapter != "all" and args.chapter not in GRIDS:
        parser.error(f"no reference grid for {args.chapter!r}; grids: {sorted(GRIDS)}")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    import torch

    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    torch.set_num_threads(threads)
    for grid in (GRIDS.values() if args.chapter == "all" else [GRIDS[args.chapter]]):
        if not args.job:             # a single job (maybe one of many in parallel) never rewrites the shared file
            set_aside(grid)
        done, missing, _ = status(grid)
        if args.job:
            job = grid.job(args.job)
            if job.key in done:
                print(f"{job.id}: already done")
                return
            from .jobs import run_job
            append(run_job(job, progress=not args.quiet))
            return
        if args.list:
            for job in missing:
                print(shlex.join(job_command(grid.chapter, job.id, threads)))
            continue
        print(f"{grid.chapter}: {len(done)} of {len(grid.jobs())} runs done, {len(missing)} to go "
              f"({args.jobs} at a time, {threads} thread(s) each) -> {path(grid.chapter)}")
        start = time.perf_counter()
        if missing:
            run_here(grid, missing, not args.quiet) if args.jobs == 1 else run_parallel(grid, missing, args.jobs, threads)
        print(f"{grid.chapter}: done in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
